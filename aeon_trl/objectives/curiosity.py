"""``CuriosityLoss``: the ICM's self-supervised losses (Pathak et al. 2017, eq. 7), a TorchRL ``LossModule``.

``loss_inverse = (1 - beta) * mean ||a_hat - a||^2`` (continuous actions: a regression, not the paper's
cross-entropy over discrete actions) and ``loss_forward = beta * mean 0.5 ||phi_hat(s') - phi(s')||^2``.
It trains on the same on-policy batch the PPO loss sees, with its own optimizer: the ICM's gradients never
touch the policy (the policy only sees the intrinsic reward).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

if TYPE_CHECKING:  # modules.curiosity's CuriosityModule builds this loss
    from aeon_trl.modules.curiosity import ICMNetworks


class CuriosityLoss(LossModule):
    """Forward + inverse model losses of the Intrinsic Curiosity Module, weighted by ``beta``."""

    @dataclass
    class _AcceptedKeys:
        """The transition's keys; remap them with ``set_keys(observation=..., ...)``."""

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        next_observation: NestedKey = ("next", "observation")

    default_keys = _AcceptedKeys

    def __init__(self, icm: ICMNetworks, beta: float = 0.2):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"CuriosityLoss beta={beta} must be in [0, 1] (the forward loss's weight; the paper uses 0.2)")
        super().__init__()
        self.icm = icm
        self.register_buffer("beta", torch.tensor(float(beta)))

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass  # no value estimator

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        obs, action = tensordict.get(keys.observation), tensordict.get(keys.action)
        next_phi, pred_next_phi, pred_action = self.icm(obs, action, tensordict.get(keys.next_observation))
        forward_error = self.icm.forward_error(pred_next_phi, next_phi)
        inverse_error = (pred_action - action).pow(2).sum(-1, keepdim=True)
        return TensorDict({"loss_forward": self.beta * forward_error.mean(),
                           "loss_inverse": (1 - self.beta) * inverse_error.mean()}, batch_size=[])
