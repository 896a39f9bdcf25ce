"""Schedules that PPO adapts during training: clip range, KL penalty, learning rate, entropy bonus, early stop.

Each one reads a scalar diagnostic (approximate KL, training progress in ``[0, 1]``) and returns the value to use.
Their ``state_dict()`` holds only Python numbers (and lists of them), so a checkpoint that includes them still
loads with ``torch.load(..., weights_only=True)`` and a resumed run continues with the adapted values instead of
restarting from the initial ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "AdaptiveClipper",
    "AdaptiveKLCoef",
    "DynamicBatchSize",
    "EntropyAnnealing",
    "GeometricDecay",
    "KLAdaptiveLR",
    "KLEarlyStop",
    "LinearSchedule",
    "kl_band",
    "linear_schedule",
]


def _as_float(x: Any) -> float:
    """A KL may arrive as a 0-d tensor from the loss; schedules work on Python floats."""
    if isinstance(x, torch.Tensor):
        return float(x.detach().cpu())
    return float(x)


def _clamp(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


def linear_schedule(start: float, end: float, progress: float) -> float:
    """Linear interpolation from ``start`` (progress 0) to ``end`` (progress 1); progress is clamped to [0, 1]."""
    progress = _clamp(float(progress), 0.0, 1.0)
    return start + (end - start) * progress


def kl_band(kl: float, kl_target: float, tolerance: float) -> int:
    """Where a KL measurement lies around its target: ``1`` above ``tolerance * kl_target`` (the update moved the
    policy too far), ``-1`` below ``kl_target / tolerance`` (too little), ``0`` inside the band or NaN. The rule
    of PPO's adaptive KL penalty (Schulman et al. 2017, sec. 4) that every KL-driven schedule here reacts to."""
    if kl > tolerance * kl_target:
        return 1
    if kl < kl_target / tolerance:
        return -1
    return 0


class _Stateful:
    """``state_dict`` / ``load_state_dict`` over the attributes named in ``_state_keys`` (Python numbers only)."""

    _state_keys: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._state_keys}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = [key for key in self._state_keys if key not in state_dict]
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}")
        for key in self._state_keys:
            value = state_dict[key]
            if isinstance(value, list):
                setattr(self, key, [float(v) for v in value])
            elif isinstance(getattr(self, key), int) and not isinstance(getattr(self, key), bool):
                setattr(self, key, int(value))
            else:
                setattr(self, key, float(value))


class _KLBandValue(_Stateful):
    """A value kept in ``[min_value, max_value]`` that a KL-band rule moves: the common state and checks of
    ``AdaptiveClipper`` and ``AdaptiveKLCoef``. ``steps``: the named multiplicative step(s), each > 1."""

    _state_keys = ("value",)

    def __init__(self, init_value: float, kl_target: float, tolerance: float, min_value: float, max_value: float,
                 **steps: float) -> None:
        if not 0.0 < min_value <= max_value:
            raise ValueError(f"need 0 < min_value <= max_value, got {min_value}, {max_value}")
        if kl_target <= 0 or tolerance <= 1.0 or any(v <= 1.0 for v in steps.values()):
            raise ValueError(f"need kl_target > 0, tolerance > 1 and {', '.join(steps)} > 1")
        self.kl_target = float(kl_target)
        self.tolerance = float(tolerance)
        self.min_value = float(min_value)
        self.max_value = float(max_value)
        self.value = _clamp(float(init_value), self.min_value, self.max_value)


