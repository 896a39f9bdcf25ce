"""``AutoTuner``: population-based training (Jaderberg et al. 2017, "Population Based Training of Neural Networks").

Each generation every member trains ``eval_timesteps`` more steps from its own checkpoint; the members are
ranked on the metric; the bottom ``exploit_fraction`` copies the checkpoint (weights, optimizer, normalization
statistics, schedules) *and* the hyperparameters of a random top member (exploit), then perturbs or resamples
those hyperparameters within their ranges (explore). A continuing member reloads its checkpoint into a fresh
``Trainer`` built from its (possibly new) config; ``Trainer.apply_hparams`` (through ``reapply_hyperparameters``)
then writes the changed values into the places a checkpoint load overwrote (loss buffers, optimizer param groups,
schedule states).

Trials run in local worker processes (spawn) by default, in this process (``executor="inline"``), or on any
executor with ``submit(fn, arg)`` -> future (``done()``, ``result()``): a submitit ``AutoExecutor`` turns each
generation into one SLURM job array (``aeon-tune --profile``). The tuner state (members,
hyperparameters, scores, RNG, generation) is written atomically after every finished member and every
generation; ``run`` resumes from it without retraining finished members.
"""
from __future__ import annotations

import inspect
import json
import math
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import cloudpickle
import gymnasium as gym
import numpy as np
from torchrl.envs import EnvBase

from aeon_trl.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from aeon_trl.config import Config
from aeon_trl.checkpoint import BOOKKEEPING_KEYS, config_differences
from aeon_trl.trainer import NonFiniteError, Trainer
from aeon_trl.tuning.space import TuningConfig, TuningError
from aeon_trl.user_env import EvalEnvFn, adopt_env

STATE = "tuner_state.json"
BEST = "best.yaml"
STATE_VERSION = 1


def reapply_hyperparameters(trainer, saved_config: Mapping[str, Any]) -> list[str]:
    """After ``trainer.load_state_dict(state)``: the hyperparameters whose values differ between the checkpoint's
    config and ``trainer.cfg``, written by ``Trainer.apply_hparams`` into the places the load overwrote (loss
    buffers with their adaptive schedules, optimizer param groups, the lr schedule's base). Returns those keys.

    The KL-adapted lr multiplier and the annealing progress carry over, so a new ``lr`` scales the lr in effect
    by new/old; keys the trainer reads from its config, or built from it (gamma, epochs, minibatch_size, ...),
    take effect anyway.
    """
    diffs = config_differences(Config.upgrade_dict(saved_config), trainer.cfg.to_dict(), BOOKKEEPING_KEYS | {"seed"})
    changed = sorted({k.split(".", 1)[1] for k in diffs})
    return trainer.apply_hparams(trainer.cfg, changed)


class EnvFactory:
    """The user's ``env_factory`` as every trial calls it. ``factory()`` (the seed's form) returns a gymnasium env or a
    TorchRL env, taken as ``AdvancedPPO(env)`` takes one: the base of the member's env stack. ``factory(cfg)`` gets
    the member's config and returns its training env stack (``make_env(cfg, base_env=...)``), or a gymnasium env,
    taken as above. Pickled with cloudpickle, so a lambda reaches spawn workers and SLURM jobs."""

    def __init__(self, factory: Callable[..., Any]):
        self.factory = factory
        self.takes_config = _required_positional(factory) >= 1

    def __call__(self, cfg: Config) -> Any:
        return self.factory(cfg) if self.takes_config else self.factory()

    def adopt(self, config: Config | Mapping[str, Any]) -> Config:
        """The base config with the keys the factory's env fixes (``num_envs``, ``env_id``; see ``adopt_env``),
        from one env built and closed here."""
        env = self(config if isinstance(config, Config) else Config.from_dict(config))
        try:
            return adopt_env(env, config)[0] if self._is_base(env) else \
                (config if isinstance(config, Config) else Config.from_dict(config))
        finally:
            env.close()

    def training_env(self, cfg: Config) -> tuple[EnvBase, EvalEnvFn | None]:
        """The member's training env and its eval-env factory (None: the default, from ``env_id``)."""
        env = self(cfg)
        if not self._is_base(env):
            return env, None
        from aeon_trl.envs import make_env
        cfg, base, make_eval = adopt_env(env, cfg)
        return make_env(cfg, base_env=base), make_eval

    def _is_base(self, env: Any) -> bool:
        return isinstance(env, gym.Env) or not self.takes_config

    def __getstate__(self) -> dict:
        return {"factory": cloudpickle.dumps(self.factory), "takes_config": self.takes_config}

    def __setstate__(self, state: dict) -> None:
        self.factory, self.takes_config = cloudpickle.loads(state["factory"]), state["takes_config"]


