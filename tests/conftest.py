"""Fixtures shared by the loss tests."""
import pytest
import torch


@pytest.fixture
def behaviour_sample():
    """``sample(net, obs) -> (action, old_log_prob)`` from the current policy with its mean shifted: the
    behaviour policy of an off-policy-looking batch, so ratios differ from 1 and clipping is active."""
    def sample(net, obs):
        with torch.no_grad():
            loc, scale = net.policy(obs)
            old_loc = loc + 0.3 * torch.randn_like(loc)
            action = old_loc + scale * torch.randn_like(loc)
            return action, torch.distributions.Normal(old_loc, scale).log_prob(action).sum(-1)
    return sample
