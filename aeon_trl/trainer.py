"""The PPO loop, readable top to bottom: collector -> GAE -> replay -> loss -> optimizer -> schedules.

Optional features (curiosity, demonstrations, prioritized minibatches, curriculum, dynamic batch size) are
``Plugin``s (``aeon_trl/plugins``) whose hooks the loop calls at fixed points; the trainer does not ask which
ones it has. Everything a run needs to resume (networks, optimizer incl. Lookahead slow weights, normalization
statistics, schedules, plugins' states, RNG states, counters, episode history) is in ``state_dict()``.
"""
from __future__ import annotations

import copy
import functools
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.envs import EnvBase, ExplorationType, TransformedEnv, set_exploration_type
from torchrl.objectives.value import GAE

from aeon_trl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aeon_trl import _compat, env_state
from aeon_trl._util import eval_seed, float_tensors, seed_everything, torch_threads
from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import ObsNorm, env_dims, episode_limit, make_base_env, make_env, observation_layout
from aeon_trl.evaluation import PeriodicEvaluator, default_eval_every
from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.optim.build import build_optimizer, load_optimizer_state
from aeon_trl.optim.schedules import AdaptiveClipper, AdaptiveKLCoef, EntropyAnnealing, KLAdaptiveLR, KLEarlyStop
from aeon_trl.plugins import Plugin, build_plugins, legacy_plugin_states
from aeon_trl.transforms.curriculum import evaluate_on_hardest_level

