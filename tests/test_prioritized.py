"""Prioritized minibatches: sampling frequencies, IS weights, the weighted loss, priority updates, the
config keys and the trainer path; ExperienceDataset."""
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from aeon_trl import ExperienceDataset
from aeon_trl.config import Config, ConfigError
from aeon_trl.data.prioritized import PRIORITY, PRIORITY_EPS, PPOPriority
from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.trainer import Trainer

OBS, ACT, B = 5, 3, 64


def _buffer(priorities, alpha, beta, batch_size=64):
    prio = PPOPriority("advantage", alpha=alpha, beta=beta, beta_end=1.0, gamma=0.99)
    buffer = prio.make_buffer(len(priorities), batch_size)
    buffer.extend(TensorDict({"x": torch.arange(len(priorities)), PRIORITY: torch.as_tensor(priorities)},
                             batch_size=[len(priorities)]))
    return buffer


def test_sampling_frequencies_follow_priorities():
    np.random.seed(0)  # torchrl's sampler draws with numpy's global generator
    p = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0, 0.0])
    alpha = 0.7
    buffer = _buffer(p, alpha=alpha, beta=0.5, batch_size=1000)
    counts = torch.zeros(len(p))
    draws = 200
    for _ in range(draws):
        counts += torch.bincount(buffer.sample()["x"], minlength=len(p)).float()
    expected_p = (p + PRIORITY_EPS) ** alpha
    expected = expected_p / expected_p.sum() * counts.sum()
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    # 5 degrees of freedom: P(chi2 > 22) ~ 5e-4; a sampler ignoring priorities (uniform) gives chi2 ~ 1e5.
    assert chi2 < 22, (counts, expected)
    assert counts[-1] < 10  # priority 0: only eps^alpha ~ 1e-5 of the mass (~2 of 2e5 draws)


def test_importance_weights_match_formula():
    np.random.seed(1)
    p = torch.tensor([0.2, 1.0, 3.0, 0.7])
    alpha, beta = 0.6, 0.4
    sample = _buffer(p, alpha=alpha, beta=beta, batch_size=256).sample()
    P = (p + PRIORITY_EPS) ** alpha
    P = P / P.sum()
    w = (len(p) * P) ** (-beta)
    w = w / w.max()
    torch.testing.assert_close(sample["priority_weight"].float(), w[sample["x"]], rtol=1e-5, atol=1e-6)


def test_beta_anneals_linearly_to_end():
    prio = PPOPriority("advantage", alpha=0.6, beta=0.4, beta_end=1.0, gamma=0.99)
    assert [prio.beta_at(x) for x in (0.0, 0.5, 1.0, 2.0)] == pytest.approx([0.4, 0.7, 1.0, 1.0])


@pytest.fixture
def loss_and_batch(behaviour_sample):
    torch.manual_seed(0)
    net = AdaptiveActorCritic(OBS, ACT, hidden_sizes=[16, 16], log_std_init=-0.5)
    actor, critic = make_ppo_operators(net)
    obs = torch.randn(B, OBS)
    action, old_lp = behaviour_sample(net, obs)
    with torch.no_grad():
        value, _, heads = net.value(obs)
    batch = TensorDict({
        "observation": obs, "action": action, "action_log_prob": old_lp, "advantage": torch.randn(B, 1),
        "value_target": value + torch.randn(B, 1), "state_value_ensemble": heads, "state_value": value,
        "priority_weight": torch.rand(B) + 0.1,
        "next": {"observation": torch.randn(B, OBS), "reward": torch.randn(B, 1),
                 "terminated": torch.rand(B, 1) < 0.2},
    }, batch_size=[B])
    loss = AdvancedClipPPOLoss(actor, critic, clip_epsilon=0.2, clip_value=0.0, entropy_coeff=0.01,
                               critic_coeff=0.5, kl_coef=0.3, normalize_advantage=False, functional=False)
    return net, loss, batch


