"""Issue 14, item 6: after a ``NonFiniteError`` the run's state stays finite (or refuses to be saved).

Moved from branch ``robust``'s tests/test_robustness.py so that the robustness items and this one do not edit the
same file.
"""
from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from aeon_trl._util import float_tensors  # (path, tensor) of every float tensor of a state


class NaNRewardAfter(gym.Wrapper):
    """The wrapped env's reward becomes NaN from the ``after``-th step on."""

    def __init__(self, env: gym.Env, after: int):
        super().__init__(env)
        self.after, self.steps = after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (float("nan") if self.steps > self.after else reward), terminated, truncated, info


def test_save_after_non_finite_error_keeps_finite_statistics(tmp_path):
    from aeon_trl import AdvancedPPO, NonFiniteError
    from aeon_trl.checkpoint import load_checkpoint
    ppo = AdvancedPPO(NaNRewardAfter(gym.make("Pendulum-v1"), after=300),
                      {"steps_per_env": 256, "batch_size": 64, "epochs": 1, "progress": False, "eval_episodes": 0})
    try:
        with pytest.raises(NonFiniteError):
            ppo.train(total_timesteps=2048)
        try:
            path = ppo.save(tmp_path / "agent.pt")
        except Exception as exc:  # refusing to save a poisoned state is one of the two wanted behaviours
            assert re.search(r"NaN|non-finite|not finite", str(exc)), f"unclear refusal: {exc!r}"
            return
    finally:
        ppo.close()
    state = load_checkpoint(path)
    poisoned = [name for name, t in float_tensors(state) if not torch.isfinite(t).all()]
    assert not poisoned, f"the saved checkpoint holds NaN/inf in {poisoned}"


def _tiny_ppo(env):
    from aeon_trl import AdvancedPPO
    return AdvancedPPO(env, {"steps_per_env": 256, "minibatch_size": 64, "epochs": 1, "progress": False,
                             "eval_episodes": 0})


def test_a_batch_failing_the_nan_check_is_taken_out_of_the_statistics(tmp_path):
    """The statistics saved after the error are those of the last good batch, not a refusal."""
    from aeon_trl import NonFiniteError
    from aeon_trl.checkpoint import load_checkpoint
    ppo = _tiny_ppo(NaNRewardAfter(gym.make("Pendulum-v1"), after=300))
    try:
        ppo.train(total_timesteps=256)  # one good batch
        good = ppo.save(tmp_path / "good.pt")
        with pytest.raises(NonFiniteError):
            ppo.train(total_timesteps=2048)
        after = ppo.save(tmp_path / "after.pt")
    finally:
        ppo.close()
    good, after = load_checkpoint(good)["normalization"], load_checkpoint(after)["normalization"]
    for (name, a), (_, b) in zip(float_tensors(good), float_tensors(after)):
        assert torch.equal(a, b), name


def test_a_non_finite_state_is_refused_with_a_clear_error(tmp_path):
    from aeon_trl import NonFiniteError
    ppo = _tiny_ppo(gym.make("Pendulum-v1"))
    try:
        with torch.no_grad():
            next(ppo.trainer.net.parameters()).fill_(float("nan"))
        with pytest.raises(NonFiniteError, match=r"refusing to save: NaN/inf in net/"):
            ppo.save(tmp_path / "agent.pt")
        assert not (tmp_path / "agent.pt").exists()
    finally:
        ppo.close()


def test_store_refuses_a_nan_reward_before_recording_it():
    from aeon_trl import NonFiniteError
    ppo = _tiny_ppo(gym.make("Pendulum-v1"))
    try:
        state = np.zeros(3, dtype=np.float32)
        action = ppo.get_action(state)
        with pytest.raises(NonFiniteError, match="Nothing was stored"):
            ppo.store(state, action, float("nan"), state, True)
        assert ppo.trainer.episode_returns == [] and not ppo._stored
    finally:
        ppo.close()
