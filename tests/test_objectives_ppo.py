"""AdvancedClipPPOLoss against a hand computation of every term."""
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.modules import IndependentNormal, ProbabilisticActor

from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss

OBS, ACT, B, K = 5, 3, 64, 4


@pytest.fixture
def setup(behaviour_sample):
    torch.manual_seed(0)
    net = AdaptiveActorCritic(OBS, ACT, hidden_sizes=[16, 16], num_critics=K, log_std_init=-0.5)
    actor, critic = make_ppo_operators(net)
    obs = torch.randn(B, OBS)
    action, old_lp = behaviour_sample(net, obs)
    with torch.no_grad():
        _, _, heads = net.value(obs)
        old_heads = heads + 0.5 * torch.randn_like(heads)
    batch = TensorDict({
        "observation": obs, "action": action, "action_log_prob": old_lp,
        "advantage": torch.randn(B, 1), "value_target": torch.randn(B, 1) * 2,
        "state_value_ensemble": old_heads, "state_value": old_heads.mean(-1, keepdim=True),
    }, batch_size=[B])
    return net, actor, critic, batch


def reference(net, batch, eps, clip_value, ent_coef, critic_coef, kl_coef):
    loc, scale = net.policy(batch["observation"])
    dist = torch.distributions.Normal(loc, scale)
    lp = dist.log_prob(batch["action"]).sum(-1)
    ratio = (lp - batch["action_log_prob"]).exp()
    adv = batch["advantage"].squeeze(-1)
    objective = -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()
    entropy = dist.entropy().sum(-1).mean()
    _, _, heads = net.value(batch["observation"])
    target, old = batch["value_target"], batch["state_value_ensemble"]
    unclipped = (heads - target) ** 2
    clipped = (old + (heads - old).clamp(-clip_value, clip_value) - target) ** 2
    critic = torch.max(unclipped, clipped).mean()
    kl = ((ratio - 1) - ratio.log()).mean()
    return {"loss_objective": objective, "loss_entropy": -ent_coef * entropy, "entropy": entropy,
            "loss_critic": critic_coef * critic, "loss_kl": kl_coef * kl, "kl_approx": kl,
            "clip_fraction": ((ratio < 1 - eps) | (ratio > 1 + eps)).float().mean()}


