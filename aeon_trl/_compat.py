"""Every use of a private attribute of torchrl, tensordict, envpool (and gymnasium) in aeon_trl, in one place.

Each touch is a small named function with a line on why no public API does it. ``TESTED_VERSIONS`` are the
versions these were written and tested against (``tests/test_compat.py`` fails on any other version and checks
that every attribute named in ``PRIVATE_ATTRIBUTES`` still exists); importing this module under an untested
version warns once. Upgrading torchrl/tensordict/envpool = run ``tests/test_compat.py``, fix what it names here.

What counts as a private touch, and what does not:

- Not private (the normal extension API, left in their classes): overriding the protected hooks TorchRL and
  torch document for subclassing: ``Transform._apply_transform/_call/_step/_reset/transform_*_spec``,
  ``EnvBase._step/_reset/_set_seed``, and ``torch.nn.Module._load_from_state_dict``. Calling ``super()`` from
  such an override is part of it. ``LossModule``'s key declaration (an ``_AcceptedKeys`` dataclass, which its
  docstring asks subclasses to define) is documented too, but its base class is reached here
  (``ClipPPOLossHooks.AcceptedKeys``) so that no torchrl ``_name`` appears outside this module.
- Private, but by necessity a method override: protected methods torchrl does not document for subclassing.
  The override itself lives here, in a hook base class that gives the step a public name
  (``ClipPPOLossHooks.log_weight``/``reduce_loss``/``current_log_prob``/``declare_in_keys``,
  ``VecNormHooks.update_statistics``/``normalize``, ``PrioritizedSamplerHooks.init_trees``); our classes
  subclass these and override the public names. ``OVERRIDDEN_PRIVATE_METHODS`` lists them, and the test
  checks they still exist with the same signature.
- Private, and here: everything else: reading or writing another object's ``_attribute``, calling its
  ``_method`` from outside its class, importing a ``_name`` from a torchrl module, and the one tensordict
  fast path (explicit opt-in, never at import: ``enable_from_any_fastpath``).
"""
from __future__ import annotations

import importlib.metadata
import time
import warnings
from typing import Any, Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import PrioritizedSampler
from torchrl.envs import ParallelEnv, VecNormV2
from torchrl.objectives import ClipPPOLoss

# major.minor of each distribution this module was written and tested against
TESTED_VERSIONS = {"torchrl": "0.14", "tensordict": "0.14", "envpool": "1.2", "gymnasium": "1.4"}


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:  # envpool is Linux-only
        return None


def untested_versions() -> dict[str, str]:
    """``{distribution: installed version}`` for every installed one whose major.minor is not tested here."""
    out = {}
    for dist, tested in TESTED_VERSIONS.items():
        version = installed_version(dist)
        if version is not None and ".".join(version.split(".")[:2]) != tested:
            out[dist] = version
    return out


_untested = untested_versions()
if _untested:
    warnings.warn(f"aeon_trl uses private internals of {', '.join(f'{d} {v}' for d, v in _untested.items())}, "
                  f"tested only with {TESTED_VERSIONS}: run tests/test_compat.py", RuntimeWarning, stacklevel=2)


# ---- torchrl: collectors -----------------------------------------------------------------------------------
def collector_carrier(collector) -> TensorDictBase:
    """The TensorDict a collector carries between batches (the next step's input): torchrl 0.14 has no public
    accessor, and an exact resume must save and restore it."""
    return collector._carrier


def set_collector_frames_per_batch(collector, frames_per_batch: int) -> None:
    """Resize a running collector's batch: torchrl 0.14's ``Collector`` has no public resize; this is the setter
    its own constructor uses."""
    collector._setup_frames_per_batch(frames_per_batch)


# ---- torchrl: envs -----------------------------------------------------------------------------------------
def serial_env_workers(env) -> list:
    """The envs inside a ``SerialEnv``, in batch order: torchrl has no public accessor."""
    return list(env._envs)


def serial_env_uses_buffers(env) -> bool:
    """Whether a ``SerialEnv`` writes into its shared output buffer (then a snapshot must include it): only the
    private flag says so."""
    return bool(env._use_buffers)


