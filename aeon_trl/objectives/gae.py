"""Functional GAE for time-first arrays: the seed's ``compute_gae`` API on top of TorchRL.

Generalized Advantage Estimation, Schulman et al. 2016 ("High-Dimensional Continuous Control Using Generalized
Advantage Estimation", arXiv:1506.02438). The recursion itself is TorchRL's
``torchrl.objectives.value.functional.generalized_advantage_estimate``; this module only converts the seed's
``[T]`` / ``[T, N]`` layout and its ``dones`` / ``next_value`` conventions. The training pipeline does not use
this function: it runs ``torchrl.objectives.value.GAE`` on the collector's ``[N, T]`` TensorDict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchrl.objectives.value.functional import generalized_advantage_estimate

__all__ = ["compute_gae"]


def _to_tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return tensor if dtype is None else tensor.to(dtype)


def _to_bool(x: Any) -> torch.Tensor:
    tensor = _to_tensor(x)
    return tensor if tensor.dtype == torch.bool else tensor != 0


def compute_gae(
    rewards: Any,
    values: Any,
    dones: Any,
    next_value: Any = None,
    gamma: float = 0.99,
    lam: float = 0.95,
    terminated: Any = None,
    next_values: Any = None,
) -> tuple[Any, Any]:
    """Advantages and returns (value targets) for a time-first rollout.

    Args:
        rewards: ``[T]`` or ``[T, *B]`` (e.g. ``[T, N]`` for N envs), reward of step t.
        values: same shape, ``V(s_t)``.
        dones: same shape, true where the episode ended at step t (terminated *or* truncated). The advantage
            never propagates across it.
        next_value: ``V(s_T)``, shape ``[*B]``: the value of the observation after the last step. Step t < T-1
            then bootstraps from ``values[t + 1]``. Give this *or* ``next_values``.
        gamma: discount.
        lam: GAE lambda.
        terminated: same shape, true where the episode ended by reaching a terminal state (no bootstrap).
            Defaults to ``dones`` -- the seed's behaviour, where every end is treated as terminal.
        next_values: same shape as ``values``, ``V(s_{t+1})`` where ``s_{t+1}`` is the observation that step t
            really led to -- the *final* observation of a truncated episode, not the reset one. This is what
            correct truncation needs: a truncated step (``dones & ~terminated``) bootstraps from
            ``gamma * next_values[t]``.

    Returns:
        ``(advantages, returns)`` with the shape of ``values``; ``returns = advantages + values``. NumPy arrays if
        ``rewards`` was a NumPy array, tensors otherwise. No gradient flows through them. The dtype follows the
        inputs (float64 stays float64), but TorchRL multiplies by ``gamma`` and ``lam`` as float32 factors, so
        float64 results agree with an exact recursion to about 1e-7 relative.

    Raises:
        ValueError: on shape mismatches, when neither or both of ``next_value``/``next_values`` are given, or when
            a truncation before the last step is declared (via ``terminated``) without ``next_values``: with only
            ``next_value``, ``values[t + 1]`` there is the value of the reset observation, and bootstrapping from it
            would silently be wrong.
    """
    return_numpy = isinstance(rewards, np.ndarray)
    values_t = _to_tensor(values)
    rewards_t = _to_tensor(rewards)
    dtype = torch.promote_types(rewards_t.dtype, values_t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    values_t = values_t.to(dtype)
    rewards_t = rewards_t.to(dtype)
    dones_t = _to_bool(dones)
    terminated_t = dones_t if terminated is None else _to_bool(terminated)

    shape = values_t.shape
    if values_t.ndim < 1 or shape[0] == 0:
        raise ValueError(f"values must be time-first with at least one step, got shape {tuple(shape)}")
    for name, tensor in (("rewards", rewards_t), ("dones", dones_t), ("terminated", terminated_t)):
        if tensor.shape != shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, values has {tuple(shape)}")
    if (next_value is None) == (next_values is None):
        raise ValueError("pass exactly one of next_value (V of the last next observation) or next_values")

    if next_values is not None:
        next_values_t = _to_tensor(next_values, dtype)
        if next_values_t.shape != shape:
            raise ValueError(f"next_values has shape {tuple(next_values_t.shape)}, values has {tuple(shape)}")
    else:
        truncated = dones_t & ~terminated_t
        if truncated[:-1].any():
            raise ValueError(
                "a step before the last one is truncated (dones & ~terminated): pass next_values with the value "
                "of the final observation there, values[t+1] is the value of the reset observation"
            )
        last = _to_tensor(next_value, dtype).reshape(shape[1:])
        next_values_t = torch.cat([values_t[1:], last.unsqueeze(0)], dim=0)

    # TorchRL wants [*B, T, F]: move time from first to second-to-last and add a feature dim of 1.
    def to_torchrl(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1).movedim(0, -2)

    # Targets, not a differentiable function of the critic (as TorchRL's GAE with differentiable=False).
    with torch.no_grad():
        advantages, returns = generalized_advantage_estimate(
            gamma,
            lam,
            state_value=to_torchrl(values_t),
            next_state_value=to_torchrl(next_values_t),
            reward=to_torchrl(rewards_t),
            done=to_torchrl(dones_t),
            terminated=to_torchrl(terminated_t),
        )
    advantages = advantages.movedim(-2, 0).squeeze(-1)
    returns = returns.movedim(-2, 0).squeeze(-1)
    if return_numpy:
        return advantages.numpy(), returns.numpy()
    return advantages, returns
