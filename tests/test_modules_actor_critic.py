"""The adaptive actor-critic: structure, init gains, bounds, ensemble statistics, operators."""
import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from aeon_trl.modules.actor_critic import (AdaptiveActorCritic, CriticEnsemble, GaussianHead, SigmoidGate, Trunk,
                                           make_ppo_operators)


def test_trunk_blocks_follow_the_options():
    kinds = lambda m: [type(x) for x in m]  # noqa: E731
    assert kinds(Trunk(4, [8, 8], "tanh", True, True)) == [nn.Linear, nn.LayerNorm, nn.Tanh] * 2 + [SigmoidGate]
    assert kinds(Trunk(4, [8], "relu", False, False)) == [nn.Linear, nn.ReLU]


def test_orthogonal_init_gains():
    torch.manual_seed(0)
    net = AdaptiveActorCritic(6, 3, hidden_sizes=[32, 32], num_critics=5)
    hidden = net.policy[0][0].weight  # [32, 6]: columns orthonormal, scaled by sqrt(2)
    torch.testing.assert_close(hidden.T @ hidden, 2 * torch.eye(6), atol=1e-5, rtol=0)
    mean = net.policy[1].mean.weight  # [3, 32]: rows orthonormal, scaled by 0.01
    torch.testing.assert_close(mean @ mean.T, 1e-4 * torch.eye(3), atol=1e-8, rtol=0)
    heads = net.value[1].heads.weight  # each critic head a unit-norm row (gain 1)
    torch.testing.assert_close(heads.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    assert torch.all(net.policy[1].mean.bias == 0)


def test_log_std_starts_at_init_and_stays_bounded():
    head = GaussianHead(8, 2, log_std_init=-0.5, log_std_min=-3.0, log_std_max=1.0)
    torch.testing.assert_close(head.log_std(), torch.full((2,), -0.5))
    with torch.no_grad():
        head.log_std_param.fill_(1e6)
    assert torch.all(head.log_std() <= 1.0)
    with torch.no_grad():
        head.log_std_param.fill_(-1e6)
    assert torch.all(head.log_std() >= -3.0)
    _, scale = head(torch.randn(7, 8))
    assert scale.shape == (7, 2)


def test_gate_multiplies_features_by_a_sigmoid():
    gate = SigmoidGate(4)
    h = torch.randn(3, 4)
    torch.testing.assert_close(gate(h), h * torch.sigmoid(gate.proj(h)))


def test_ensemble_mean_and_std_are_over_heads():
    ens = CriticEnsemble(6, num_critics=4)
    h = torch.randn(10, 6)
    value, std, heads = ens(h)
    manual = h @ ens.heads.weight.T + ens.heads.bias
    torch.testing.assert_close(heads, manual)
    torch.testing.assert_close(value, manual.mean(-1, keepdim=True))
    torch.testing.assert_close(std, manual.std(-1, keepdim=True, correction=0))
    assert torch.all(CriticEnsemble(6, 1)(h)[1] == 0), "one head has no uncertainty"


@pytest.mark.parametrize("shared", [True, False])
def test_shared_trunk_shares_parameters(shared):
    net = AdaptiveActorCritic(5, 2, shared_trunk=shared)
    assert (net.policy[0] is net.value[0]) == shared
    n_params = sum(p.numel() for p in net.parameters())
    trunk = sum(p.numel() for p in net.policy[0].parameters())
    heads = sum(p.numel() for p in net.policy[1].parameters()) + sum(p.numel() for p in net.value[1].parameters())
    assert n_params == trunk * (1 if shared else 2) + heads


def test_operators_write_declared_keys_and_a_consistent_log_prob():
    net = AdaptiveActorCritic(5, 2, num_critics=3)
    actor, critic = make_ppo_operators(net, observation_key="obs", value_key="v", value_std_key="v_std",
                                       value_ensemble_key="v_heads")
    td = TensorDict({"obs": torch.randn(4, 5)}, batch_size=[4])
    actor(td)
    critic(td)
    assert set(td.keys()) >= {"action", "action_log_prob", "loc", "scale", "v", "v_std", "v_heads"}
    expected = torch.distributions.Normal(td["loc"], td["scale"]).log_prob(td["action"]).sum(-1)
    torch.testing.assert_close(td["action_log_prob"], expected)
    assert td["v_heads"].shape == (4, 3)
    assert math.isclose(td["scale"][0, 0].item(), 1.0, rel_tol=1e-6)  # log_std_init = 0
