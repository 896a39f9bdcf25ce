"""Curiosity (ICM): novelty ranking after training, losses that decrease, the transform's keys and reward formula
against a hand computation, the coefficient decay, checkpoint round trip, config validation, the sparse env,
and the seed's hand-written loop with ``AdvancedPPO.store``."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import GymEnv, TransformedEnv

import aeon_trl  # noqa: F401  (registers aeon/SparseHalfCheetah-v5)
from aeon_trl import AdvancedPPO, CuriosityModule, CuriosityTransform
from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import make_env, resolve_backend
from aeon_trl.modules.curiosity import ICMNetworks
from aeon_trl.objectives.curiosity import CuriosityLoss
from aeon_trl.sparse_envs import SPARSE_HALF_CHEETAH
from aeon_trl.trainer import Trainer

TINY = {"env_id": "Pendulum-v1", "num_envs": 4, "steps_per_env": 16, "batch_size": 32, "epochs": 2,
        "eval_episodes": 0, "progress": False, "env_threads": 1, "curiosity": True, "curiosity_coef": 0.5}


def _linear_transitions(n, offset=0.0, seed=0):
    """s' = A s + B a: a learnable dynamics; ``offset`` moves the states somewhere never seen."""
    g = torch.Generator().manual_seed(seed)
    a_mat = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]])
    b_mat = torch.tensor([[0.5], [-0.3], [0.2]])
    s = torch.randn(n, 3, generator=g) * 0.5 + offset
    a = torch.rand(n, 1, generator=g) * 2 - 1
    return s, a, s @ a_mat.T + a @ b_mat.T


@pytest.fixture(scope="module")
def trained_icm():
    torch.set_num_threads(1)  # tiny networks: a second thread only adds contention
    torch.manual_seed(0)
    icm = CuriosityModule(3, 1, feature_dim=16, lr=3e-3)
    s, a, s2 = _linear_transitions(256)
    before = icm.get_intrinsic_reward(s, a, s2)
    losses = [icm.update(s, a, s2) for _ in range(300)]
    return icm, losses, before


def test_reward_higher_on_novel_than_on_repeated_transitions(trained_icm):
    icm, _, before = trained_icm
    repeated = icm.get_intrinsic_reward(*_linear_transitions(256))
    novel = icm.get_intrinsic_reward(*_linear_transitions(256, offset=3.0, seed=1))
    assert repeated.shape == novel.shape == (256,)
    assert novel.mean() > 2.5 * repeated.mean()
    # The repeated transitions lost their novelty (the running std only grows here, so this is conservative).
    assert repeated.mean() < 0.5 * before.mean()
    assert icm.get_intrinsic_reward(np.zeros(3), np.zeros(1), np.zeros(3)).shape == ()  # one transition


def test_forward_and_inverse_losses_decrease(trained_icm):
    _, losses, _ = trained_icm
    for key in ("loss_forward", "loss_inverse"):
        first = np.mean([step[key] for step in losses[:10]])
        last = np.mean([step[key] for step in losses[-10:]])
        assert last < 0.3 * first, (key, first, last)


def test_loss_matches_a_hand_computation():
    torch.manual_seed(1)
    icm = ICMNetworks(3, 2, feature_dim=4)
    loss = CuriosityLoss(icm, beta=0.25)
    s, a, s2 = torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 3)
    out = loss(TensorDict({"observation": s, "action": a, ("next", "observation"): s2}, [5]))
    phi, phi2 = icm.encoder(s), icm.encoder(s2)
    forward = 0.5 * ((icm.forward_model(torch.cat([phi, a], -1)) - phi2) ** 2).sum(-1).mean()
    inverse = ((icm.inverse_model(torch.cat([phi, phi2], -1)) - a) ** 2).sum(-1).mean()
    torch.testing.assert_close(out["loss_forward"], 0.25 * forward)
    torch.testing.assert_close(out["loss_inverse"], 0.75 * inverse)
    with pytest.raises(ValueError, match="beta"):
        CuriosityLoss(icm, beta=1.5)


def _hand_reward(icm, eta, s, a, s2):
    phi2 = icm.encoder(s2)
    return eta * 0.5 * ((icm.forward_model(torch.cat([icm.encoder(s), a], -1)) - phi2) ** 2).sum(-1, keepdim=True)


