"""Summarise the runs under a folder (``aeon-collect RUN_DIR [--json]``, ``aeon_trl.cli.collect``).

One row per run folder holding a results.json (written by ``aeon_trl.launch.job`` or ``aeon-train``), a row
``missing`` for folders with a config.yaml but no results yet (still running, or failed: see slurm_logs/), and
the mean ± std over runs of the final evaluation return and of the training throughput.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path


def collect(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder")
    runs, missing = [], []
    for cfg in sorted(run_dir.rglob("config.yaml")):
        folder = cfg.parent
        if "slurm_logs" in folder.parts:
            continue
        results = folder / "results.json"
        if not results.exists():
            missing.append(str(folder.relative_to(run_dir)) or ".")
            continue
        r = json.loads(results.read_text())
        runs.append({"run": str(folder.relative_to(run_dir)) or ".", "seed": r.get("seed"),
                     "timesteps": r.get("timesteps"), "eval_mean": r.get("eval_mean"), "eval_std": r.get("eval_std"),
                     "steps_per_second": r.get("steps_per_second"), "starts": r.get("starts", [0]),
                     "world_size": r.get("world_size", 1)})
    return {"run_dir": str(run_dir), "runs": runs, "missing": missing,
            "eval_return": _mean_std([r["eval_mean"] for r in runs]),
            "steps_per_second": _mean_std([r["steps_per_second"] for r in runs])}


def _mean_std(values) -> dict | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "n": len(values)}


def format_table(summary: dict) -> str:
    head = f"{'run':<24} {'seed':>5} {'frames':>9} {'eval return':>17} {'steps/s':>9} {'starts':>7}"
    lines = [f"runs in {summary['run_dir']}", head, "-" * len(head)]
    for r in summary["runs"]:
        ev = "n/a" if r["eval_mean"] is None else f"{r['eval_mean']:.1f} ± {r['eval_std']:.1f}"
        lines.append(f"{r['run']:<24} {str(r['seed']):>5} {r['timesteps']:>9} {ev:>17} "
                     f"{r['steps_per_second']:>9.0f} {len(r['starts']):>7}")
    for m in summary["missing"]:
        lines.append(f"{m:<24} {'':>5} {'missing (running or failed)':>35}")
    lines.append("-" * len(head))
    ev, sps = summary["eval_return"], summary["steps_per_second"]
    if ev:
        lines.append(f"eval return over {ev['n']} run(s): {ev['mean']:.1f} ± {ev['std']:.1f} (mean ± std of the "
                     "runs' final evaluation means)")
    if sps:
        lines.append(f"steps/s: {sps['mean']:.0f} ± {sps['std']:.0f}")
    if not summary["runs"]:
        lines.append("no results.json yet")
    return "\n".join(lines)
