"""A thin TorchRL ``EnvBase`` over envpool's *gymnasium* API (MuJoCo ``*-v5`` ids).

Why not ``torchrl.envs.MultiThreadedEnvWrapper``: it imports the legacy ``gym``
package and lets envpool auto-reset done envs, so the step after an episode end
is a phantom transition (final obs -> reset obs, reward 0, action ignored).

How this class avoids it (established experimentally with envpool 1.2.5):
envpool auto-resets an env on ``step`` only while that env's ``done`` flag is
set, and an explicit ``pool.reset(env_id=ids)`` clears the flag, so resetting
exactly the done envs in ``_reset`` (which TorchRL's ``step_and_maybe_reset``
does before the next ``step``) means every ``step`` is a real transition that
uses the given action (``info["elapsed_step"]`` goes 0 -> 1, never 0 -> 0).
Stepping an env that is done and was not reset raises instead of silently
producing the phantom step.

Specs mirror ``torchrl.envs.GymEnv(env_id)`` for the same id (modulo the batch
dimension): for MuJoCo that is a float64 ``"observation"`` (GymEnv keeps
gymnasium's float64, it does not cast to float32), a float32 ``Bounded``
``"action"`` (gymnasium's MuJoCo action Box is float32, envpool's is float64),
a float32 ``"reward"`` of shape ``[N, 1]`` and bool ``done``/``terminated``/
``truncated`` of shape ``[N, 1]``.  A float32 policy therefore needs the same
``DoubleToFloat`` transform on both envs.

envpool quirk kept as is: its gymnasium adapter computes ``terminated = done &
~trunc``, so an env that terminates exactly on the time-limit step is reported
``truncated=True, terminated=False`` (gymnasium would report both ``True``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from aeon_trl import _compat

__all__ = ["EnvPoolEnv", "envpool_supports", "envpool_takes"]

_INT32_SEED_RANGE = 2**31


@functools.lru_cache(maxsize=1)
def _registered_ids() -> frozenset[str]:
    try:
        import envpool
    except ImportError:  # pragma: no cover - envpool is Linux-only
        return frozenset()
    return frozenset(envpool.list_all_envs())


def envpool_supports(env_id: str) -> bool:
    """Whether envpool has ``env_id`` registered (``envpool.list_all_envs()``)."""
    return env_id in _registered_ids()


# envpool config entries that are the pool's, not the env constructor's (or whose meaning differs from
# gymnasium's: envpool's xml_file names a file among its own assets)
_NOT_ENV_KWARGS = frozenset({"num_envs", "batch_size", "num_threads", "max_num_players", "thread_affinity_offset",
                             "base_path", "seed", "env_seed", "gym_reset_return_info", "max_episode_steps",
                             "reward_threshold", "frame_skip", "frame_stack", "post_constraint", "xml_file",
                             "gymnasium_v5_render_camera"})


@functools.lru_cache(maxsize=None)
def envpool_takes(env_id: str) -> frozenset[str]:
    """The gymnasium constructor kwargs envpool's ``env_id`` takes too (``ctrl_cost_weight``, ...): its spec's
    config entries, less the pool's own."""
    if not envpool_supports(env_id):
        return frozenset()
    import envpool
    return frozenset(envpool.make_spec(env_id).config._fields) - _NOT_ENV_KWARGS


def _box_to_spec(space: Any, dtype: torch.dtype, device: torch.device, batch: int):
    """Same rule as torchrl's gym ``convert_box_spec``: all-inf bounds -> Unbounded."""
    shape = tuple(space.shape) or (1,)
    low = torch.tensor(np.broadcast_to(space.low, shape), dtype=dtype)
    high = torch.tensor(np.broadcast_to(space.high, shape), dtype=dtype)
    if low.isinf().all() and high.isinf().all():
        spec = Unbounded(shape, device=device, dtype=dtype)
    else:
        spec = Bounded(low, high, shape, dtype=dtype, device=device)
    return spec.expand(batch, *shape)


