"""Curiosity benchmark: sparse-reward tasks with and without the ICM intrinsic reward, same budget and seeds.

    python -m benchmarks.bench_curiosity --tasks mcc cheetah [--mcc-seeds 0 1 2 3 4] [--cheetah-seeds 0 1 2]

Each run is one ``aeon-train`` process (``train_run``, env preset on); the no-curiosity arm is the same config
with ``curiosity=false``. A run "reaches the goal" when its final deterministic evaluation (10 episodes) has a
mean return >= the task's threshold. Writes benchmarks/curiosity.json (tasks run earlier are kept),
benchmarks/curiosity_<task>.png and benchmarks/sections/curiosity.md, then regenerates RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from aeon_trl.sparse_envs import SPARSE_HALF_CHEETAH
from benchmarks.benchmark import OUT, finished_run, first_reach, machine, plot_arms, train_run, write_results_md

# task -> (env id, goal threshold on the eval mean return, what the threshold means)
TASKS = {
    "mcc": ("MountainCarContinuous-v0", 90.0, "eval mean return >= 90 (the car reaches the flag)"),
    "cheetah": (SPARSE_HALF_CHEETAH, 100.0, "eval mean return >= 100 (past the 5 m mark by step 900)"),
}
ARMS = {"curiosity": ["curiosity=true"], "no curiosity": ["curiosity=false"]}


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None  # no episode finished yet: JSON null, not NaN


def run_task(task: str, seeds: list[int], timesteps: int, reuse: bool = False, previous: dict | None = None) -> dict:
    """Both arms on ``seeds``; with ``previous`` (this task's entry in curiosity.json, same budget) its runs on
    other seeds are kept and the new seeds added."""
    env_id, threshold, meaning = TASKS[task]
    if previous is not None and previous["timesteps"] != timesteps:
        raise SystemExit(f"--add-seeds: the {task} runs in curiosity.json used {previous['timesteps']} steps, "
                         f"not {timesteps}; pass the same --{task}-timesteps")
    arms = {}
    for arm, overrides in ARMS.items():
        runs = [r for r in previous["arms"][arm]["runs"] if r["seed"] not in seeds] if previous else []
        for seed in seeds:
            name = f"curiosity-{task}-{arm.replace(' ', '_')}-s{seed}"
            run_overrides = [f"env_id={env_id}", f"seed={seed}", f"total_timesteps={timesteps}", "env_threads=1",
                             "torch_threads=1", *overrides]
            r = (finished_run(name, run_overrides) if reuse else None) or train_run(name, run_overrides, jobs=1)
            runs.append({"seed": seed, "eval_mean": r["eval_mean"], "reached": r["eval_mean"] >= threshold,
                         "train_steps_to_threshold": first_reach(r["history"], threshold),
                         "wall_time": r["process_wall_time"],
                         "curve": [(h["frames"], _finite(h["episode_return"]), h.get("reward_intrinsic"))
                                   for h in r["history"]]})
        runs.sort(key=lambda r: r["seed"])
        arms[arm] = {"runs": runs, "reached": sum(r["reached"] for r in runs), "seeds": len(runs),
                     "eval_mean": float(np.mean([r["eval_mean"] for r in runs]))}
    curves = {arm: [([c[0] for c in r["curve"]], [np.nan if c[1] is None else c[1] for c in r["curve"]])
                    for r in data["runs"]] for arm, data in arms.items()}
    plot_arms(curves, threshold, "goal threshold", "training episode return (extrinsic)",
              f"{env_id}: PPO +/- ICM curiosity", OUT / f"curiosity_{task}.png")
    return {"env_id": env_id, "threshold": threshold, "meaning": meaning, "timesteps": timesteps, "arms": arms}


def section(data: dict) -> str:
    lines = ["## Curiosity (ICM) on sparse rewards", "",
             f"- command: `{data['command']}`", f"- machine: {data['machine']} (shared with other jobs)",
             f"- date: {data['date']}",
             "- each run: one `aeon-train` process with the env's preset; the no-curiosity arm is the same config "
             "with `curiosity=false`; returns are the final 10-episode deterministic evaluation (extrinsic reward only)",
             "", "| task | budget (env steps) | goal | arm | reached goal | eval return per seed | mean | "
             "steps to goal (training curve) |", "|---|---|---|---|---|---|---|---|"]
    for task, t in data["tasks"].items():
        for arm, a in t["arms"].items():
            per_seed = ", ".join(f"s{r['seed']}: {r['eval_mean']:.1f}" for r in a["runs"])
            steps = ", ".join("-" if r["train_steps_to_threshold"] is None else f"{r['train_steps_to_threshold'] // 1000}k"
                              for r in a["runs"])
            lines.append(f"| {t['env_id']} | {t['timesteps']:,} | {t['meaning']} | {arm} | {a['reached']}/{a['seeds']} "
                         f"| {per_seed} | {a['eval_mean']:.1f} | {steps} |")
    lines += [""] + [f"![{t['env_id']}](curiosity_{task}.png)" for task, t in data["tasks"].items()]  # RESULTS.md-relative
    if data.get("notes"):
        lines += ["", *[f"- {n}" for n in data["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_curiosity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", choices=list(TASKS), default=list(TASKS),
                        help="none (`--tasks`): only rewrite the section, e.g. with new --note lines")
    parser.add_argument("--mcc-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--mcc-timesteps", type=int, default=100_000)
    parser.add_argument("--cheetah-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cheetah-timesteps", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true",
                        help="read runs already finished under benchmarks/runs/ instead of training them again")
    parser.add_argument("--add-seeds", action="store_true",
                        help="keep the runs of other seeds already in curiosity.json and add these seeds")
    parser.add_argument("--note", action="append", default=[], help="a note line for the markdown section")
    args = parser.parse_args(argv)
    path = OUT / "curiosity.json"
    data = json.loads(path.read_text()) if path.exists() else {"tasks": {}}
    settings = {"mcc": (args.mcc_seeds, args.mcc_timesteps), "cheetah": (args.cheetah_seeds, args.cheetah_timesteps)}
    for task in args.tasks:
        previous = data["tasks"].get(task) if args.add_seeds else None
        command = "python -m benchmarks.bench_curiosity " + " ".join(argv if argv is not None else sys.argv[1:])
        data["tasks"][task] = run_task(task, *settings[task], reuse=args.reuse, previous=previous)
        data["tasks"][task]["command"] = f"{previous['command']}; {command}" if previous else command
    data.update(command="; ".join(sorted({t["command"] for t in data["tasks"].values()})), machine=machine(),
                date=time.strftime("%Y-%m-%d"), notes=list(dict.fromkeys(data.get("notes", []) + args.note)))
    path.write_text(json.dumps(data, indent=2))
    (OUT / "sections").mkdir(exist_ok=True)
    (OUT / "sections" / "curiosity.md").write_text(section(data))
    write_results_md()
    print((OUT / "sections" / "curiosity.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
