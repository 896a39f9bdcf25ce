"""Exact resume: simulator snapshots of in-process MuJoCo envs, and a Trainer interrupted, saved and resumed
that ends bitwise where the uninterrupted run ends (CPU, ``env_backend=serial``)."""
import pytest
import torch
from torchrl.envs import GymEnv, SerialEnv

from aeon_trl import env_state
from aeon_trl.config import Config
from aeon_trl.envs import make_base_env
from aeon_trl.launch.job import param_digest
from aeon_trl.trainer import Trainer


def _steps(env, td, actions):
    """Raw (next observation, reward, done) of each step, resetting finished envs as a collector does."""
    out = []
    for a in actions:
        td, nxt = env.step_and_maybe_reset(td.set("action", a))
        out.append((td["next", "observation"].clone(), td["next", "reward"].clone(), td["next", "done"].clone()))
        td = nxt
    return out


def test_snapshot_continues_the_episodes_in_flight():
    env, other = SerialEnv(2, lambda: GymEnv("Hopper-v5")), SerialEnv(2, lambda: GymEnv("Hopper-v5"))
    env.set_seed(0), other.set_seed(123)
    other.reset()
    td = env.reset()
    for _ in range(7):
        td = env.rand_step(td)["next"].exclude("reward")
    env_state.restore(other, env_state.capture(env))
    # full-scale random actions: Hopper falls within 60 steps, so resets (their noise from the restored RNG) happen
    actions = torch.rand(60, 2, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mine, theirs = _steps(env, td.clone(), actions), _steps(other, td.clone(), actions)
    assert any(d.any() for _, _, d in mine)
    for (o1, r1, d1), (o2, r2, d2) in zip(mine, theirs):
        assert torch.equal(o1, o2) and torch.equal(r1, r2) and torch.equal(d1, d2)
    env.close(), other.close()


class _Stop(Exception):
    pass


def test_interrupted_and_resumed_training_is_bitwise_the_uninterrupted_run(tmp_path):
    cfg = Config.from_dict({"env_id": "Hopper-v5", "env_backend": "serial", "num_envs": 4, "steps_per_env": 64,
                            "batch_size": 64, "epochs": 2, "total_timesteps": 1536, "progress": False,
                            "eval_episodes": 0})
    straight = Trainer(cfg)
    straight.train()

    def stop_halfway(trainer, _):
        if trainer.frames == 768:
            raise _Stop

    first = Trainer(cfg)
    with pytest.raises(_Stop):
        first.train(on_iteration=stop_halfway)
    first.save(tmp_path / "ckpt.pt")
    first.close()
    resumed = Trainer(cfg)
    resumed.load(tmp_path / "ckpt.pt")
    resumed.train()
    assert len(straight.episode_returns) > 4  # episodes ended (and envs reset) on both sides of the interruption
    assert resumed.episode_returns == straight.episode_returns
    # the running episodes' step counts come back with the simulators: the same lengths and training returns
    assert resumed.episode_lengths == straight.episode_lengths
    assert [h["train_return"] for h in resumed.history] == [h["train_return"] for h in straight.history]
    assert param_digest(resumed.net) == param_digest(straight.net)
    straight.close(), resumed.close()


def test_out_of_reach_envs_give_none_and_mismatches_are_refused():
    cfg = Config.from_dict({"env_id": "Hopper-v5", "env_backend": "envpool"})
    pool = make_base_env(cfg, 2, seed=0)
    assert env_state.capture(pool) is None  # envpool's C++ simulators: resume restarts episodes
    pool.close()
    two, three = SerialEnv(2, lambda: GymEnv("Hopper-v5")), SerialEnv(3, lambda: GymEnv("Hopper-v5"))
    two.reset(), three.reset()
    with pytest.raises(ValueError, match="num_envs"):
        env_state.restore(three, env_state.capture(two))
    cheetah = SerialEnv(2, lambda: GymEnv("HalfCheetah-v5"))
    cheetah.reset()
    with pytest.raises(ValueError, match="env_id"):
        env_state.restore(cheetah, env_state.capture(two))
    for e in (two, three, cheetah):
        e.close()