def test_weighted_loss_equals_hand_computation(loss_and_batch):
    net, loss, batch = loss_and_batch
    out = loss(batch)
    w = batch["priority_weight"]
    wmean = lambda x: (w * x).sum() / w.sum()  # noqa: E731  torchrl's weighted mean
    loc, scale = net.policy(batch["observation"])
    dist = torch.distributions.Normal(loc, scale)
    ratio = (dist.log_prob(batch["action"]).sum(-1) - batch["action_log_prob"]).exp()
    adv = batch["advantage"].squeeze(-1)
    value, _, _ = net.value(batch["observation"])
    expected = {
        "loss_objective": wmean(-torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)),
        "loss_critic": wmean(0.5 * ((value - batch["value_target"]) ** 2).squeeze(-1)),
        "loss_entropy": wmean(-0.01 * dist.entropy().sum(-1)),
        "loss_kl": wmean(0.3 * ((ratio - 1) - ratio.log())),
    }
    for key, value in expected.items():
        torch.testing.assert_close(out[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # and the weights matter: without them the objective is the plain mean
    plain = loss(batch.exclude("priority_weight"))
    assert not torch.allclose(plain["loss_objective"], out["loss_objective"])


@pytest.mark.parametrize("kind", ["advantage", "td_error"])
def test_priorities_updated_after_minibatch(loss_and_batch, kind):
    net, loss, batch = loss_and_batch
    prio = PPOPriority(kind, alpha=1.0, beta=0.4, beta_end=1.0, gamma=0.9)
    buffer = prio.make_buffer(B, 16)
    prio.fill(buffer, batch.exclude("priority_weight"), loss, progress=0.5)
    assert buffer.sampler.beta == pytest.approx(0.7)
    tree = lambda: buffer.sampler._sum_tree[torch.arange(B)] ** (1 / 1.0) - PRIORITY_EPS  # noqa: E731
    with torch.no_grad():
        if kind == "advantage":  # ratio != 1 here: rows past the clip in their advantage's direction are spent
            loc, scale = net.policy(batch["observation"])
            r = (torch.distributions.Normal(loc, scale).log_prob(batch["action"]).sum(-1)
                 - batch["action_log_prob"]).exp()
            adv = batch["advantage"].squeeze(-1)
            expected = adv.abs() * ~(((adv > 0) & (r > 1.2)) | ((adv < 0) & (r < 0.8)))
        else:
            v = net.value(batch["observation"])[0].squeeze(-1)
            v_next = net.value(batch["next", "observation"])[0].squeeze(-1)
            expected = (batch["next", "reward"].squeeze(-1) + 0.9 * (~batch["next", "terminated"]).float().squeeze(-1)
                        * v_next - v).abs()
    torch.testing.assert_close(tree().float(), expected, rtol=1e-4, atol=1e-5)
    # one optimizer step, then the sampled rows (and only they) get their new priorities
    minibatch = buffer.sample()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    opt.zero_grad()
    out = loss(minibatch)
    (out["loss_objective"] + out["loss_critic"]).backward()
    opt.step()
    before = tree().clone()
    prio.update(buffer, minibatch, loss)
    after = tree()
    idx = minibatch["index"].unique()
    untouched = torch.ones(B, dtype=torch.bool)
    untouched[idx] = False
    torch.testing.assert_close(after[untouched], before[untouched])
    assert not torch.allclose(after[idx], before[idx])
    torch.testing.assert_close(after[idx].float(), prio(buffer[idx], loss), rtol=1e-4, atol=1e-5)


def test_config_keys_validated():
    cfg = Config().with_overrides(["prioritized=true", "priority_key=td_error", "priority_alpha=0.5",
                                   "priority_beta=0.3", "priority_beta_end=0.9"])
    assert cfg.replay.prioritized and cfg.replay.priority_key == "td_error"
    with pytest.raises(ConfigError, match="priority_key"):
        Config().with_overrides(["priority_key=return"])
    with pytest.raises(ConfigError, match="priority_beta_end"):
        Config().with_overrides(["priority_beta=0.6", "priority_beta_end=0.5"])
    with pytest.raises(ConfigError, match="priority_alpha"):
        Config().with_overrides(["priority_alpha=-1"])


def test_trainer_uses_prioritized_minibatches():
    cfg = Config.from_dict({"env_id": "Pendulum-v1", "env_backend": "gymnasium", "num_envs": 2, "steps_per_env": 32,
                            "batch_size": 16, "epochs": 2, "total_timesteps": 128, "eval_episodes": 0,
                            "progress": False, "prioritized": True, "priority_key": "td_error"})
    trainer = Trainer(cfg)
    try:
        trainer.train()
        assert type(trainer.buffer.sampler).__name__ == "PPOPrioritizedSampler"
        assert trainer.buffer.sampler.beta == pytest.approx(0.4 + 0.6 * 64 / 128)  # progress at the last update
        assert all(np.isfinite(h["loss_objective"]) for h in trainer.history)
    finally:
        trainer.close()


def test_experience_dataset():
    n = 10
    ds = ExperienceDataset(torch.randn(n, OBS), torch.randn(n, ACT), torch.randn(n), torch.randn(n),
                           torch.randn(n), torch.randn(n))
    assert len(ds) == n and ds[3]["observation"].shape == (OBS,)
    assert set(ds.data.keys()) >= {"observation", "action", "advantage", "value_target", "state_value",
                                   "state_value_ensemble", "action_log_prob"}
    batches = list(ds.minibatches(4, generator=torch.Generator().manual_seed(0)))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert sorted(torch.cat([b["advantage"] for b in batches]).squeeze(-1).tolist()) == \
        sorted(ds.data["advantage"].squeeze(-1).tolist())
    # its rows go straight into the loss
    net = AdaptiveActorCritic(OBS, ACT, hidden_sizes=[8])
    actor, critic = make_ppo_operators(net)
    out = AdvancedClipPPOLoss(actor, critic, functional=False)(batches[0])
    assert torch.isfinite(out["loss_objective"])
    with pytest.raises(ValueError, match="'returns' has 9 rows"):
        ExperienceDataset(torch.randn(n, OBS), torch.randn(n, ACT), torch.randn(n), torch.randn(9), torch.randn(n),
                          torch.randn(n))


def test_experience_dataset_follows_a_loss_with_remapped_keys():
    n = 6
    net = AdaptiveActorCritic(OBS, ACT, hidden_sizes=[8])
    actor, critic = make_ppo_operators(net)
    loss = AdvancedClipPPOLoss(actor, critic, functional=False)
    loss.set_keys(sample_log_prob="old_lp", advantage="adv", value_target="ret")
    args = (torch.randn(n, OBS), torch.randn(n, ACT), torch.randn(n), torch.randn(n), torch.randn(n), torch.randn(n))
    ds = ExperienceDataset(*args, loss=loss)
    assert {"old_lp", "adv", "ret"} <= set(ds.data.keys()) and "action_log_prob" not in ds.data.keys()
    torch.testing.assert_close(ds.data["old_lp"], ExperienceDataset(*args).data["action_log_prob"])
    assert torch.isfinite(loss(ds.data)["loss_objective"])
