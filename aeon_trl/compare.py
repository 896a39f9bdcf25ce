"""Compare runs: group run folders by their config (all but the seed), one plot of mean +/- std bands, one table.

    runs = [load_run(p) for p in paths]
    groups = group_runs(runs)                 # {label: [Run, ...]}, the label names the keys that differ
    plot_comparison(groups, "plot.png", references={"SB3 PPO (zoo)": 1800.0})
    print(comparison_table(groups))

A run folder is what ``aeon-train`` writes: ``config.yaml``, ``history.json`` (per-iteration metrics) and
``results.json`` (the final deterministic evaluation, steps/s).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from omegaconf import OmegaConf

from aeon_trl.curves import plot_bands

# Bookkeeping keys that say where and how a run was recorded, not what was trained: runs differing only in these
# (and the seed) are seeds of one configuration.
# Leaf names, or "section.leaf" to name one section's.
NOT_COMPARED = ("seed", "run_dir", "progress", "logger", "checkpoint_every", "eval_every", "eval_episodes",
                "eval_every_episodes", "video", "device", "torch_threads", "update_threads", "compile", "env_threads")
RUN_FILES = ("history.json", "results.json", "config.yaml")


class CompareError(ValueError):
    """A path that is not a run folder, or runs that cannot be compared."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flat: "section.leaf" -> value
    history: list[dict]
    results: dict | None

    def get(self, leaf: str) -> Any:
        """The config value of ``leaf`` in whichever section holds it."""
        return next((v for k, v in self.config.items() if _leaf(k) == leaf), None)

    @property
    def seed(self) -> Any:
        return self.get("seed")

    @property
    def final_eval(self) -> float | None:
        """The final deterministic evaluation (results.json), else the last periodic one."""
        if self.results and self.results.get("eval_mean") is not None:
            return float(self.results["eval_mean"])
        evals = [h["eval_return"] for h in self.history if h.get("eval_return") is not None]
        return float(evals[-1]) if evals else None


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config sections -> ``{"section.leaf": value}`` (lists as tuples, so values compare and hash)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders among ``paths``; a folder that is not a run but holds runs (``runs/``) stands for them."""
    found = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"{p} is not a folder: pass run folders written by aeon-train")
        if any((p / name).is_file() for name in RUN_FILES):
            found.append(p)
            continue
        children = sorted(c for c in p.iterdir() if c.is_dir() and (c / "history.json").is_file())
        if not children:
            raise CompareError(f"{p} is not a run folder (no {', '.join(RUN_FILES)}) and holds none")
        found.extend(children)
    return found


def load_run(path: str | Path) -> Run:
    path = Path(path)
    history_file, results_file, config_file = (path / name for name in RUN_FILES)
    if not history_file.is_file():
        raise CompareError(f"{path} has no history.json (a run folder written by aeon-train has one)")
    history = json.loads(history_file.read_text())
    results = json.loads(results_file.read_text()) if results_file.is_file() else None
    if config_file.is_file():
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
    elif results and "config" in results:
        config = results["config"]
    else:
        raise CompareError(f"{path} has neither config.yaml nor a config in results.json")
    return Run(path, flatten(config), history, results)


def group_runs(runs: list[Run], ignore: Iterable[str] = NOT_COMPARED) -> dict[str, list[Run]]:
    """Runs with equal configs except the ``ignore`` keys, under a label made of the keys that differ between
    groups (the env id when there is one group)."""
    ignore = set(ignore)
    keyed: dict[tuple, list[Run]] = {}
    for run in runs:
        kept = ((k, repr(v)) for k, v in run.config.items() if k not in ignore and _leaf(k) not in ignore)
        keyed.setdefault(tuple(sorted(kept)), []).append(run)
    configs = [dict(key) for key in keyed]
    differing = sorted(k for k in set().union(*configs) if len({d.get(k) for d in configs}) > 1)
    groups = {}
    for members in keyed.values():
        first = members[0].config
        parts = [f"{_leaf(k)}={_short(first.get(k))}" for k in differing]
        label = " ".join(parts) if parts else str(members[0].get("env_id") or members[0].path.name)
        groups[label] = sorted(members, key=lambda r: str(r.seed))
    return groups


def _short(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _mean_std(values: list[float], digits: int = 1) -> str:
    if not values:
        return "n/a"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def comparison_table(groups: dict[str, list[Run]]) -> str:
    """Markdown: one row per group with its seeds, final evaluation, last training return, steps/s and env steps."""
    lines = ["| group | seeds | final eval return (mean ± std) | training return at the end | steps/s | env steps |",
             "|---|---|---|---|---|---|"]
    for label, runs in groups.items():
        finals = [r.final_eval for r in runs if r.final_eval is not None]
        train = [h[-1]["episode_return"] for h in (r.history for r in runs)
                 if h and h[-1].get("episode_return") is not None and np.isfinite(h[-1]["episode_return"])]
        sps = [r.results["steps_per_second"] for r in runs if r.results and r.results.get("steps_per_second")]
        steps = sorted({r.history[-1]["frames"] for r in runs if r.history})
        sps_text = f"{np.mean(sps):,.0f}" if sps else "n/a"
        seeds = ", ".join(str(r.seed) for r in runs)
        lines.append(f"| {label} | {seeds} | {_mean_std(finals)} | {_mean_std(train)} | {sps_text} "
                     f"| {', '.join(f'{s:,}' for s in steps)} |")
    return "\n".join(lines) + "\n"


def plot_comparison(groups: dict[str, list[Run]], path: str | Path, title: str | None = None,
                    references: dict[str, float] | None = None) -> Path:
    envs = sorted({str(r.get("env_id")) for runs in groups.values() for r in runs})
    return plot_bands({label: [r.history for r in runs] for label, runs in groups.items()}, path,
                      title if title is not None else ", ".join(envs),
                      final_evals={label: [r.final_eval for r in runs if r.final_eval is not None]
                                   for label, runs in groups.items()},
                      references=references)


def parse_references(items: Iterable[str]) -> dict[str, float]:
    """``NAME=VALUE`` items (the last ``=`` splits, so names may hold one) -> ``{NAME: VALUE}``."""
    refs = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            refs[name] = float(value)
        except ValueError:
            raise CompareError(f"--reference {item!r} is not NAME=VALUE with a number, e.g. 'SB3 PPO=1800'") from None
    return refs
