"""Simulator state of in-process MuJoCo envs, so a resumed run continues the very episodes it left.

A checkpoint without it restarts every episode in flight on resume: a valid run, but one whose
parameters drift from the uninterrupted run's after the first resumed batch. With it (and the
collector's carried TensorDict, saved by the Trainer), resuming is bitwise exact on CPU.

Written by hand because neither TorchRL nor gymnasium can snapshot an env: it is MuJoCo's own
``mj_getState(mjSTATE_INTEGRATION)`` (everything ``mj_step`` reads), the ``TimeLimit`` step counter and
the env's numpy generator (its reset noise). Only envs stepped in this process can be captured:
``env_backend=serial`` (``SerialEnv`` of ``GymEnv``) or a single ``GymEnv``. envpool's C++ pool and
gymnasium's subprocess vector env keep their simulators out of reach; their runs resume with fresh
episodes (``capture`` returns None) and match an uninterrupted run only statistically.
"""
from __future__ import annotations

import json

import gymnasium as gym
import mujoco
import numpy as np
import torch
from torchrl.envs import EnvBase, GymEnv, SerialEnv, TransformedEnv

from aeon_trl import _compat

_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def _base(env: EnvBase) -> EnvBase:
    return env.base_env if isinstance(env, TransformedEnv) else env


def _gym_envs(env: EnvBase) -> list[gym.Env] | None:
    """The gymnasium envs behind ``env``, in batch order, when they all live in this process."""
    base = _base(env)
    if isinstance(base, SerialEnv):
        if base.is_closed:
            return None
        subs = _compat.serial_env_workers(base)
    else:
        subs = [base]
    if not all(isinstance(s, GymEnv) and isinstance(_compat.gym_env_of(s), gym.Env) for s in subs):
        return None  # envpool, a gymnasium vector env, or a user's own env
    envs = [_compat.gym_env_of(s) for s in subs]
    return envs if all(hasattr(e.unwrapped, "data") for e in envs) else None


def in_reach(env: EnvBase) -> bool:
    """Whether ``capture`` can snapshot ``env`` (all its simulators are MuJoCo envs in this process)."""
    return _gym_envs(env) is not None


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def capture(env: EnvBase) -> dict | None:
    """Per sub-env MuJoCo integration state, elapsed steps and reset RNG, plus ``SerialEnv``'s output buffer
    (a partial reset returns the stale entries of the envs it leaves alone, and ``VecNorm`` counts them);
    None if out of reach."""
    envs = _gym_envs(env)
    if envs is None:
        return None
    states = []
    for e in envs:
        u = e.unwrapped
        buf = np.empty(mujoco.mj_stateSize(u.model, _SPEC), dtype=np.float64)
        mujoco.mj_getState(u.model, u.data, buf, _SPEC)
        limit = _time_limit(e)
        states.append({
            "mujoco": torch.from_numpy(buf),
            "elapsed_steps": _compat.time_limit_elapsed(limit) if limit is not None else 0,
            # PCG64's 128-bit integers as JSON text: checkpoints are loaded with weights_only=True
            "np_random": json.dumps(u.np_random.bit_generator.state),
        })
    base = _base(env)
    buffers = base.shared_tensordict_parent.to_dict() \
        if isinstance(base, SerialEnv) and _compat.serial_env_uses_buffers(base) else None
    return {"envs": states, "serial_buffers": buffers}


def restore(env: EnvBase, snapshot: dict) -> None:
    """Put ``capture``'s snapshot back; refuses a snapshot of another env or batch size."""
    states = snapshot["envs"]
    envs = _gym_envs(env)
    if envs is None or len(envs) != len(states):
        raise ValueError(f"the checkpoint holds the simulator state of {len(states)} in-process envs, this env has "
                         f"{'none in reach' if envs is None else len(envs)}: resume with the checkpoint's "
                         "env_backend and num_envs")
    for e, s in zip(envs, states):
        u = e.unwrapped
        buf = s["mujoco"].numpy()
        if buf.size != mujoco.mj_stateSize(u.model, _SPEC):
            raise ValueError("the checkpoint's simulator state belongs to another MuJoCo model: resume with the "
                             "checkpoint's env_id")
        mujoco.mj_setState(u.model, u.data, buf, _SPEC)  # mj_step recomputes every derived quantity from it
        limit = _time_limit(e)
        if limit is not None:
            _compat.set_time_limit_elapsed(limit, s["elapsed_steps"])
        u.np_random.bit_generator.state = json.loads(s["np_random"])
    base = _base(env)
    if snapshot["serial_buffers"] is not None and isinstance(base, SerialEnv):
        base.shared_tensordict_parent.update_(snapshot["serial_buffers"])