def seed_chain(seed: int, n: int) -> list[int]:
    """The first ``n`` links of torchrl's seed chain from ``seed`` (``SerialEnv``/``ParallelEnv.set_seed`` give
    their ``i``-th env the ``i``-th link): ``seed_generator`` lives in the private ``torchrl._utils``."""
    from torchrl._utils import seed_generator
    seeds = [int(seed)]
    while len(seeds) < n:
        seeds.append(int(seed_generator(seeds[-1])))
    return seeds[:n]


def gym_env_of(env) -> Any:
    """The gymnasium env a torchrl ``GymEnv`` wraps: torchrl keeps it in ``_env`` without a public name."""
    return env._env


# ---- torchrl: VecNormV2 ------------------------------------------------------------------------------------
def vecnorm_moments(t) -> tuple[TensorDictBase, TensorDictBase, TensorDictBase]:
    """``(loc, var, count)``: the running E[x], E[x^2] and counts ``VecNormV2`` updates in place. Its public
    ``loc``/``scale`` are derived copies; the statistics themselves are private."""
    return t._loc, t._var, t._count


def vecnorm_update(t, data: TensorDictBase) -> None:
    """Fold ``data`` into ``VecNormV2``'s running statistics without normalizing it (observations that did not
    come through the env, e.g. demonstrations): torchrl has only the private update step for that."""
    t._stateful_update(data)


# ---- torchrl: objectives -----------------------------------------------------------------------------------
def clip_value_loss(old_value, value, clip_value, target, loss, loss_critic_type):
    """torchrl's value clipping ``max(loss, loss(old + clamp(value - old, -c, c)))`` and its clip fraction:
    ``ClipPPOLoss.loss_critic`` uses it for one value head; the ensemble critic needs it for every head."""
    from torchrl.objectives.utils import _clip_value_loss
    return _clip_value_loss(old_value, value, clip_value, target, loss, loss_critic_type)


def standardize(advantage: torch.Tensor) -> torch.Tensor:
    """``ClipPPOLoss``'s advantage normalization over the whole minibatch (its mean/std and eps): the loss's
    plain-tensor path must normalize exactly as its TensorDict path does."""
    from torchrl._utils import _standardize
    return _standardize(advantage)


# ---- torchrl: prioritized sampler --------------------------------------------------------------------------
def sampler_capacity_and_device(sampler) -> tuple[int, torch.device | None]:
    """A ``PrioritizedSampler``'s capacity and device, which it keeps private."""
    return sampler._max_capacity, sampler._device


def install_segment_trees(sampler, sum_tree, min_tree) -> None:
    """Give a ``PrioritizedSampler`` stand-in segment trees (what its ``_init`` does with the compiled ones,
    which torchrl 0.14.1's extension cannot load against torch 2.13)."""
    sampler._sum_tree = sum_tree
    sampler._min_tree = min_tree
    sampler._max_priority = None


def segment_tree_extension_loaded() -> bool:
    """Whether torchrl's compiled CPU segment trees imported (``None`` when its C++ extension failed to load)."""
    from torchrl.data.replay_buffers.samplers import prioritized
    return prioritized.SumSegmentTreeFp32 is not None


# ---- tensordict --------------------------------------------------------------------------------------------
def unchecked_tensordict(source: dict, batch_size: torch.Size, device) -> TensorDict:
    """A TensorDict over ``source`` without the per-entry shape/device checks (~20 us per env step): for
    tensors just made with the right shapes (envpool's output). tensordict's own fast constructor is private."""
    return TensorDict._new_unsafe(source, batch_size=batch_size, device=device)


_stock_from_any = TensorDict.from_any.__func__


def _from_any_tensor_first(cls, obj, *args, **kwargs):
    if type(obj) is torch.Tensor:
        return obj
    return _stock_from_any(cls, obj, *args, **kwargs)


def enable_from_any_fastpath() -> None:
    """Make ``TensorDict.from_any(tensor)`` return the tensor at once, as tensordict's own returns it, minus a
    ``importlib.util.find_spec("pandas")`` file search (~0.2 ms) that tensordict 0.14 runs first.

    ``TensorDictModule`` passes every output through ``from_any``: two searches per collector step, ~200 per PPO
    update (~7% of it). Explicit opt-in, called by the ``Trainer`` (never at import): it replaces a classmethod
    for the whole process, harmless because the result is the same object. Scoping it to our own modules
    instead would mean copying tensordict's private ``TensorDictModule._write_to_tensordict``."""
    if TensorDict.from_any.__func__ is _stock_from_any:
        TensorDict.from_any = classmethod(_from_any_tensor_first)