def test_transform_keys_and_reward_formula_on_a_collector_batch():
    torch.manual_seed(2)
    icm = ICMNetworks(3, 1, feature_dim=8)
    transform = CuriosityTransform(icm, eta=2.0, coef=0.3)
    s, a, s2 = torch.randn(2, 5, 3), torch.randn(2, 5, 1), torch.randn(2, 5, 3)
    ext = torch.randn(2, 5, 1)
    batch = TensorDict({"observation": s, "action": a, "next": {"observation": s2, "reward": ext.clone()}}, [2, 5])
    transform(batch)
    with torch.no_grad():
        raw = _hand_reward(icm, 2.0, s, a, s2).double()
    # Running moments start at (mean 0, var 1, count 1e-4) and merge with the batch's before normalizing.
    n, prior = raw.numel(), 1e-4
    mean, var = raw.mean(), raw.var(correction=0)
    m2 = 1.0 * prior + var * n + mean**2 * prior * n / (prior + n)
    expected_intrinsic = (raw / torch.sqrt(m2 / (prior + n) + 1e-8)).float()
    nxt = batch["next"]
    torch.testing.assert_close(nxt["intrinsic_reward"], expected_intrinsic)
    torch.testing.assert_close(nxt["extrinsic_reward"], ext)
    torch.testing.assert_close(nxt["reward"], ext + 0.3 * expected_intrinsic)
    assert nxt["intrinsic_reward"].std(correction=0) == pytest.approx(1.0, rel=1e-3)  # normalized by its own std


def test_transform_inside_an_env():
    env = TransformedEnv(GymEnv("Pendulum-v1"), CuriosityTransform(ICMNetworks(3, 1), coef=0.5))
    rollout = env.rollout(5)
    nxt = rollout["next"]
    assert "intrinsic_reward" in env.observation_spec.keys()
    torch.testing.assert_close(nxt["reward"], nxt["extrinsic_reward"] + 0.5 * nxt["intrinsic_reward"])
    assert (nxt["intrinsic_reward"] > 0).all()
    env.close()


