"""Observation normalization with given running statistics: the seed's ``adaptive_normalize``.

Standardizing observations with running mean/variance and clipping the result is one of the implementation
details that matter for PPO on continuous control (Engstrom et al. 2020, "Implementation Matters in Deep Policy
Gradients"; Andrychowicz et al. 2021, "What Matters in On-Policy RL"). This module only applies statistics.

Keeping them is TorchRL's job, so there is no ``RunningMeanStd`` here: ``torchrl.envs.transforms.VecNormV2``
(``decay=1.0, reduce_batch_dims=True``) keeps exact batched running mean/variance, shares them across worker
processes, and stores them in the env's state dict; its ``loc`` and ``scale**2`` are the ``mean`` and ``var``
this function takes.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["adaptive_normalize", "standardize"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def standardize(x: ArrayT, loc, scale, clip: float | None = None) -> ArrayT:
    """``clip((x - loc) / scale, -clip, clip)``: the one observation-normalization formula. Every user
    (``SafeVecNorm``, ``ObsNorm.normalize``, ``FrozenObsNorm``, ``adaptive_normalize``) brings its own ``scale``
    (``sqrt(E[x^2] - E[x]^2)`` clamped at eps for VecNorm statistics, ``sqrt(var + eps)`` for given ones)."""
    out = (x - loc) / scale
    if clip is None:
        return out
    return out.clamp(-clip, clip) if isinstance(out, torch.Tensor) else np.clip(out, -clip, clip)


def adaptive_normalize(
    state: ArrayT,
    mean: np.ndarray | torch.Tensor | float,
    var: np.ndarray | torch.Tensor | float,
    eps: float = 1e-8,
    clip: float | None = 10.0,
) -> ArrayT:
    """``clip((state - mean) / sqrt(var + eps), -clip, clip)``, broadcasting ``mean``/``var`` over ``state``.

    Returns the type of ``state`` (NumPy in, NumPy out; tensor in, tensor out on the tensor's device) and keeps its
    floating dtype; integer states (e.g. pixels) come back as float32 (NumPy) or torch's default dtype.
    ``mean``/``var`` may be either type. Clipping bounds the input to the network when an observation is far
    outside what the statistics have seen (early training, rare states); ``clip=None`` disables it. ``eps`` keeps
    constant features finite.
    """
    if isinstance(state, torch.Tensor):
        dtype = state.dtype if state.dtype.is_floating_point else torch.get_default_dtype()
        x = state.to(dtype)
        mean_t = torch.as_tensor(mean, dtype=dtype, device=state.device)
        var_t = torch.as_tensor(var, dtype=dtype, device=state.device)
        return standardize(x, mean_t, torch.sqrt(var_t + eps), clip)
    if isinstance(mean, torch.Tensor):
        mean = mean.detach().cpu().numpy()
    if isinstance(var, torch.Tensor):
        var = var.detach().cpu().numpy()
    x = np.asarray(state)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
    x = x.astype(dtype, copy=False)
    out = standardize(x, np.asarray(mean, dtype=dtype), np.sqrt(np.asarray(var, dtype=dtype) + dtype.type(eps)), clip)
    return out.astype(dtype, copy=False)