def disable_from_any_fastpath() -> None:
    TensorDict.from_any = classmethod(_stock_from_any)


def from_any_fastpath_enabled() -> bool:
    return TensorDict.from_any.__func__ is _from_any_tensor_first


# ---- envpool -----------------------------------------------------------------------------------------------
_ENVPOOL_FAST_ACTION_KEYS = ["env_id", "players.env_id", "action"]


def envpool_raw_layout(pool) -> tuple[list[str], list[str]]:
    """The pool's flat action and state key lists (the layout of ``_send``'s arguments and ``_recv``'s result)."""
    return list(getattr(pool, "_action_keys", ())), list(getattr(pool, "_state_keys", ()))


def envpool_action_dtype(pool):
    """The dtype envpool's C++ side expects for actions (the Box space says float64 too, but this is what
    ``_send`` is given without a copy)."""
    return pool.spec._action_spec[-1][0]


def envpool_raw_step(pool) -> tuple[Callable[[list], None], Callable[[], list]] | None:
    """``(send, recv)``: envpool's raw batch step, skipping its public ``step``'s ~60 us/step of Python (action
    dict, ``astype`` copy, config dict rebuilt, optree unflatten of the info). None if the pool's layout is
    not the one this was written for (then use ``pool.step``)."""
    action_keys, _ = envpool_raw_layout(pool)
    if action_keys != _ENVPOOL_FAST_ACTION_KEYS:
        return None
    return pool._send, pool._recv


def envpool_info(pool, raw: list, is_reset: bool) -> dict:
    """The info dict of a raw ``_recv`` result, built only when asked for (envpool's private converter)."""
    return pool._to(raw, is_reset, True)[-1]


# ---- gymnasium ---------------------------------------------------------------------------------------------
def time_limit_elapsed(limit) -> int:
    """A ``TimeLimit`` wrapper's step count: gymnasium keeps it private, and an exact resume must restore it."""
    return int(limit._elapsed_steps or 0)


def set_time_limit_elapsed(limit, steps: int) -> None:
    limit._elapsed_steps = steps



# ---- overrides of private methods, under public names ------------------------------------------------------
def reduce_loss(loss_module, loss: torch.Tensor, tensordict=None, **kwargs) -> torch.Tensor:
    """A ``LossModule``'s reduction of a per-row loss (its ``reduction`` setting): torchrl keeps the helper
    private, and a loss that reports a scalar should reduce as torchrl's own losses do."""
    return loss_module._reduce_loss(loss, tensordict, **kwargs)


class ClipPPOLossHooks(ClipPPOLoss):
    """``ClipPPOLoss`` with public names for the protected steps a subclass changes: ``forward`` calls
    ``_log_weight`` and ``_reduce_loss``, the key declaration runs ``_set_in_keys``, and the current policy's
    log-prob is ``_get_cur_log_prob``. Subclasses override the public names; ``extra_out_keys`` are declared
    besides ClipPPOLoss's own outputs (an ``out_keys`` property cached in ``_out_keys``, as ClipPPOLoss builds
    its own, so ``select_out_keys`` may cut it)."""

    AcceptedKeys = ClipPPOLoss._AcceptedKeys
    extra_out_keys: tuple[str, ...] = ()

    def _log_weight(self, tensordict, adv_shape):
        return self.log_weight(tensordict, adv_shape)

    def log_weight(self, tensordict, adv_shape):
        """``(log_weight, dist, kl_approx, log_is_weight)`` of the rows under the current policy."""
        return super()._log_weight(tensordict, adv_shape)

    def _reduce_loss(self, loss, tensordict=None, **kwargs):
        return self.reduce_loss(loss, tensordict, **kwargs)

    def reduce_loss(self, loss, tensordict=None, **kwargs):
        """The per-row loss reduced to the reported scalar (``reduction``, optional ``weights=``)."""
        return super()._reduce_loss(loss, tensordict, **kwargs)

    def _set_in_keys(self):
        super()._set_in_keys()
        self.declare_in_keys()

    def declare_in_keys(self) -> None:
        """Extend ``self.in_keys`` after ClipPPOLoss declared its own."""

    def current_log_prob(self, tensordict) -> torch.Tensor:
        """``log pi(a|s)`` of the current policy for the rows' actions."""
        log_prob, _, _ = self._get_cur_log_prob(tensordict)
        return log_prob

    @property
    def out_keys(self):
        if self._out_keys is None:
            self._out_keys = [*super().out_keys, *self.extra_out_keys]
        return self._out_keys

    @out_keys.setter
    def out_keys(self, values):
        self._out_keys = values