def test_coefficient_decay_schedule():
    transform = CuriosityTransform(ICMNetworks(2, 1), coef=1.0, coef_end=0.2)
    assert [transform.set_progress(p) for p in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert transform.coef.item() == pytest.approx(0.2)
    constant = CuriosityTransform(ICMNetworks(2, 1), coef=0.7)
    assert constant.set_progress(0.9) == pytest.approx(0.7)
    cfg = Config.from_dict({"curiosity_coef": 0.4, "curiosity_coef_end": 0.0})
    assert CuriosityModule.from_config(2, 1, cfg.curiosity).transform.set_progress(0.25) == pytest.approx(0.3)


def test_trainer_combines_rewards_before_gae_and_checkpoint_round_trip(tmp_path):
    cfg = Config.from_dict({**TINY, "curiosity_coef_end": 0.1, "total_timesteps": 128})
    trainer = Trainer(cfg)
    try:
        trainer.train()
        batch = trainer.collect()
        episode_reward = batch["next", "episode_reward"].clone()
        metrics = trainer.update(batch)
        nxt = batch["next"]
        coef = trainer.plugin("curiosity").transform.coef.item()
        assert coef == pytest.approx(0.5 + (0.1 - 0.5) * 128 / 128)  # progress = frames / total = 1
        torch.testing.assert_close(nxt["reward"], nxt["extrinsic_reward"] + coef * nxt["intrinsic_reward"])
        torch.testing.assert_close(nxt["episode_reward"], episode_reward)  # the logged return stays extrinsic
        assert batch.get("value_target") is not None
        for key in ("reward_intrinsic", "reward_extrinsic", "loss_forward", "loss_inverse", "curiosity_coef"):
            assert np.isfinite(metrics[key])
        assert "reward_intrinsic" in trainer.history[-1]
        path = trainer.save(tmp_path / "ck.pt")
    finally:
        trainer.close()
    other = Trainer(cfg)
    try:
        before = {k: v.clone() for k, v in other.plugin("curiosity").transform.state_dict().items()}
        other.load(path)
        saved = trainer.plugin("curiosity").state_dict()
        loaded = other.plugin("curiosity").state_dict()
        for k, v in saved["transform"].items():
            torch.testing.assert_close(loaded["transform"][k], v)
        assert any(not torch.equal(before[k], v) for k, v in saved["transform"].items())  # something was loaded
        assert loaded["transform"]["count"].item() == pytest.approx(3 * 64, abs=1e-3)  # the running std came back
        opt_saved, opt_loaded = saved["optimizer"]["state"], loaded["optimizer"]["state"]
        assert opt_loaded.keys() == opt_saved.keys() and len(opt_loaded) > 0
        for i in opt_saved:
            torch.testing.assert_close(opt_loaded[i]["exp_avg"], opt_saved[i]["exp_avg"])
    finally:
        other.close()


def test_config_keys_and_validation_errors():
    flat = Config().with_overrides(["curiosity=true", "curiosity_coef=0.05", "curiosity.curiosity_eta=2"])
    assert (flat.curiosity.enabled, flat.curiosity.curiosity_coef, flat.curiosity.curiosity_eta) == (True, 0.05, 2.0)
    nested = Config.from_dict({"curiosity": {"curiosity": True, "curiosity_feature_dim": 8}})
    assert nested.curiosity.enabled and nested.curiosity.curiosity_feature_dim == 8
    assert not Config().curiosity.enabled  # off by default
    bad = [("curiosity_beta=1.5", "curiosity_beta.*in \\[0, 1\\]"), ("curiosity_lr=0", "curiosity_lr.*> 0"),
           ("curiosity_eta=-1", "curiosity_eta.*> 0"), ("curiosity_coef=-0.1", "curiosity_coef.*>= 0"),
           ("curiosity_feature_dim=0", "curiosity_feature_dim.*>= 1"), ("curiosity=maybe", "wrong type"),
           ("curiosty_coef=0.1", "Did you mean 'curiosity_coef'")]
    for override, message in bad:
        with pytest.raises(ConfigError, match=message):
            Config().with_overrides([override])


def test_sparse_half_cheetah_id_and_reward():
    env = gym.make(SPARSE_HALF_CHEETAH)
    try:
        env.reset(seed=0)
        _, reward, *_ = env.step(np.zeros(6))
        assert reward == 0.0
        env.unwrapped.data.qpos[0] += 6.0  # teleport 6 m ahead: past the 5 m goal
        _, reward, _, _, info = env.step(np.zeros(6))
        assert reward == 1.0 and info["distance"] > 5.0
        assert env.spec.max_episode_steps == 1000
    finally:
        env.close()
    cfg = Config.from_dict({"env_id": SPARSE_HALF_CHEETAH, "num_envs": 2, "batch_size": 64, "env_threads": 1})
    assert resolve_backend(cfg) == "parallel"  # envpool does not ship it: worker processes x in-process envs
    stack = make_env(cfg)
    try:
        assert stack.rollout(3)["next", "reward"].shape == (2, 3, 1)
    finally:
        stack.close()


def test_store_runs_ppo_updates_from_a_hand_written_loop():
    ppo = AdvancedPPO("Pendulum-v1", {**TINY, "num_envs": 1, "steps_per_env": 32})
    icm = CuriosityModule(3, 1)
    env = gym.make("Pendulum-v1")
    try:
        before = [p.clone() for p in ppo.trainer.net.parameters()]
        state, _ = env.reset(seed=0)
        updates = []
        for t in range(64):
            action = ppo.get_action(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            bonus = icm.get_intrinsic_reward(state, action, next_state)
            assert bonus.shape == () and torch.isfinite(bonus)
            icm.update(state, action, next_state)
            metrics = ppo.store(state, action, reward, next_state, terminated or truncated, truncated=truncated)
            if metrics is not None:
                updates.append((t, metrics))
            state = next_state
        assert [t for t, _ in updates] == [31, 63]  # one update per full batch of 32 frames
        assert ppo.trainer.iteration == 2 and ppo.trainer.frames == 64
        assert np.isfinite(updates[-1][1]["loss_objective"]) and "reward_intrinsic" in updates[-1][1]
        assert any(not torch.equal(a, b) for a, b in zip(before, ppo.trainer.net.parameters()))
        with pytest.raises(ValueError, match="does not divide"):
            ppo.store(np.zeros((3, 3)), np.zeros((3, 1)), np.zeros(3), np.zeros((3, 3)), np.zeros(3, bool))
    finally:
        env.close()
        ppo.close()


def test_presets_switch_curiosity_on_and_the_no_curiosity_arm_keeps_the_rest():
    from aeon_trl.cli.train import build_config, parse_args
    for env_id in ("MountainCarContinuous-v0", SPARSE_HALF_CHEETAH):
        on, _, _ = build_config(parse_args([f"env_id={env_id}"]))
        off, _, _ = build_config(parse_args([f"env_id={env_id}", "curiosity=false"]))
        assert on.curiosity.enabled and not off.curiosity.enabled
        on.curiosity.enabled = False
        assert on.to_dict() == off.to_dict()
