"""Curriculum: the level schedule (promote, demote, bounds, windows), the speed curriculum on a real
MuJoCo env (the reward and the success judgement change with the level), config wiring, and the
trainer's checkpoint round trip of the level."""

import math

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import make_env
from aeon_trl.trainer import Trainer
from aeon_trl.transforms.curriculum import (FORWARD_VELOCITY_INDEX, Curriculum, SpeedCurriculum, find_curriculum,
                                            make_curriculum_transform)


# ---- the schedule ---------------------------------------------------------------------------------------
def test_promotes_when_a_full_window_passes_the_threshold():
    c = Curriculum(3, threshold=0.75, window=4)
    assert c.record([True, True, True]) == 0 and math.isnan(c.success_rate)  # window not full: no decision
    assert c.record([False]) == 1  # 3/4 = 0.75 >= threshold
    assert len(c.results) == 0 and c.changes == 1  # the new level starts a fresh window
    assert c.record([True, False, True, False]) == 1  # 0.5 < 0.75
    assert c.success_rate == 0.5


def test_sliding_window_promotes_as_soon_as_the_rate_passes():
    c = Curriculum(2, threshold=0.75, window=4)
    c.record([False, True, True, True])  # 0.75: promoted on the 4th episode
    assert c.level == 1
    c2 = Curriculum(2, threshold=0.75, window=4)
    c2.record([False, False, True, True, True])  # windows: 0.5, then [F, T, T, T] = 0.75
    assert c2.level == 1


def test_outcomes_judged_against_the_old_level_do_not_fill_the_new_window():
    # 8 envs finishing together with a window of 4: the wave's last 4 outcomes were judged against level 0's
    # target, so they must not count on level 1 (they would mark the hardest level solved at once).
    c = Curriculum(2, threshold=0.75, window=4)
    assert c.record([True] * 8) == 1
    assert not c.solved and len(c.results) == 0
    c.record([True] * 4)
    assert c.solved


def test_hardest_level_is_an_upper_bound_and_marks_solved():
    c = Curriculum(2, threshold=0.5, window=2)
    c.record([True, True])
    assert c.level == 1 and not c.solved
    c.record([True, True, True, True])
    assert c.level == 1 and c.solved


def test_demotes_on_collapse_but_not_below_level_zero():
    c = Curriculum(3, threshold=0.8, window=4, demote_below=0.3, start=2)
    c.record([False, False, True, False])  # 0.25 < 0.3
    assert c.level == 1
    c.record([False] * 4)
    assert c.level == 0
    c.record([False] * 8)
    assert c.level == 0 and c.changes == 2


def test_no_demotion_by_default():
    c = Curriculum(3, start=1, window=4)
    c.record([False] * 12)
    assert c.level == 1


def test_start_minus_one_is_the_hardest_level():
    assert Curriculum(4, start=-1).level == 3


@pytest.mark.parametrize("kwargs", [dict(num_levels=0), dict(num_levels=2, start=2), dict(num_levels=2, window=0),
                                    dict(num_levels=2, threshold=0.5, demote_below=0.5)])
def test_bad_schedule_arguments(kwargs):
    with pytest.raises(ValueError):
        Curriculum(**kwargs)


def test_state_dict_round_trip_and_level_check():
    c = Curriculum(3, threshold=0.75, window=4)
    c.record([True] * 4)
    c.record([True, False])
    state = c.state_dict()
    d = Curriculum(3, threshold=0.75, window=4)
    d.load_state_dict(state)
    assert (d.level, list(d.results), d.changes) == (1, [True, False], 1)
    with pytest.raises(ValueError, match="same curriculum_levels"):
        Curriculum(1).load_state_dict(state)


# ---- the transform --------------------------------------------------------------------------------------
def _td(speeds, done):
    obs = torch.zeros(len(speeds), 17)
    obs[:, 8] = torch.tensor(speeds)
    return TensorDict({"observation": obs, "reward": torch.zeros(len(speeds), 1),
                       "done": torch.tensor(done).view(-1, 1)}, batch_size=[len(speeds)])


def test_speed_reward_is_the_linear_tolerance_of_the_level():
    speeds = [0.0, 0.6, 0.8, 1.0, 2.0, 2.75]
    t = SpeedCurriculum([1.0, 3.0], velocity_index=8, curriculum=Curriculum(2, window=2), margin=0.5)
    out = t._step(None, _td(speeds, [False] * 6))
    torch.testing.assert_close(out["reward"].flatten(), torch.tensor([0.0, 0.2, 0.6, 1.0, 1.0, 1.0]))
    t.curriculum.level = 1  # 3 m/s: only speeds within 0.5 m/s of it earn anything
    out = t._step(None, _td(speeds, [False] * 6))
    torch.testing.assert_close(out["reward"].flatten(), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.5]))


