"""ICM networks (Pathak et al. 2017, "Curiosity-driven Exploration by Self-supervised Prediction").

``ICMNetworks`` are plain ``nn.Module``s that know nothing of TensorDict keys: the loss and the transform wrap
them. ``CuriosityModule`` bundles them with the transform (intrinsic reward) and the loss (forward + inverse).
- ``encoder`` phi(s): the feature space the forward model predicts in; trained by the inverse model only,
  so it keeps what the agent's actions control and drops what they cannot change (the paper's point);
- ``forward_model`` (phi(s), a) -> phi_hat(s'): its error is the intrinsic reward;
- ``inverse_model`` (phi(s), phi(s')) -> a_hat: continuous actions, so a regression head.
"""
from __future__ import annotations


import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from aeon_trl.objectives.curiosity import CuriosityLoss
from aeon_trl.transforms.curiosity import CuriosityTransform


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


class CuriosityModule(nn.Module):
    """The ICM with its reward transform and loss: ``forward(batch)`` writes the intrinsic reward into a batch.

        icm = CuriosityModule(obs_dim, act_dim)
        r_int = icm.get_intrinsic_reward(state, action, next_state)   # tensor [B] (or scalar)
        icm.update(state, action, next_state)                          # one gradient step

    The module holds no optimizer of its own in training: the trainer's ``CuriosityPlugin`` owns the one it
    steps with ``training_step``. ``update`` is the stand-alone API's step, with an Adam (``lr``) made on first use.
    """

    def __init__(self, obs_dim: int, act_dim: int, feature_dim: int = 32, eta: float = 1.0, beta: float = 0.2,
                 lr: float = 1e-3, coef: float = 0.1, coef_end: float | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.transform = CuriosityTransform(ICMNetworks(obs_dim, act_dim, feature_dim), eta=eta, coef=coef,
                                            coef_end=coef_end).to(device)
        self.loss = CuriosityLoss(self.transform.icm, beta=beta)
        self.lr = lr
        self._optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def from_config(cls, obs_dim: int, act_dim: int, c, device: torch.device | str = "cpu") -> "CuriosityModule":
        """From a ``CuriosityConfig`` (``curiosity_coef_end < 0``: no decay)."""
        return cls(obs_dim, act_dim, feature_dim=c.curiosity_feature_dim, eta=c.curiosity_eta, beta=c.curiosity_beta,
                   lr=c.curiosity_lr, coef=c.curiosity_coef,
                   coef_end=c.curiosity_coef_end if c.curiosity_coef_end >= 0 else None, device=device)

    @property
    def icm(self) -> ICMNetworks:
        return self.transform.icm

    @property
    def device(self) -> torch.device:
        return next(self.icm.parameters()).device

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The stand-alone ``update``'s optimizer (Adam over the ICM, made on first use)."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.loss.parameters(), lr=self.lr)
        return self._optimizer

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The batch of transitions with ``("next", reward)`` combined and both parts under their own keys."""
        return self.transform(tensordict)

    def _transitions(self, state, action, next_state) -> TensorDict:
        as_t = lambda x: torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                                         dtype=torch.float32, device=self.device)
        obs, act, nxt = as_t(state), as_t(action), as_t(next_state)
        obs_dim, act_dim = self.icm.obs_dim, self.icm.act_dim
        obs, nxt, act = obs.reshape(-1, obs_dim), nxt.reshape(-1, obs_dim), act.reshape(-1, act_dim)
        return TensorDict({"observation": obs, "action": act, ("next", "observation"): nxt}, batch_size=obs.shape[:1])

    def get_intrinsic_reward(self, state, action, next_state) -> torch.Tensor:
        """Normalized intrinsic reward of one transition (0-d tensor) or a batch (``[B]``)."""
        td = self._transitions(state, action, next_state)
        reward = self.transform.intrinsic_reward(td["observation"], td["action"], td["next", "observation"])
        return reward.reshape(()) if np.ndim(state) == 1 else reward.squeeze(-1)

    def update(self, state, action, next_state) -> dict[str, float]:
        """One gradient step of the forward + inverse losses on the given transitions."""
        return self.training_step(self._transitions(state, action, next_state), self.optimizer)

    def training_step(self, td: TensorDictBase, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One ``optimizer`` step of the forward + inverse losses on transitions ``td``; returns both terms."""
        out = self.loss(td)
        optimizer.zero_grad(set_to_none=True)
        (out["loss_forward"] + out["loss_inverse"]).backward()
        optimizer.step()
        return {k: out[k].item() for k in ("loss_forward", "loss_inverse")}
