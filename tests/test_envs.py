"""The env stack: id checks, batch shape, observation normalization against raw observations,
ReturnScaling against a naive loop, and action clipping that the env sees but the loss does not."""

import math
import os

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, VecNormV2

from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import check_env_id, make_env
from aeon_trl.trainer import Trainer
from aeon_trl.transforms.reward import ReturnScaling


# ---- env ids ------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["HalfCheetah-v6", "HalfCheetah-v55", "HalfCheeta-v5"])
def test_unknown_env_id_suggests_the_close_one(env_id):
    with pytest.raises(ConfigError, match=rf"unknown env id '{env_id}'\. Did you mean 'HalfCheetah-v5'\?"):
        check_env_id(env_id)


def test_unknown_env_id_without_a_close_match():
    with pytest.raises(ConfigError, match="unknown env id 'Zzzqqq-v0'. Any gymnasium id"):
        check_env_id("Zzzqqq-v0")


def test_discrete_env_is_refused():
    with pytest.raises(ConfigError, match="Discrete action space.*continuous actions only"):
        check_env_id("CartPole-v1")


def test_check_env_id_returns_the_action_space():
    space = check_env_id("HalfCheetah-v5")
    assert space.shape == (6,) and float(space.low.min()) == -1.0 and float(space.high.max()) == 1.0


# ---- batch shape --------------------------------------------------------------------------------
def test_make_env_is_batched_over_num_envs():
    cfg = Config.from_dict({"env_id": "InvertedPendulum-v5", "env_backend": "envpool", "num_envs": 3,
                            "steps_per_env": 8, "batch_size": 8})
    env = make_env(cfg)
    try:
        assert env.batch_size == torch.Size([3])
        assert env.action_spec.shape == torch.Size([3, 1])
        td = env.rollout(5, break_when_any_done=False)
        assert td.batch_size == torch.Size([3, 5])
        assert td["observation"].shape == (3, 5, 4) and td["observation"].dtype == torch.float32  # DoubleToFloat
        assert td["next", "reward"].shape == (3, 5, 1)
        assert td["next", "episode_reward"].shape == (3, 5, 1)  # RewardSum, the raw return for logging
    finally:
        env.close()


# ---- observation normalization ------------------------------------------------------------------
T_OBS, N_OBS = 60, 4  # HalfCheetah never terminates, so no partial resets in 60 steps: exact bookkeeping


class _OpenLoop:
    """A fixed action sequence, so two envs with the same seed follow the same trajectory."""

    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def __call__(self, td):
        td.set("action", self.actions[self.t].clone())
        self.t += 1
        return td