class VecNormHooks(VecNormV2):
    """``VecNormV2`` with public names for its per-batch steps (``_stateful_update`` folds a batch into the
    statistics, ``_stateful_norm`` applies them): subclasses override ``update_statistics``/``normalize``."""

    def _stateful_update(self, data: TensorDictBase) -> None:
        self.update_statistics(data)

    def update_statistics(self, data: TensorDictBase) -> None:
        super()._stateful_update(data)

    def _stateful_norm(self, data: TensorDictBase) -> TensorDictBase:
        return self.normalize(data)

    def normalize(self, data: TensorDictBase) -> TensorDictBase:
        return super()._stateful_norm(data)


class PrioritizedSamplerHooks(PrioritizedSampler):
    """``PrioritizedSampler`` whose lazy tree construction (``_init``, run on first use) is the public
    ``init_trees``: a subclass may build other trees."""

    def _init(self) -> None:
        self.init_trees()

    def init_trees(self) -> None:
        super()._init()


class PollingParallelEnv(ParallelEnv):
    """``ParallelEnv`` whose parent sleeps between polls of its workers' done flags (``wait_for_workers``).
    torchrl spin-polls them: with as many workers as cores, the spinning parent takes a core from the workers it
    waits for (128 envs on 2 workers, 2 cores: 9.2k frames/s spinning, 13.3k polling every 0.3 ms)."""

    poll_interval_s = 3e-4  # ~3-8% of one worker step of 64 MuJoCo envs (4-10 ms); 0: torchrl's spin

    def _wait_for_workers(self, workers_range) -> None:
        self.wait_for_workers(workers_range)

    def wait_for_workers(self, workers_range) -> None:
        if not self._use_buffers or self.poll_interval_s <= 0:  # pipe mode blocks in select() already
            return super()._wait_for_workers(workers_range)
        flags, index = self._shm_done_flags, self._worker_indices
        deadline, polls = time.monotonic() + self.BATCHED_PIPE_TIMEOUT, 0
        while not all(flags[index[i]] for i in workers_range):
            time.sleep(self.poll_interval_s)
            polls += 1
            if polls % 1000 == 0:  # ~0.3 s: a dead worker or the time limit
                if not all(self._workers[i].is_alive() for i in workers_range):
                    return super()._wait_for_workers(workers_range)  # torchrl's shutdown and "worker dead" error
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ParallelEnv workers did not finish within {self.BATCHED_PIPE_TIMEOUT} s "
                                       "(BATCHED_PIPE_TIMEOUT sets the limit)")
        for i in workers_range:
            flags[index[i]] = 0

# ---- what tests/test_compat.py checks still exists ---------------------------------------------------------
# (import path of a class or module, private attribute names); instance attributes are checked on instances
PRIVATE_ATTRIBUTES = {
    "torchrl.collectors.Collector": ("_setup_frames_per_batch",),
    "torchrl.objectives.utils": ("_clip_value_loss",),
    "torchrl._utils": ("seed_generator", "_standardize"),
    "tensordict.TensorDict": ("_new_unsafe",),
    "torchrl.objectives.ClipPPOLoss": ("_AcceptedKeys",),
    "torchrl.objectives.LossModule": ("_reduce_loss",),
}
OVERRIDDEN_PRIVATE_METHODS = {
    "torchrl.objectives.ClipPPOLoss": ("_log_weight", "_reduce_loss", "_set_in_keys", "_get_cur_log_prob"),
    "torchrl.envs.VecNormV2": ("_stateful_update", "_stateful_norm"),
    "torchrl.data.PrioritizedSampler": ("_init",),
    "torchrl.envs.ParallelEnv": ("_wait_for_workers",),
}