def _required_positional(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the documented one-argument form
        return 1
    return sum(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


@dataclass
class Trial:
    """One member's training for one generation (a picklable job for a worker process or a SLURM task)."""

    member: int
    generation: int
    config: dict
    start: str | None  # checkpoint to continue from (None: a fresh network)
    out: str  # checkpoint written at the end
    until: int  # train until this many frames
    horizon: int  # the schedules' horizon: all generations' steps
    metric: str
    eval_episodes: int
    eval_seed: int
    env_factory: EnvFactory | Callable[..., Any] | None = None


def run_trial(trial: Trial) -> dict:
    """Train one member for one generation; returns its metrics (``score`` None when training diverged).
    ``100_episode_return``: the mean return of the member's last 100 training episodes (its lineage's, across
    generations and exploits: they travel in the checkpoint)."""
    cfg = Config.from_dict(trial.config)
    env = make_eval = None
    if trial.env_factory is not None:
        factory = trial.env_factory if isinstance(trial.env_factory, EnvFactory) else EnvFactory(trial.env_factory)
        env, make_eval = factory.training_env(cfg)
    trainer = Trainer(cfg, env=env, eval_env_fn=make_eval)
    start = time.perf_counter()
    changed: list[str] = []
    try:
        if trial.start:
            state = load_checkpoint(trial.start, map_location=trainer.device)
            trainer.load_state_dict(state)
            changed = reapply_hyperparameters(trainer, state["config"])
        episodes_before = len(trainer.episode_returns)
        try:
            trainer.train(trial.horizon, until=trial.until)
        except NonFiniteError as exc:
            return {"score": None, "error": str(exc), "frames": trainer.frames, "changed": changed,
                    "wall_time": time.perf_counter() - start}
        save_checkpoint(trainer.state_dict(), trial.out)
        returns = trainer.episode_returns
        new = returns[episodes_before:]
        metrics = {
            "100_episode_return": float(np.mean(returns[-100:])) if returns else None,
            "gen_return": float(np.mean(new)) if new else None,
            "eval_return": (float(np.mean(trainer.evaluate(trial.eval_episodes, seed=trial.eval_seed)))
                            if trial.metric == "eval_return" else None),
        }
    finally:
        trainer.close()
    return {"score": metrics[trial.metric], **metrics, "frames": trainer.frames, "episodes": len(returns),
            "changed": changed, "wall_time": time.perf_counter() - start}


class AutoTuner:
    """Population-based training over a base config; ``run(generations)`` returns the best member's config.

    ``base_config``: a ``Config`` or a dict of config keys (default: the defaults). ``tuning_config`` (or ``config=``,
    the seed's name): a ``TuningConfig`` or its dict (``population_size``, ``mutation_rate``, ``metric``,
    ``parameters``, ``eval_timesteps``, ...). ``env_factory``: each member's env (default: from the config's
    ``env_id``), either ``env_factory()`` returning a gymnasium or TorchRL env as ``AdvancedPPO`` takes one (a
    gymnasium env trains alone: ``num_envs=1``, ``env_id`` from its spec), or ``env_factory(cfg)`` returning the
    member's training env stack (see ``EnvFactory``). ``executor``: None (local spawn processes), ``"inline"``
    (this process), or a submitit / concurrent.futures executor.

        AutoTuner(env_factory=lambda: gym.make("HalfCheetah-v5"),
                  config={"parameters": {"clip_range": (0.1, 0.3), "lr": (1e-5, 1e-3)}, "population_size": 8,
                          "mutation_rate": 0.25, "metric": "100_episode_return", "eval_timesteps": 100_000})
    """

    def __init__(self, base_config: Config | Mapping[str, Any] | None = None,
                 tuning_config: TuningConfig | Mapping[str, Any] | None = None,
                 env_factory: Callable[..., Any] | None = None, *, config: TuningConfig | Mapping[str, Any] | None = None,
                 tune_dir: str | Path = "runs/tune", executor: Any = None, log: Callable[[str], None] | None = print):
        if (tuning_config is None) == (config is None):
            raise TuningError("give the tuning config once: AutoTuner(base_config, tuning_config) or "
                              "AutoTuner(config={...}) (config= is the seed's name for the tuning config)"
                              if config is not None else "AutoTuner needs a tuning config: config={'parameters': "
                              "{...}, 'population_size': .., 'mutation_rate': .., 'metric': .., 'eval_timesteps': ..}")
        tuning_config = tuning_config if config is None else config
        self.env_factory = EnvFactory(env_factory) if env_factory is not None else None
        base_config = base_config if base_config is not None else {}
        # the keys a user's env fixes (a gymnasium env: num_envs=1, its env_id) are part of every member's config
        self.base = self.env_factory.adopt(base_config) if self.env_factory is not None else \
            base_config if isinstance(base_config, Config) else Config.from_dict(base_config)
        self.tuning = tuning_config if isinstance(tuning_config, TuningConfig) else \
            TuningConfig.from_dict(tuning_config, self.base)
        self.dir = Path(tune_dir)
        self.executor = executor
        self.log = log or (lambda _msg: None)
        self.seed = self.base.train.seed if self.tuning.seed is None else self.tuning.seed
        self.state: dict | None = None

    # ---- the loop -----------------------------------------------------------------------
    def run(self, generations: int) -> Config:
        if not isinstance(generations, int) or generations < 1:
            raise TuningError(f"generations={generations!r} must be an integer >= 1")
        state = self.state = self._load_or_init(generations)
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        pool = None
        try:
            while state["generation"] < generations:
                g = state["generation"]
                todo = [m for m in state["members"] if m["trained"] < g]
                if todo:
                    if pool is None and self.executor is None and self.tuning.parallel_workers > 1:
                        pool = ProcessPoolExecutor(self.tuning.parallel_workers,
                                                   mp_context=multiprocessing.get_context("spawn"))
                    self._train(state, [self._trial(m, g, generations) for m in todo], pool)
                self._end_generation(state, g, generations, rng)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        best = self.best_config()
        best.save(self.dir / BEST)
        return best

    def _train(self, state: dict, trials: list[Trial], pool) -> None:
        executor = self.executor if self.executor is not None else pool
        if executor is None or executor == "inline":
            for trial in trials:
                self._finish(state, trial, run_trial(trial))
            return
        if hasattr(executor, "batch"):  # submitit: one job array per generation
            with executor.batch():
                futures = [executor.submit(run_trial, t) for t in trials]
        else:
            futures = [executor.submit(run_trial, t) for t in trials]
        pending = dict(zip(futures, trials))
        while pending:
            for future in [f for f in pending if f.done()]:
                result = future.result()
                if getattr(future, "job_id", None):  # a SLURM (array) job: where its log is
                    result["job_id"] = future.job_id
                self._finish(state, pending.pop(future), result)
            if pending:
                time.sleep(0.5)

    def _finish(self, state: dict, trial: Trial, result: dict) -> None:
        member = state["members"][trial.member]
        member["trained"] = trial.generation
        member["score"] = result["score"]
        member["result"] = {k: v for k, v in result.items() if k != "score"}
        if result["score"] is not None:
            member["checkpoint"] = str(Path(trial.out).relative_to(self.dir.resolve()))
        self._save(state)
        score = f"{result['score']:.1f}" if result["score"] is not None else \
            "diverged" if result.get("error") else "n/a (no finished episode)"
        self.log(f"  generation {trial.generation + 1} member {trial.member}: {self.tuning.metric} {score} "
                 f"({result['frames']} frames, {result['wall_time']:.0f} s)")

    def _end_generation(self, state: dict, g: int, generations: int, rng: np.random.Generator) -> None:
        members = state["members"]
        order = self.ranking(members)
        record = {"generation": g, "ranking": order, "exploited": [],
                  "members": [{"id": m["id"], "score": m["score"], "hparams": dict(m["hparams"]),
                               "parent": m["parent"], **{k: m["result"].get(k) for k in
                                                         ("100_episode_return", "gen_return", "eval_return",
                                                          "frames", "job_id")}} for m in members]}
        if g < generations - 1:
            n = self.tuning.exploit_count
            top = [i for i in order[:n] if members[i]["score"] is not None]
            for loser in (order[-n:] if top else []):
                parent = top[int(rng.integers(len(top)))]
                self.exploit(members[loser], members[parent], g)
                members[loser]["hparams"] = self.explore(members[parent]["hparams"], rng)
                record["exploited"].append([loser, parent])
        state["history"].append(record)
        state["generation"] = g + 1
        state["rng"] = rng.bit_generator.state
        self._save(state)
        best = members[order[0]]
        scores = [m["score"] for m in members if m["score"] is not None]
        self.log(f"generation {g + 1}/{generations}: best {self.tuning.metric} {_fmt(best['score'])} (member "
                 f"{best['id']}: {_fmt_hparams(best['hparams'])}), median {_fmt(np.median(scores) if scores else None)}"
                 + "".join(f"; member {lo} <- {pa}" for lo, pa in record["exploited"]))

    # ---- exploit / explore --------------------------------------------------------------
    def exploit(self, member: dict, parent: dict, generation: int) -> None:
        """Copy the parent's checkpoint into the member's folder and take its hyperparameters."""
        dst = Path("members") / f"m{member['id']}" / f"g{generation}_from_m{parent['id']}.pt"
        src = self.dir / parent["checkpoint"]
        with src.open("rb") as f:
            atomic_write(self.dir / dst, lambda out: shutil.copyfileobj(f, out))
        member["checkpoint"] = str(dst)
        member["hparams"] = dict(parent["hparams"])
        member["parent"] = parent["id"]

    def explore(self, hparams: Mapping[str, Any], rng: np.random.Generator) -> dict:
        """Perturb (or, with probability mutation_rate, resample) every key; draws the config refuses are redrawn."""
        t = self.tuning
        for _ in range(100):
            new = {k: spec.mutate(hparams[k], rng, t.mutation_rate, t.perturb_scale) for k, spec in t.parameters.items()}
            if self._valid(new):
                return new
        raise TuningError(f"no valid config after 100 draws around {hparams}: the ranges conflict with the "
                          "config's checks (e.g. minibatch_size > num_envs * steps_per_env); narrow them")

    def sample(self, rng: np.random.Generator) -> dict:
        for _ in range(100):
            new = {k: spec.sample(rng) for k, spec in self.tuning.parameters.items()}
            if self._valid(new):
                return new
        raise TuningError("no valid config after 100 draws from the parameter ranges: they conflict with the "
                          "config's checks (e.g. minibatch_size > num_envs * steps_per_env); narrow them")

    def _valid(self, hparams: Mapping[str, Any]) -> bool:
        try:
            Config.from_dict(hparams, self.base)
        except ValueError:
            return False
        return True

    # ---- results ------------------------------------------------------------------------
    @staticmethod
    def ranking(members: list[dict]) -> list[int]:
        """Member ids best first; a diverged member (score None) ranks last, ties by id."""
        return sorted((m["id"] for m in members),
                      key=lambda i: (-(members[i]["score"] if members[i]["score"] is not None else -math.inf), i))

    def best_config(self) -> Config:
        """The base config with the best member's hyperparameters, the base seed, and total_timesteps = the
        steps the member's lineage trained (so ``aeon-train --config best.yaml`` is that budget from scratch)."""
        state = self.state or self._read_state()
        if state is None or not state["history"]:
            raise TuningError(f"no finished generation in {self.dir}: run the tuner first")
        members = state["history"][-1]["members"]
        best = members[state["history"][-1]["ranking"][0]]
        horizon = self.tuning.eval_timesteps * (state["history"][-1]["generation"] + 1)
        return Config.from_dict({**best["hparams"], "total_timesteps": horizon}, self.base)

    # ---- state --------------------------------------------------------------------------
    def _trial(self, member: dict, g: int, generations: int) -> Trial:
        t = self.tuning
        overrides = {**member["hparams"], "total_timesteps": generations * t.eval_timesteps,
                     "seed": self.seed + 1000 * (g + 1) + member["id"], "progress": False}
        if self.base.env.env_threads == 0 and self.executor is None and t.parallel_workers > 1:
            overrides["env_threads"] = 1  # parallel local trials share the cores
        out = self.dir.resolve() / "members" / f"m{member['id']}" / f"g{g}.pt"
        start = str(self.dir.resolve() / member["checkpoint"]) if member["checkpoint"] else None
        return Trial(member=member["id"], generation=g, config=Config.from_dict(overrides, self.base).to_dict(),
                     start=start, out=str(out), until=(g + 1) * t.eval_timesteps,
                     horizon=generations * t.eval_timesteps, metric=t.metric, eval_episodes=t.eval_episodes,
                     eval_seed=self.seed + 2_000_003, env_factory=self.env_factory)

    def _identity(self) -> dict:
        tuning = {k: v for k, v in self.tuning.to_dict().items() if k != "workers"}
        return {"base_config": self.base.to_dict(), "tuning": tuning, "seed": self.seed}

    def _load_or_init(self, generations: int) -> dict:
        state = self._read_state()
        if state is not None:
            saved = {"base_config": state["base_config"], "tuning": state["tuning"], "seed": state["seed"]}
            ident = json.loads(json.dumps(self._identity()))
            diffs = config_differences(Config.upgrade_dict(saved["base_config"]), ident["base_config"])
            if diffs or saved["tuning"] != ident["tuning"] or saved["seed"] != ident["seed"]:
                raise TuningError(f"{self.dir / STATE} belongs to a tuner with another base config, tuning config "
                                  f"or seed ({diffs or 'tuning/seed differ'}): resume with the same ones or "
                                  "use another tune_dir")
            self.log(f"resuming the tuner in {self.dir}: generation {state['generation'] + 1}, "
                     f"{sum(m['trained'] >= state['generation'] for m in state['members'])} member(s) of it done")
            return state
        rng = np.random.default_rng(self.seed)
        base_values = {k: getattr(self.base._section_of(k), k) for k in self.tuning.parameters}
        members = []
        for i in range(self.tuning.population_size):
            keep_base = i == 0 and self.tuning.include_base and \
                all(spec.contains(base_values[k]) for k, spec in self.tuning.parameters.items())
            members.append({"id": i, "hparams": dict(base_values) if keep_base else self.sample(rng),
                            "checkpoint": None, "trained": -1, "score": None, "parent": None, "result": {}})
        state = {"version": STATE_VERSION, **self._identity(), "generations": generations, "generation": 0,
                 "rng": rng.bit_generator.state, "members": members, "history": []}
        self._save(state)
        self.log(f"tuner in {self.dir}: {len(members)} members, {self.tuning.metric}, "
                 f"{self.tuning.eval_timesteps} steps per generation; "
                 + ", ".join(f"{k} {s.describe()}" for k, s in self.tuning.parameters.items()))
        return state

    def _read_state(self) -> dict | None:
        path = self.dir / STATE
        return json.loads(path.read_text()) if path.exists() else None

    def _save(self, state: dict) -> None:
        text = json.dumps(state, indent=1).encode()
        atomic_write(self.dir / STATE, lambda f: f.write(text))


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _fmt_hparams(hparams: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hparams.items())
