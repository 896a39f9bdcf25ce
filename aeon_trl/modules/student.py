"""Policies that act on RAW observations: frozen observation normalization in front of a Gaussian policy.

Training normalizes observations in the env stack (``SafeVecNorm``); a deployed policy has no env stack, so
the statistics travel inside the network as buffers. ``RawObsPolicy`` wraps a teacher's trained policy or a
fresh student; ``DeterministicAction`` is the deployable graph (raw observation -> clipped mean action) that
``torch.export`` / ONNX save. Plain ``nn.Module``s: exporters trace tensors, not TensorDicts.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from aeon_trl.modules.actor_critic import GaussianHead, Trunk
from aeon_trl.normalize import standardize


class FrozenObsNorm(nn.Module):
    """``clamp((obs - loc) / scale, -clip, clip)`` with fixed statistics: the env stack's
    ``SafeVecNorm`` + ``ClipTransform`` as a module (torchrl's transforms act on TensorDicts, which
    torch.export and ONNX cannot take as inputs)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, clip: float | None):
        super().__init__()
        self.register_buffer("loc", loc.detach().clone().float())
        self.register_buffer("scale", scale.detach().clone().float())
        self.clip = clip

    @classmethod
    def identity(cls, obs_dim: int) -> "FrozenObsNorm":
        return cls(torch.zeros(obs_dim), torch.ones(obs_dim), None)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return standardize(obs, self.loc, self.scale, self.clip)


class RawObsPolicy(nn.Module):
    """``obs -> (loc, scale)`` of a Gaussian policy over raw observations: ``norm`` then ``policy``."""

    def __init__(self, norm: FrozenObsNorm, policy: nn.Module):
        super().__init__()
        self.norm = norm
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(self.norm(obs))


def make_student(norm: FrozenObsNorm, act_dim: int, hidden_sizes: Sequence[int], activation: str = "tanh",
                 log_std: torch.Tensor | None = None) -> RawObsPolicy:
    """A plain MLP Gaussian policy (no LayerNorm, no gate) behind a copy of the teacher's normalization.
    ``log_std`` starts the student's state-independent std at the teacher's (an MSE-on-the-mean student
    never trains it, so it keeps the teacher's exploration noise)."""
    trunk = Trunk(norm.loc.numel(), hidden_sizes, activation, layer_norm=False, gating=False)
    head = GaussianHead(trunk.out_dim, act_dim)
    if log_std is not None:
        with torch.no_grad():  # invert GaussianHead.log_std()'s soft bound
            frac = (log_std - head.log_std_min) / (head.log_std_max - head.log_std_min)
            head.log_std_param.copy_(torch.atanh((2 * frac - 1).clamp(-1 + 1e-6, 1 - 1e-6)))
    norm_copy = FrozenObsNorm(norm.loc, norm.scale, norm.clip)
    return RawObsPolicy(norm_copy, nn.Sequential(trunk, head))


class DeterministicAction(nn.Module):
    """The deployable policy: raw observation ``[B, obs_dim]`` -> mean action clipped to the env's bounds."""

    def __init__(self, policy: RawObsPolicy, low: float, high: float):
        super().__init__()
        self.policy = policy
        self.low, self.high = float(low), float(high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        loc, _ = self.policy(obs)
        return loc.clamp(self.low, self.high)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
