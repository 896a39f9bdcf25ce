"""Curriculum learning: a task whose difficulty rises level by level as the policy masters it.

``Curriculum`` is the level schedule (promote when the success rate over the last ``window`` episodes
reaches ``threshold``, optionally demote when it collapses); ``SpeedCurriculum`` is a TorchRL transform
that turns a MuJoCo locomotion env into "run forward at the level's target speed" on the batched
TensorDict, so every vectorized sub-env (envpool or gymnasium) sees the same level with no per-env
attribute calls. Curricula of increasing target difficulty: Bengio et al. 2009, "Curriculum Learning";
the success-rate-gated promotion is that of OpenAI et al. 2019 ("Solving Rubik's Cube", automatic domain
randomization) and Narvekar et al. 2020's survey. The reward is DeepMind Control's ``tolerance`` with a
linear margin (Tassa et al. 2018): 1 at or above the target, falling linearly to 0 at ``margin`` below it,
0 further down. A hard level is then sparse for a policy that cannot run yet, the case a curriculum is for;
levels spaced by the margin keep the next level's reward in reach of a policy that passed the last one.
(A Gaussian fall-off was tried first: its tail is never exactly 0, return normalization amplifies it, and
training on the hardest level directly then learned as fast as the curriculum; see benchmarks/RESULTS.md.)
"""
from __future__ import annotations

import math
import re
from collections import deque
from typing import Sequence

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase
from torchrl.envs.transforms import Transform

from aeon_trl.config import ConfigError, ShapingConfig

# Index of the root's forward (x) velocity, qvel[0], in each gymnasium/envpool MuJoCo observation:
# the observation is qpos without the excluded x (and y) positions, then qvel.
FORWARD_VELOCITY_INDEX = {"HalfCheetah": 8, "Hopper": 5, "Walker2d": 8, "Swimmer": 3, "Ant": 13}


class Curriculum:
    """Level schedule gated on the recent success rate (a full window of episodes per decision).

    The window restarts after each level change, so a decision is never made on episodes judged
    against another level's target. ``solved`` turns on (and stays on) the first time the hardest
    level's window passes the threshold: the curriculum's final task is reached.
    """

    def __init__(self, num_levels: int, threshold: float = 0.8, window: int = 64, demote_below: float = 0.0,
                 start: int = 0):
        if num_levels < 1:
            raise ValueError(f"a curriculum needs at least one level, got num_levels={num_levels}")
        if not 0 < threshold <= 1 or not 0 <= demote_below < threshold:
            raise ValueError(f"need 0 <= demote_below < threshold <= 1, got demote_below={demote_below}, "
                             f"threshold={threshold}")
        if window < 1:
            raise ValueError(f"window must be >= 1 episode, got {window}")
        if not -num_levels <= start < num_levels:
            raise ValueError(f"start level {start} is not one of the {num_levels} levels (or -1 for the hardest)")
        self.num_levels, self.threshold, self.window, self.demote_below = num_levels, threshold, window, demote_below
        self.level = start % num_levels
        self.results: deque[bool] = deque(maxlen=window)
        self.solved = False
        self.changes = 0

    @property
    def success_rate(self) -> float:
        """Success rate over the current window; NaN until the window is full."""
        return sum(self.results) / len(self.results) if len(self.results) == self.window else math.nan

    def record(self, successes: Sequence[bool]) -> int:
        """Add finished episodes' outcomes (in order), all judged against the current level's target; returns
        the level after any promotion/demotion. Outcomes after a level change are dropped: they were judged
        against the old level (128 envs finishing together fill more than one 64-episode window)."""
        for success in successes:
            self.results.append(bool(success))
            rate = self.success_rate
            if math.isnan(rate):
                continue
            if rate >= self.threshold:
                if self.level == self.num_levels - 1:
                    self.solved = True
                else:
                    self._move(+1)
                    break
            elif rate < self.demote_below and self.level > 0:
                self._move(-1)
                break
        return self.level

    def _move(self, step: int) -> None:
        self.level += step
        self.changes += 1
        self.results.clear()

    def state_dict(self) -> dict:
        return {"level": self.level, "results": torch.tensor(list(self.results), dtype=torch.bool),
                "solved": self.solved, "changes": self.changes}

    def load_state_dict(self, state: dict) -> None:
        self.level = int(state["level"])
        if not 0 <= self.level < self.num_levels:
            raise ValueError(f"checkpointed curriculum level {self.level} does not exist in this curriculum of "
                             f"{self.num_levels} levels; resume with the same curriculum_levels")
        self.results = deque((bool(x) for x in state["results"].tolist()), maxlen=self.window)
        self.solved, self.changes = bool(state["solved"]), int(state["changes"])