class _Runtime:
    """Per-step mutable state, kept off the ``nn.Module`` (``EnvBase``) attribute
    machinery, whose ``__setattr__`` costs ~10 us per assignment."""

    __slots__ = (
        "pending", "any_pending", "obs", "terminated", "truncated",
        "raw", "raw_is_reset", "info",
    )

    def __init__(self, n: int):
        # pending: done (or never reset) and not reset since -- stepping such an env
        # would make envpool auto-reset it. Arrays here are never mutated in place:
        # they back tensors that were handed out (torch.from_numpy shares memory).
        self.pending = np.ones(n, dtype=bool)
        self.any_pending = True
        self.obs: torch.Tensor | None = None
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.raw: list[np.ndarray] | None = None  # envpool's raw state list (lazy info)
        self.raw_is_reset = False
        self.info: dict[str, Any] | None = None


class EnvPoolEnv(EnvBase):
    """Batched envpool env (``batch_size=[num_envs]``) with correct partial resets.

    Args:
        env_id: an envpool id, e.g. ``"HalfCheetah-v5"`` (see :func:`envpool_supports`).
        num_envs: number of envs in the pool (the batch size).

    Keyword Args:
        seed: pool seed (envpool only seeds at construction; ``set_seed`` rebuilds
            the pool). Values outside ``[0, 2**31)`` are reduced modulo ``2**31``.
        num_threads: envpool worker threads (``None``: envpool's default).
        device: device of the output tensors (simulation always runs on CPU).
        max_episode_steps: time limit (``None``: envpool's default, 1000 for MuJoCo,
            same as gymnasium's registration).
        env_kwargs: the env's constructor arguments envpool takes (``envpool_takes``).

    :attr:`last_info` is envpool's info dict of the latest step/reset (numpy
    arrays, e.g. ``elapsed_step``, ``x_velocity``, ``reward_ctrl``; rows ordered
    like ``info["env_id"]``). A step on an env that is done and has not been
    reset raises ``RuntimeError``; a ``"_step"`` mask steps only the selected envs.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        seed: int = 0,
        num_threads: int | None = None,
        device: Any = "cpu",
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ):
        if not envpool_supports(env_id):
            raise ValueError(f"envpool has no env registered as {env_id!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.num_threads = num_threads
        self.max_episode_steps = max_episode_steps
        self.env_kwargs = dict(env_kwargs or {})
        self._arange = np.arange(self.num_envs, dtype=np.int32)
        self._cpu = self.device is None or self.device.type == "cpu"
        self._pool = self._make_pool(seed)
        self._make_specs()
        self._setup_fast_path()
        self._rt = _Runtime(self.num_envs)
        self.is_closed = False

    # ------------------------------------------------------------------ setup
    def _make_pool(self, seed: int):
        import envpool

        self.seed = int(seed) % _INT32_SEED_RANGE
        kwargs: dict[str, Any] = {}
        if self.num_threads is not None:
            kwargs["num_threads"] = int(self.num_threads)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(self.max_episode_steps)
        kwargs.update(self.env_kwargs)
        return envpool.make(
            self.env_id,
            env_type="gymnasium",
            num_envs=self.num_envs,
            batch_size=self.num_envs,  # sync mode: every recv returns the whole batch
            seed=self.seed,
            **kwargs,
        )

    def _make_specs(self) -> None:
        import gymnasium

        obs_space = self._pool.observation_space
        act_space = self._pool.action_space
        if not isinstance(obs_space, gymnasium.spaces.Box):
            raise NotImplementedError(f"observation space {obs_space} is not a Box")
        if not isinstance(act_space, gymnasium.spaces.Box):
            raise NotImplementedError(f"action space {act_space} is not a Box")
        n, dev = self.num_envs, self.device
        # GymEnv keeps the observation dtype of the gymnasium env (float64 for MuJoCo,
        # identical to envpool's); the gymnasium MuJoCo action Box is float32.
        self._obs_np_dtype = np.dtype(obs_space.dtype)
        obs_dtype = torch.from_numpy(np.zeros(0, self._obs_np_dtype)).dtype
        self.observation_spec = Composite(
            observation=_box_to_spec(obs_space, obs_dtype, dev, n), shape=(n,)
        )
        self.action_spec = _box_to_spec(act_space, torch.float32, dev, n)
        self.reward_spec = Unbounded((n, 1), device=dev, dtype=torch.float32)
        flag = Categorical(2, (n, 1), device=dev, dtype=torch.bool)
        self.done_spec = Composite(
            done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(n,)
        )

    def _setup_fast_path(self) -> None:
        """Full-batch steps use envpool's raw ``send``/``recv`` (``_compat.envpool_raw_step``) when the pool has
        the layout this was written for, else ``pool.step``."""
        pool = self._pool
        raw_step = _compat.envpool_raw_step(pool)
        _, state_keys = _compat.envpool_raw_layout(pool)
        needed = ("obs", "reward", "done", "trunc")
        self._fast = raw_step is not None and all(k in state_keys for k in needed)
        if self._fast:
            self._pool_send, self._pool_recv = raw_step
            self._i_obs, self._i_rew, self._i_done, self._i_trunc = (
                state_keys.index(k) for k in needed
            )
            act_dtype = np.dtype(_compat.envpool_action_dtype(pool))
            # Safe to reuse: in sync mode recv returns only after every env consumed it.
            self._act_buf = np.zeros(
                (self.num_envs, *pool.action_space.shape), dtype=act_dtype
            )
            self._send_args = [self._arange, self._arange.copy(), self._act_buf]

    @property
    def last_info(self) -> dict[str, Any] | None:
        rt = self._rt
        if rt.info is None and rt.raw is not None:
            rt.info = _compat.envpool_info(self._pool, rt.raw, rt.raw_is_reset)
        return rt.info

    # ------------------------------------------------------------------ helpers
    def _to_torch(self, x: np.ndarray) -> torch.Tensor:
        # envpool returns freshly allocated arrays on every call, so wrapping them
        # without a copy is safe even though rollouts keep references to old steps.
        t = torch.from_numpy(x)
        return t if self._cpu else t.to(self.device, non_blocking=True)

    def _obs_np(self, obs: np.ndarray) -> np.ndarray:
        if obs.dtype != self._obs_np_dtype:
            obs = obs.astype(self._obs_np_dtype)
        return obs

    @staticmethod
    def _mask_np(mask: torch.Tensor) -> np.ndarray:
        return mask.detach().reshape(-1).cpu().numpy().astype(bool, copy=False)

    def _raise_pending(self, ids: np.ndarray) -> None:
        raise RuntimeError(
            f"EnvPoolEnv({self.env_id}): env(s) {ids.tolist()} are done (or were never "
            "reset) and must be reset (env.reset, or a '_reset' mask) before being "
            "stepped; envpool would otherwise auto-reset them and return a phantom "
            "transition."
        )

    def _pack(self, obs, reward, terminated, truncated, done) -> TensorDictBase:
        """Records the step in the runtime state and wraps it (no copies) in a TD."""
        rt, n = self._rt, self.num_envs
        rt.pending = done
        rt.any_pending = bool(done.any())
        rt.terminated, rt.truncated = terminated, truncated
        if reward.dtype != np.float32:
            reward = reward.astype(np.float32)
        rt.obs = obs_t = self._to_torch(self._obs_np(obs))
        return _compat.unchecked_tensordict(
            {
                "observation": obs_t,
                "reward": self._to_torch(reward.reshape(n, 1)),
                "done": self._to_torch(done.reshape(n, 1)),
                "terminated": self._to_torch(terminated.reshape(n, 1)),
                "truncated": self._to_torch(truncated.reshape(n, 1)),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    # ------------------------------------------------------------------ step
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").detach()
        if action.device.type != "cpu":
            action = action.cpu()
        step_mask = tensordict.get("_step", None)
        if step_mask is not None:
            mask = self._mask_np(step_mask)
            if not mask.all():
                return self._partial_step(action, mask)
        rt = self._rt
        if rt.any_pending:
            self._raise_pending(np.flatnonzero(rt.pending))
        if self._fast:
            np.copyto(self._act_buf, action.numpy())  # casts float32 -> float64
            self._pool_send(self._send_args)
            raw = self._pool_recv()
            rt.raw, rt.raw_is_reset, rt.info = raw, False, None
            done, truncated = raw[self._i_done], raw[self._i_trunc]
            terminated = done & ~truncated  # as envpool's gymnasium adapter does
            return self._pack(raw[self._i_obs], raw[self._i_rew], terminated, truncated, done)
        obs, reward, terminated, truncated, info = self._pool.step(action.numpy())
        rt.raw, rt.info = None, info
        return self._pack(obs, reward, terminated, truncated, terminated | truncated)

    def _partial_step(self, action: torch.Tensor, mask: np.ndarray) -> TensorDictBase:
        """Steps only the envs selected by a ``"_step"`` mask (envpool's sync mode
        accepts ``step(action, env_id=subset)``); other rows repeat the last data."""
        rt = self._rt
        ids = np.flatnonzero(mask).astype(np.int32)
        if rt.pending[ids].any() or rt.obs is None:
            self._raise_pending(ids[rt.pending[ids]])
        obs_full = rt.obs.cpu().numpy().copy()
        reward_full = np.zeros(self.num_envs, dtype=np.float32)
        term_full, trunc_full = rt.terminated.copy(), rt.truncated.copy()
        if ids.size:
            obs, reward, terminated, truncated, info = self._pool.step(
                action.numpy()[ids], env_id=ids
            )
            rt.raw, rt.info = None, info
            rows = info["env_id"]
            obs_full[rows] = self._obs_np(obs)
            reward_full[rows] = reward
            term_full[rows] = terminated
            trunc_full[rows] = truncated
        return self._pack(obs_full, reward_full, term_full, trunc_full, term_full | trunc_full)

    # ------------------------------------------------------------------ reset
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        rt, n = self._rt, self.num_envs
        mask = None
        if tensordict is not None:
            reset = tensordict.get("_reset", None)
            if reset is not None:
                mask = self._mask_np(reset)
                if mask.all() or rt.obs is None:
                    mask = None
        if mask is None:  # full reset
            obs, info = self._pool.reset()
            obs = self._obs_np(obs)
            rows = info["env_id"]
            if not np.array_equal(rows, self._arange):
                obs = obs[np.argsort(rows)]
            rt.pending = np.zeros(n, dtype=bool)
            rt.terminated = np.zeros(n, dtype=bool)
            rt.truncated = np.zeros(n, dtype=bool)
            rt.raw, rt.info = None, info
        else:  # reset exactly the masked envs; other rows keep their latest obs
            ids = np.flatnonzero(mask).astype(np.int32)
            obs = rt.obs.cpu().numpy().copy()
            if ids.size:
                sub, info = self._pool.reset(ids)
                obs[info["env_id"]] = self._obs_np(sub)
                rt.raw, rt.info = None, info
            rt.pending = rt.pending & ~mask
            rt.terminated = rt.terminated & ~mask
            rt.truncated = rt.truncated & ~mask
        rt.any_pending = bool(rt.pending.any())
        rt.obs = obs_t = self._to_torch(obs)
        zeros = functools.partial(torch.zeros, n, 1, dtype=torch.bool, device=self.device)
        return _compat.unchecked_tensordict(
            {"observation": obs_t, "done": zeros(), "terminated": zeros(), "truncated": zeros()},
            batch_size=self.batch_size,
            device=self.device,
        )

    # ------------------------------------------------------------------ misc
    def _set_seed(self, seed: int | None) -> None:
        """envpool seeds only at construction: rebuild the pool (needs a reset after)."""
        if seed is None:
            return
        old, self._pool = self._pool, None
        old.close()
        self._pool = self._make_pool(seed)
        self._setup_fast_path()
        self._rt = _Runtime(self.num_envs)

    def close(self, *, raise_if_closed: bool = True) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.close()
        self.is_closed = True

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(env_id={self.env_id!r}, num_envs={self.num_envs}, "
            f"seed={self.seed}, num_threads={self.num_threads}, device={self.device})"
        )
