"""AdvancedPPO, the seed's facade: three ways to give the env, train summary, get_action, save/load, evaluate."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import ExplorationType, GymEnv, set_exploration_type

from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import ObsNorm, make_env
from aeon_trl.ppo import AdvancedPPO

# The seed's keys (non-default values) plus a tiny budget.
SEED_KEYS = {"clip_range": 0.25, "entropy_coef": 0.001, "kl_target": 0.03, "adaptive_lr": True, "gamma": 0.98,
             "gae_lambda": 0.9, "batch_size": 64, "epochs": 2, "lr": 1e-3, "wd": 1e-5}
TINY = {**SEED_KEYS, "num_envs": 4, "steps_per_env": 32, "total_timesteps": 256, "eval_episodes": 2,
        "progress": False}
SINGLE = {**SEED_KEYS, "steps_per_env": 64, "total_timesteps": 128, "progress": False}  # one env: 64 per batch
SUMMARY_KEYS = {"episodes", "best_reward", "final_avg_reward", "timesteps", "wall_time", "steps_per_second"}
PENDULUM_OBS = np.array([[1.0, 0.0, 0.5], [-1.0, 0.0, -3.0], [0.0, 1.0, 8.0], [0.6, -0.8, 0.0]], np.float32)


def _check_summary(summary, timesteps):
    assert set(summary) == SUMMARY_KEYS
    assert summary["timesteps"] == timesteps
    assert summary["wall_time"] > 0 and summary["steps_per_second"] > 0
    assert isinstance(summary["episodes"], int) and summary["episodes"] >= 0
    if summary["episodes"]:
        assert summary["best_reward"] >= summary["final_avg_reward"]


@pytest.fixture(scope="module")
def agent():
    a = AdvancedPPO("Pendulum-v1", TINY)
    a.summary = a.train()
    yield a
    a.close()


def test_env_id_with_seed_keys(agent):
    _check_summary(agent.summary, 256)
    cfg = agent.config
    assert cfg.env.env_id == "Pendulum-v1"
    assert (cfg.ppo.clip_epsilon, cfg.optim.adaptive_lr, cfg.optim.wd) == (0.25, True, 1e-5)
    assert agent.trainer.loss.clip_epsilon.item() == pytest.approx(0.25)  # the seed key reached the loss


def test_train_continues_to_a_larger_budget(agent, tmp_path):
    other = AdvancedPPO.from_checkpoint(agent.save(tmp_path / "ck.pt"))
    try:
        summary = other.train(total_timesteps=384)
        _check_summary(summary, 384)
        assert other.trainer.iteration == 3
    finally:
        other.close()


def test_gymnasium_env_instance():
    """Remade num_envs times from its spec (tests/test_user_envs.py: kwargs kept; no spec: trains alone)."""
    a = AdvancedPPO(gym.make("Pendulum-v1"), {**SINGLE, "num_envs": 2, "env_threads": 2})
    try:
        assert a.config.env.num_envs == 2 and a.config.env.env_id == "Pendulum-v1"
        assert a.trainer.env.batch_size == (2,)
        _check_summary(a.train(), 128)
        assert a.get_action(PENDULUM_OBS).shape == (4, 1)
    finally:
        a.close()


def test_torchrl_env_instance():
    a = AdvancedPPO(GymEnv("Pendulum-v1"), {**SINGLE, "env_id": "Pendulum-v1"})
    try:
        assert a.config.env.num_envs == 1
        _check_summary(a.train(), 128)
    finally:
        a.close()


def test_torchrl_env_instance_evaluates_on_that_env():
    a = AdvancedPPO(GymEnv("Pendulum-v1"), {**SINGLE, "total_timesteps": 64})
    try:
        a.train()
        returns = a.evaluate(1)["episode_returns"]
        assert len(returns) == 1 and -16.3 * 200 <= returns[0] <= 0  # Pendulum's reward range
    finally:
        a.close()


def test_gymnasium_env_instance_with_the_default_config():
    AdvancedPPO(gym.make("Pendulum-v1")).close()


def test_discrete_env_is_refused():
    with pytest.raises(ConfigError, match="continuous actions only"):
        AdvancedPPO(gym.make("CartPole-v1"), SINGLE)
    with pytest.raises(ConfigError, match="continuous actions only"):
        AdvancedPPO("CartPole-v1", SINGLE)


def test_bad_env_type_is_refused():
    with pytest.raises(TypeError, match="env id, a gymnasium.Env or a torchrl EnvBase"):
        AdvancedPPO(42, SINGLE)


def test_get_action_single_and_batch(agent):
    single = agent.get_action(PENDULUM_OBS[0])
    assert isinstance(single, np.ndarray) and single.shape == (1,)
    batch = agent.get_action(PENDULUM_OBS)
    assert isinstance(batch, np.ndarray) and batch.shape == (4, 1)
    many = agent.get_action(np.repeat(PENDULUM_OBS, 50, axis=0))  # 200 Gaussian samples: some hit the bounds
    assert many.min() >= -2.0 and many.max() <= 2.0
    assert np.isclose(np.abs(many), 2.0).any(), "expected some samples clipped to Pendulum's bounds"


def test_deterministic_actions_are_repeatable_and_stochastic_ones_are_not(agent):
    a, b = agent.get_action(PENDULUM_OBS, deterministic=True), agent.get_action(PENDULUM_OBS, deterministic=True)
    np.testing.assert_array_equal(a, b)
    # alone or in a batch: the same action (up to float32 matmul rounding)
    np.testing.assert_allclose(agent.get_action(PENDULUM_OBS[1], deterministic=True), a[1], rtol=1e-5, atol=1e-6)
    s1, s2 = agent.get_action(PENDULUM_OBS), agent.get_action(PENDULUM_OBS)
    assert not np.array_equal(s1, s2)


def test_get_action_normalizes_like_the_env(agent):
    """get_action on a raw observation == the policy on the env's normalized observation."""
    cfg = agent.config
    env = make_env(cfg, num_envs=3, seed=11)
    raw_env = make_env(Config.from_dict({"norm_obs": False, "norm_reward": False}, base=cfg), num_envs=3, seed=11)
    try:
        ObsNorm.of(env).load_state_dict(agent.trainer.obs_norm.state_dict(), freeze=True)
        normed, raw = env.reset(), raw_env.reset()
    finally:
        env.close()
        raw_env.close()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        expected = agent.trainer.actor(TensorDict({"observation": normed["observation"]}, [3]))["action"]
    np.testing.assert_allclose(agent.get_action(raw["observation"].numpy(), deterministic=True),
                               expected.clamp(-2, 2).numpy(), rtol=1e-5, atol=1e-5)


