"""``make_env``: a batched TorchRL env (``[num_envs]``) with the transform stack PPO needs.

One TorchRL step carries ``num_envs`` MuJoCo steps, so TorchRL's ~1 ms per-step overhead is paid
once per batch (see benchmarks/RESULTS.md). The base env is envpool's C++ thread pool when it ships
the id, else gymnasium's vector env inside one ``GymEnv``; ``SerialEnv`` and ``ParallelEnv`` of single
``GymEnv``s are there to compare (``aeon-benchmark throughput`` measures every path). On top, in this order:
the curriculum's reward (``curriculum=speed``) -> ``RewardSum`` (raw episode return, for logging) ->
``StepCounter`` (episode lengths, with ``dynamic_batch``) -> ``SafeVecNorm`` on observations + clip ->
``ReturnScaling`` on rewards -> action clipping to the env's bounds (inverse transform: the policy's
unclipped Gaussian sample is what the loss sees, the env gets the clipped one).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import gymnasium as gym
import numpy as np
import torch
from torchrl.envs import (ClipTransform, Compose, DoubleToFloat, EnvBase, GymEnv, RewardSum, SerialEnv,
                          ParallelEnv, StepCounter, TransformedEnv)

from aeon_trl._util import did_you_mean
from aeon_trl.config import Config, ConfigError
from aeon_trl.transforms.curriculum import make_curriculum_transform
from aeon_trl.transforms.obs_norm import OBS_NORM, REWARD_NORM, ObsNorm, SafeVecNorm  # noqa: F401
from aeon_trl.transforms.reward import ReturnScaling


def check_env_id(env_id: str) -> gym.spaces.Box:
    """Refuse unknown ids (with a close match) and discrete-action envs; return the action space."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        raise ConfigError(f"unknown env id '{env_id}'.{did_you_mean(env_id, gym.envs.registry)} Any gymnasium id "
                          "with a Box action space works, e.g. HalfCheetah-v5, Hopper-v5, Pendulum-v1.") from None
    env = spec.make()
    try:
        space = env.action_space
    finally:
        env.close()
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"env '{env_id}' has a {type(space).__name__} action space: aeon_trl's PPO is for "
                          "continuous actions only (a Box action space).")
    return space


def resolve_backend(cfg: Config) -> str:
    if cfg.env.env_backend != "auto":
        return cfg.env.env_backend
    from aeon_trl.envpool_env import envpool_supports
    if envpool_supports(cfg.env.env_id):
        return "envpool"
    if importlib.util.find_spec("envpool") is None:
        warnings.warn("envpool is not installed on this platform: env_backend=auto falls back to gymnasium's "
                      "vector env (several times slower; pip install envpool where it is available)", stacklevel=2)
    return "gymnasium"


def available_cpus() -> int:
    """The CPUs this process may use: SLURM's allocation (``--cpus-per-task``), else the affinity mask
    (cgroups, taskset), not the machine's core count that ``os.cpu_count()`` reports inside a job."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_base_env(cfg: Config, num_envs: int, seed: int, serial: bool = False) -> EnvBase:
    """``serial`` steps gymnasium envs in this process (``SerialEnv``) instead of gymnasium's
    subprocess vector env, whose start-up (seconds per env) dominates short uses such as evaluation."""
    env_id = cfg.env.env_id
    check_env_id(env_id)
    if resolve_backend(cfg) == "envpool":
        from aeon_trl.envpool_env import EnvPoolEnv
        threads = cfg.env.env_threads or available_cpus()
        return EnvPoolEnv(env_id, num_envs, seed=seed, num_threads=min(threads, num_envs),
                          max_episode_steps=cfg.env.max_episode_steps or None)
    kwargs = {"max_episode_steps": cfg.env.max_episode_steps} if cfg.env.max_episode_steps else {}
    if env_id.startswith("aeon/"):  # registered on `import aeon_trl`: gymnasium imports it first in vector-env workers
        env_id = f"aeon_trl:{env_id}"
    make_one = functools.partial(GymEnv, env_id, **kwargs)
    backend = "serial" if serial else resolve_backend(cfg)
    if backend == "serial":
        env = SerialEnv(num_envs, make_one)
    elif backend == "parallel":  # one worker process per env, shared-memory buffers
        env = ParallelEnv(num_envs, make_one, mp_start_method="fork")
    else:
        env = GymEnv(env_id, num_envs=num_envs, **kwargs) if num_envs > 1 else GymEnv(env_id, **kwargs)
    env.set_seed(seed)
    return env


def make_env(cfg: Config, num_envs: int | None = None, seed: int | None = None,
             base_env: EnvBase | None = None) -> TransformedEnv:
    """The training env stack. ``base_env`` lets a user bring their own TorchRL env."""
    num_envs = num_envs or cfg.env.num_envs
    seed = cfg.train.seed if seed is None else seed
    base = base_env if base_env is not None else make_base_env(cfg, num_envs, seed)
    action_spec = base.action_spec
    low, high = action_spec.space.low, action_spec.space.high
    if not (torch.all(low == low.flatten()[0]) and torch.all(high == high.flatten()[0])):
        raise ConfigError("actions with per-dimension bounds are not supported yet: aeon_trl clips actions "
                          "to one scalar [low, high] range")
    # The curriculum rewrites the reward from the raw observation: before RewardSum (which then logs the
    # curriculum's return) and before normalization. StepCounter gives episode lengths to dynamic batch sizing.
    curriculum = make_curriculum_transform(cfg.shaping, cfg.env.env_id)
    transforms = ([curriculum] if curriculum else []) + [RewardSum()]
    if cfg.shaping.dynamic_batch:
        transforms.append(StepCounter())
    if base.observation_spec["observation"].dtype == torch.float64:
        transforms.append(DoubleToFloat(in_keys=["observation"]))
    if cfg.env.norm_obs:
        # decay=1.0 (all-time mean/var, as SB3's VecNormalize): with decay < 1, torchrl 0.14.1's bias
        # correction makes the early scale ~sqrt(E[x^2]) instead of the std (67x off for Hopper's height).
        transforms += [SafeVecNorm(in_keys=["observation"], decay=1.0, eps=1e-8, reduce_batch_dims=True),
                       ClipTransform(in_keys=["observation"], low=-cfg.env.obs_clip, high=cfg.env.obs_clip)]
    if cfg.env.norm_reward:
        transforms.append(ReturnScaling(gamma=cfg.ppo.gamma))
    transforms.append(ClipTransform(in_keys_inv=["action"], low=low.flatten()[0].item(),
                                    high=high.flatten()[0].item()))
    return TransformedEnv(base, Compose(*transforms))


def env_dims(env: EnvBase) -> tuple[int, int]:
    return int(np.prod(env.observation_spec["observation"].shape[len(env.batch_size):])), \
        int(np.prod(env.action_spec.shape[len(env.batch_size):]))


def episode_limit(cfg: Config) -> int:
    """The episode length limit of the config's env: ``max_episode_steps``, else the id's registered limit."""
    return cfg.env.max_episode_steps or gym.spec(cfg.env.env_id).max_episode_steps or 1000
