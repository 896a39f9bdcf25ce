"""Test-only user envs, registered with gymnasium on import (``env_id=tests.user_env_module:TinyBox-v0``).

Tiny and pure numpy, so a test trains in seconds: ``TinyBox-v0`` (Box observation, per-dimension action bounds,
episodes of random length so envs of a batch reset at different steps), ``TinyDict-v0`` (nested Dict
observation), ``TinyImage-v0`` (a uint8 image observation, refused), ``TestPendulum-v0`` (a Pendulum variant with
a constructor kwarg).
"""
from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv

ACTION_LOW = np.array([-1.0, -3.0], dtype=np.float32)
ACTION_HIGH = np.array([1.0, 0.5], dtype=np.float32)


class TinyEnv(gym.Env):
    """x' = x + 0.1 * a (+ noise); reward -|x - target|; ends with probability ``end_prob`` per step.
    ``step_seconds``: each step sleeps that long (a slow simulator); ``exit_after``: the process exits at that step
    (a worker that dies)."""

    def __init__(self, scale: float = 1.0, end_prob: float = 0.05, obs_mode: str = "box", step_seconds: float = 0.0,
                 exit_after: int = 0):
        self.scale, self.end_prob, self.obs_mode = float(scale), float(end_prob), obs_mode
        self.step_seconds, self.exit_after, self.steps = float(step_seconds), int(exit_after), 0
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)
        vec = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        if obs_mode == "box":
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        elif obs_mode in ("dict", "dict_renamed"):  # dict_renamed: the same sizes under another key
            self.observation_space = gym.spaces.Dict({
                "position" if obs_mode == "dict" else "pos": vec,
                "sensors": gym.spaces.Dict({"grid": gym.spaces.Box(-1.0, 1.0, (2, 3), np.float32), "speed": vec}),
            })
        else:
            self.observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)

    def _obs(self):
        if self.obs_mode == "box":
            return np.concatenate([self.x, self.target])
        if self.obs_mode in ("dict", "dict_renamed"):
            grid = np.tanh(np.outer(self.x, [1.0, 0.5, 0.25])).astype(np.float32)
            return {"position" if self.obs_mode == "dict" else "pos": self.x.copy(),
                    "sensors": {"grid": grid, "speed": self.v.copy()}}
        return np.zeros((8, 8, 3), np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.normal(size=2)
        self.v = np.zeros(2)
        self.target = self.np_random.normal(size=2)
        self.last_action = np.zeros(2, np.float32)
        return self._obs(), {}

    def step(self, action):
        self.steps += 1
        if self.exit_after and self.steps >= self.exit_after:
            os._exit(3)
        time.sleep(self.step_seconds)
        action = np.asarray(action, dtype=np.float32)
        self.last_action = action.copy()
        self.v = 0.1 * action.astype(np.float64) + 0.01 * self.np_random.normal(size=2)
        self.x = self.x + self.v
        reward = -self.scale * float(np.abs(self.x - self.target).sum())
        terminated = bool(self.np_random.random() < self.end_prob)
        return self._obs(), reward, terminated, False, {}


class TestPendulumEnv(PendulumEnv):
    """Pendulum-v1 whose reward is multiplied by ``reward_scale``."""

    def __init__(self, reward_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.reward_scale = reward_scale

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, self.reward_scale * reward, terminated, truncated, info


for _id, _entry, _kwargs in (("TinyBox-v0", "TinyEnv", {}), ("TinyDict-v0", "TinyEnv", {"obs_mode": "dict"}),
                             ("TinyImage-v0", "TinyEnv", {"obs_mode": "image"}),
                             ("TestPendulum-v0", "TestPendulumEnv", {})):
    if _id not in gym.envs.registry:
        gym.register(id=_id, entry_point=f"{__name__}:{_entry}", max_episode_steps=50 if "Tiny" in _id else 200,
                     kwargs=_kwargs)
