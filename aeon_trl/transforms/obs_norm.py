"""Running observation normalization: TorchRL's ``VecNormV2`` with a variance that cannot go negative.

``VecNormV2`` keeps E[x] and E[x^2] and takes ``sqrt(E[x^2] - E[x]^2)``; in float32 the difference rounds
below zero for a near-constant feature (seen on Pendulum-v1 within the first steps), and torchrl 0.14.1 then
returns NaN observations. Keeping E[x^2] >= E[x]^2 after every update makes the difference exactly >= 0.
"""
from __future__ import annotations

import torch
from torchrl.envs import VecNormV2


class SafeVecNorm(VecNormV2):
    """``VecNormV2`` whose stored second moment never drops below the squared mean."""

    def _stateful_update(self, data):
        super()._stateful_update(data)
        if self.frozen:
            return
        for key in self._var.keys(True, True):
            var = self._var.get(key)
            var.copy_(torch.maximum(var, self._loc.get(key).pow(2)))