class AdaptiveClipper(_KLBandValue):
    """PPO clip range that follows the measured policy change.

    The KL-band rule of the adaptive KL penalty (Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
    sec. 4) applied to ``clip_epsilon`` instead of beta: a KL above ``tolerance * kl_target`` means updates are too
    large, so the trust region shrinks by ``rate``; a KL below ``kl_target / tolerance`` lets it grow by ``rate``.
    Bounds keep it from collapsing to zero (no learning) or opening to no clipping at all.
    """

    def __init__(
        self,
        init_value: float = 0.2,
        kl_target: float = 0.01,
        rate: float = 1.5,
        min_value: float = 0.05,
        max_value: float = 0.5,
        tolerance: float = 1.5,
    ) -> None:
        super().__init__(init_value, kl_target, tolerance, min_value, max_value, rate=rate)
        self.rate = float(rate)

    def update(self, kl: float | torch.Tensor) -> float:
        """Adapt to one KL measurement and return the new clip value. A NaN KL changes nothing."""
        band = kl_band(_as_float(kl), self.kl_target, self.tolerance)
        if band > 0:
            self.value /= self.rate
        elif band < 0:
            self.value *= self.rate
        self.value = _clamp(self.value, self.min_value, self.max_value)
        return self.value


class AdaptiveKLCoef(_KLBandValue):
    """Adaptive KL penalty coefficient beta.

    Default rule: Schulman et al. 2017, "Proximal Policy Optimization Algorithms", sec. 4 (adaptive KL penalty):
    ``kl > tolerance * kl_target`` -> ``beta *= factor``; ``kl < kl_target / tolerance`` -> ``beta /= factor``
    (paper: tolerance 1.5, factor 2).

    With ``horizon`` set, the proportional controller of Ziegler et al. 2019 ("Fine-Tuning Language Models from
    Human Preferences", sec. 2.2) is used instead: ``e = clip(kl / kl_target - 1, -0.2, 0.2)``,
    ``beta *= 1 + e * n_steps / horizon`` -- smoother when KL is measured often and noisily.

    The clamp keeps beta recoverable: below ``min_value`` the penalty is off in practice, above ``max_value`` it
    swamps the surrogate, and an unbounded beta would need many halvings to come back.
    """

    def __init__(
        self,
        init_value: float = 1.0,
        kl_target: float = 0.01,
        tolerance: float = 1.5,
        factor: float = 2.0,
        min_value: float = 1e-4,
        max_value: float = 100.0,
        horizon: int | None = None,
    ) -> None:
        if horizon is not None and horizon <= 0:
            raise ValueError(f"horizon must be positive, got {horizon}")
        super().__init__(init_value, kl_target, tolerance, min_value, max_value, factor=factor)
        self.factor = float(factor)
        self.horizon = horizon

    def update(self, kl: float | torch.Tensor, n_steps: int = 1) -> float:
        """Adapt to one KL measurement and return the new beta. ``n_steps`` is used only by the horizon rule."""
        kl = _as_float(kl)
        if math.isnan(kl):
            return self.value
        if self.horizon is not None:
            error = _clamp(kl / self.kl_target - 1.0, -0.2, 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        else:
            band = kl_band(kl, self.kl_target, self.tolerance)
            if band > 0:
                self.value *= self.factor
            elif band < 0:
                self.value /= self.factor
        self.value = _clamp(self.value, self.min_value, self.max_value)
        return self.value


class KLAdaptiveLR(_Stateful):
    """KL-adaptive learning rate, optionally combined with linear annealing, written into an optimizer.

    Adaptive rule as in rl_games (``AdaptiveScheduler``) and Brax PPO: ``kl > tolerance * kl_target`` ->
    ``lr /= factor``; ``kl < kl_target / tolerance`` -> ``lr *= factor`` (tolerance 2, factor 1.5), clamped to
    ``[min_lr, max_lr]``.

    The two schedules are kept apart so they compose instead of fighting: the KL rule owns a ``multiplier`` on the
    base LR, the annealing owns a factor ``linear_schedule(1, anneal_end, progress)``, and the LR written is
    ``base_lr * multiplier * anneal_factor``. The ``[min_lr, max_lr]`` bounds apply to the adaptive part
    (``base_lr * multiplier``), so annealing can still take the LR below ``min_lr`` towards ``anneal_end``.

    Each param group keeps its own base LR (read from ``optimizer.param_groups`` at construction) and all are
    scaled by the same factors, so layer-wise LR ratios survive; the bounds refer to the largest base LR.
    Works with any object exposing ``param_groups`` (e.g. :class:`~aeon_trl.optim.lookahead.Lookahead`).
    A tensor ``lr`` is updated in place, so compiled update steps that captured it see the change.

    ``kl_target=None`` disables the KL rule (pure annealing); ``anneal_end=1.0`` disables annealing.
    Do not also attach a ``torch.optim.lr_scheduler`` to the same optimizer: both would write ``lr``.
    """

    _state_keys = ("multiplier", "progress", "base_lrs")

    def __init__(
        self,
        optimizer: Any,
        kl_target: float | None = 0.008,
        factor: float = 1.5,
        tolerance: float = 2.0,
        min_lr: float = 1e-6,
        max_lr: float = 1e-2,
        anneal_end: float = 1.0,
    ) -> None:
        if kl_target is not None and kl_target <= 0:
            raise ValueError(f"kl_target must be positive or None, got {kl_target}")
        if factor <= 1.0 or tolerance <= 1.0:
            raise ValueError("need factor > 1 and tolerance > 1")
        if not 0.0 < min_lr <= max_lr:
            raise ValueError(f"need 0 < min_lr <= max_lr, got {min_lr}, {max_lr}")
        self.optimizer = optimizer
        self.kl_target = None if kl_target is None else float(kl_target)
        self.factor = float(factor)
        self.tolerance = float(tolerance)
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.anneal_end = float(anneal_end)
        self.base_lrs = [_as_float(group["lr"]) for group in optimizer.param_groups]
        self.multiplier = 1.0
        self.progress = 0.0

    @property
    def anneal_factor(self) -> float:
        return linear_schedule(1.0, self.anneal_end, self.progress)

    @property
    def lr(self) -> float:
        """The LR of the first param group as this schedule sets it."""
        return self.base_lrs[0] * self.multiplier * self.anneal_factor

    def update(self, kl: float | torch.Tensor) -> float:
        """Adapt the multiplier to one KL measurement, write the LRs, return the first group's LR."""
        kl = _as_float(kl)
        if self.kl_target is not None:
            band = kl_band(kl, self.kl_target, self.tolerance)
            if band > 0:
                self.multiplier /= self.factor
            elif band < 0:
                self.multiplier *= self.factor
            reference = max(self.base_lrs)
            self.multiplier = _clamp(self.multiplier, self.min_lr / reference, self.max_lr / reference)
        return self.apply()

    def anneal(self, progress: float) -> float:
        """Set training progress in [0, 1], write the LRs, return the first group's LR."""
        self.progress = _clamp(float(progress), 0.0, 1.0)
        return self.apply()

    def apply(self) -> float:
        """Write ``base_lr * multiplier * anneal_factor`` into every param group (e.g. after loading a state)."""
        scale = self.multiplier * self.anneal_factor
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base_lr * scale)
            else:
                group["lr"] = base_lr * scale
        return self.lr

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.apply()


