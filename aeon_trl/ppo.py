"""``AdvancedPPO``: the seed's one-line facade over config + env stack + trainer.

    ppo = AdvancedPPO("HalfCheetah-v5", {"lr": 3e-4, "clip_range": 0.2})
    ppo.train(total_timesteps=1_000_000)

or from the user's own env loop (one PPO update per full batch):

    action = ppo.get_action(state)
    next_state, reward, terminated, truncated, _ = env.step(action)
    ppo.store(state, action, reward, next_state, terminated or truncated, truncated=truncated)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

from aeon_trl.checkpoint import load_checkpoint
from aeon_trl.config import Config
from aeon_trl.envs import make_env
from aeon_trl.trainer import NonFiniteError, Trainer
from aeon_trl.user_env import adopt_env, config_with, serial_copies


class AdvancedPPO:
    """PPO on a continuous-control env given as an id, a gymnasium env, or a TorchRL env.

    Evaluation runs on fresh copies of the env: rebuilt from the id, from the gymnasium env's
    spec (wrappers included), from the TorchRL env's constructor arguments, or by ``eval_env_fn()``.
    """

    def __init__(self, env: str | gym.Env | EnvBase, config: Config | Mapping[str, Any] | None = None,
                 eval_env_fn: Callable[[], EnvBase] | None = None):
        if isinstance(env, str):
            self.config = config_with(config, env_id=env)
            self.trainer = Trainer(self.config, eval_env_fn=serial_copies(eval_env_fn) if eval_env_fn else None)
            return
        self.config, base, make_eval = adopt_env(env, config, eval_env_fn)
        self.trainer = Trainer(self.config, env=make_env(self.config, base_env=base), eval_env_fn=make_eval)

    _stored: list | None = None  # store()'s transitions of the batch being filled
    _stored_returns: torch.Tensor | None = None  # store()'s per-env running episode returns

    def train(self, total_timesteps: int | None = None) -> dict:
        """Train; returns episodes, best_reward, final_avg_reward, timesteps, wall_time, steps_per_second."""
        return self.trainer.train(total_timesteps)

    @torch.no_grad()
    def get_action(self, state: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action(s) for raw observation(s) ``[obs_dim]`` or ``[B, obs_dim]``, as numpy."""
        single = np.ndim(state) == 1
        obs = self._as_obs(state)
        td = TensorDict({"observation": obs}, batch_size=obs.shape[:1])
        mode = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
        with set_exploration_type(mode):
            action = self.trainer.actor(td).get("action")
        low, high = self.trainer.env.action_spec.space.low, self.trainer.env.action_spec.space.high
        action = action.clamp(low.min().item(), high.max().item()).cpu().numpy()
        return action[0] if single else action

    @torch.no_grad()
    def store(self, state, action, reward, next_state, done, truncated=False) -> dict | None:
        """Add a transition from your own env loop (or one per env: a leading batch dim ``B``). Each time
        ``frames_per_batch`` frames are stored, runs one iteration on them through ``Trainer.step`` (the path
        of ``train()``: NaN check, curiosity, GAE, minibatch epochs, schedules, plugins, counters, history) and
        returns its metrics; otherwise returns None. A NaN/inf reward or observation raises ``NonFiniteError``.

        ``done``: the episode ended; ``truncated``: it ended by a time limit (GAE then bootstraps from
        ``next_state``). Observations are normalized as ``get_action`` does; rewards are used as given.
        """
        if not all(np.isfinite(np.asarray(x, dtype=np.float64)).all() for x in (state, reward, next_state)):
            # before anything is recorded: the episode returns and the batch being filled stay finite
            raise NonFiniteError("store() got NaN/inf in the state, reward or next_state; check the env or its "
                                 "reward wrapper. Nothing was stored.")
        obs, next_obs = self._as_obs(state), self._as_obs(next_state)
        n = obs.shape[0]
        if self.config.frames_per_batch % n:
            raise ValueError(f"store() got {n} transitions at once, which does not divide the batch of "
                             f"{self.config.frames_per_batch} frames (num_envs * steps_per_env): pick num_envs and "
                             "steps_per_env so that it does")
        as_col = lambda x, dtype: torch.as_tensor(np.asarray(x), dtype=dtype, device=self.trainer.device).reshape(n, 1)
        action = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=self.trainer.device).reshape(n, -1)
        reward, done, truncated = as_col(reward, torch.float32), as_col(done, torch.bool), as_col(truncated, torch.bool)
        step = TensorDict({"observation": obs, "action": action,
                           "next": {"observation": next_obs, "reward": reward, "done": done | truncated,
                                    "terminated": done & ~truncated, "truncated": truncated}}, batch_size=[n])
        # The log-prob under the policy that acted: the policy changes only between batches.
        step.set(self.trainer.loss.tensor_keys.sample_log_prob, self.trainer.actor.get_dist(step).log_prob(action))
        if self._stored is None or self._stored_returns.shape[0] != n:
            self._stored, self._stored_returns = [], torch.zeros(n, device=self.trainer.device)
        self._stored.append(step)
        self._stored_returns += reward.squeeze(-1)
        ended = (done | truncated).squeeze(-1)
        self.trainer.episode_returns.extend(self._stored_returns[ended].tolist())
        self._stored_returns[ended] = 0.0
        if len(self._stored) * n < self.config.frames_per_batch:
            return None
        batch, self._stored = torch.stack(self._stored, dim=1), []  # [n, T], as the collector's batches
        with torch.enable_grad():
            return self.trainer.step(batch)  # as train() after each collection: NaN check, adapt, counters

    def _as_obs(self, state) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=self.trainer.device)
        return self._normalize(obs.reshape(-1, obs.shape[-1]))

    def _normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.trainer.obs_norm.normalize(obs)

    @property
    def buffer(self):
        """The on-policy buffer of the last update (``train()`` or a full ``store()`` batch): a torchrl
        ``ReplayBuffer`` of flat rows with advantages, e.g. ``DemonstrationBuffer.sample(agent_buffer=ppo.buffer)``."""
        return self.trainer.buffer

    def update_from_batch(self, batch: TensorDictBase) -> dict[str, float]:
        """One gradient step of the loss on a minibatch: PPO terms on its agent rows (as collected: normalized
        observations, advantages, old log-probs) and, when it carries ``is_demo``, the demonstration
        log-likelihood term on its demo rows (raw observations, normalized here with the current statistics),
        weighted by the config's ``demo_coef`` (1.0 by default), e.g.
        ``DemonstrationBuffer.sample(batch_size=512, agent_buffer=ppo.buffer, demo_ratio=0.3)``. The trainer
        takes the same step; returns the loss terms."""
        out = self.trainer.optimize_minibatch(batch)
        return {k: v.item() for k, v in out.items() if v.numel() == 1}

    def evaluate(self, n_episodes: int = 10, deterministic: bool = True) -> dict:
        returns = self.trainer.evaluate(n_episodes, deterministic=deterministic)
        return {"mean_reward": float(np.mean(returns)), "std_reward": float(np.std(returns)),
                "episode_returns": returns}

    def save(self, path: str | Path) -> Path:
        return self.trainer.save(path)

    def load(self, path: str | Path) -> "AdvancedPPO":
        self.trainer.load(path)
        return self

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "AdvancedPPO":
        """Rebuild the agent (env and config) a checkpoint was trained with, then load it."""
        state = load_checkpoint(path)
        cfg = Config.from_dict(state["config"])
        agent = cls(cfg.env.env_id, cfg)
        agent.trainer.load_state_dict(state)
        return agent

    @classmethod
    def from_trainer(cls, trainer: Trainer) -> "AdvancedPPO":
        """The facade over a trainer that already exists (the training driver's): ``get_action``, ``evaluate``
        and ``save`` then use its networks and normalization statistics, with nothing copied."""
        agent = cls.__new__(cls)
        agent.config, agent.trainer = trainer.cfg, trainer
        return agent

    def close(self) -> None:
        self.trainer.close()

