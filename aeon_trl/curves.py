"""Learning-curve figures: one run's PNG (``learning_curve.png``) and several runs' mean +/- std bands (aeon-compare).

History rows are the trainer's per-iteration metrics: ``frames``, ``train_return`` (the stochastic training
policy's return per episode at each batch's reward rate, running episodes included: ``Trainer.train_return``),
``episode_return`` (mean of the last 20 finished training episodes), ``eval_return`` on the rows where a periodic
deterministic evaluation ran, and ``wall_time`` (seconds since the run started, resumed runs included). Histories
written before ``train_return`` existed plot ``episode_return`` as the training curve.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

TRAIN_LABEL = "training return (stochastic policy, per iteration)"
FINISHED_LABEL = "training return, finished episodes (last 20)"
EVAL_LABEL = "evaluation return (deterministic policy)"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def series(history: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(frames, values)`` of the rows that carry a finite ``key``."""
    rows = [(h["frames"], h[key]) for h in history if key in h and h[key] is not None and np.isfinite(h[key])]
    frames, values = zip(*rows) if rows else ((), ())
    return np.asarray(frames, dtype=float), np.asarray(values, dtype=float)


def training_series(history: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The training curve: ``train_return`` (every iteration), or ``episode_return`` for older histories."""
    frames, values = series(history, "train_return")
    return (frames, values) if len(frames) else series(history, "episode_return")


def plot_learning_curve(history: Sequence[dict], path: str | Path, title: str,
                        final_eval: float | None = None) -> Path:
    """The run's PNG: training return per iteration and the periodic deterministic evaluations against env steps,
    with the wall-clock time on a second x axis (top) when the rows carry ``wall_time``; ``final_eval`` is marked
    at the last step."""
    fig = learning_curve_figure(history, title, final_eval)
    path = Path(path)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def learning_curve_figure(history: Sequence[dict], title: str, final_eval: float | None = None):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    frames, returns = series(history, "train_return")
    finished = series(history, "episode_return")
    if len(frames):
        ax.plot(frames, returns, color="C0", lw=1.2, label=TRAIN_LABEL)
        if len(finished[0]):
            ax.plot(*finished, color="C0", lw=1.0, ls="--", alpha=0.6, drawstyle="steps-post", label=FINISHED_LABEL)
    else:
        ax.plot(*finished, color="C0", lw=1.2, label=FINISHED_LABEL)
    eval_frames, evals = series(history, "eval_return")
    if len(evals):
        ax.plot(eval_frames, evals, "o-", color="C2", ms=3, lw=1.2, label=EVAL_LABEL)
    last = max((h["frames"] for h in history), default=None)
    if final_eval is not None and last is not None:
        ax.scatter([last], [final_eval], color="C3", zorder=3, label="final evaluation")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)  # "best": a fixed corner hid the finished episodes behind the legend
    mapping = wall_time_mapping(history)
    if mapping is not None:
        to_time, to_frames, unit = mapping
        top = ax.secondary_xaxis("top", functions=(to_time, to_frames))
        top.set_xlabel(f"wall-clock time ({unit})", fontsize=9)
        top.tick_params(labelsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def wall_time_mapping(history: Sequence[dict]):
    """``(steps -> time, time -> steps, unit)`` through the rows' ``(frames, wall_time)``, or None without two rows
    that carry ``wall_time``. The unit (s, min, h) follows the run's length."""
    frames, wall = series(history, "wall_time")
    if len(frames) < 2:
        return None
    wall = np.maximum.accumulate(wall)
    if frames[0] > 0:  # the run starts at 0 steps, 0 s
        frames, wall = np.r_[0.0, frames], np.r_[0.0, wall]
    # Beyond the last row (the axes' margin) time goes on at the run's average rate.
    rate = wall[-1] / frames[-1] if frames[-1] > 0 else 1.0
    frames, wall = np.r_[frames, frames[-1] * 100], np.r_[wall, wall[-1] + rate * frames[-1] * 99]
    unit, scale = ("h", 3600.0) if wall[-2] >= 3 * 3600 else ("min", 60.0) if wall[-2] >= 180 else ("s", 1.0)
    return (lambda x: np.interp(x, frames, wall) / scale,
            lambda t: np.interp(np.asarray(t) * scale, wall, frames), unit)


def band(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200) -> tuple[np.ndarray, ...]:
    """Mean and std over seeds of curves ``(frames, values)``, interpolated onto a common grid of env steps that
    spans the range every seed covers."""
    curves = [(f, v) for f, v in curves if len(f)]
    if not curves:
        return np.array([]), np.array([]), np.array([])
    lo, hi = max(f[0] for f, _ in curves), min(f[-1] for f, _ in curves)
    grid = np.unique(np.concatenate([f[(f >= lo) & (f <= hi)] for f, _ in curves])) if hi > lo else np.array([hi])
    if len(grid) > points:
        grid = np.linspace(lo, hi, points)
    values = np.stack([np.interp(grid, f, v) for f, v in curves])
    return grid, values.mean(0), values.std(0)


def plot_bands(groups: dict[str, list[Sequence[dict]]], path: str | Path, title: str = "",
               final_evals: dict[str, list[float]] | None = None, references: dict[str, float] | None = None) -> Path:
    """One figure: per group (one colour), the deterministic evaluation return (solid) and the training return
    (dashed), mean +/- std over its runs; the final evaluations as a mean +/- std marker; horizontal reference
    lines (published results of other libraries)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, (label, histories) in enumerate(groups.items()):
        color = f"C{i % 10}"
        n = len(histories)
        grid, mean, std = band([series(h, "eval_return") for h in histories])
        if len(grid):
            ax.plot(grid, mean, "-", color=color, lw=1.6, label=f"{label} (n={n})")
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        grid_t, mean_t, std_t = band([training_series(h) for h in histories])
        if len(grid_t):
            ax.plot(grid_t, mean_t, "--", color=color, lw=1.0, label=None if len(grid) else f"{label} (n={n})")
            ax.fill_between(grid_t, mean_t - std_t, mean_t + std_t, color=color, alpha=0.08, lw=0)
        finals = (final_evals or {}).get(label) or []
        if finals:
            x = max(h[-1]["frames"] for h in histories if h)
            ax.errorbar([x], [np.mean(finals)], yerr=[np.std(finals)], fmt="D", color=color, ms=5, capsize=3)
    for j, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color="0.35", ls=(0, (1, 1 + j)), lw=1.0, label=f"{name}: {value:g}")
    ax.plot([], [], "-", color="0.3", label="evaluation (deterministic), mean ± std")
    ax.plot([], [], "--", color="0.3", label="training return (stochastic)")
    if final_evals:
        ax.plot([], [], "D", color="0.3", label="final evaluation, mean ± std")
    ax.set(xlabel="env steps", ylabel="return", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
