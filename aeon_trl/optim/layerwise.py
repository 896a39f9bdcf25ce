"""Layer-wise adaptive learning rates: LAMB and LARS.

Both scale each parameter tensor's step by a trust ratio ||w|| / ||update||, so every layer moves by
about the same *relative* amount whatever the scale of its gradients; this is what lets a batch (and
the dynamic batch sizing that grows it) get larger without retuning a global learning rate.
Written by hand because torch.optim has neither (only Adam/AdamW/SGD and friends).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch.optim import Optimizer

__all__ = ["Lamb", "Lars", "trust_ratio"]


def trust_ratio(weight_norm: torch.Tensor, update_norm: torch.Tensor) -> torch.Tensor:
    """||w|| / ||u||, or 1 where either norm is 0 (zero-initialised biases, a zero update)."""
    ok = (weight_norm > 0) & (update_norm > 0)
    return torch.where(ok, weight_norm / update_norm.clamp_min(torch.finfo(update_norm.dtype).tiny),
                       torch.ones_like(weight_norm))


class _PerTensorOptimizer(Optimizer):
    """The closure and the loop over the parameters that have a gradient; subclasses update one tensor."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, self.state[p])
        return loss

    def _update(self, p: torch.Tensor, group: dict, state: dict) -> None:
        raise NotImplementedError


class Lamb(_PerTensorOptimizer):
    """LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes").

    Per tensor: Adam's bias-corrected direction u = m_hat / (sqrt(v_hat) + eps) + weight_decay * w,
    then w -= lr * trust_ratio * u with trust_ratio = ||w|| / ||u||. The last ratio of each tensor is
    kept in ``state[p]["trust_ratio"]`` (a diagnostic, and what the tests check by hand).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0):
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lamb needs lr > 0, eps > 0, weight_decay >= 0 and betas in [0, 1), got lr={lr}, "
                             f"eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p: torch.Tensor, group: dict, state: dict) -> None:
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = state["step"].item()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(p.grad, 1 - beta1)
        v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        update = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + group["eps"])
        if group["weight_decay"]:
            update.add_(p, alpha=group["weight_decay"])
        ratio = trust_ratio(p.norm(), update.norm())
        state["trust_ratio"] = ratio
        p.sub_(update * (group["lr"] * ratio))


class Lars(_PerTensorOptimizer):
    """LARS (You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks").

    Per tensor: g' = grad + weight_decay * w, local lr = trust_coefficient * ||w|| / ||g'||, then SGD with
    momentum on local_lr * g'. ``trust_coefficient=1`` (the paper's eta is 1e-3 with lrs of ~10) keeps
    PPO's learning-rate range meaningful: lr is then the relative step of each tensor.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 1.0):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(f"Lars needs lr > 0, momentum in [0, 1), weight_decay >= 0, trust_coefficient > 0, "
                             f"got lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                             f"trust_coefficient={trust_coefficient}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient))

    def _update(self, p: torch.Tensor, group: dict, state: dict) -> None:
        grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
        ratio = group["trust_coefficient"] * trust_ratio(p.norm(), grad.norm())
        state["trust_ratio"] = ratio
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"].mul_(group["momentum"]).add_(grad * ratio)
        p.sub_(buf, alpha=group["lr"])
