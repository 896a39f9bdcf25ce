"""ICM networks (Pathak et al. 2017, "Curiosity-driven Exploration by Self-supervised Prediction").

Plain ``nn.Module``s that know nothing of TensorDict keys: the loss and the transform wrap them.
- ``encoder`` phi(s): the feature space the forward model predicts in; trained by the inverse model only,
  so it keeps what the agent's actions control and drops what they cannot change (the paper's point);
- ``forward_model`` (phi(s), a) -> phi_hat(s'): its error is the intrinsic reward;
- ``inverse_model`` (phi(s), phi(s')) -> a_hat: continuous actions, so a regression head.
"""
from __future__ import annotations

import torch
from torch import nn


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, out_dim))


class ICMNetworks(nn.Module):
    """Encoder, forward and inverse models of the Intrinsic Curiosity Module."""

    def __init__(self, obs_dim: int, act_dim: int, feature_dim: int = 32, hidden: int = 128):
        super().__init__()
        self.obs_dim, self.act_dim, self.feature_dim = obs_dim, act_dim, feature_dim
        self.encoder = _mlp(obs_dim, hidden, feature_dim)
        self.forward_model = _mlp(feature_dim + act_dim, hidden, feature_dim)
        self.inverse_model = _mlp(2 * feature_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor):
        """Returns phi(s'), phi_hat(s') and a_hat."""
        phi, next_phi = self.encoder(obs), self.encoder(next_obs)
        # The forward model does not train the encoder (phi is detached): a shared gradient would let it
        # shrink the features to make prediction trivial; the inverse model alone shapes them.
        pred_next_phi = self.forward_model(torch.cat([phi.detach(), action], -1))
        return next_phi, pred_next_phi, self.inverse_model(torch.cat([phi, next_phi], -1))

    @staticmethod
    def forward_error(pred_next_phi: torch.Tensor, next_phi: torch.Tensor) -> torch.Tensor:
        """``0.5 * ||phi_hat(s') - phi(s')||^2`` per transition, shape ``[..., 1]`` (the target is not trained)."""
        return 0.5 * (pred_next_phi - next_phi.detach()).pow(2).sum(-1, keepdim=True)

    def prediction_error(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """The forward model's error on transitions, without the inverse model."""
        next_phi = self.encoder(next_obs)
        return self.forward_error(self.forward_model(torch.cat([self.encoder(obs), action], -1)), next_phi)
