"""One honest learning test: the default pipeline must solve InvertedPendulum-v5 on a bounded budget."""
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