def test_episode_success_is_its_mean_speed_against_the_target():
    t = SpeedCurriculum([1.0, 3.0], velocity_index=8, curriculum=Curriculum(2, window=2, threshold=1.0))
    t._step(None, _td([2.0, 0.4], [False, False]))
    t._step(None, _td([0.4, 2.0], [True, False]))  # env 0: mean 1.2 >= 1 -> success
    assert list(t.curriculum.results) == [True]
    t._step(None, _td([0.0, 0.0], [False, True]))  # env 1: mean (0.4 + 2 + 0) / 3 = 0.8 -> failure
    assert t.curriculum.level == 0 and math.isclose(t.curriculum.success_rate, 0.5)
    t.frozen = True  # evaluation: nothing recorded
    t._step(None, _td([5.0, 5.0], [True, True]))
    assert len(t.curriculum.results) == 2


def test_velocity_index_is_the_root_forward_velocity():
    import gymnasium as gym
    for family, index in FORWARD_VELOCITY_INDEX.items():
        env = gym.make(f"{family}-v5")
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(env.action_space.sample())
        assert obs[index] == pytest.approx(env.unwrapped.data.qvel[0]), family
        env.close()


def _speed_cfg(**kw):
    return Config().with_overrides(["env_id=HalfCheetah-v5", "curriculum=speed", "num_envs=4", "steps_per_env=8",
                                    "batch_size=8", "env_threads=1", "max_episode_steps=10",
                                    *[f"{k}={v}" for k, v in kw.items()]])


@pytest.mark.parametrize("backend", ["envpool", "gymnasium"])
def test_mujoco_env_difficulty_follows_the_level(backend):
    """The same actions from the same seed earn less reward at a harder level, on every sub-env."""
    cfg = _speed_cfg(env_backend=backend, norm_reward="false", norm_obs="false", curriculum_levels="[0.5,3.0]")
    rewards = {}
    for level in (0, 1):
        env = make_env(cfg, seed=3)
        curriculum = find_curriculum(env)
        curriculum.curriculum.level = level
        torch.manual_seed(0)
        actions = torch.rand(10, 4, 6) * 2 - 1
        td = env.reset()
        out = []
        for a in actions:
            td.set("action", a)
            td = env.step(td)
            out.append(td.get(("next", "reward")))
            speed = td.get(("next", "observation"))[:, 8]
            td = td.get("next")
        env.close()
        rewards[level] = torch.stack(out).squeeze(-1)
        torch.testing.assert_close(rewards[level][-1], curriculum.speed_reward(speed).to(rewards[level].dtype))
    assert rewards[0].shape == (10, 4)
    assert (rewards[1] <= rewards[0]).all() and (rewards[1] < rewards[0]).any(dim=0).all()
    assert (rewards[1].sum(0) < rewards[0].sum(0)).all()  # every sub-env got the harder level


def test_episode_outcomes_reach_the_schedule_from_the_env():
    cfg = _speed_cfg(curriculum_window=4, curriculum_levels="[-100.0,100.0]", curriculum_threshold=1.0)
    env = make_env(cfg)
    env.rollout(10, break_when_any_done=False)  # one 10-step episode in each of the 4 envs
    curriculum = find_curriculum(env).curriculum
    env.close()
    assert curriculum.level == 1  # any mean speed beats -100 m/s: 4/4 successes promote


def test_config_errors():
    with pytest.raises(ConfigError, match="curriculum_levels"):
        _speed_cfg(curriculum_levels="[2.0,1.0]")
    with pytest.raises(ConfigError, match="curriculum_start"):
        _speed_cfg(curriculum_start=6)
    with pytest.raises(ConfigError, match="curriculum_demote"):
        _speed_cfg(curriculum_demote=0.9, curriculum_threshold=0.8)
    with pytest.raises(ConfigError, match="must be one of"):
        _speed_cfg(curriculum="distance")
    with pytest.raises(ConfigError, match="curriculum_levels=.*wrong type"):
        _speed_cfg(curriculum_levels="[fast,faster]")
    assert _speed_cfg(curriculum_levels="[1,2.5]").shaping.curriculum_levels == [1.0, 2.5]
    with pytest.raises(ConfigError, match="curriculum=speed needs a MuJoCo locomotion env"):
        make_curriculum_transform(Config().with_overrides(["curriculum=speed"]).shaping, "Pendulum-v1")
    assert make_curriculum_transform(Config().shaping, "Pendulum-v1") is None


def test_trainer_logs_and_checkpoints_the_level(tmp_path):
    cfg = _speed_cfg(curriculum_window=4, curriculum_levels="[-100.0,-50.0,100.0]", total_timesteps=96,
                     epochs=1, eval_episodes=0, progress="false")
    trainer = Trainer(cfg)
    try:
        trainer.train()  # 3 batches of 32 frames: 4 envs finish 10-step episodes twice -> two promotions
        assert [h["curriculum_level"] for h in trainer.history] == [0, 1, 2]
        assert trainer.history[-1]["curriculum_target"] == 100.0
        trainer.save(tmp_path / "ckpt.pt")
    finally:
        trainer.close()
    resumed = Trainer(cfg)
    try:
        resumed.load(tmp_path / "ckpt.pt")
        assert resumed.plugin("curriculum").transform.level == 2 and resumed.plugin("curriculum").transform.curriculum.changes == 2
        assert np.isnan(resumed.plugin("curriculum").transform.curriculum.success_rate)
    finally:
        resumed.close()
