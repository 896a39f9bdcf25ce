"""Honest learning tests: the defaults must solve InvertedPendulum-v5 and swing up Pendulum-v1 on bounded budgets."""
import pytest

from aeon_trl import AdvancedPPO


@pytest.mark.slow
def test_inverted_pendulum_reaches_900_within_60k_steps():
    # Fixed seed and budget; the defaults (obs/reward normalization, KL-adaptive lr) are on,
    # only the batch is smaller and lr higher than the MuJoCo-locomotion defaults.
    config = {"num_envs": 16, "steps_per_env": 64, "batch_size": 256, "epochs": 10, "lr": 1e-3,
              "total_timesteps": 60_000, "seed": 0, "progress": False}
    ppo = AdvancedPPO("InvertedPendulum-v5", config)
    try:
        summary = ppo.train()
        result = ppo.evaluate(n_episodes=10)
    finally:
        ppo.close()
    assert summary["timesteps"] <= 61_440
    assert result["mean_reward"] >= 900, result


@pytest.mark.slow
def test_pendulum_swings_up_within_150k_steps():
    # A second task, another physics and reward scale: Pendulum-v1 must swing up and hold (a random policy scores
    # ~-1,200, a held pendulum ~-150). Seeds 0-3 reached -139 / -180 / -180 / -129 here (2026-12-03); ~20 s.
    config = {"num_envs": 16, "steps_per_env": 64, "batch_size": 256, "epochs": 10, "lr": 1e-3, "gamma": 0.95,
              "total_timesteps": 150_000, "seed": 0, "progress": False}
    ppo = AdvancedPPO("Pendulum-v1", config)
    try:
        ppo.train()
        result = ppo.evaluate(n_episodes=10)
    finally:
        ppo.close()
    assert result["mean_reward"] >= -400, result
