"""The tuner's search space and settings: which config keys it may change, their ranges, and how they move.

A parameter is a config key (flat name or alias, e.g. ``lr``, ``clip_range``) with a range:
``{low: 1e-4, high: 3e-3, log: true}`` (log-scale float), ``{low: 0.9, high: 1.0}`` (float, or int when the
config field is an int), ``{type: int, low: 4, high: 15}``, or a list of values / ``{values: [...]}`` (choice).
In Python, a tuple ``(low, high)`` is a range (the seed's ``'clip_range': (0.1, 0.3)``), on a log scale for the
scale-like keys of ``LOG_KEYS`` when ``high / low >= 10``; a list stays a choice (YAML has no tuples).
Every bound and value is checked against the config's own validation before any training starts.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from aeon_trl._util import did_you_mean
from aeon_trl.config import Config, ConfigError, _canonical, _leaf_owner


class TuningError(ConfigError):
    """A tuning config that cannot be run, with the fix in the message (raised before any training)."""


# Keys a member may change between generations while it continues from a checkpoint: they live in the config,
# the loss buffers, the optimizer's param groups or the schedules, and `Trainer.apply_hparams` moves them there.
TUNABLE = frozenset({
    "clip_epsilon", "clip_value", "entropy_coef", "entropy_coef_end", "critic_coef", "kl_coef", "kl_target",
    "kl_early_stop", "adaptive_clip", "gamma", "gae_lambda", "normalize_advantage",
    "lr", "wd", "adam_eps", "max_grad_norm", "anneal_lr", "adaptive_lr", "min_lr", "max_lr",
    "steps_per_env", "minibatch_size", "epochs", "obs_clip",
})
# Why the others are refused: an exploited member must load its parent's checkpoint into its own trainer.
REFUSED = {
    **{f.name: "it changes the network (shape or initialization), so a parent's checkpoint no longer loads"
       for f in dataclasses.fields(Config().model)},
    "num_envs": "the per-env return-scaling state and the batch layout are tied to it",
    "optimizer": "the optimizer's state (moments) belongs to one optimizer type",
    "lookahead": "the optimizer's state (slow weights) changes shape",
    "lookahead_k": "the Lookahead step counter and slow weights are tied to it",
    "lookahead_alpha": "the Lookahead state is tied to it",
    "env_id": "it changes the task: scores are not comparable",
    "env_backend": "it changes how the env is built, not what is learned",
    "norm_obs": "the observation statistics in the checkpoint are tied to it",
    "norm_reward": "the reward statistics in the checkpoint are tied to it",
    "max_episode_steps": "it changes the task: scores are not comparable",
    "total_timesteps": "the tuner sets the budget (generations x eval_timesteps)",
    "seed": "the tuner sets the seeds",
}

# Keys whose tuple ranges spanning a factor of 10 or more are drawn on a log scale (a step size or a small epsilon:
# a uniform draw in (1e-5, 1e-3) would almost never try the lower decade).
LOG_KEYS = frozenset({"lr", "min_lr", "max_lr", "wd", "adam_eps", "kl_target", "kl_coef", "entropy_coef",
                      "entropy_coef_end"})

METRICS = ("100_episode_return", "eval_return")
KINDS = ("float", "log", "int", "choice")


@dataclass(frozen=True)
class ParamSpec:
    """One tunable key and its range. ``sample`` draws from the prior, ``perturb`` moves a value within it."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()

    @classmethod
    def parse(cls, key: str, spec: Any, base: Config) -> "ParamSpec":
        owner = _leaf_owner()
        try:
            name = _canonical(str(key), owner)
        except ConfigError as exc:
            raise TuningError(f"tuning parameter '{key}': {exc}") from None
        if name in REFUSED:
            raise TuningError(f"tuning parameter '{name}' cannot be tuned by population-based training: "
                              f"{REFUSED[name]}. Tunable keys: {', '.join(sorted(TUNABLE))}")
        if name not in TUNABLE:
            raise TuningError(f"tuning parameter '{name}' is bookkeeping, not a hyperparameter. "
                              f"Tunable keys: {', '.join(sorted(TUNABLE))}")
        default = getattr(getattr(base, owner[name]), name)
        if isinstance(spec, tuple):
            spec = _tuple_range(name, spec)
        if isinstance(spec, list):
            spec = {"values": spec}
        if not isinstance(spec, Mapping):
            raise TuningError(f"tuning parameter '{name}': expected a range {{low: .., high: .., log: true}} or a "
                              f"list of values, got {spec!r}")
        unknown = set(spec) - {"type", "low", "high", "log", "values"}
        if unknown:
            raise TuningError(f"tuning parameter '{name}': unknown field(s) {sorted(unknown)}; "
                              "use low/high (+ log: true or type: int|float|log) or values: [...]")
        kind = spec.get("type") or ("choice" if "values" in spec else "log" if spec.get("log") else
                                    "int" if isinstance(default, int) and not isinstance(default, bool) else "float")
        if kind not in KINDS:
            raise TuningError(f"tuning parameter '{name}': type '{kind}' is not one of {list(KINDS)}")
        if kind == "choice":
            values = tuple(spec.get("values") or ())
            if not values:
                raise TuningError(f"tuning parameter '{name}': values must be a non-empty list")
            param = cls(name, kind, values=values)
        else:
            if isinstance(default, (bool, str, list)):
                raise TuningError(f"tuning parameter '{name}' is a {type(default).__name__}: give it as a choice, "
                                  f"e.g. {name}: [{default!r}, ...]")
            if "low" not in spec or "high" not in spec:
                raise TuningError(f"tuning parameter '{name}': a range needs both low and high")
            low, high = spec["low"], spec["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise TuningError(f"tuning parameter '{name}': low and high must be numbers, got {low!r}, {high!r}")
            if low > high:
                raise TuningError(f"tuning parameter '{name}': low={low} > high={high}; swap them")
            if kind == "log" and low <= 0:
                raise TuningError(f"tuning parameter '{name}': a log-scale range needs low > 0, got {low}")
            if kind == "int":
                low, high = math.ceil(low), math.floor(high)
                if low > high:
                    raise TuningError(f"tuning parameter '{name}': no integer in [{spec['low']}, {spec['high']}]")
            param = cls(name, kind, float(low) if kind != "int" else int(low),
                        float(high) if kind != "int" else int(high))
        if kind in ("float", "log") and isinstance(default, int) and not isinstance(default, bool):
            raise TuningError(f"tuning parameter '{name}' is an integer key: use type: int or a list of values")
        for value in param.values or (param.low, param.high):  # the config's own range checks, up front
            try:
                Config.from_dict({name: value}, base)
            except ConfigError as exc:
                raise TuningError(f"tuning parameter '{name}': {value!r} is not a valid value: {exc}") from None
        return param

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return self.low <= value <= self.high and (self.kind != "int" or int(value) == value)

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "int":
            return int(rng.integers(self.low, self.high + 1))
        if self.kind == "log":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def perturb(self, value: Any, rng: np.random.Generator, scale: float) -> Any:
        """Move by 50-100% of ``scale`` times the range (in log space for ``log``), up or down at random; down
        when already at the top bound and vice versa, so the value changes unless the range is a point.
        Ints move by at least 1. A choice is only changed by resampling (``mutate``)."""
        if self.kind == "choice":
            return value
        step = rng.uniform(0.5, 1.0) * scale * (1.0 if rng.random() < 0.5 else -1.0)
        if self.kind == "log":
            lo, hi, x = math.log(self.low), math.log(self.high), math.log(value)
        else:
            lo, hi, x = self.low, self.high, float(value)
        if (step > 0 and x >= hi) or (step < 0 and x <= lo):
            step = -step
        new = min(max(x + step * (hi - lo), lo), hi)
        if self.kind == "log":
            return float(min(max(math.exp(new), self.low), self.high))
        if self.kind == "int":
            moved = int(round(new))
            if moved == value and self.low < self.high:
                moved = value + (1 if step > 0 else -1)
            return int(min(max(moved, self.low), self.high))
        return float(new)

    def mutate(self, value: Any, rng: np.random.Generator, mutation_rate: float, scale: float) -> Any:
        """PBT's explore step for one key: resample from the prior with probability ``mutation_rate``,
        otherwise perturb (a choice is kept)."""
        if rng.random() < mutation_rate:
            return self.sample(rng)
        return self.perturb(value, rng, scale)

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice {list(self.values)}"
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


@dataclass
class TuningConfig:
    """The tuner's settings (the seed's ``tuning_config`` keys plus optional ones)."""

    population_size: int
    mutation_rate: float
    metric: str
    parameters: dict[str, ParamSpec]
    eval_timesteps: int
    exploit_fraction: float = 0.25  # bottom fraction replaced by copies of the top fraction each generation
    perturb_scale: float = 0.2  # a perturbation moves a value by 10-20% of its range
    eval_episodes: int = 5  # episodes of the deterministic evaluation (metric eval_return)
    seed: int | None = None  # None: the base config's seed
    include_base: bool = True  # member 0 starts from the base config's values (where they lie in range)
    workers: int = 0  # parallel local trials; 0 = min(population, CPU cores)

    REQUIRED = ("population_size", "mutation_rate", "metric", "parameters", "eval_timesteps")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Config) -> "TuningConfig":
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in fields:
                raise TuningError(f"unknown tuning key '{key}'.{did_you_mean(key, fields)} Keys: {', '.join(fields)}")
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise TuningError(f"tuning config is missing {', '.join(missing)} (required: {', '.join(cls.REQUIRED)})")
        params = data["parameters"]
        if not isinstance(params, Mapping) or not params:
            raise TuningError("tuning key 'parameters' must map config keys to ranges, e.g. "
                              "{lr: {low: 1e-4, high: 3e-3, log: true}, minibatch_size: [512, 1024]}")
        specs = [ParamSpec.parse(k, v, base) for k, v in params.items()]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise TuningError(f"tuning parameters name the same config key twice (aliases resolved): {names}")
        tc = cls(**{**dict(data), "parameters": {s.name: s for s in specs}})
        tc.validate()
        return tc

    def validate(self) -> None:
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise TuningError(f"tuning value {key}={getattr(self, key)!r} {rule}")
        need(_is_int(self.population_size) and self.population_size >= 2, "population_size",
             "must be an integer >= 2: exploit copies one member into another")
        need(isinstance(self.mutation_rate, (int, float)) and 0 <= self.mutation_rate <= 1, "mutation_rate",
             "must be in [0, 1] (the probability of resampling a key instead of perturbing it)")
        need(self.metric in METRICS, "metric", f"is unknown: use one of {list(METRICS)}")
        need(_is_int(self.eval_timesteps) and self.eval_timesteps >= 1, "eval_timesteps",
             "must be an integer >= 1 (steps each member trains per generation)")
        need(isinstance(self.exploit_fraction, (int, float)) and 0 < self.exploit_fraction <= 0.5,
             "exploit_fraction", "must be in (0, 0.5]")
        need(isinstance(self.perturb_scale, (int, float)) and 0 < self.perturb_scale <= 1, "perturb_scale",
             "must be in (0, 1] (fraction of a parameter's range)")
        need(_is_int(self.eval_episodes) and self.eval_episodes >= (1 if self.metric == "eval_return" else 0),
             "eval_episodes", "must be an integer >= 1 for metric eval_return")
        need(self.seed is None or _is_int(self.seed), "seed", "must be an integer or null")
        need(_is_int(self.workers) and self.workers >= 0, "workers", "must be an integer >= 0 (0 = CPU cores)")

    @property
    def exploit_count(self) -> int:
        return max(1, int(self.exploit_fraction * self.population_size))

    @property
    def parallel_workers(self) -> int:
        return self.workers or min(self.population_size, os.cpu_count() or 1)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["parameters"] = {n: ({"values": list(p.values)} if p.kind == "choice" else
                                 {"type": p.kind, "low": p.low, "high": p.high}) for n, p in self.parameters.items()}
        return out


def _tuple_range(name: str, spec: tuple) -> dict:
    """``(low, high)`` as a range spec; log scale for ``LOG_KEYS`` spanning a factor of 10 or more."""
    if len(spec) != 2:
        raise TuningError(f"tuning parameter '{name}': a tuple is a range (low, high), got {spec!r}; give a list "
                          "for a choice of values")
    low, high = spec
    log = name in LOG_KEYS and all(isinstance(v, (int, float)) and v > 0 for v in spec) and high >= 10 * low
    return {"low": low, "high": high, **({"log": True} if log else {})}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
