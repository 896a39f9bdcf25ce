"""``MyCheetah-v0``: HalfCheetah-v5 with a changed reward, registered with gymnasium on import: a stand-in for a
user's own MuJoCo env, which envpool does not ship (so it takes aeon_trl's gymnasium path).

    aeon-train env_id=benchmarks.user_envs.mycheetah:MyCheetah-v0          # from the repository root
    aeon-train env_id=benchmarks.user_envs.mycheetah:MyCheetah-v0 env.kwargs.upright_weight=0.5

The reward is HalfCheetah's (forward velocity minus control cost) plus ``upright_weight * cos(torso angle)``:
running is still the task, flipping over now costs.
"""
from __future__ import annotations

import numpy as np
import gymnasium as gym
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv


class MyCheetahEnv(HalfCheetahEnv):
    def __init__(self, upright_weight: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.upright_weight = upright_weight

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        upright = float(np.cos(self.data.qpos[2]))  # the torso's pitch angle
        info["reward_upright"] = self.upright_weight * upright
        return obs, reward + self.upright_weight * upright, terminated, truncated, info


if "MyCheetah-v0" not in gym.envs.registry:
    gym.register(id="MyCheetah-v0", entry_point=f"{__name__}:MyCheetahEnv", max_episode_steps=1000)
