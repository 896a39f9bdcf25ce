"""Env paths agree: policies trained on the envpool path, evaluated on envpool and on gymnasium's own env.

    python -m benchmarks.bench_envpaths [--envs HalfCheetah-v5 Hopper-v5 Walker2d-v5] [--seed 2] [--episodes 20]

Reads the checkpoints of ``python -m benchmarks.benchmark learning`` (``benchmarks/runs/<env>-s<seed>/``, trained
with ``env_backend=auto``, i.e. envpool) and plays ``--episodes`` deterministic episodes of each on both paths:
``env_backend=envpool`` and ``env_backend=serial`` (gymnasium's MuJoCo env, one ``GymEnv`` per episode), with the
checkpoint's frozen normalization. Equal return distributions mean the agent trained on envpool scores the same
on gymnasium's env. Writes benchmarks/envpaths.json and sections/envpaths.md, then regenerates RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from benchmarks.benchmark import ENVS, OUT, evaluate_checkpoint, machine, write_results_md

BACKENDS = {"envpool": "envpool (EnvPoolEnv)", "serial": "gymnasium (SerialEnv of GymEnv)"}


def welch_t(a: list[float], b: list[float]) -> float:
    """Welch's t statistic of the difference of means (|t| < ~2: no difference at the 5% level)."""
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return float((np.mean(a) - np.mean(b)) / se) if se > 0 else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_envpaths", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--seed", type=int, default=2, help="which learning-benchmark run's checkpoint")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=2_000_003)
    args = parser.parse_args(argv)
    rows = []
    for env in args.envs:
        path = OUT / "runs" / f"{env}-s{args.seed}" / "checkpoint.pt"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `python -m benchmarks.benchmark learning --envs {env}` first")
        # a small training env: it is never stepped, the checkpoint only needs its specs and statistics
        per_backend = {b: evaluate_checkpoint(path, args.episodes, args.eval_seed,
                                              [f"env_backend={b}", "num_envs=32", "env_threads=1", "progress=false"])
                       for b in BACKENDS}
        a, b = per_backend["envpool"], per_backend["serial"]
        rows.append({"env": env, "checkpoint": str(path), "returns": per_backend, "welch_t": welch_t(a, b),
                     "mean": {k: float(np.mean(v)) for k, v in per_backend.items()},
                     "std": {k: float(np.std(v)) for k, v in per_backend.items()}})
        print(f"  {env}: envpool {np.mean(a):.1f} ± {np.std(a):.1f}, gymnasium {np.mean(b):.1f} ± {np.std(b):.1f}, "
              f"t = {rows[-1]['welch_t']:.2f}", flush=True)
    command = "python -m benchmarks.bench_envpaths " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {"command": command.strip(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "episodes": args.episodes, "eval_seed": args.eval_seed, "rows": rows}
    (OUT / "envpaths.json").write_text(json.dumps(data, indent=2))
    lines = ["## Env paths: a policy trained on envpool, scored on envpool and on gymnasium", "",
             f"- command: `{data['command']}`", f"- machine: {data['machine']}", f"- date: {data['date']}", "",
             f"Each row: the seed-{args.seed} checkpoint of the learning table (1M steps on the envpool path), "
             f"{args.episodes} deterministic episodes on each path with the checkpoint's frozen normalization "
             f"(eval seed {args.eval_seed}; the paths draw their start states from their own RNGs). Welch's t of "
             "the difference of the means: |t| < 2 means no difference at the 5% level.", "",
             "| env | envpool return (mean ± std) | gymnasium return (mean ± std) | Welch t | same at 5%? |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['env']} | {r['mean']['envpool']:.1f} ± {r['std']['envpool']:.1f} | "
                     f"{r['mean']['serial']:.1f} ± {r['std']['serial']:.1f} | {r['welch_t']:.2f} | "
                     f"{'yes' if abs(r['welch_t']) < 2 else 'no'} |")
    (OUT / "sections").mkdir(exist_ok=True)
    (OUT / "sections" / "envpaths.md").write_text("\n".join(lines) + "\n")
    write_results_md()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