def test_every_term_matches_hand_computation(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, clip_epsilon=0.2, clip_value=0.3, entropy_coeff=0.01,
                               critic_coeff=0.5, kl_coef=0.7, normalize_advantage=False, functional=False)
    out = loss(batch)
    ref = reference(net, batch, 0.2, 0.3, 0.01, 0.5, 0.7)
    for key, value in ref.items():
        torch.testing.assert_close(out[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert 0 < out["clip_fraction"] < 1, "the fixture should exercise clipping"
    assert 0 < out["value_clip_fraction"] < 1, "the fixture should exercise value clipping"
    assert -1 < out["explained_variance"] <= 1


def test_gradients_match_hand_computation(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, clip_epsilon=0.2, clip_value=0.3, entropy_coeff=0.01,
                               kl_coef=0.7, normalize_advantage=False, functional=False)
    out = loss(batch)
    total = sum(out[k] for k in ("loss_objective", "loss_critic", "loss_entropy", "loss_kl"))
    got = torch.autograd.grad(total, list(net.parameters()))
    ref = reference(net, batch, 0.2, 0.3, 0.01, 0.5, 0.7)
    ref_total = sum(ref[k] for k in ("loss_objective", "loss_critic", "loss_entropy", "loss_kl"))
    want = torch.autograd.grad(ref_total, list(net.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_schedulable_coefficients_change_the_loss_in_place(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, clip_epsilon=0.2, clip_value=0.3, entropy_coeff=0.0,
                               normalize_advantage=False, functional=False)
    loss.clip_epsilon.fill_(0.05)
    loss.entropy_coeff.fill_(0.02)
    loss.kl_coef.fill_(2.0)
    out = loss(batch)
    ref = reference(net, batch, 0.05, 0.3, 0.02, 0.5, 2.0)
    for key in ("loss_objective", "loss_entropy", "loss_kl", "clip_fraction"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-6, msg=key)


def test_advantage_normalization_is_scale_and_shift_invariant(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, normalize_advantage=True, functional=False)
    a = loss(batch)["loss_objective"]
    shifted = batch.clone()
    shifted["advantage"] = 5 * batch["advantage"] + 3
    torch.testing.assert_close(loss(shifted)["loss_objective"], a, rtol=1e-4, atol=1e-6)


def test_without_value_clipping_the_critic_is_plain_mse_over_heads(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, clip_value=None, critic_coeff=1.0, functional=False)
    _, _, heads = net.value(batch["observation"])
    torch.testing.assert_close(loss(batch)["loss_critic"], ((heads - batch["value_target"]) ** 2).mean())


def test_keys_can_be_remapped(setup):
    net, _, _, batch = setup
    actor, critic = make_ppo_operators(net, observation_key="obs", value_ensemble_key="heads", value_key="v")
    loss = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, normalize_advantage=False, functional=False)
    loss.set_keys(value_ensemble="heads", value="v", advantage="adv", value_target="ret")
    renamed = TensorDict({"obs": batch["observation"], "action": batch["action"],
                          "action_log_prob": batch["action_log_prob"], "adv": batch["advantage"],
                          "ret": batch["value_target"], "heads": batch["state_value_ensemble"],
                          "v": batch["state_value"]}, batch_size=[B])
    out, ref = loss(renamed), reference(net, batch, 0.2, 0.3, 0.0, 0.5, 0.0)
    torch.testing.assert_close(out["loss_critic"], ref["loss_critic"])
    torch.testing.assert_close(out["loss_objective"], ref["loss_objective"])


def test_missing_old_ensemble_values_is_a_clear_error(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, functional=False)
    with pytest.raises(KeyError, match="state_value_ensemble"):
        loss(batch.exclude("state_value_ensemble"))


def test_critic_only_is_the_unclipped_critic_loss_and_leaves_the_actor_without_gradient(setup):
    # critic_warmup trains a fresh critic under a pre-trained policy: no value clip, no policy terms.
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, critic_coeff=0.5, functional=False)
    out = loss.critic_only(batch)
    _, _, heads = net.value(batch["observation"])
    torch.testing.assert_close(out["loss_critic"], 0.5 * ((heads - batch["value_target"]) ** 2).mean())
    assert set(out.keys()) == {"loss_critic", "explained_variance"}
    out["loss_critic"].backward()
    assert all(p.grad is None for p in net.policy.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.value.parameters())


def test_every_key_remapped_with_set_keys_gives_the_same_loss(setup):
    """Remapping the log-prob, advantage, target, demo flag and priority weight keys: the loss reads
    them from tensor_keys (no literal key in its logic), declares them in in_keys/minibatch_keys, and computes
    exactly what it computes on the default keys."""
    net, actor, critic, batch = setup
    kwargs = dict(clip_epsilon=0.2, clip_value=0.3, entropy_coeff=0.01, kl_coef=0.7, demo_coef=0.5,
                  normalize_advantage=False, functional=False)
    batch = batch.clone()
    batch["is_demo"] = torch.arange(B) >= B - 8
    batch["priority_weight"] = torch.rand(B)
    plain = AdvancedClipPPOLoss(actor, critic, **kwargs)
    remapped = AdvancedClipPPOLoss(actor, critic, **kwargs)
    names = {"sample_log_prob": "old_lp", "advantage": "adv", "value_target": "ret", "is_demo": "demo",
             "priority_weight": "w"}  # (value/value_ensemble are the critic's outputs too: test_keys_can_be_remapped)
    remapped.set_keys(**names)
    renamed = batch.clone()
    for field, new in names.items():
        renamed.rename_key_(getattr(plain.tensor_keys, field), new)
    out, want = remapped(renamed), plain(batch)
    assert set(out.keys()) == set(want.keys()) >= {"loss_kl", "kl_approx", "loss_demo", "demo_nll"}
    for key in want.keys():
        torch.testing.assert_close(out[key], want[key], rtol=0, atol=0, msg=key)
    assert {"old_lp", "adv", "ret", "state_value_ensemble"} <= set(remapped.in_keys)
    assert remapped.minibatch_keys == ["observation", "action", "old_lp", "adv", "ret", "state_value",
                                       "state_value_ensemble"]


def test_declares_its_outputs_and_keeps_no_state_between_calls(setup):
    net, actor, critic, batch = setup
    loss = AdvancedClipPPOLoss(actor, critic, kl_coef=0.7, functional=False)
    out = loss(batch)
    assert set(out.keys()) <= set(loss.out_keys) and "loss_kl" in loss.out_keys
    assert loss._kl_sink is None  # the KL left in the output, nothing of it stays on the module
    assert loss.tensor_keys.value_std == "state_value_std"


def _terms_and_grads(loss, net, batch):
    out = loss(batch.clone())
    total = sum(out[k] for k in ("loss_objective", "loss_critic", "loss_entropy", "loss_kl"))
    return out, torch.autograd.grad(total, list(net.parameters()))


@pytest.mark.parametrize("options", [
    dict(clip_value=0.3, entropy_coeff=0.01, kl_coef=0.7, normalize_advantage=False),
    dict(clip_value=None, entropy_coeff=0.0, kl_coef=0.0, normalize_advantage=True),
    dict(clip_value=0.2, entropy_coeff=0.05, kl_coef=0.1, normalize_advantage=True, critic_coeff=1.0),
])
@pytest.mark.parametrize("num_critics", [1, K])
def test_plain_tensor_path_gives_torchrl_paths_numbers_and_gradients(behaviour_sample, options, num_critics):
    """The loss's plain-tensor path against ClipPPOLoss's own forward (the path any other actor takes): every
    output and every parameter gradient bit for bit, with clipping active and a schedulable coefficient changed."""
    torch.manual_seed(1)
    net = AdaptiveActorCritic(OBS, ACT, hidden_sizes=[16, 16], num_critics=num_critics, gating=True)
    actor, critic = make_ppo_operators(net)
    obs = torch.randn(B, OBS)
    action, old_lp = behaviour_sample(net, obs)
    with torch.no_grad():
        old_heads = net.value(obs)[2] + 0.5 * torch.randn(B, num_critics)
    batch = TensorDict({"observation": obs, "action": action, "action_log_prob": old_lp,
                        "advantage": torch.randn(B, 1) * 3 + 1, "value_target": torch.randn(B, 1) * 2,
                        "state_value_ensemble": old_heads, "state_value": old_heads.mean(-1, keepdim=True)},
                       batch_size=[B])
    loss = AdvancedClipPPOLoss(actor, critic, clip_epsilon=0.2, functional=False, **options)
    assert loss.networks is not None and loss.networks.policy is net.policy
    loss.clip_epsilon.fill_(0.15)
    fast, fast_grads = _terms_and_grads(loss, net, batch)  # the plain-tensor path
    loss.networks = None
    slow, slow_grads = _terms_and_grads(loss, net, batch)  # TorchRL's
    assert set(fast.keys()) == set(slow.keys())
    assert 0 < slow["clip_fraction"] < 1
    for key in slow.keys():  # the same operations in the same order: the same bits
        torch.testing.assert_close(fast[key], slow[key], rtol=0, atol=0, msg=key)
    for got, want in zip(fast_grads, slow_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_plain_tensor_path_only_for_the_operators_and_options_it_reproduces(setup, behaviour_sample):
    net, actor, critic, batch = setup
    assert AdvancedClipPPOLoss(actor, critic, functional=False).networks is not None
    assert AdvancedClipPPOLoss(actor, critic).networks is None  # functional parameters (ClipPPOLoss's default)
    assert AdvancedClipPPOLoss(actor, critic, functional=False, reduction="sum").networks is None
    tanh_actor = ProbabilisticActor(TensorDictModule(net.policy, ["observation"], ["loc", "scale"]),
                                    in_keys=["loc", "scale"], distribution_class=IndependentNormal,
                                    distribution_kwargs={"tanh_loc": True}, return_log_prob=True)
    assert AdvancedClipPPOLoss(tanh_actor, critic, functional=False).networks is None
    # prioritized minibatches carry importance weights: TorchRL's path reduces with them
    loss = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, functional=False)
    weighted = batch.clone().set("priority_weight", torch.rand(B))
    expected = (loss(batch)["loss_objective"], loss(weighted)["loss_objective"])
    assert not torch.allclose(*expected)


def test_compiled_terms_match_the_eager_ones(setup):
    """compile(): the same terms and gradients as eager to float precision (fused kernels round differently),
    and the schedulable coefficients still act on the compiled graph."""
    net, actor, critic, batch = setup
    eager = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, entropy_coeff=0.01, kl_coef=0.7, functional=False)
    compiled = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, entropy_coeff=0.01, kl_coef=0.7, functional=False)
    assert compiled.compile()
    for clip in (0.2, 0.05):
        eager.clip_epsilon.fill_(clip)
        compiled.clip_epsilon.fill_(clip)
        want, want_grads = _terms_and_grads(eager, net, batch)
        got, got_grads = _terms_and_grads(compiled, net, batch)
        assert compiled._compiled_terms is not None, "compiling failed and fell back to eager"
        for key in want.keys():
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)
        for g, w in zip(got_grads, want_grads):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_a_failed_compile_warns_once_and_trains_eagerly(setup, monkeypatch):
    net, actor, critic, batch = setup
    def broken_compile(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("InductorError: no working C++ compiler\nlong trace")
        return fail
    monkeypatch.setattr(torch, "compile", broken_compile)
    loss = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, functional=False)
    reference = AdvancedClipPPOLoss(actor, critic, clip_value=0.3, functional=False)
    assert loss.compile()
    with pytest.warns(RuntimeWarning, match="no working C\\+\\+ compiler.*eager loss"):
        out = loss(batch.clone())
    assert loss._compiled_terms is None
    torch.testing.assert_close(out["loss_objective"], reference(batch.clone())["loss_objective"], rtol=0, atol=0)
