"""Reward scaling by the running std of the discounted return.

Written by hand because TorchRL has no such transform: ``VecNorm`` divides the reward by the std of
the *reward*, ``RewardScaling`` by a fixed scale. PPO on MuJoCo is sensitive to this choice
(Engstrom et al. 2020, "Implementation Matters": reward scaling by the return's std is one of the
code-level optimizations that matter); it is what SB3's ``VecNormalize`` and gymnasium's
``NormalizeReward`` do.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.transforms import Transform


def merge_moments(mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor, batch: torch.Tensor) -> None:
    """Chan et al.'s parallel merge of the running (mean, var, count) buffers with a batch's moments, in place."""
    batch = batch.double().flatten()
    b_mean, b_var, b_count = batch.mean(), batch.var(correction=0), batch.numel()
    delta, total = b_mean - mean, count + b_count
    m2 = var * count + b_var * b_count + delta.pow(2) * count * b_count / total
    mean.copy_(mean + delta * b_count / total)
    var.copy_(m2 / total)
    count.copy_(total)


class ReturnScaling(Transform):
    """Divides ``reward`` by sqrt(running var of the per-env discounted return), then clips it."""

    def __init__(self, gamma: float = 0.99, eps: float = 1e-8, clip: float = 10.0,
                 in_keys=("reward",), done_key="done"):
        super().__init__(in_keys=list(in_keys), out_keys=list(in_keys))
        self.gamma, self.eps, self.clip, self.done_key = gamma, eps, clip, done_key
        self.frozen = False
        self.register_buffer("returns", torch.zeros(0))
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.full((), 1e-4, dtype=torch.float64))

    def freeze(self) -> "ReturnScaling":
        self.frozen = True
        return self

    def _update(self, batch: torch.Tensor) -> None:
        merge_moments(self.mean, self.var, self.count, batch)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        reward = next_tensordict.get(self.in_keys[0])
        if not self.frozen:
            if self.returns.shape != reward.shape:
                self.returns = torch.zeros_like(reward)
            self.returns.mul_(self.gamma).add_(reward)
            self._update(self.returns)
            self.returns.masked_fill_(next_tensordict.get(self.done_key).view_as(reward), 0.0)
        scale = (self.var + self.eps).sqrt().to(reward.dtype)
        next_tensordict.set(self.out_keys[0], (reward / scale).clamp(-self.clip, self.clip))
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The per-env return buffer is sized lazily; match its shape before loading.
        saved = state_dict.get(prefix + "returns")
        if saved is not None:
            self.returns = torch.zeros_like(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