class SpeedCurriculum(Transform):
    """Replaces the env reward by the speed-tracking reward of the current level and judges episodes.

    reward = clip(1 - (target - v) / margin, 0, 1), v the root's forward velocity
    read from the *raw* observation (place this transform before observation normalization). An episode
    succeeds when its mean forward velocity reaches the level's target. ``frozen`` (evaluation) keeps
    the level fixed and records nothing.
    """

    def __init__(self, targets: Sequence[float], velocity_index: int, curriculum: Curriculum,
                 margin: float = 0.5, observation_key: str = "observation"):
        super().__init__(in_keys=["reward"], out_keys=["reward"])
        if curriculum.num_levels != len(targets):
            raise ValueError(f"{len(targets)} target speeds for a curriculum of {curriculum.num_levels} levels")
        self.targets, self.velocity_index, self.curriculum = [float(t) for t in targets], velocity_index, curriculum
        self.margin, self.observation_key = margin, observation_key
        self.frozen = False
        self._speed_sum = self._steps = None  # per-env running sums over the current episode

    @property
    def level(self) -> int:
        return self.curriculum.level

    @property
    def target(self) -> float:
        return self.targets[self.curriculum.level]

    def speed_reward(self, speed: torch.Tensor) -> torch.Tensor:
        return (1.0 - (self.target - speed) / self.margin).clamp(0.0, 1.0)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        reward = next_tensordict.get("reward")
        speed = next_tensordict.get(self.observation_key)[..., self.velocity_index].to(reward.dtype)
        speed = speed.reshape(reward.shape)
        next_tensordict.set("reward", self.speed_reward(speed))
        if self.frozen:
            return next_tensordict
        if self._speed_sum is None or self._speed_sum.shape != speed.shape:
            self._speed_sum, self._steps = torch.zeros_like(speed), torch.zeros_like(speed)
        self._speed_sum += speed
        self._steps += 1
        done = next_tensordict.get("done").reshape(speed.shape)
        if done.any():
            mean_speed = self._speed_sum[done] / self._steps[done]
            self.curriculum.record((mean_speed >= self.target).tolist())
            self._speed_sum[done] = 0.0
            self._steps[done] = 0.0
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset


def make_curriculum_transform(cfg: ShapingConfig, env_id: str) -> SpeedCurriculum | None:
    """The curriculum transform the config asks for (None for ``curriculum=none``)."""
    if cfg.curriculum == "none":
        return None
    family = re.sub(r"-v\d+$", "", env_id)
    if family not in FORWARD_VELOCITY_INDEX:
        raise ConfigError(f"curriculum=speed needs a MuJoCo locomotion env with a known forward-velocity entry in "
                          f"its observation; '{env_id}' is not one of "
                          f"{', '.join(f'{f}-v5' for f in FORWARD_VELOCITY_INDEX)}. Set curriculum=none.")
    schedule = Curriculum(len(cfg.curriculum_levels), threshold=cfg.curriculum_threshold,
                          window=cfg.curriculum_window, demote_below=cfg.curriculum_demote,
                          start=cfg.curriculum_start)
    return SpeedCurriculum(cfg.curriculum_levels, FORWARD_VELOCITY_INDEX[family], schedule,
                           margin=cfg.curriculum_margin)


def find_curriculum(env: EnvBase) -> SpeedCurriculum | None:
    """The curriculum transform of a ``make_env`` stack, if it has one."""
    for t in getattr(env, "transform", ()):
        if isinstance(t, SpeedCurriculum):
            return t
    return None


def evaluate_on_hardest_level(env: EnvBase) -> None:
    """An evaluation env's curriculum, if it has one, fixed on its hardest level: a curriculum is a means to the
    final task, so that is the task evaluated."""
    curriculum = find_curriculum(env)
    if curriculum is not None:
        curriculum.curriculum.level, curriculum.frozen = curriculum.curriculum.num_levels - 1, True
