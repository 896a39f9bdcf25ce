"""Lookahead optimizer wrapper.

Implements Zhang, Lucas, Hinton & Ba (2019), "Lookahead Optimizer: k steps forward, 1 step back"
(arXiv:1907.08610): an inner ("fast") optimizer takes ``k`` steps, then a set of slow weights moves a
fraction ``alpha`` of the way towards the fast weights, and the fast weights restart from there. In PPO this
damps the oscillation that several epochs of minibatch updates on one batch can cause.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["Lookahead"]

_SLOW_KEY = "slow_param"


class Lookahead(Optimizer):
    """Lookahead (Zhang et al. 2019) around any ``torch.optim.Optimizer``.

    It is a real ``Optimizer`` and ``param_groups`` *is* the inner optimizer's list (not a copy), so LR schedulers
    (``LinearLR``, ``LambdaLR``, ...), gradient clipping helpers and anything else that edits
    ``optimizer.param_groups`` act on the inner optimizer through this object.

    The slow weights are taken from the parameters at the first ``step()`` rather than at construction, so loading
    model weights between building the optimizer and training does not leave stale slow weights behind.

    Args:
        optimizer: the inner (fast) optimizer, e.g. ``AdamW``.
        k: number of inner steps between two slow-weight updates (paper: 5 or 10).
        alpha: slow-weight step size in ``(0, 1]`` (paper: 0.5); ``alpha=1`` reduces to the inner optimizer.
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.optimizer = optimizer
        self.k = k
        self.alpha = float(alpha)
        self._lookahead_step = 0
        # Optimizer.__init__ would build its own param_groups list from copies of the groups, breaking the
        # aliasing with the inner optimizer; __setstate__ is torch's supported path to set up the hook
        # registries and step profiling without touching param_groups (which is a property here).
        super().__setstate__({"defaults": optimizer.defaults, "state": defaultdict(dict)})

    # The inner optimizer owns the groups; reading them live (rather than caching the list) keeps the alias valid
    # after ``inner.load_state_dict``, which replaces the inner list.
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    def _params(self) -> Iterator[torch.Tensor]:
        # Same order as Optimizer.state_dict() uses to number parameters.
        for group in self.param_groups:
            yield from group["params"]

    @torch.no_grad()
    def _init_slow_weights(self) -> None:
        for p in self._params():
            state = self.state[p]
            if _SLOW_KEY not in state:
                state[_SLOW_KEY] = p.detach().clone(memory_format=torch.preserve_format)

    @torch.no_grad()
    def _sync_slow_weights(self) -> None:
        for p in self._params():
            slow = self.state[p][_SLOW_KEY]
            slow.lerp_(p, self.alpha)  # slow += alpha * (fast - slow)
            p.copy_(slow)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One inner step; every ``k``-th call also pulls the slow weights and resets the fast ones to them."""
        # Slow weights must be the parameters *before* the first inner step (phi_0 = theta_0 in the paper).
        self._init_slow_weights()
        # No no_grad here: the closure re-evaluates the loss and needs autograd; inner optimizers manage it.
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self._lookahead_step += 1
        if self._lookahead_step % self.k == 0:
            self._sync_slow_weights()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # The inner optimizer may add its own defaults; slow weights for the new params start at the next step.
        self.optimizer.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict plus a ``"lookahead"`` entry.

        ``"state"`` and ``"param_groups"`` keep their standard meaning (tools that read ``sd["param_groups"]`` still
        work); slow weights are keyed by the same integer parameter index as ``"state"``. Only tensors, ints, floats
        and dicts, so ``torch.load(..., weights_only=True)`` accepts it.
        """
        state_dict = self.optimizer.state_dict()
        slow = {
            index: self.state[p][_SLOW_KEY]
            for index, p in enumerate(self._params())
            if p in self.state and _SLOW_KEY in self.state[p]
        }
        state_dict["lookahead"] = {
            "k": self.k,
            "alpha": self.alpha,
            "step": self._lookahead_step,
            "slow_params": slow,
        }
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore inner state, slow weights, step counter, ``k`` and ``alpha``.

        Like torch optimizers restoring ``lr`` from ``param_groups``, the saved ``k``/``alpha`` win over the
        constructor's so a resumed run is the same run. A plain inner-optimizer state dict (no ``"lookahead"``
        entry) is accepted: slow weights then restart from the parameters at the next step.
        """
        state_dict = dict(state_dict)  # do not mutate the caller's dict
        lookahead = state_dict.pop("lookahead", None)
        self.optimizer.load_state_dict(state_dict)
        self.state = defaultdict(dict)
        if lookahead is None:
            self._lookahead_step = 0
            return
        self.k = int(lookahead["k"])
        self.alpha = float(lookahead["alpha"])
        self._lookahead_step = int(lookahead["step"])
        params = list(self._params())
        for index, slow in lookahead["slow_params"].items():
            p = params[int(index)]
            # A copy on the parameter's device/dtype: never alias tensors of the (possibly live) source dict.
            self.state[p][_SLOW_KEY] = torch.empty_like(p, memory_format=torch.preserve_format).copy_(slow)

    def __getstate__(self) -> dict[str, Any]:
        # The base class pickles only defaults/state/param_groups; the inner optimizer and counters are needed too.
        # "step" may be an instance attribute patched in by an LR scheduler; it refers to this instance, drop it.
        return {key: value for key, value in self.__dict__.items() if key != "step"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"