def test_save_load_and_from_checkpoint_reproduce_actions(agent, tmp_path):
    path = agent.save(tmp_path / "agent.pt")
    expected = agent.get_action(PENDULUM_OBS, deterministic=True)
    fresh = AdvancedPPO("Pendulum-v1", TINY)
    try:
        assert not np.allclose(fresh.get_action(PENDULUM_OBS, deterministic=True), expected)  # untrained differs
        assert fresh.load(path) is fresh
        np.testing.assert_array_equal(fresh.get_action(PENDULUM_OBS, deterministic=True), expected)
    finally:
        fresh.close()
    rebuilt = AdvancedPPO.from_checkpoint(path)
    try:
        assert rebuilt.config == agent.config
        np.testing.assert_array_equal(rebuilt.get_action(PENDULUM_OBS, deterministic=True), expected)
        assert rebuilt.trainer.frames == agent.trainer.frames
    finally:
        rebuilt.close()


def test_evaluate(agent):
    result = agent.evaluate(3)
    assert set(result) == {"mean_reward", "std_reward", "episode_returns"}
    returns = result["episode_returns"]
    assert len(returns) == 3 and all(math.isfinite(r) and -16.3 * 200 <= r <= 0 for r in returns)
    assert result["mean_reward"] == pytest.approx(np.mean(returns))
    assert result["std_reward"] == pytest.approx(np.std(returns))
    # deterministic evaluation with the same (default) seed is repeatable
    assert agent.evaluate(3)["episode_returns"] == pytest.approx(returns)


def test_store_goes_through_trainer_step():
    """store() runs the iteration train() runs after a collection: the NaN check included."""
    from aeon_trl.trainer import NonFiniteError
    ppo = AdvancedPPO("Pendulum-v1", {"num_envs": 2, "steps_per_env": 4, "minibatch_size": 8, "epochs": 1,
                                      "env_backend": "serial", "progress": False, "eval_episodes": 0})
    try:
        obs, act, no = np.zeros((2, 3), np.float32), np.zeros((2, 1), np.float32), np.zeros(2, bool)
        results = [ppo.store(obs, act, np.ones(2), obs, no, truncated=no) for _ in range(4)]
        assert results[:3] == [None] * 3 and ppo.trainer.history == [results[3]]
        assert results[3]["iteration"] == 1 and results[3]["frames"] == 8 and results[3]["episodes"] == 0
        for _ in range(3):
            ppo.store(obs, act, np.ones(2), obs, no, truncated=no)
        with pytest.raises(NonFiniteError, match="NaN/inf"):
            ppo.store(obs, act, np.array([1.0, np.nan]), obs, no, truncated=no)
        assert ppo.trainer.iteration == 1 and ppo.trainer.frames == 8  # refused before the update
    finally:
        ppo.close()