LOSS_KEYS = ("loss_objective", "loss_critic", "loss_entropy", "loss_kl")
DIAGNOSTIC_KEYS = ("kl_approx", "clip_fraction", "entropy", "explained_variance")
# What apply_hparams() cannot change on a built trainer: they shape the env, the networks, the buffers, the
# optimizer's state or which features run. A new value of one of them needs a new Trainer.
BUILT_SECTIONS = ("env", "model", "curiosity", "replay", "demo", "shaping")
BUILT_KEYS = frozenset({"steps_per_env", "minibatch_size", "seed", "device", "torch_threads", "compile", "optimizer",
                        "lookahead", "lookahead_k", "lookahead_alpha", "adaptive_clip"})


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
        self._own_eval_env = eval_env_fn is not None  # periodic evaluations then play it (Trainer.evaluate)
        self._periodic: PeriodicEvaluator | None = None  # built by the first periodic evaluation
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
        seed_everything(cfg.train.seed)
        _compat.enable_from_any_fastpath()  # ~7% of an update; see its docstring
        self.device = resolve_device(cfg.train.device)
        self.env = env if env is not None else make_env(cfg)
        self.obs_norm = ObsNorm.of(self.env)
        obs_dim, act_dim = env_dims(self.env)
        self.net = AdaptiveActorCritic.from_config(obs_dim, act_dim, cfg.model).to(self.device)
        self._net_parameters = list(self.net.parameters())  # clipped every minibatch: listed once
        self.actor, self.critic = make_ppo_operators(self.net)
        p, o = cfg.ppo, cfg.optim
        self.loss = AdvancedClipPPOLoss.from_config(self.actor, self.critic, cfg)
        if cfg.train.compile:
            self.loss.compile()
        self.advantage = GAE(gamma=p.gamma, lmbda=p.gae_lambda, value_network=None, average_gae=False)
        self.optimizer = build_optimizer(self.net.parameters(), o, fused=cfg.train.compile)
        self.lr_schedule = KLAdaptiveLR(self.optimizer, kl_target=p.kl_target if o.adaptive_lr else None,
                                        min_lr=o.min_lr, max_lr=o.max_lr, anneal_end=0.0 if o.anneal_lr else 1.0)
        self.clipper = AdaptiveClipper(init_value=p.clip_epsilon, kl_target=p.kl_target) if p.adaptive_clip else None
        self.kl_coef = AdaptiveKLCoef(init_value=p.kl_coef, kl_target=p.kl_target) if p.kl_coef > 0 else None
        end = p.entropy_coef_end if p.entropy_coef_end >= 0 else p.entropy_coef
        self.entropy = EntropyAnnealing(p.entropy_coef, end)
        self.early_stop = KLEarlyStop(p.kl_target if p.kl_early_stop else None)
        # The uniform buffer stores only what the loss reads: each minibatch then gathers ~7 tensors, not ~24.
        self.update_keys = self.loss.minibatch_keys
        self._collector: Collector | None = None
        self._resumed_env: dict | None = None  # env-side state of a loaded checkpoint, applied by collect()
        self._stats_before_batch: dict | None = None  # the normalization statistics before the batch in collection
        self._env_runtime_lost = False  # a batch failed the NaN check: the episodes in flight are not resumable
        self.frames = 0
        self.total_timesteps = cfg.train.total_timesteps  # the horizon of the lr/entropy schedules
        self.iteration = 0
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []  # of the same finished episodes, in the same order
        self._episode_steps: torch.Tensor | None = None  # [num_envs]: steps of each env's running episode
        self.history: list[dict] = []  # one row of metrics per iteration
        # Called with the network after each backward pass, before clipping: data-parallel
        # training all-reduces gradients here without the loop knowing about torch.distributed.
        self.gradient_hooks: list[Callable[[torch.nn.Module], None]] = []
        self.frames_per_batch = cfg.frames_per_batch  # a plugin may resize it (dynamic batch size)
        # The features the config switches on; the curiosity plugin's networks draw from torch's RNG here.
        self.plugins: list[Plugin] = build_plugins(cfg, self.env, obs_dim, act_dim, self.device)
        for plugin in self.plugins:
            plugin.register(self)
        capacity = cfg.frames_per_batch
        for plugin in self.plugins:
            capacity = plugin.batch_capacity(capacity)
        buffers = [b for b in (pl.make_buffer(capacity, cfg.train.minibatch_size) for pl in self.plugins)
                   if b is not None]  # a plugin's (prioritized) buffer, else the uniform one
        self.buffer = buffers[0] if buffers else ReplayBuffer(
            storage=LazyTensorStorage(capacity, device=self.device), sampler=SamplerWithoutReplacement(),
            batch_size=cfg.train.minibatch_size)
        self.loss_keys = LOSS_KEYS + tuple(k for plugin in self.plugins for k in plugin.loss_keys)
        # Summed into the total in this order when present: the logged terms, then any other term the loss
        # declares (loss_demo when a minibatch brings demo rows without the demonstrations plugin).
        self._summed_keys = self.loss_keys + tuple(k for k in self.loss.out_keys
                                                   if k.startswith("loss_") and k not in self.loss_keys)

    # ---- plugins ------------------------------------------------------------------------
    def plugin(self, name: str) -> Plugin | None:
        """The plugin called ``name`` ("curiosity", "demonstrations", "prioritized", "curriculum",
        "dynamic_batch"), or None when this run does not use it."""
        return next((plugin for plugin in self.plugins if plugin.name == name), None)

    # ---- the policy, for those who use it outside the loop (distillation, export) ------------
    @property
    def policy(self) -> torch.nn.Module:
        """The policy network: observation -> (loc, scale) of the Gaussian over actions."""
        return self.net.policy

    def policy_log_std(self) -> torch.Tensor:
        """The Gaussian head's state-independent log std ``[act_dim]`` (detached)."""
        return self.net.policy[-1].log_std().detach()

    # ---- collection ---------------------------------------------------------------------
    def collect(self) -> TensorDictBase:
        """One on-policy batch ``[num_envs, steps_per_env]``; the collector starts on first use."""
        if self._collector is None:
            # The collector's construction draws from torch's RNG; a resumed run builds it again, so keep
            # the stream untouched to sample the same actions as the uninterrupted run. use_buffers=False when a
            # plugin varies the batch size: the rollout is stacked per batch instead of written into a buffer of
            # a fixed length, so the rollout length can change between batches.
            varies = any(plugin.varies_batch_size for plugin in self.plugins)
            with torch.random.fork_rng(devices=[]):
                self._collector = Collector(
                    self.env, self.actor, frames_per_batch=self.frames_per_batch, total_frames=-1,
                    policy_device=self.device, storing_device=self.device, env_device="cpu",
                    use_buffers=False if varies else None)
            self._batches = iter(self._collector)
            if self._resumed_env is not None:
                self._restore_env(self._resumed_env)
                self._resumed_env = None
        # The env folds each step into its running statistics as it collects: a batch that then fails the NaN
        # check has already poisoned them, and discard_batch() puts these back (a few small tensors a batch).
        self._stats_before_batch = copy.deepcopy(self.obs_norm.state_dict())
        return next(self._batches)

    def discard_batch(self) -> None:
        """Undo what collecting the last batch did to the run's state, after it failed the NaN check: the obs
        and reward normalization statistics go back to before it; the episodes in flight (NaN in the
        collector's carried TensorDict) are left out of later checkpoints, whose resume starts fresh ones."""
        if self._stats_before_batch is not None:
            self.obs_norm.load_state_dict(self._stats_before_batch)
            self._stats_before_batch = None
        self._env_runtime_lost = True

    def _restore_env(self, saved: dict) -> None:
        """After the collector's first reset: the checkpoint's statistics (that reset updated them), and where
        the simulators are in reach, the episodes in flight and the collector's carried TensorDict."""
        self.obs_norm.load_state_dict(saved["normalization"])
        if saved.get("simulators") is not None and env_state.in_reach(self.env):
            env_state.restore(self.env, saved["simulators"])
            carrier = _compat.collector_carrier(self._collector)
            carrier.update(TensorDict(saved["carrier"], batch_size=self.env.batch_size))
            if saved.get("episode_steps") is not None:
                self._episode_steps = saved["episode_steps"].clone()

    def _env_runtime(self) -> dict:
        """The simulators and the collector's carried TensorDict; the carrier is only of use with them."""
        if self._env_runtime_lost:
            return {"simulators": None, "carrier": None}
        simulators = env_state.capture(self.env) if self._collector is not None else None
        carrier = _compat.collector_carrier(self._collector).exclude("collector").to_dict() \
            if simulators is not None else None
        steps = self._episode_steps.clone() if simulators is not None and self._episode_steps is not None else None
        return {"simulators": simulators, "carrier": carrier, "episode_steps": steps}

    # ---- update -------------------------------------------------------------------------
    def minibatch(self) -> TensorDictBase:
        """The next minibatch of the current on-policy batch (a plugin may draw it: demonstrations mix theirs in)."""
        for plugin in self.plugins:
            minibatch = plugin.sample_minibatch()
            if minibatch is not None:
                return minibatch
        return self.buffer.sample()

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
        keys = [k for k in self._summed_keys if k in out.keys()]
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
            torch.nn.utils.clip_grad_norm_(self._net_parameters, self.cfg.optim.max_grad_norm)
        self.optimizer.step()
        return out

    def update(self, batch: TensorDictBase) -> dict[str, float]:
        """The PPO update on one batch ``[num_envs, T]``: advantages, then ``epochs`` passes of minibatches (on
        ``update_threads`` torch threads: the env's simulator threads are idle meanwhile)."""
        with torch_threads(self.cfg.train.update_threads):
            return self._update(batch)

    def _update(self, batch: TensorDictBase) -> dict[str, float]:
        cfg = self.cfg
        progress = self.frames / self.total_timesteps
        self.loss.entropy_coeff.fill_(self.entropy.value(progress))
        if self.iteration == 0:
            for plugin in self.plugins:
                plugin.on_start()  # before the first update: behaviour-cloning pre-training on demonstrations
        lr = self.lr_schedule.anneal(progress)
        plugin_metrics: dict[str, float] = {}
        for plugin in self.plugins:
            plugin_metrics.update(plugin.on_batch(batch, progress))  # curiosity: ("next", "reward") += coef * r_i
        self.fill_buffer(batch, progress)
        # critic_warmup: the policy stands still (KL 0), so the KL-driven lr, early stop and clip stay as they are.
        warmup = self.iteration < cfg.ppo.critic_warmup
        sums: dict[str, float] = {k: 0.0 for k in self.loss_keys + DIAGNOSTIC_KEYS}
        steps, demo_rows = 0, False
        minibatches = max(1, batch.numel() // cfg.train.minibatch_size)
        for epoch in range(cfg.train.epochs):
            epoch_kl = 0.0
            for _ in range(minibatches):
                minibatch = self.minibatch()
                demo_rows = demo_rows or self.loss.tensor_keys.is_demo in minibatch.keys(include_nested=True)
                out = self.optimize_minibatch(minibatch, critic_only=warmup)
                for plugin in self.plugins:
                    plugin.on_minibatch(minibatch, out)  # prioritized: the rows' new priorities
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
                       demo_coef=self.loss.demo_coef.item() if demo_rows else 0.0,  # the term's weight here
                       value_std=batch.get(self.loss.tensor_keys.value_std).mean().item(), **plugin_metrics)
        return metrics

    def fill_buffer(self, batch: TensorDictBase, progress: float) -> None:
        """The batch's values, advantages and value targets, then the minibatch buffer filled with its rows."""
        with torch.no_grad():
            # Values of s and s' (all ensemble heads: value clipping needs the old per-head values),
            # then GAE reads them and writes advantage and value_target.
            self.critic(batch)
            self.critic(batch.get("next"))
            self.advantage(batch)
        flat = batch.reshape(-1)
        if not any(plugin.fill_buffer(flat, progress) for plugin in self.plugins):  # prioritized: its own
            self.buffer.empty()
            self.buffer.extend(flat.select(*self.update_keys))

    def _adapt_to_kl(self, metrics: dict[str, float]) -> None:
        """The KL-driven schedules between updates: adaptive clip range and KL penalty."""
        if self.metric_reducer is not None:
            metrics["kl_approx"] = self.metric_reducer(metrics["kl_approx"])
        if self.clipper is not None:
            self.loss.clip_epsilon.fill_(self.clipper.update(metrics["kl_approx"]))
        if self.kl_coef is not None:
            self.loss.kl_coef.fill_(self.kl_coef.update(metrics["kl_approx"]))

    # ---- between batches: what the plugins adapt, and the batch size -----------------------
    def adapt(self, batch: TensorDictBase) -> dict[str, float]:
        """After the update on ``batch``: the plugins adapt the next batch (its size, the curriculum level) and
        report on it."""
        metrics: dict[str, float] = {}
        for plugin in self.plugins:
            metrics.update(plugin.after_update(batch))
        return metrics

    def resize_batch(self, frames_per_batch: int) -> None:
        """Collect ``frames_per_batch`` frames from the next batch on, keeping the env and its episodes."""
        self.frames_per_batch = frames_per_batch
        if self._collector is not None:
            _compat.set_collector_frames_per_batch(self._collector, frames_per_batch)

    # ---- hyperparameters ----------------------------------------------------------------
    def apply_hparams(self, cfg: Config, changed: Iterable[str] | None = None) -> list[str]:
        """Make ``cfg`` the trainer's config and write its hyperparameters where the trainer holds them between
        updates: the loss's coefficients (and their adaptive schedules), the optimizer's param groups, the lr,
        entropy and KL schedules, GAE. Returns the keys written, sorted.

        ``changed``: the keys whose new values the trainer does not hold yet; default: those that differ between
        its config and ``cfg``. After ``load_state_dict`` of a checkpoint trained with another config, these are
        the keys that differ from the checkpoint's config (the load wrote its values back). A written
        ``clip_epsilon`` / ``kl_coef`` restarts its adaptation from the new value; a new ``lr`` scales the lr in
        effect by new/old (the KL-adapted multiplier and the annealing progress carry over). Keys that shape the
        env, the networks, the buffers, the optimizer's state or the features (``BUILT_SECTIONS``,
        ``BUILT_KEYS``) need a new Trainer: ``ConfigError``."""
        built = [k for k in self.cfg.changed_keys(cfg) if k in BUILT_KEYS
                 or any(k in getattr(self.cfg, section).__dataclass_fields__ for section in BUILT_SECTIONS)]
        if (cfg.ppo.kl_coef > 0) != (self.kl_coef is not None):
            built.append("kl_coef (on/off)")
        if built:
            raise ConfigError(f"apply_hparams cannot change {', '.join(built)} of a built Trainer: they shape "
                              "its env, networks, buffers, optimizer or features; build a new Trainer")
        changed = sorted(set(self.cfg.changed_keys(cfg) if changed is None else changed))
        self.cfg = cfg
        p, o, loss, sched = cfg.ppo, cfg.optim, self.loss, self.lr_schedule
        if "clip_epsilon" in changed:
            loss.clip_epsilon.fill_(p.clip_epsilon)
            if self.clipper is not None:
                self.clipper.value = p.clip_epsilon
        if "critic_coef" in changed:
            loss.critic_coeff.fill_(p.critic_coef)
        if "clip_value" in changed and loss.clip_value is not None:
            loss.clip_value.fill_(p.clip_value)
        if "kl_coef" in changed:
            loss.kl_coef.fill_(p.kl_coef)
            if self.kl_coef is not None:
                self.kl_coef.value = p.kl_coef
        groups = self.optimizer.param_groups
        for group in groups:
            if "wd" in changed:
                group["weight_decay"] = o.wd
            if "adam_eps" in changed and "eps" in group:
                group["eps"] = o.adam_eps
        if "lr" in changed:
            ratio = o.lr / sched.base_lrs[0]
            sched.base_lrs = [b * ratio for b in sched.base_lrs]
            for group, base in zip(groups, sched.base_lrs):
                group["lr"] = base * sched.multiplier * sched.anneal_factor
        # Built from the config in __init__, with no adapted state to keep: rewritten from it.
        if {"gamma", "gae_lambda"} & set(changed):
            self.advantage.gamma.fill_(p.gamma)
            self.advantage.lmbda.fill_(p.gae_lambda)
        if {"entropy_coef", "entropy_coef_end"} & set(changed):
            self.entropy.start = float(p.entropy_coef)
            self.entropy.end = float(p.entropy_coef_end if p.entropy_coef_end >= 0 else p.entropy_coef)
        if {"kl_target", "adaptive_lr", "kl_early_stop"} & set(changed):
            sched.kl_target = p.kl_target if o.adaptive_lr else None
            self.early_stop.kl_target = p.kl_target if p.kl_early_stop else None
            for schedule in (self.clipper, self.kl_coef):
                if schedule is not None:
                    schedule.kl_target = p.kl_target
        if {"min_lr", "max_lr"} & set(changed):
            sched.min_lr, sched.max_lr = o.min_lr, o.max_lr
        if "anneal_lr" in changed:
            sched.anneal_end = 0.0 if o.anneal_lr else 1.0
        if "normalize_advantage" in changed:
            loss.normalize_advantage = p.normalize_advantage
        return changed

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
            try:
                metrics = self.step(batch, collect_seconds=time.perf_counter() - t0)
            except NonFiniteError:
                self.discard_batch()
                raise
            if on_iteration is not None:
                on_iteration(self, metrics)
        wall = time.perf_counter() - start
        return self.summary(wall, self.frames - start_frames)

    def step(self, batch: TensorDictBase, collect_seconds: float | None = None) -> dict[str, float]:
        """One iteration on a batch ``[num_envs, T]``: the NaN check, the update, the plugins' adaptation, the
        counters and one row of ``history`` (returned); every ``eval_every`` iterations an evaluation.

        ``collect_seconds``: how long the collector took (``train`` passes it). A batch from elsewhere
        (``AdvancedPPO.store``) has no collection statistics: its caller counts the episode returns (the batch
        has no ``episode_reward``), and its row has no ``frames_per_batch``, ``episode_return`` or speeds."""
        for key in (("next", "observation"), ("next", "reward")):  # a NaN obs makes a NaN reward
            if not torch.isfinite(batch.get(key)).all():
                raise NonFiniteError(f"the env returned NaN/inf in {key}; check the env or its reward wrapper. "
                                     "Training stopped; the last checkpoint is unchanged.")
        collected = collect_seconds is not None
        if collected:
            done = batch.get(("next", "done")).squeeze(-1)
            self.episode_returns.extend(batch.get(("next", "episode_reward"))[done].flatten().tolist())
            self._count_episode_steps(done)
        t0 = time.perf_counter()
        metrics = self.update(batch)
        update_seconds = time.perf_counter() - t0
        self.frames += batch.numel()
        if collected:
            metrics["frames_per_batch"] = batch.numel()
        metrics.update(self.adapt(batch))
        self.iteration += 1
        metrics.update(frames=self.frames, iteration=self.iteration, episodes=len(self.episode_returns))
        if collected:
            recent = self.episode_returns[-100:]
            metrics.update(episode_return=float(np.mean(recent[-20:])) if recent else float("nan"),
                           train_return=self.train_return(batch),
                           collect_fps=batch.numel() / collect_seconds,
                           steps_per_second=batch.numel() / (collect_seconds + update_seconds))
        every = self.eval_every
        if every and self.iteration % every == 0:
            metrics["eval_return"] = float(np.mean(self.periodic_evaluate()))
        self.history.append(metrics)
        return metrics

    # ---- the training return, every iteration ------------------------------------------------
    def _count_episode_steps(self, done: torch.Tensor) -> None:
        """Extend ``episode_lengths`` with the episodes that ended in a batch (``done`` ``[num_envs, T]``), carry the
        running episodes' steps to the next batch."""
        done = done.cpu().reshape(-1, done.shape[-1])  # [num_envs, T]; an unbatched env's batch is [T]
        running = self._episode_steps
        if running is None or running.shape != done.shape[:1]:
            running = torch.zeros(done.shape[0], dtype=torch.long)
        lengths, self._episode_steps = episode_steps(done, running)
        self.episode_lengths.extend(lengths.tolist())

    def train_return(self, batch: TensorDictBase) -> float:
        """The training (stochastic) policy's return per episode at this batch's reward rate, from every env step
        of the batch, running episodes included: the mean raw reward per step times the mean length of the last 20
        finished episodes (the episode limit before any has finished). By the renewal-reward theorem, reward per
        step x steps per episode = return per episode; ``episode_return`` (finished episodes only) moves in steps
        when the envs finish their episodes together (128 HalfCheetah envs: every 128k frames)."""
        before = batch.get("episode_reward", None)  # RewardSum's raw return before each step
        if before is None:
            return float("nan")
        lengths = self.episode_lengths[-20:]
        length = float(np.mean(lengths)) if lengths else self._episode_limit()
        return (batch.get(("next", "episode_reward")) - before).mean().item() * length

    def _episode_limit(self) -> float:
        try:
            return float(episode_limit(self.cfg))
        except gym.error.Error:  # an env given as an instance, whose id gymnasium does not know
            return float(self.cfg.env.max_episode_steps or "nan")

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
    @property
    def eval_every(self) -> int:
        """Iterations between periodic evaluations, 0 for none: the config's ``eval_every``, or for -1 (auto) the
        interval that gives at least 20 over ``total_timesteps``; none when ``eval_episodes`` is 0."""
        t = self.cfg.train
        if not t.eval_episodes:
            return 0
        if t.eval_every < 0:
            return default_eval_every(self.total_timesteps, self.cfg.frames_per_batch)
        return t.eval_every

    def periodic_evaluate(self) -> list[float]:
        """The returns of ``eval_every_episodes`` deterministic episodes during training: aeon-eval's episodes
        through ``PeriodicEvaluator`` (gymnasium envs kept for the run, stepped with arrays: 3-20x faster than
        ``evaluate``), or ``evaluate``'s where the episodes must come from the TorchRL stack: a trainer given its
        own eval env, a curriculum (it writes the reward), an id gymnasium cannot make."""
        n = self.cfg.train.eval_every_episodes
        if self._own_eval_env or self.plugin("curriculum") is not None or self.cfg.env.env_id not in gym.registry:
            return self.evaluate(n)
        if self._periodic is None:
            self._periodic = PeriodicEvaluator(self.cfg, n)
        space = self.env.action_spec.space
        with torch.random.fork_rng(devices=[]):
            return self._periodic.evaluate(self.net.policy_mean, self.obs_norm.export(), space.low.min().item(),
                                           space.high.max().item(), self.device)

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
            evaluate_on_hardest_level(env)  # a curriculum is a means: evaluation is on its hardest level
            return rollout_returns(env, self.actor, episode_limit(self.cfg), deterministic)
        finally:
            env.close()

    # ---- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a run needs to resume exactly. Refuses (``NonFiniteError``) a state holding NaN/inf in
        any tensor, e.g. the network after a NaN loss: a checkpoint must stay a state worth resuming."""
        state = {
            "config": self.cfg.to_dict(),
            "dims": list(env_dims(self.env)),
            "observation_layout": observation_layout(self.env),  # which leaf is where in the observation vector
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
            "counters": {"frames": self.frames, "iteration": self.iteration},
            "plugins": {plugin.name: plugin.state_dict() for plugin in self.plugins},
            "episode_returns": torch.tensor(self.episode_returns, dtype=torch.float64),
            "episode_lengths": torch.tensor(self.episode_lengths, dtype=torch.int64),
            "history": self.history,
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(), "python": random.getstate()[1]},
        }
        poisoned = [name for name, t in float_tensors({k: v for k, v in state.items() if k != "history"})
                    if not torch.isfinite(t).all()]
        if poisoned:
            raise NonFiniteError(f"refusing to save: NaN/inf in {', '.join(poisoned[:5])}"
                                 + (f" and {len(poisoned) - 5} more" if len(poisoned) > 5 else "")
                                 + "; the state is not worth resuming: keep the last good checkpoint")
        return state

    def load_state_dict(self, state: dict) -> None:
        dims = list(env_dims(self.env))
        if list(state["dims"]) != dims:
            raise CheckpointError(f"checkpoint was trained on observation/action sizes {state['dims']}, this env "
                                  f"has {dims}: it belongs to another env (config env_id "
                                  f"'{state['config']['env']['env_id']}')")
        layout = observation_layout(self.env)
        saved = state.get("observation_layout")  # absent in checkpoints written before Dict observations
        if saved is not None and [list(x) for x in saved] != layout:
            raise CheckpointError(f"checkpoint was trained on observations {_layout_text(saved)}, this env has "
                                  f"{_layout_text(layout)}: the observation keys differ (config env_id "
                                  f"'{state['config']['env']['env_id']}')")
        try:
            self.net.load_state_dict(state["net"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint networks do not match this config's model: {exc}") from None
        self.loss.load_state_dict(state["loss_buffers"], strict=False)
        load_optimizer_state(self.optimizer, state["optimizer"])
        sched = state["schedules"]
        self.lr_schedule.load_state_dict(sched["lr"])
        self.entropy.load_state_dict(sched["entropy"])
        self.early_stop.load_state_dict(sched["early_stop"])
        if self.clipper and sched["clipper"]:
            self.clipper.load_state_dict(sched["clipper"])
        if self.kl_coef and sched["kl_coef"]:
            self.kl_coef.load_state_dict(sched["kl_coef"])
        self.obs_norm.load_state_dict(state["normalization"])
        self._resumed_env = {"normalization": state["normalization"], **state.get("env_runtime", {})}
        self.frames = state["counters"]["frames"]
        self.iteration = state["counters"]["iteration"]
        # Checkpoints written before the plugins had their own entry keep theirs under "curiosity" / "shaping".
        saved = state["plugins"] if "plugins" in state else legacy_plugin_states(state)
        for plugin in self.plugins:
            plugin.load_state_dict(saved.get(plugin.name) or {})
        self.episode_returns = state["episode_returns"].tolist()
        self.episode_lengths = state["episode_lengths"].tolist() if "episode_lengths" in state else []
        self._episode_steps = None  # the envs restart their episodes, unless _restore_env puts them back
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
        if self._periodic is not None:
            self._periodic.close()
            self._periodic = None
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


def _layout_text(layout) -> str:
    return "[" + ", ".join(f"{key} ({size})" for key, size in layout) + "]"


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


def episode_steps(done: torch.Tensor, running: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a batch's ``done`` ``[num_envs, T]`` and the steps each env's episode had before it (``running``
    ``[num_envs]``): the lengths of the episodes that ended (in ``done``'s row-major order, as ``batch[done]``
    lists their returns) and the steps of the episodes still running after it."""
    n, t = done.shape
    index = torch.arange(t).expand(n, t)
    last_end = torch.where(done, index, -1).cummax(dim=1).values  # the last end at or before each step
    previous_end = torch.cat([torch.full((n, 1), -1), last_end[:, :-1]], dim=1)  # ... strictly before it
    steps = torch.where(previous_end >= 0, index - previous_end, running[:, None] + index + 1)
    return steps[done], torch.where(done[:, -1], 0, steps[:, -1])


def _numpy_rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def _set_numpy_rng_state(s: dict) -> None:
    np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