@pytest.fixture(scope="module")
def obs_norm_runs():
    base = {"env_id": "HalfCheetah-v5", "env_backend": "envpool", "num_envs": N_OBS, "steps_per_env": 8,
            "batch_size": 8}
    actions = torch.rand(T_OBS, N_OBS, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    env = make_env(Config.from_dict(base))
    raw_env = make_env(Config.from_dict({**base, "norm_obs": False, "norm_reward": False}))
    try:
        normed = env.rollout(T_OBS, _OpenLoop(actions), break_when_any_done=False)
        raw = raw_env.rollout(T_OBS, _OpenLoop(actions), break_when_any_done=False)
        vecnorm = next(t for t in env.transform if isinstance(t, VecNormV2))
        loc, scale = vecnorm.loc["observation"].clone(), vecnorm.scale["observation"].clone()
    finally:
        env.close()
        raw_env.close()
    assert not raw["next", "done"].any()
    # Every raw observation the normalizer saw: the reset one and each step's next one.
    seen = torch.cat([raw["observation"][:, :1], raw["next", "observation"]], 1).flatten(0, 1).double()
    return {"normed": normed, "raw": raw, "loc": loc, "scale": scale, "seen": seen}


def test_obs_norm_mean_tracks_the_raw_observations(obs_norm_runs):
    r = obs_norm_runs
    assert r["seen"].shape == (N_OBS * (T_OBS + 1), 17)
    torch.testing.assert_close(r["loc"].double(), r["seen"].mean(0), atol=2e-3, rtol=1e-2)


def test_obs_norm_output_is_the_clipped_standardized_observation(obs_norm_runs):
    # The last step was normalized with the final statistics (VecNormV2 updates, then normalizes).
    r = obs_norm_runs
    raw_last = r["raw"]["next", "observation"][:, -1]
    expected = ((raw_last - r["loc"]) / r["scale"]).clamp(-10, 10)
    torch.testing.assert_close(r["normed"]["next", "observation"][:, -1], expected, atol=1e-4, rtol=1e-4)


def test_obs_norm_scale_is_the_std_of_the_raw_observations(obs_norm_runs):
    r = obs_norm_runs
    torch.testing.assert_close(r["scale"].double(), r["seen"].std(0, correction=0), rtol=0.02, atol=1e-4)


# ---- ReturnScaling ------------------------------------------------------------------------------
def _naive_return_scaling(rewards, dones, gamma, eps, clip):
    """Per-env discounted returns, statistics of all returns so far (plus the prior: mean 0, var 1,
    count 1e-4) computed from scratch every step, reward / sqrt(var + eps), return reset on done."""
    n_steps, n_envs = len(rewards), len(rewards[0])
    returns = [0.0] * n_envs
    seen, out = [], []
    for t in range(n_steps):
        returns = [gamma * g + r for g, r in zip(returns, rewards[t])]
        seen.extend(returns)
        count = 1e-4 + len(seen)
        mean = sum(seen) / count  # the prior's mean is 0
        m2 = 1e-4 * (1.0 + mean ** 2) + sum((x - mean) ** 2 for x in seen)
        var = m2 / count
        out.append([max(-clip, min(clip, r / math.sqrt(var + eps))) for r in rewards[t]])
        returns = [0.0 if d else g for g, d in zip(returns, dones[t])]
    return out, var


def _feed(transform, rewards, dones):
    out = []
    for r, d in zip(rewards, dones):
        next_td = TensorDict({"reward": torch.tensor(r, dtype=torch.float32).unsqueeze(-1),
                              "done": torch.tensor(d).unsqueeze(-1)}, batch_size=[len(r)])
        out.append(transform._step(TensorDict({}, batch_size=[len(r)]), next_td)["reward"].squeeze(-1).tolist())
    return out


def _sequence(n_steps=40, n_envs=3, seed=0):
    rng = np.random.default_rng(seed)
    rewards = (rng.normal(1.0, 2.0, size=(n_steps, n_envs))).tolist()
    rewards[0] = [100.0] * n_envs  # a first step far above the prior's std: exercises the clip
    dones = (rng.random((n_steps, n_envs)) < 0.15).tolist()
    dones[5] = [True, False, True]
    return rewards, dones


def test_return_scaling_matches_a_naive_loop():
    rewards, dones = _sequence()
    t = ReturnScaling(gamma=0.9, eps=1e-8, clip=10.0)
    got = _feed(t, rewards, dones)
    expected, var = _naive_return_scaling(rewards, dones, 0.9, 1e-8, 10.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got[0] == [10.0, 10.0, 10.0]  # clipped
    assert math.isclose(t.var.item(), var, rel_tol=1e-6)  # returns are accumulated in float32
    assert math.isclose(t.count.item(), 1e-4 + 40 * 3, rel_tol=1e-12)


def test_return_scaling_freeze_keeps_the_statistics():
    rewards, dones = _sequence(seed=1)
    t = ReturnScaling(gamma=0.99)
    _feed(t, rewards[:20], dones[:20])
    t.freeze()
    mean, var, count = t.mean.clone(), t.var.clone(), t.count.clone()
    got = _feed(t, rewards[20:], dones[20:])
    assert torch.equal(t.mean, mean) and torch.equal(t.var, var) and torch.equal(t.count, count)
    expected = np.clip(np.array(rewards[20:]) / math.sqrt(var.item() + 1e-8), -10, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_return_scaling_state_dict_round_trip():
    rewards, dones = _sequence(seed=2)
    a = ReturnScaling(gamma=0.99)
    _feed(a, rewards[:25], dones[:25])
    b = ReturnScaling(gamma=0.99)
    b.load_state_dict(a.state_dict())  # the per-env return buffer is sized lazily: must still load
    np.testing.assert_allclose(_feed(b, rewards[25:], dones[25:]), _feed(a, rewards[25:], dones[25:]), rtol=1e-6)


# ---- action clipping ----------------------------------------------------------------------------
class _RecordingEnv(EnvBase):
    """A tiny batched env that records the action it receives; reward is finite and meaningless."""

    LOW, HIGH = -0.5, 0.5

    def __init__(self, n=2):
        super().__init__(batch_size=torch.Size([n]))
        self.observation_spec = Composite(observation=Unbounded((n, 3)), shape=(n,))
        self.action_spec = Bounded(self.LOW, self.HIGH, (n, 1))
        self.reward_spec = Unbounded((n, 1))
        flag = Categorical(2, (n, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(n,))
        self.received = []

    def _reset(self, td=None, **kwargs):
        n = self.batch_size[0]
        false = torch.zeros(n, 1, dtype=torch.bool)
        return TensorDict({"observation": torch.randn(n, 3), "done": false, "terminated": false.clone(),
                           "truncated": false.clone()}, batch_size=self.batch_size)

    def _step(self, td):
        action = td["action"].clone()
        self.received.append(action)
        out = self._reset()
        out["reward"] = -action.pow(2)
        return out

    def _set_seed(self, seed):
        pass


def test_env_gets_clipped_actions_while_the_batch_keeps_the_policy_action():
    cfg = Config.from_dict({"num_envs": 2, "steps_per_env": 16, "batch_size": 32, "epochs": 1,
                            "total_timesteps": 32, "progress": False})
    base = _RecordingEnv(2)
    trainer = Trainer(cfg, env=make_env(cfg, base_env=base))  # the real collector and policy
    try:
        batch = trainer.collect()
    finally:
        trainer.close()
    policy_action = batch["action"]  # [2, 16, 1]
    received = torch.stack(base.received[-16:], 1)  # the collector's 16 steps, [2, 16, 1]
    assert (policy_action.abs() > _RecordingEnv.HIGH).any(), "the test needs some out-of-bounds actions"
    torch.testing.assert_close(received, policy_action.clamp(_RecordingEnv.LOW, _RecordingEnv.HIGH))
    # The loss's log-prob belongs to the unclipped sample, which is what the batch holds.
    assert not torch.equal(received, policy_action)


def test_envpool_threads_default_to_the_cpus_slurm_allocates(monkeypatch):
    from aeon_trl.envs import available_cpus
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert available_cpus() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert available_cpus() == len(os.sched_getaffinity(0))
