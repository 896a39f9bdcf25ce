"""Sparse-reward MuJoCo tasks for exploration benchmarks, registered as gymnasium ids on ``import aeon_trl``.

``aeon/SparseHalfCheetah-v5``: HalfCheetah-v5 whose reward is 1 per step while the torso is at least
``goal_distance`` (5 m) ahead of where the episode started, else 0 (no control cost, no velocity reward), as
in the sparse HalfCheetah of Houthooft et al. 2016 (VIME). A random policy barely moves, so the reward is
found by exploring or not at all. The return counts the steps spent past the goal (0-1000).
"""
from __future__ import annotations

import gymnasium as gym

SPARSE_HALF_CHEETAH = "aeon/SparseHalfCheetah-v5"


class SparseDistanceReward(gym.Wrapper):
    """Replaces the reward by ``1[x - x_start >= goal_distance]`` (x: the MuJoCo root's ``qpos[0]``)."""

    def __init__(self, env: gym.Env, goal_distance: float = 5.0):
        if goal_distance <= 0:
            raise ValueError(f"goal_distance={goal_distance} must be > 0 (metres ahead of the start)")
        super().__init__(env)
        self.goal_distance = goal_distance
        self._start = 0.0

    def _x(self) -> float:
        return float(self.env.unwrapped.data.qpos[0])

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._start = self._x()
        return obs, info

    def step(self, action):
        obs, dense, terminated, truncated, info = self.env.step(action)
        distance = self._x() - self._start
        info = {**info, "dense_reward": dense, "distance": distance}
        return obs, float(distance >= self.goal_distance), terminated, truncated, info


def make_sparse_half_cheetah(goal_distance: float = 5.0, **kwargs) -> gym.Env:
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    return SparseDistanceReward(HalfCheetahEnv(**kwargs), goal_distance)


def register_sparse_envs() -> None:
    if SPARSE_HALF_CHEETAH not in gym.envs.registry:
        gym.register(SPARSE_HALF_CHEETAH, entry_point=make_sparse_half_cheetah, max_episode_steps=1000)
