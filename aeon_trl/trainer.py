"""The PPO loop, readable top to bottom: collector -> GAE -> replay -> loss -> optimizer -> schedules.

Everything a run needs to resume (networks, optimizer incl. Lookahead slow weights, normalization
statistics, schedules, RNG states, counters, episode history) is in ``state_dict()``.
"""
from __future__ import annotations

import functools
import random
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.envs import EnvBase, ExplorationType, TransformedEnv, set_exploration_type
from torchrl.objectives.value import GAE

from aeon_trl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aeon_trl import _compat, env_state
from aeon_trl._util import eval_seed, seed_everything
from aeon_trl.config import Config
from aeon_trl.data.demonstrations import DemonstrationBuffer
from aeon_trl.data.prioritized import PPOPriority
from aeon_trl.envs import ObsNorm, env_dims, make_base_env, make_env
from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.optim.build import build_optimizer
from aeon_trl.optim.schedules import (AdaptiveClipper, AdaptiveKLCoef, DynamicBatchSize, EntropyAnnealing,
                                      GeometricDecay, KLAdaptiveLR, KLEarlyStop)
from aeon_trl.transforms.curiosity import CuriosityModule
from aeon_trl.transforms.curriculum import find_curriculum

LOSS_KEYS = ("loss_objective", "loss_critic", "loss_entropy", "loss_kl")
DIAGNOSTIC_KEYS = ("kl_approx", "clip_fraction", "entropy", "explained_variance")


