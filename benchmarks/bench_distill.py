"""The distillation benchmark: every student size in ``--sizes`` distilled from the seed-2 teacher of each env in
``--envs`` (``benchmarks/runs/<env>-s2``, trained by ``python -m benchmarks.benchmark learning``), with
``aeon-distill``'s recipe options; writes benchmarks/distill.json and sections/distill.md, then RESULTS.md.

    python -m benchmarks.bench_distill [--envs HalfCheetah-v5 Hopper-v5] [--sizes 32,32 16,16] [distill options]
    python -m benchmarks.bench_distill --report     # rewrite the section from benchmarks/distill.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from aeon_trl.cli.distill import config_from_args, parser, percent, run
from benchmarks.benchmark import OUT, machine, write_results_md

BENCH_ENVS = ["HalfCheetah-v5", "Hopper-v5"]
# Student widths of the trade-off (parameter ratios depend on the env: [32, 32] is 0.19 of the gated
# HalfCheetah teacher, 0.30 of the Hopper one).
BENCH_SIZES = [[32, 32], [16, 16], [8, 8]]


def benchmark(args: argparse.Namespace) -> dict:
    """Every size in ``--sizes`` for every teacher in ``--envs``; the teacher is evaluated once per env."""
    sizes = [[int(w) for w in s.split(",")] for s in args.sizes] if args.sizes else BENCH_SIZES
    rows = []
    for env_id in args.envs:
        checkpoint = OUT / "runs" / f"{env_id}-s2" / "checkpoint.pt"
        teacher_returns = None
        for hidden in sizes:
            cfg = config_from_args(args, hidden_sizes=hidden)
            name = f"{env_id}-{'x'.join(map(str, hidden))}-{cfg.loss}-dagger{cfg.dagger_rounds}{'-noisy' * cfg.explore}"
            res = run(checkpoint, cfg, OUT / "runs" / "distill" / name, args.latency_calls, teacher_returns)
            teacher_returns = res["teacher_returns"]
            rows.append(res)
    return {"rows": rows}


def recipe(cfg: dict) -> str:
    """How a student was made, in a few words: loss, teacher states, DAgger rounds (and noise)."""
    def k(n: int) -> str:
        return f"{n / 1000:g}k" if n >= 1000 else str(n)
    text = f"{cfg['loss']}, {k(cfg['teacher_frames'])} teacher states"
    if cfg["dagger_rounds"]:
        text += f" + {cfg['dagger_rounds']} x {k(cfg['dagger_frames'])} DAgger"
    return text + (", noisy" if cfg["explore"] else "")


def merge_previous(data: dict, path: Path) -> None:
    """A run of some (teacher, size) pairs keeps the earlier rows of the other pairs, each with its command."""
    for row in data["rows"]:
        row["command"] = data["command"]
    if not path.exists():
        return
    old = json.loads(path.read_text())
    key = lambda r: (r["env_id"], tuple(r["config"]["hidden_sizes"]), recipe(r["config"]))  # noqa: E731
    new_keys = {key(r) for r in data["rows"]}
    kept = [{"command": old["command"], **r} for r in old["rows"] if key(r) not in new_keys]
    order = {env: i for i, env in enumerate(dict.fromkeys(r["env_id"] for r in kept + data["rows"]))}
    data["rows"] = sorted(kept + data["rows"], key=lambda r: (order[r["env_id"]], -r["student_params"]))


def write_section(data: dict, path: Path) -> None:
    lines = ["## Distillation", "", f"- command: `{data['command']}`", f"- machine: {data['machine']}",
             f"- date: {data['date']}", "",
             "| teacher | student | recipe | actor params student / teacher | return teacher | return student | "
             "student / teacher | mean abs action error (teacher states) | same, student's own states | "
             "latency us: teacher / student module | student .pt2 | teacher get_action |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lat = r["latency_us"]
        lines.append(
            f"| {r['env_id']} {r['teacher_hidden_sizes']} | {r['config']['hidden_sizes']} | {recipe(r['config'])} | "
            f"{r['student_params']:,} / {r['teacher_params']:,} ({r['param_ratio']:.2f}) | "
            f"{r['teacher_return']:.0f} ± {np.std(r['teacher_returns']):.0f} | "
            f"{r['student_return']:.0f} ± {np.std(r['student_returns']):.0f} | {percent(r['return_ratio'])} | "
            f"{r['action_mean_abs_error']:.3f} | {own_states_error(r)} | "
            f"{lat['teacher_module']:.1f} / {lat['student_module']:.1f} | "
            f"{lat['student_pt2']:.1f} | {lat['teacher_get_action']:.1f} |")
    loads = [r["load_average"] for r in data["rows"] if "load_average" in r]
    if loads:
        lines += ["", f"1-minute load average when the latencies were timed: {min(loads):.1f}-{max(loads):.1f} "
                  f"on {os.cpu_count()} cores."]
    commands = sorted({r["command"] for r in data["rows"] if "command" in r})
    if len(commands) > 1:
        lines += ["", "Rows come from: " + "; ".join(f"`{c}`" for c in commands)]
    lines += [""] + [f"- {line}" for line in verdicts(data["rows"])]
    for note in data.get("notes", []):
        lines += ["", note]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def own_states_error(row: dict) -> str:
    """The student's |action error| on its own states (the last DAgger round's, before training on them)."""
    last = row["history"][-1]
    return f"{last['fresh_mean_abs_error']:.3f}" if last["collected_by"] == "student" else "n/a (no DAgger)"


def verdicts(rows: list[dict]) -> list[str]:
    """Per teacher: does a student with <= 1/4 of its actor parameters keep >= 95% of its return?"""
    out = []
    for env_id in dict.fromkeys(r["env_id"] for r in rows):
        small = [r for r in rows if r["env_id"] == env_id and r["param_ratio"] <= 0.25 and r["return_ratio"] is not None]
        if not small:
            out.append(f"{env_id}: no student with <= 1/4 of the teacher's actor parameters and a comparable "
                       "(positive) teacher return was run.")
            continue
        best = max(small, key=lambda r: r["return_ratio"])
        met = "target met" if best["return_ratio"] >= 0.95 else "target NOT met"
        out.append(f"{env_id}: {met}: the best student with <= 1/4 of the teacher's actor parameters, "
                   f"{best['config']['hidden_sizes']} ({best['param_ratio']:.2f}x), keeps "
                   f"{100 * best['return_ratio']:.1f}% of the teacher's return ({best['student_return']:.0f} vs "
                   f"{best['teacher_return']:.0f})"
                   + (f"; best of {len(small)} such rows, all on the same evaluation episodes (no separate "
                      "validation seeds), so this figure is optimistic." if len(small) > 1 else "."))
    return out


def parse_args(argv=None):
    p = parser(prog="python -m benchmarks.bench_distill", description=__doc__)
    p.add_argument("--report", action="store_true", help="rewrite the section from benchmarks/distill.json")
    p.add_argument("--envs", nargs="+", default=BENCH_ENVS, help="teachers benchmarks/runs/<env>-s2")
    p.add_argument("--sizes", nargs="+", default=None, metavar="W,W",
                   help="student widths, e.g. 32,32 16,16 (default: 32,32 16,16 8,8)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        data = json.loads((OUT / "distill.json").read_text())
    else:
        command = "python -m benchmarks.bench_distill " + " ".join(argv if argv is not None else sys.argv[1:])
        data = benchmark(args)
        data.update(command=command, machine=machine(), date=time.strftime("%Y-%m-%d"))
        merge_previous(data, OUT / "distill.json")
        (OUT / "distill.json").write_text(json.dumps(data, indent=2))
    write_section({**data, "notes": NOTES}, OUT / "sections" / "distill.md")
    write_results_md()
    return 0


NOTES = [
    "Teachers: the seed-2 checkpoints of `python -m pipelines.benchmark learning --envs HalfCheetah-v5` and "
    "`--envs Hopper-v5` (1M steps each, [64, 64] actor; HalfCheetah with the preset's sigmoid gate), copied into "
    "`benchmarks/runs/<env>-s2/`. Returns: deterministic, 10 episodes, the same eval seeds for teacher and "
    "student (the teacher's numbers equal its training run's final evaluation). Actor parameters count the "
    "policy network incl. its log-std, not the critic. Latency: one raw observation (batch 1), median over the "
    "timed calls, 1 torch thread, on this shared 2-core machine; the module columns time the same deployable "
    "graph (normalize -> MLP -> clip), `.pt2` the torch.export program loaded back, `get_action` the "
    "AdvancedPPO facade (TensorDict + TorchRL actor + numpy). At batch 1 a forward pass is a handful of "
    "dispatched ops per layer whatever their width, so latency falls far less than the parameter count; "
    "absolute figures are inflated when other jobs load the machine; the interleaved timing keeps the "
    "comparison between the columns of a row fair.",
    "Exported files checked outside aeon_trl (2026-11-30, the rows' `kl, 50k teacher states + 3 x 20k DAgger` "
    "students; gymnasium seeds 0-9, other starts than the table's): `python examples/infer_student.py "
    "benchmarks/runs/distill/<student folder> --episodes 10` gave 4729 for HalfCheetah [32, 32] against 4912 for "
    "the teacher's `AdvancedPPO.get_action` on the same seeds (96.3%), and 3362 for Hopper [24, 24] against "
    "3357 (100.1%).",
    "Recipe: `kl` = KL(teacher || student) of the Gaussians (also fits the std), `mse` = on the means; "
    "states from the teacher's deterministic rollouts, then DAgger rounds where the student acts and the "
    "teacher labels (Ross et al. 2011); 3,000 Adam steps (lr 1e-3, batch 256) after each round, unless the "
    "row's command says otherwise. The student's own-states column is its error on the last DAgger round's "
    "fresh states, before it trained on them.",
]

if __name__ == "__main__":
    sys.exit(main())