class LinearSchedule(_Stateful):
    """A value annealed linearly from ``start`` (progress 0) to ``end`` (progress 1): the one annealing rule of the
    lr factor, the entropy bonus, the priority exponent beta and the curiosity coefficient. The last progress seen
    is kept (and checkpointed) so that ``value()`` after a resume returns the value in effect."""

    _state_keys = ("progress",)

    def __init__(self, start: float, end: float) -> None:
        self.start = float(start)
        self.end = float(end)
        self.progress = 0.0

    def value(self, progress: float | None = None) -> float:
        """The value at ``progress`` in [0, 1] (clamped); ``None`` reuses the last progress."""
        if progress is not None:
            self.progress = _clamp(float(progress), 0.0, 1.0)
        return linear_schedule(self.start, self.end, self.progress)


class EntropyAnnealing(LinearSchedule):
    """Entropy bonus coefficient annealed linearly from ``start`` to ``end`` over training.

    A large early bonus keeps the Gaussian policy exploring; decaying it lets the policy commit late in training
    (the linear entropy-coefficient decay used e.g. in Andrychowicz et al. 2021, "What Matters in On-Policy RL").
    """


class GeometricDecay:
    """``start * decay ** step``: DAPG's demonstration weight ``lambda_0 * lambda_1^k`` (Rajeswaran et al. 2018)
    at update ``k``. Stateless: the step is the trainer's iteration counter."""

    def __init__(self, start: float, decay: float) -> None:
        self.start, self.decay = float(start), float(decay)

    def value(self, step: int) -> float:
        return self.start * self.decay ** step