class NonFiniteError(FloatingPointError):
    """NaN/inf in rewards, observations or losses: training stops, the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Owns the env, networks, loss, optimizer and schedules of one PPO run."""

    # Averages a diagnostic over data-parallel ranks, so every rank takes the same KL-driven
    # decisions (early stop, adaptive lr/clip/penalty) and none waits alone in an all-reduce.
    metric_reducer: Callable[[float], float] | None = None

    def __init__(self, cfg: Config, env: TransformedEnv | None = None,
                 eval_env_fn: Callable[[int, int], EnvBase] | None = None):
        """``eval_env_fn(num_envs, seed)`` builds the *base* env for evaluation (default: from the
        config's env id); it is wrapped in the same transforms as training."""
        self.cfg = cfg
        self.eval_env_fn = eval_env_fn or functools.partial(make_base_env, cfg, serial=True)
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
        seed_everything(cfg.train.seed)
        _compat.enable_from_any_fastpath()  # ~7% of an update; see its docstring
        self.device = resolve_device(cfg.train.device)
        self.env = env if env is not None else make_env(cfg)
        self.obs_norm = ObsNorm.of(self.env)
        obs_dim, act_dim = env_dims(self.env)
        self.net = AdaptiveActorCritic.from_config(obs_dim, act_dim, cfg.model).to(self.device)
        self.actor, self.critic = make_ppo_operators(self.net)
        p, o = cfg.ppo, cfg.optim
        self.loss = AdvancedClipPPOLoss(
            self.actor, self.critic, clip_epsilon=p.clip_epsilon, clip_value=p.clip_value,
            entropy_coeff=p.entropy_coef, critic_coeff=p.critic_coef, kl_coef=p.kl_coef,
            normalize_advantage=p.normalize_advantage, functional=False)
        self.advantage = GAE(gamma=p.gamma, lmbda=p.gae_lambda, value_network=None, average_gae=False)
        self.optimizer = build_optimizer(self.net.parameters(), o)
        self.lr_schedule = KLAdaptiveLR(self.optimizer, kl_target=p.kl_target if o.adaptive_lr else None,
                                        min_lr=o.min_lr, max_lr=o.max_lr, anneal_end=0.0 if o.anneal_lr else 1.0)
        self.clipper = AdaptiveClipper(init_value=p.clip_epsilon, kl_target=p.kl_target) if p.adaptive_clip else None
        self.kl_coef = AdaptiveKLCoef(init_value=p.kl_coef, kl_target=p.kl_target) if p.kl_coef > 0 else None
        end = p.entropy_coef_end if p.entropy_coef_end >= 0 else p.entropy_coef
        self.entropy = EntropyAnnealing(p.entropy_coef, end)
        self.demo_coef = GeometricDecay(cfg.demo.demo_coef, cfg.demo.demo_coef_decay)
        self.early_stop = KLEarlyStop(p.kl_target if p.kl_early_stop else None)
        # ICM intrinsic reward on each collected batch, before GAE (its own loss and optimizer).
        self.curiosity = CuriosityModule.from_config(obs_dim, act_dim, cfg.curiosity, self.device) \
            if cfg.curiosity.curiosity else None
        sh = cfg.shaping
        self.curriculum = find_curriculum(self.env)  # the env's SpeedCurriculum transform, if any
        self.batch_sizer = DynamicBatchSize(cfg.train.steps_per_env, cfg.env.num_envs, sh.dynamic_batch_cap,
                                            sh.dynamic_batch_growth, sh.dynamic_batch_cv) if sh.dynamic_batch else None
        self.frames_per_batch = cfg.frames_per_batch  # grows with dynamic batch sizing
        # With dynamic batch sizing the storage holds the cap; the sampler draws from what the batch filled.
        capacity = sh.dynamic_batch_cap if sh.dynamic_batch else cfg.frames_per_batch
        r = cfg.replay
        self.priority = PPOPriority(r.priority_key, r.priority_alpha, r.priority_beta, r.priority_beta_end,
                                    p.gamma) if r.prioritized else None
        if self.priority is not None:
            self.buffer = self.priority.make_buffer(capacity, cfg.train.batch_size, self.device)
        else:
            self.buffer = ReplayBuffer(storage=LazyTensorStorage(capacity, device=self.device),
                                       sampler=SamplerWithoutReplacement(), batch_size=cfg.train.batch_size)
        self.demos = DemonstrationBuffer.from_file(cfg.demo.demos, env=self.env, env_id=cfg.env.env_id) \
            if cfg.demo.demos else None
        if self.demos is not None and cfg.demo.demo_obs_stats:
            self.obs_norm.fold_in(self.demos.transitions.get(self.obs_norm.key))
        if self.demos is not None and cfg.ppo.critic_warmup == 0:
            warnings.warn("demonstrations with critic_warmup=0: the first PPO updates see the initial policy's "
                          "log-probs and an untrained critic's advantages, which can undo the cloned policy; "
                          "critic_warmup=5 kept it on Hopper-v5 (benchmarks/RESULTS.md, demonstrations)",
                          UserWarning, stacklevel=2)
        self.loss_keys = LOSS_KEYS + (("loss_demo",) if self.demos is not None else ())
        # The uniform buffer stores only what the loss reads: each minibatch then gathers ~7 tensors, not ~24.
        self.update_keys = self.loss.minibatch_keys
        self._collector: Collector | None = None
        self._resumed_env: dict | None = None  # env-side state of a loaded checkpoint, applied by collect()
        self.frames = 0
        self.total_timesteps = cfg.train.total_timesteps  # the horizon of the lr/entropy schedules
        self.iteration = 0
        self.episode_returns: list[float] = []
        self.history: list[dict] = []  # one row of metrics per iteration
        # Called with the network after each backward pass, before clipping: data-parallel
        # training all-reduces gradients here without the loop knowing about torch.distributed.
        self.gradient_hooks: list[Callable[[torch.nn.Module], None]] = []

    # ---- collection ---------------------------------------------------------------------
    def collect(self) -> TensorDictBase:
        """One on-policy batch ``[num_envs, steps_per_env]``; the collector starts on first use."""
        if self._collector is None:
            # The collector's construction draws from torch's RNG; a resumed run builds it again, so keep
            # the stream untouched to sample the same actions as the uninterrupted run. use_buffers=False with
            # dynamic batch sizing: the rollout is stacked per batch instead of written into a buffer of a fixed
            # length, so the rollout length can change between batches.
            with torch.random.fork_rng(devices=[]):
                self._collector = Collector(
                    self.env, self.actor, frames_per_batch=self.frames_per_batch, total_frames=-1,
                    policy_device=self.device, storing_device=self.device, env_device="cpu",
                    use_buffers=False if self.batch_sizer else None)
            self._batches = iter(self._collector)
            if self._resumed_env is not None:
                self._restore_env(self._resumed_env)
                self._resumed_env = None
        batch = next(self._batches)
        for key in (("next", "observation"), ("next", "reward")):  # a NaN obs makes a NaN reward
            if not torch.isfinite(batch.get(key)).all():
                raise NonFiniteError(f"the env returned NaN/inf in {key}; check the env or its reward wrapper. "
                                     "Training stopped; the last checkpoint is unchanged.")
        done = batch.get(("next", "done")).squeeze(-1)
        self.episode_returns.extend(batch.get(("next", "episode_reward"))[done].flatten().tolist())
        return batch

    def _restore_env(self, saved: dict) -> None:
        """After the collector's first reset: the checkpoint's statistics (that reset updated them), and where
        the simulators are in reach, the episodes in flight and the collector's carried TensorDict."""
        self.obs_norm.load_state_dict(saved["normalization"])
        if saved.get("simulators") is not None and env_state.in_reach(self.env):
            env_state.restore(self.env, saved["simulators"])
            _compat.collector_carrier(self._collector).update(TensorDict(saved["carrier"], batch_size=self.env.batch_size))

    def _env_runtime(self) -> dict:
        """The simulators and the collector's carried TensorDict; the carrier is only of use with them."""
        simulators = env_state.capture(self.env) if self._collector is not None else None
        carrier = _compat.collector_carrier(self._collector).exclude("collector").to_dict() \
            if simulators is not None else None
        return {"simulators": simulators, "carrier": carrier}

    # ---- update -------------------------------------------------------------------------
    def minibatch(self) -> TensorDictBase:
        """A minibatch of the current on-policy batch, with demonstration rows mixed in when configured."""
        if self.demos is None:
            return self.buffer.sample()
        return self.demos.sample(self.cfg.train.batch_size, self.buffer, self.cfg.demo.demo_ratio,
                                 is_demo_key=self.loss.tensor_keys.is_demo)

    def optimize_minibatch(self, minibatch: TensorDictBase, critic_only: bool = False) -> TensorDictBase:
        """One optimizer step of the loss on ``minibatch`` (of the critic's loss alone with ``critic_only``);
        demo rows (``is_demo``) hold RAW observations, normalized here with the current statistics. Returns
        the loss's output."""
        is_demo = minibatch.get(self.loss.tensor_keys.is_demo, None)
        if is_demo is not None:
            is_demo = is_demo.reshape(minibatch.shape).bool()
            obs = minibatch.get(self.obs_norm.key)
            normalized = self.obs_norm.normalize(obs[is_demo])
            minibatch.set(self.obs_norm.key, obs.masked_scatter(is_demo.unsqueeze(-1), normalized))
        out = self.loss.critic_only(minibatch) if critic_only else self.loss(minibatch)
        keys = [k for k in self.loss_keys if k in out.keys()]
        total = sum(out.get(k) for k in keys)
        if not torch.isfinite(total):
            raise NonFiniteError(
                f"the PPO loss became {total.item()} at iteration {self.iteration} "
                f"({', '.join(f'{k}={out.get(k).item():.4g}' for k in keys)}). Training stopped "
                "before the optimizer step; the last good checkpoint is kept. Lower lr or clip_epsilon, "
                "or check rewards/observations for extreme values.")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for hook in self.gradient_hooks:
            hook(self.net)
        if self.cfg.optim.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.optim.max_grad_norm)
        self.optimizer.step()
        return out

    def update(self, batch: TensorDictBase) -> dict[str, float]:
        cfg = self.cfg
        progress = self.frames / self.total_timesteps
        self.loss.entropy_coeff.fill_(self.entropy.value(progress))
        if self.demos is not None:  # DAPG: behaviour-cloning initialization, then lambda_0 * lambda_1^k
            self.loss.demo_coef.fill_(self.demo_coef.value(self.iteration))
            if self.iteration == 0:
                self.pretrain_on_demos()
        lr = self.lr_schedule.anneal(progress)
        curiosity_metrics = {} if self.curiosity is None else \
            self.curiosity.process(batch, progress, cfg.train.batch_size)  # ("next", "reward") += coef * r_i
        with torch.no_grad():
            # Values of s and s' (all ensemble heads: value clipping needs the old per-head values),
            # then GAE reads them and writes advantage and value_target.
            self.critic(batch)
            self.critic(batch.get("next"))
            self.advantage(batch)
        if self.priority is not None:
            self.priority.fill(self.buffer, batch.reshape(-1), self.loss, progress)
        else:
            self.buffer.empty()
            self.buffer.extend(batch.reshape(-1).select(*self.update_keys))
        # critic_warmup: the policy stands still (KL 0), so the KL-driven lr, early stop and clip stay as they are.
        warmup = self.iteration < cfg.ppo.critic_warmup
        sums: dict[str, float] = {k: 0.0 for k in self.loss_keys + DIAGNOSTIC_KEYS}
        steps = 0
        minibatches = max(1, batch.numel() // cfg.train.batch_size)
        for epoch in range(cfg.train.epochs):
            epoch_kl = 0.0
            for _ in range(minibatches):
                minibatch = self.minibatch()
                out = self.optimize_minibatch(minibatch, critic_only=warmup)
                if self.priority is not None:
                    self.priority.update(self.buffer, minibatch, self.loss)
                for k in sums:
                    sums[k] += out.get(k).item() if k in out.keys() else float("nan")
                epoch_kl += out.get("kl_approx").item() if not warmup else 0.0
                steps += 1
            if warmup:
                continue
            epoch_kl /= minibatches
            if self.metric_reducer is not None:
                epoch_kl = self.metric_reducer(epoch_kl)
            if cfg.optim.adaptive_lr:
                lr = self.lr_schedule.update(epoch_kl)
            if self.early_stop.should_stop(epoch_kl):
                break
        metrics = {k: v / steps for k, v in sums.items()}
        if not warmup:
            self._adapt_to_kl(metrics)
        metrics.update(lr=lr, epochs_run=epoch + 1, clip_epsilon=self.loss.clip_epsilon.item(),
                       kl_coef=self.loss.kl_coef.item(), entropy_coef=self.loss.entropy_coeff.item(),
                       demo_coef=self.loss.demo_coef.item(),
                       value_std=batch.get(self.loss.tensor_keys.value_std).mean().item(), **curiosity_metrics)
        return metrics

    def pretrain_on_demos(self) -> None:
        """DAPG's behaviour-cloning initialization, after the first batch has folded the states of the initial
        policy into the obs statistics: cloned on demo states alone, the policy meets a shifted normalization as
        soon as its own states arrive (measured: eval 130 instead of 2524 on Hopper-v5). The first batch's
        log-probs are then those of the initial policy, so use ``critic_warmup`` >= 1 with demonstrations."""
        for _ in range(self.cfg.demo.demo_pretrain_steps):
            self.optimize_minibatch(self.demos.sample(self.cfg.train.batch_size, None,
                                                      is_demo_key=self.loss.tensor_keys.is_demo))
        if self.cfg.demo.demo_freeze_obs_stats:
            self.obs_norm.freeze()

    def _adapt_to_kl(self, metrics: dict[str, float]) -> None:
        """The KL-driven schedules between updates: adaptive clip range and KL penalty."""
        if self.metric_reducer is not None:
            metrics["kl_approx"] = self.metric_reducer(metrics["kl_approx"])
        if self.clipper is not None:
            self.loss.clip_epsilon.fill_(self.clipper.update(metrics["kl_approx"]))
        if self.kl_coef is not None:
            self.loss.kl_coef.fill_(self.kl_coef.update(metrics["kl_approx"]))

    # ---- shaping: curriculum and batch size ------------------------------------------------
    def adapt(self, batch: TensorDictBase) -> dict[str, float]:
        """Grow the batch if episode lengths are stable; report the batch size and curriculum level."""
        metrics = {"frames_per_batch": batch.numel()}
        if self.batch_sizer is not None:
            done = batch.get(("next", "done")).squeeze(-1)
            lengths = batch.get(("next", "step_count")).squeeze(-1)[done].tolist()
            steps = self.batch_sizer.update(lengths)
            if self.metric_reducer is not None:  # data-parallel ranks must run the same number of minibatches
                steps = self.batch_sizer.steps_per_env = round(self.metric_reducer(float(steps)))
            self.resize_batch(steps * self.cfg.env.num_envs)
        if self.curriculum is not None:
            c = self.curriculum.curriculum
            metrics.update(curriculum_level=c.level, curriculum_target=self.curriculum.target,
                           curriculum_success_rate=c.success_rate, curriculum_solved=float(c.solved))
        return metrics

    def resize_batch(self, frames_per_batch: int) -> None:
        """Collect ``frames_per_batch`` frames from the next batch on, keeping the env and its episodes."""
        self.frames_per_batch = frames_per_batch
        if self._collector is not None:
            _compat.set_collector_frames_per_batch(self._collector, frames_per_batch)

    # ---- the loop -----------------------------------------------------------------------
    def train(self, total_timesteps: int | None = None,
              on_iteration: Callable[["Trainer", dict], None] | None = None, until: int | None = None) -> dict:
        """Train until ``total_timesteps`` frames (default: the config's); returns a summary.

        ``until`` stops earlier, at that frame count: one chunk of a longer run (the tuner trains in
        generations), while the lr/entropy schedules keep ``total_timesteps`` as their horizon."""
        total = self.total_timesteps = total_timesteps or self.cfg.train.total_timesteps
        start, start_frames = time.perf_counter(), self.frames
        while self.frames < min(total, until or total):
            t0 = time.perf_counter()
            batch = self.collect()
            t1 = time.perf_counter()
            metrics = self.update(batch)
            t2 = time.perf_counter()
            self.frames += batch.numel()
            metrics.update(self.adapt(batch))
            self.iteration += 1
            recent = self.episode_returns[-100:]
            metrics.update(
                frames=self.frames, iteration=self.iteration, episodes=len(self.episode_returns),
                episode_return=float(np.mean(recent[-20:])) if recent else float("nan"),
                collect_fps=batch.numel() / (t1 - t0), steps_per_second=batch.numel() / (t2 - t0))
            every = self.cfg.train.eval_every
            if every and self.iteration % every == 0 and self.cfg.train.eval_episodes:
                metrics["eval_return"] = float(np.mean(self.evaluate(self.cfg.train.eval_episodes)))
            self.history.append(metrics)
            if on_iteration is not None:
                on_iteration(self, metrics)
        wall = time.perf_counter() - start
        return self.summary(wall, self.frames - start_frames)

    def summary(self, wall_time: float, frames: int) -> dict:
        returns = self.episode_returns
        return {
            "episodes": len(returns),
            "best_reward": max(returns) if returns else float("nan"),
            "final_avg_reward": float(np.mean(returns[-100:])) if returns else float("nan"),
            "timesteps": self.frames,
            "wall_time": wall_time,
            "steps_per_second": frames / wall_time if wall_time > 0 else float("nan"),
        }

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, n_episodes: int = 10, deterministic: bool = True, seed: int | None = None) -> list[float]:
        """Returns of ``n_episodes`` episodes, one per env of a fresh eval env whose normalization
        statistics are frozen copies of training's (the policy must see what it was trained on)."""
        if n_episodes <= 0:
            return []
        with torch.random.fork_rng(devices=[]):  # evaluating mid-run must not shift training's random stream
            return self._evaluate(n_episodes, deterministic, seed)

    def _evaluate(self, n_episodes: int, deterministic: bool, seed: int | None) -> list[float]:
        seed = eval_seed(self.cfg.train.seed) if seed is None else seed
        env = make_env(self.cfg, num_envs=n_episodes, base_env=self.eval_env_fn(n_episodes, seed))
        try:
            ObsNorm.of(env).load_state_dict(self.obs_norm.state_dict(), freeze=True)
            curriculum = find_curriculum(env)
            if curriculum is not None:  # a curriculum is a means: evaluation is on its hardest level
                curriculum.curriculum.level, curriculum.frozen = curriculum.curriculum.num_levels - 1, True
            return rollout_returns(env, self.actor, episode_limit(self.cfg), deterministic)
        finally:
            env.close()

    # ---- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": self.cfg.to_dict(),
            "dims": list(env_dims(self.env)),
            "net": self.net.state_dict(),
            "loss_buffers": {k: v for k, v in self.loss.state_dict().items() if "network" not in k},
            "optimizer": self.optimizer.state_dict(),
            "schedules": {
                "lr": self.lr_schedule.state_dict(), "entropy": self.entropy.state_dict(),
                "early_stop": self.early_stop.state_dict(),
                "clipper": self.clipper.state_dict() if self.clipper else {},
                "kl_coef": self.kl_coef.state_dict() if self.kl_coef else {},
            },
            "normalization": self.obs_norm.state_dict(),
            "env_runtime": self._env_runtime(),
            "curiosity": self.curiosity.state_dict() if self.curiosity else {},
            "counters": {"frames": self.frames, "iteration": self.iteration},
            "shaping": {"frames_per_batch": self.frames_per_batch,
                        "batch_sizer": self.batch_sizer.state_dict() if self.batch_sizer else {},
                        "curriculum": self.curriculum.curriculum.state_dict() if self.curriculum else {}},
            "episode_returns": torch.tensor(self.episode_returns, dtype=torch.float64),
            "history": self.history,
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(), "python": random.getstate()[1]},
        }

    def load_state_dict(self, state: dict) -> None:
        dims = list(env_dims(self.env))
        if list(state["dims"]) != dims:
            raise CheckpointError(f"checkpoint was trained on observation/action sizes {state['dims']}, this env "
                                  f"has {dims}: it belongs to another env (config env_id "
                                  f"'{state['config']['env']['env_id']}')")
        try:
            self.net.load_state_dict(state["net"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint networks do not match this config's model: {exc}") from None
        self.loss.load_state_dict(state["loss_buffers"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        sched = state["schedules"]
        self.lr_schedule.load_state_dict(sched["lr"])
        self.entropy.load_state_dict(sched["entropy"])
        self.early_stop.load_state_dict(sched["early_stop"])
        if self.clipper and sched["clipper"]:
            self.clipper.load_state_dict(sched["clipper"])
        if self.kl_coef and sched["kl_coef"]:
            self.kl_coef.load_state_dict(sched["kl_coef"])
        self.obs_norm.load_state_dict(state["normalization"])
        if self.demos is not None and self.cfg.demo.demo_freeze_obs_stats and state["counters"]["iteration"] > 0:
            self.obs_norm.freeze()  # as pretrain_on_demos() left them
        self._resumed_env = {"normalization": state["normalization"], **state.get("env_runtime", {})}
        if self.curiosity and state.get("curiosity"):
            self.curiosity.load_state_dict(state["curiosity"])
        self.frames = state["counters"]["frames"]
        self.iteration = state["counters"]["iteration"]
        shaping = state.get("shaping", {})  # absent in checkpoints older than curriculum/dynamic batch
        if self.batch_sizer and shaping.get("batch_sizer"):
            self.batch_sizer.load_state_dict(shaping["batch_sizer"])
            self.resize_batch(shaping["frames_per_batch"])
        if self.curriculum and shaping.get("curriculum"):
            self.curriculum.curriculum.load_state_dict(shaping["curriculum"])
        self.episode_returns = state["episode_returns"].tolist()
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        _set_numpy_rng_state(state["rng"]["numpy"])
        random.setstate((3, tuple(state["rng"]["python"]), None))

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_checkpoint(path, map_location=self.device))

    def close(self) -> None:
        """Shut the collector and env down. Env worker processes may already be dead (SLURM kills a requeued
        job's processes while its main process checkpoints and exits): that is reported as a warning, never
        raised, so it cannot replace the reason the job is exiting."""
        collector, self._collector = self._collector, None
        try:
            if collector is not None:
                collector.shutdown()
            if not self.env.is_closed:
                self.env.close()
        except (OSError, EOFError) as exc:  # ConnectionResetError / BrokenPipeError from a dead worker's pipe
            warnings.warn(f"env worker processes were already gone when closing ({exc!r}); nothing is lost: "
                          "training state lives in the checkpoint, not in the workers", RuntimeWarning)


def results_record(summary: dict, cfg: Config, eval_returns: list[float]) -> dict:
    """The results.json schema every entry point writes: the train summary, the final evaluation, the config."""
    return {**summary, "env_id": cfg.env.env_id, "seed": cfg.train.seed, "eval_returns": eval_returns,
            "eval_mean": float(np.mean(eval_returns)) if eval_returns else None,
            "eval_std": float(np.std(eval_returns)) if eval_returns else None,
            "config": cfg.to_dict()}


def episode_limit(cfg: Config) -> int:
    import gymnasium as gym
    return cfg.env.max_episode_steps or gym.spec(cfg.env.env_id).max_episode_steps or 1000


def rollout_returns(env: EnvBase, policy: Callable, max_steps: int, deterministic: bool = True) -> list[float]:
    """The return of the first episode of each of the batched ``env``'s envs, acting with ``policy``
    (``env`` must carry ``RewardSum``, as ``make_env`` builds it)."""
    mode = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    with torch.no_grad(), set_exploration_type(mode):
        rollout = env.rollout(max_steps, policy, break_when_any_done=False, auto_cast_to_device=True)
    done = rollout.get(("next", "done")).squeeze(-1)  # [num_envs, T]
    returns = rollout.get(("next", "episode_reward")).squeeze(-1)
    first_done = torch.where(done.any(-1), done.float().argmax(-1), torch.full_like(done[:, 0], -1, dtype=torch.long))
    return returns[torch.arange(done.shape[0]), first_done].tolist()


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def _set_numpy_rng_state(s: dict) -> None:
    np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
