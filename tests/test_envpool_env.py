"""Behavioural tests of ``aeon_trl.envpool_env.EnvPoolEnv`` against gymnasium / GymEnv.

The gymnasium reference transitions are produced by putting a gymnasium MuJoCo env
into the exact pre-step state of the envpool env (``set_state`` from the
observation: HalfCheetah/Hopper dynamics and rewards do not depend on the absolute
x position, the only coordinate the observation drops) and stepping it with the
same action.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("envpool")

import gymnasium as gym  # noqa: E402
from torchrl.collectors import Collector  # noqa: E402
from torchrl.envs import GymEnv  # noqa: E402
from torchrl.envs.utils import RandomPolicy, check_env_specs, step_mdp  # noqa: E402

from aeon_trl.envpool_env import EnvPoolEnv, envpool_supports  # noqa: E402

# gymnasium v5 defaults
HC_FORWARD_W, HC_CTRL_W, HC_NOISE = 1.0, 0.1, 0.1
HOPPER_NOISE, HOPPER_INIT_Z = 5e-3, 1.25
NQPOS_OBS = {"HalfCheetah-v5": 8, "Hopper-v5": 5}  # qpos[1:] comes first in the obs


def _gym(env_id):
    return gym.make(env_id).unwrapped


def _gym_step_from_obs(genv, env_id, obs, action):
    """Step gymnasium from the state encoded by ``obs`` (x position := 0)."""
    k = NQPOS_OBS[env_id]
    obs = np.asarray(obs, dtype=np.float64)
    genv.set_state(np.concatenate([[0.0], obs[:k]]), obs[k:])
    gobs, grew, gterm, _, ginfo = genv.step(np.asarray(action, dtype=np.float32))
    return gobs, grew, gterm, ginfo


def _uniform_actions(gen, n, dim, extreme=False):
    a = torch.rand(n, dim, generator=gen) * 2 - 1
    return torch.sign(a) if extreme else a


# ----------------------------------------------------------------------------- API
def test_envpool_supports():
    for env_id in ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "InvertedPendulum-v5"):
        assert envpool_supports(env_id)
    assert not envpool_supports("NoSuchEnv-v0")
    with pytest.raises(ValueError):
        EnvPoolEnv("NoSuchEnv-v0", 2)


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_specs_match_gymenv(env_id):
    n = 3
    env, ref = EnvPoolEnv(env_id, n), GymEnv(env_id, device="cpu")
    try:
        assert env.batch_size == torch.Size([n])
        for name in ("full_observation_spec", "full_action_spec", "full_reward_spec", "full_done_spec"):
            ours, theirs = getattr(env, name), getattr(ref, name)
            assert ours.shape == (n,)
            # Composite equality compares keys, classes, shapes, dtypes and bounds
            assert ours[0] == theirs, name
            assert ours == theirs.expand(n), name
        obs = env.observation_spec["observation"]
        assert obs.dtype == ref.observation_spec["observation"].dtype == torch.float64
        act = env.action_spec
        assert act.dtype == torch.float32 and act.shape == (n, *ref.action_spec.shape)
        torch.testing.assert_close(act.space.low[0], ref.action_spec.space.low)
        torch.testing.assert_close(act.space.high[0], ref.action_spec.space.high)
        assert env.reward_spec.shape == (n, 1) and env.reward_spec.dtype == torch.float32
        for key in ("done", "terminated", "truncated"):
            assert env.full_done_spec[key].shape == (n, 1)
            assert env.full_done_spec[key].dtype == torch.bool
        # the data has exactly the spec'd dtypes (a float32 obs would fail here)
        td = env.rollout(3)
        assert td["next", "observation"].dtype == torch.float64
        assert td["next", "reward"].shape == (n, 3, 1)
    finally:
        env.close()
        ref.close()


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_check_env_specs(env_id):
    env = EnvPoolEnv(env_id, 4, seed=1)
    check_env_specs(env)
    env.close()


# ------------------------------------------------------------- gymnasium equality
def test_halfcheetah_reset_noise_and_transitions_match_gymnasium():
    n, steps = 32, 25
    env, genv = EnvPoolEnv("HalfCheetah-v5", n, seed=3), _gym("HalfCheetah-v5")
    assert (genv._forward_reward_weight, genv._ctrl_cost_weight) == (HC_FORWARD_W, HC_CTRL_W)
    assert genv._reset_noise_scale == HC_NOISE
    td = env.reset()
    obs0 = td["observation"].numpy()
    # qpos[1:] = init_qpos[1:] (all zeros) + U(-0.1, 0.1); qvel = init_qvel (0) + 0.1 N(0, 1)
    np.testing.assert_array_equal(genv.init_qpos, 0.0)
    np.testing.assert_array_equal(genv.init_qvel, 0.0)
    qpos, qvel = obs0[:, :8], obs0[:, 8:]
    assert np.abs(qpos).max() <= HC_NOISE and np.abs(qpos).max() > 0.9 * HC_NOISE
    assert abs(qpos.mean()) < 0.02
    assert 0.085 < qvel.std() < 0.115 and abs(qvel.mean()) < 0.02
    assert len(np.unique(obs0, axis=0)) == n  # every env got its own noise

    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        td["action"] = _uniform_actions(gen, n, 6)
        prev_obs = td["observation"].numpy().copy()
        out = env.step(td)
        info = env.last_info
        a64 = td["action"].numpy().astype(np.float64)
        obs, rew = out["next", "observation"].numpy(), out["next", "reward"].squeeze(-1).numpy()
        np.testing.assert_array_equal(info["elapsed_step"], _ + 1)
        # reward = forward_w * x_velocity - ctrl_w * |a|^2, exact up to float32 rounding
        np.testing.assert_allclose(info["reward_run"], HC_FORWARD_W * info["x_velocity"], rtol=0, atol=0)
        np.testing.assert_allclose(info["reward_ctrl"], -HC_CTRL_W * (a64**2).sum(1), rtol=1e-12, atol=1e-14)
        expected = (HC_FORWARD_W * info["x_velocity"] - HC_CTRL_W * (a64**2).sum(1)).astype(np.float32)
        np.testing.assert_allclose(rew, expected, rtol=1e-6, atol=1e-7)
        for i in range(n):
            gobs, grew, gterm, ginfo = _gym_step_from_obs(genv, "HalfCheetah-v5", prev_obs[i], a64[i])
            np.testing.assert_allclose(obs[i], gobs, rtol=0, atol=1e-9)
            np.testing.assert_allclose(rew[i], np.float32(grew), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(info["x_velocity"][i], ginfo["x_velocity"], rtol=1e-9, atol=1e-9)
            assert not gterm
        assert not out["next", "done"].any()
        td = step_mdp(out)
    env.close()


def _hopper_run(env, genv, steps, gen, extreme=True):
    """step + maybe_reset loop that checks every transition against gymnasium and
    the envpool step counter. Returns (#terminations, #resets checked)."""
    n = env.num_envs
    td = env.reset()
    count = np.zeros(n, dtype=np.int64)
    n_term = n_first_steps = 0
    for _ in range(steps):
        td["action"] = _uniform_actions(gen, n, 3, extreme=extreme)
        prev_obs = td["observation"].numpy().copy()
        out = env.step(td)
        count += 1
        info = env.last_info
        # a phantom (auto-reset) step would show elapsed_step 0 and reward 0
        np.testing.assert_array_equal(info["env_id"], np.arange(n))
        np.testing.assert_array_equal(info["elapsed_step"], count)
        rew = out["next", "reward"].squeeze(-1).numpy()
        assert (rew != 0).all()
        obs = out["next", "observation"].numpy()
        term = out["next", "terminated"].squeeze(-1).numpy()
        trunc = out["next", "truncated"].squeeze(-1).numpy()
        done = out["next", "done"].squeeze(-1).numpy().copy()
        np.testing.assert_array_equal(done, term | trunc)
        assert not trunc.any()
        for i in range(n):
            if np.abs(prev_obs[i, 5:]).max() >= 10:  # velocities are clipped in the obs
                continue
            gobs, grew, gterm, _ = _gym_step_from_obs(genv, "Hopper-v5", prev_obs[i], td["action"][i])
            np.testing.assert_allclose(obs[i], gobs, rtol=0, atol=1e-7)
            np.testing.assert_allclose(rew[i], np.float32(grew), rtol=1e-5, atol=1e-6)
            assert bool(term[i]) == bool(gterm)
            n_first_steps += int(count[i] == 1)
        n_term += int(term.sum())
        final = out["next", "observation"].clone()
        td = env.maybe_reset(step_mdp(out))
        # the stored final observation survives the reset untouched ...
        assert torch.equal(out["next", "observation"], final)
        # ... running envs keep their obs, reset envs get a fresh in-range one
        assert torch.equal(td["observation"][~torch.as_tensor(done)], final[~torch.as_tensor(done)])
        if done.any():
            fresh = td["observation"][torch.as_tensor(done)].numpy()
            assert np.abs(fresh[:, 0] - HOPPER_INIT_Z).max() <= HOPPER_NOISE
            assert np.abs(fresh[:, 1:]).max() <= HOPPER_NOISE
            assert sorted(env.last_info["env_id"].tolist()) == np.flatnonzero(done).tolist()
            np.testing.assert_array_equal(env.last_info["elapsed_step"], 0)
        assert not td["done"].any()
        count[done] = 0
    return n_term, n_first_steps


def test_hopper_reset_noise_termination_and_partial_reset_semantics():
    n = 8
    env, genv = EnvPoolEnv("Hopper-v5", n, seed=11, num_threads=2), _gym("Hopper-v5")
    assert genv._reset_noise_scale == HOPPER_NOISE
    np.testing.assert_allclose(genv.init_qpos, [0, HOPPER_INIT_Z, 0, 0, 0, 0])
    obs0 = env.reset()["observation"].numpy()
    # qpos, qvel = init + U(-5e-3, 5e-3); obs = [qpos[1:], clip(qvel)]
    dev = obs0 - np.r_[HOPPER_INIT_Z, np.zeros(10)]
    assert np.abs(dev).max() <= HOPPER_NOISE and np.abs(dev).max() > 0.8 * HOPPER_NOISE
    # bang-bang actions make the hopper fall within a few dozen steps
    n_term, n_first = _hopper_run(env, genv, 120, torch.Generator().manual_seed(0))
    assert n_term >= n  # several staggered terminations -> several partial resets
    assert n_first >= n + n_term // 2  # first steps after partial resets were checked vs gym
    env.close()


def test_explicit_partial_reset_halfcheetah():
    n = 4
    env = EnvPoolEnv("HalfCheetah-v5", n, seed=0)
    td = env.reset()
    for _ in range(3):
        td = step_mdp(env.step(td.set("action", torch.full((n, 6), 0.5))))
    before = td["observation"].clone()
    td.set("_reset", torch.tensor([False, True, False, True]).unsqueeze(-1))
    td = env.reset(td)
    assert "_reset" not in td.keys()
    assert torch.equal(td["observation"][[0, 2]], before[[0, 2]])
    assert not torch.equal(td["observation"][[1, 3]], before[[1, 3]])
    assert td["observation"][[1, 3], :8].abs().max() <= HC_NOISE  # fresh reset state
    np.testing.assert_array_equal(env.last_info["env_id"], [1, 3])
    out = env.step(td.set("action", torch.full((n, 6), 0.5)))
    info = env.last_info
    np.testing.assert_array_equal(info["elapsed_step"], [4, 1, 4, 1])
    # the action was applied to the freshly reset envs too (no ignored action)
    np.testing.assert_allclose(info["reward_ctrl"], -HC_CTRL_W * 6 * 0.25)
    assert (out["next", "reward"] != 0).all()
    env.close()


def test_stepping_a_done_env_without_reset_raises():
    env = EnvPoolEnv("HalfCheetah-v5", 2, max_episode_steps=3)
    td = env.full_action_spec.zero().update(env.full_observation_spec.zero())
    with pytest.raises(RuntimeError, match="must be reset"):
        env.step(td)  # never reset
    td = env.reset()
    for _ in range(3):
        out = env.step(td.set("action", torch.zeros(2, 6)))
        td = step_mdp(out)
    assert out["next", "truncated"].all()
    with pytest.raises(RuntimeError, match="must be reset"):
        env.step(td.set("action", torch.zeros(2, 6)))
    env.close()


def test_partial_step_mask_steps_only_selected_envs():
    n = 3
    env = EnvPoolEnv("HalfCheetah-v5", n, seed=2)
    td = env.reset()
    obs0 = td["observation"].clone()
    td.set("action", torch.full((n, 6), 0.3))
    td.set("_step", torch.tensor([True, False, True]))
    out = env.step(td)
    np.testing.assert_array_equal(env.last_info["env_id"], [0, 2])
    np.testing.assert_array_equal(env.last_info["elapsed_step"], [1, 1])
    assert torch.equal(out["next", "observation"][1], obs0[1])
    assert not torch.equal(out["next", "observation"][[0, 2]], obs0[[0, 2]])
    td = step_mdp(out)
    td.pop("_step", None)
    env.step(td.set("action", torch.full((n, 6), 0.3)))
    np.testing.assert_array_equal(env.last_info["elapsed_step"], [2, 1, 2])
    # torchrl uses '_step' masks in rollout(break_when_all_done=True)
    hop = EnvPoolEnv("Hopper-v5", 4, seed=0)
    torch.manual_seed(0)
    ro = hop.rollout(300, break_when_any_done=False, break_when_all_done=True)
    done = ro["next", "done"].squeeze(-1)
    assert done[:, -1].all() and ro.shape[1] < 300
    assert torch.equal(done.cumsum(1) > 0, done)  # once done, never stepped again ...
    for i in range(4):
        end = int(done[i].float().argmax())
        assert (ro[i, end:] == ro[i, end : end + 1]).all()  # ... its record is frozen
    hop.close()
    env.close()


# ----------------------------------------------------------------- truncation
def test_truncation_at_1000_steps_keeps_final_observation():
    n = 2
    env, genv = EnvPoolEnv("HalfCheetah-v5", n, seed=4), _gym("HalfCheetah-v5")
    torch.manual_seed(0)
    ro = env.rollout(1000, break_when_any_done=False)
    assert ro.shape == (n, 1000)
    trunc, term = ro["next", "truncated"].squeeze(-1), ro["next", "terminated"].squeeze(-1)
    assert trunc[:, -1].all() and not trunc[:, :-1].any()
    assert not term.any()
    assert torch.equal(ro["next", "done"], ro["next", "truncated"])
    np.testing.assert_array_equal(env.last_info["elapsed_step"], 1000)
    # ("next","observation") at the time limit is the real final state
    for i in range(n):
        gobs, grew, _, _ = _gym_step_from_obs(
            genv, "HalfCheetah-v5", ro["observation"][i, -1], ro["action"][i, -1]
        )
        np.testing.assert_allclose(ro["next", "observation"][i, -1].numpy(), gobs, atol=1e-9)
        np.testing.assert_allclose(ro["next", "reward"][i, -1, 0].item(), np.float32(grew), rtol=1e-6)
    # then the torchrl reset path starts a new episode whose first step is real
    td = env.maybe_reset(step_mdp(ro[:, -1].clone()))
    assert td["observation"][:, :8].abs().max() <= HC_NOISE
    env.step(td.set("action", torch.ones(n, 6)))
    np.testing.assert_array_equal(env.last_info["elapsed_step"], 1)
    np.testing.assert_allclose(env.last_info["reward_ctrl"], -HC_CTRL_W * 6)
    env.close()


def test_custom_max_episode_steps():
    env = EnvPoolEnv("HalfCheetah-v5", 2, max_episode_steps=7)
    ro = env.rollout(20, break_when_any_done=False)
    trunc = ro["next", "truncated"].squeeze(-1)
    assert trunc[:, [6, 13]].all() and trunc.sum() == 4
    assert not ro["next", "terminated"].any()
    env.close()


# ----------------------------------------------------------------- seeding
def _seeded_rollout(env, steps=60):
    gen = torch.Generator().manual_seed(123)

    def policy(td):
        return td.set("action", _uniform_actions(gen, env.num_envs, 3, extreme=True))

    return env.rollout(steps, policy, break_when_any_done=False)


def test_seed_reproducibility():
    a = EnvPoolEnv("Hopper-v5", 4, seed=5)
    b = EnvPoolEnv("Hopper-v5", 4, seed=5, num_threads=1)
    c = EnvPoolEnv("Hopper-v5", 4, seed=6)
    ra, rb, rc = _seeded_rollout(a), _seeded_rollout(b), _seeded_rollout(c)
    assert ra["next", "done"].any()  # resets inside the rollout are reproducible too
    assert (ra == rb).all()
    assert not torch.equal(ra["observation"][:, 0], rc["observation"][:, 0])
    # set_seed rebuilds the pool: same data as a fresh env with that seed
    assert c.set_seed(5) is not None and c.seed == 5
    assert (_seeded_rollout(c) == ra).all()
    a.set_seed(5)
    assert (_seeded_rollout(a) == ra).all()
    # seeds beyond envpool's int32 range are reduced modulo 2**31
    d = EnvPoolEnv("Hopper-v5", 4, seed=2**31 + 5)
    assert d.seed == 5 and (_seeded_rollout(d) == ra).all()
    for e in (a, b, c, d):
        e.close()


def test_fast_path_matches_public_envpool_api():
    fast, slow = EnvPoolEnv("Hopper-v5", 4, seed=9), EnvPoolEnv("Hopper-v5", 4, seed=9)
    assert fast._fast
    slow._fast = False
    rf, rs = _seeded_rollout(fast), _seeded_rollout(slow)
    assert rf["next", "done"].any()
    assert (rf == rs).all()
    fast.close()
    slow.close()


# ----------------------------------------------------------------- collector
def test_collector_data_has_no_phantom_transitions():
    n, t = 8, 64
    env = EnvPoolEnv("Hopper-v5", n, seed=0)
    collector = Collector(env, RandomPolicy(env.action_spec), frames_per_batch=n * t, total_frames=2 * n * t)
    n_done = 0
    try:
        for batch in collector:
            assert batch.shape == (n, t)
            assert (batch["next", "reward"] != 0).all()
            done = batch["next", "done"].squeeze(-1)[:, :-1]
            nxt_obs, obs = batch["next", "observation"][:, :-1], batch["observation"][:, 1:]
            # continuing steps chain, done steps are followed by a fresh reset state
            assert torch.equal(nxt_obs[~done], obs[~done])
            fresh = obs[done]
            assert (fresh[:, 0] - HOPPER_INIT_Z).abs().max() <= HOPPER_NOISE
            assert fresh[:, 1:].abs().max() <= HOPPER_NOISE
            n_done += int(done.sum())
    finally:
        collector.shutdown()
    assert n_done >= n