class KLEarlyStop(_Stateful):
    """Stop the epoch loop once approximate KL exceeds ``factor * kl_target``.

    The early-stopping rule of OpenAI Spinning Up PPO and CleanRL (``target_kl``): once the policy has moved this
    far from the data-collecting policy, further epochs on the same batch overfit it. A non-finite KL also stops,
    since it means the update already diverged. ``kl_target=None`` disables the check.
    """

    _state_keys = ("num_stops",)

    def __init__(self, kl_target: float | None, factor: float = 1.5) -> None:
        if kl_target is not None and kl_target <= 0:
            raise ValueError(f"kl_target must be positive or None, got {kl_target}")
        self.kl_target = None if kl_target is None else float(kl_target)
        self.factor = float(factor)
        self.num_stops = 0  # diagnostic: how many epoch loops were cut short

    def should_stop(self, kl: float | torch.Tensor) -> bool:
        if self.kl_target is None:
            return False
        kl = _as_float(kl)
        stop = not math.isfinite(kl) or kl_band(kl, self.kl_target, self.factor) > 0
        self.num_stops += int(stop)
        return stop


class DynamicBatchSize(_Stateful):
    """Rollout length (``steps_per_env``) that grows while episode lengths are stable.

    The seed's rule: once the episodes finished at the current size have a length std below ``cv`` times
    their mean, multiply the rollout by ``growth`` (1.5), up to ``cap_frames`` per batch. Stable lengths mean
    the policy's behaviour has settled, so a larger on-policy batch lowers gradient noise where it is
    affordable (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training": the useful batch grows
    as training progresses). A decision needs ``min_episodes`` episodes finished since the last resize,
    so one wave of synchronised episodes cannot trigger several resizes.
    """

    _state_keys = ("steps_per_env", "resizes", "lengths")

    def __init__(self, steps_per_env: int, num_envs: int, cap_frames: int, growth: float = 1.5, cv: float = 0.1,
                 min_episodes: int | None = None) -> None:
        if growth <= 1.0 or cv <= 0.0:
            raise ValueError(f"need growth > 1 and cv > 0, got growth={growth}, cv={cv}")
        if cap_frames < steps_per_env * num_envs:
            raise ValueError(f"cap_frames={cap_frames} is below the starting batch {steps_per_env * num_envs}")
        self.steps_per_env, self.num_envs = int(steps_per_env), int(num_envs)
        self.max_steps_per_env = cap_frames // num_envs
        self.growth, self.cv = float(growth), float(cv)
        self.min_episodes = int(min_episodes or num_envs)
        self.resizes = 0
        self.lengths: list[float] = []  # the last min_episodes lengths finished since the last resize

    @property
    def frames_per_batch(self) -> int:
        return self.steps_per_env * self.num_envs

    def update(self, episode_lengths: list[float]) -> int:
        """Add newly finished episodes' lengths; returns the (possibly grown) ``steps_per_env``."""
        self.lengths = (self.lengths + [float(x) for x in episode_lengths])[-self.min_episodes:]
        if len(self.lengths) < self.min_episodes or self.steps_per_env >= self.max_steps_per_env:
            return self.steps_per_env
        lengths = torch.tensor(self.lengths, dtype=torch.float64)
        if lengths.std(correction=0) < self.cv * lengths.mean():
            self.steps_per_env = min(math.ceil(self.steps_per_env * self.growth), self.max_steps_per_env)
            self.resizes += 1
            self.lengths = []
        return self.steps_per_env
