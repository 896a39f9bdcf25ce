"""Dynamic batch sizing: the growth rule against a naive reference, the cap, config errors, and the
trainer really collecting (and checkpointing) the grown batch while keeping the env's episodes."""

import math

import numpy as np
import pytest

from aeon_trl.config import Config, ConfigError
from aeon_trl.optim.schedules import DynamicBatchSize
from aeon_trl.trainer import Trainer


def naive_next_steps(steps, lengths, cap_steps, growth=1.5, cv=0.1):
    """The seed's rule, written out: grow by `growth` when std(length) < cv * mean(length)."""
    if np.std(lengths) < cv * np.mean(lengths):
        return min(math.ceil(steps * growth), cap_steps)
    return steps


@pytest.mark.parametrize("lengths", [[200] * 4, [100, 105, 95, 110], [100, 300, 50, 1000], [90, 110, 100, 125],
                                     [80, 120, 100, 100]])
def test_rule_matches_the_naive_reference(lengths):
    sizer = DynamicBatchSize(steps_per_env=64, num_envs=4, cap_frames=4 * 1000)
    assert sizer.update(lengths) == naive_next_steps(64, lengths, 1000)


def test_needs_min_episodes_since_the_last_resize_and_stops_at_the_cap():
    sizer = DynamicBatchSize(steps_per_env=64, num_envs=4, cap_frames=4 * 150)
    assert sizer.update([200, 200, 200]) == 64  # 3 < 4 episodes (one per env): no decision yet
    assert sizer.update([200]) == 96
    assert sizer.lengths == []  # the next decision waits for episodes finished at the new size
    assert sizer.update([200] * 3) == 96
    assert sizer.update([200]) == 144
    assert sizer.update([200] * 4) == 150  # capped at cap_frames // num_envs
    assert sizer.update([200] * 4) == 150 and sizer.resizes == 3


def test_unstable_lengths_keep_the_size_and_slide_the_window():
    sizer = DynamicBatchSize(steps_per_env=10, num_envs=2, cap_frames=100)
    assert sizer.update([10, 200]) == 10
    assert sizer.update([200]) == 15  # the last 2 episodes, [200, 200], are stable


def test_state_dict_round_trip():
    sizer = DynamicBatchSize(steps_per_env=64, num_envs=2, cap_frames=1024)
    sizer.update([100, 100])
    sizer.update([100])
    other = DynamicBatchSize(steps_per_env=64, num_envs=2, cap_frames=1024)
    other.load_state_dict(sizer.state_dict())
    assert (other.steps_per_env, other.resizes, other.lengths) == (96, 1, [100.0])


def test_config_errors():
    with pytest.raises(ConfigError, match="dynamic_batch_cap"):
        Config().with_overrides(["dynamic_batch=true", "num_envs=64", "steps_per_env=64", "dynamic_batch_cap=1000"])
    with pytest.raises(ConfigError, match="dynamic_batch_growth"):
        Config().with_overrides(["dynamic_batch_growth=1.0"])
    with pytest.raises(ConfigError, match="dynamic_batch_cv"):
        Config().with_overrides(["dynamic_batch_cv=0"])
    with pytest.raises(ConfigError, match="wrong type"):
        Config().with_overrides(["dynamic_batch=maybe"])


CFG = ["env_id=HalfCheetah-v5", "num_envs=4", "steps_per_env=8", "batch_size=16", "epochs=1", "env_threads=1",
       "max_episode_steps=12", "dynamic_batch=true", "dynamic_batch_cap=64", "eval_episodes=0", "progress=false"]


def test_trainer_collects_the_grown_batch_and_keeps_episodes():
    trainer = Trainer(Config().with_overrides(CFG))
    try:
        batches = []
        for _ in range(4):
            batches.append(trainer.collect())
            trainer.adapt(batches[-1])
    finally:
        trainer.close()
    # 8 steps/env; the 4 envs all end a 12-step episode in batch 2 (equal lengths) -> 12 steps/env; the next
    # episodes end at step 24, in batch 3 -> 18 steps/env, capped at 64 frames / 4 envs = 16.
    assert [tuple(b.shape) for b in batches] == [(4, 8), (4, 8), (4, 12), (4, 16)]
    # the resize kept the env and its episodes: batch 3 starts at step 5 of the episode begun at step 13
    assert batches[2].get(("next", "step_count"))[:, 0].flatten().tolist() == [5] * 4
    assert trainer.plugin("dynamic_batch").sizer.resizes == 2


def test_trainer_logs_and_checkpoints_the_batch_size(tmp_path):
    cfg = Config().with_overrides([*CFG, "total_timesteps=176"])
    trainer = Trainer(cfg)
    try:
        trainer.train()
        assert [h["frames_per_batch"] for h in trainer.history] == [32, 32, 48, 64]
        trainer.save(tmp_path / "ckpt.pt")
    finally:
        trainer.close()
    resumed = Trainer(cfg)
    try:
        resumed.load(tmp_path / "ckpt.pt")
        assert resumed.frames_per_batch == 64 and resumed.plugin("dynamic_batch").sizer.steps_per_env == 16
        assert resumed.collect().shape == (4, 16)
    finally:
        resumed.close()


def test_data_parallel_ranks_agree_on_the_batch_size():
    """With a metric reducer (data parallel), the rollout length is the mean over ranks on every rank."""
    trainer = Trainer(Config().with_overrides(CFG))
    trainer.metric_reducer = lambda x: x + 1.0  # as if another rank wanted 2 more steps per env
    try:
        trainer.adapt(trainer.collect())
        assert trainer.plugin("dynamic_batch").sizer.steps_per_env == 9 and trainer.frames_per_batch == 36
        assert trainer.collect().shape == (4, 9)
    finally:
        trainer.close()
