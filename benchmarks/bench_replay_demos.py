"""Benchmarks of expert demonstrations and prioritized minibatches -> benchmarks/<kind>.json + sections/<kind>.md.

    python -m benchmarks.bench_replay_demos demos --checkpoint CKPT --source "how CKPT was trained" [demo overrides]
    python -m benchmarks.bench_replay_demos per [--env HalfCheetah-v5] [--seeds 4 5] [--timesteps 300000]

``demos``: records ``--episodes`` deterministic expert episodes from the checkpoint (aeon-record-demos), then
trains with and without them (``demos=PATH`` + the overrides) for each seed and reports the env steps at which
the deterministic evaluation (``eval_every`` iterations, 10 episodes), like the expert's own deterministic
play, first reaches ``--fraction`` of the expert's return (the mean over every episode the expert played while
recording); the training episode return of the stochastic policy is reported next to it. ``per``: the same runs with uniform and with prioritized minibatches (plain defaults, no preset).
Runs are ``aeon-train`` processes, one at a time; a run folder whose results.json holds the same config is
reused instead of retrained.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.benchmark import (OUT, REPO, finished_run, first_reach, machine, plot_arms, train_run, training_curve,
                                 write_results_md)

SECTIONS = OUT / "sections"
THREADS = ["env_threads=1", "torch_threads=1"]
PER_VARIANTS = {"uniform minibatches (default)": [],
                "prioritized by abs(advantage)": ["prioritized=true", "priority_key=advantage"],
                "prioritized by abs(TD error)": ["prioritized=true", "priority_key=td_error"]}


def run(name: str, overrides: list[str], preset: bool = True) -> dict:
    """``train_run``, or the results of an earlier run of the same config in the same folder."""
    return finished_run(name, overrides, preset) or train_run(name, overrides, jobs=1, preset=preset)


def return_at(history: list[dict], frames: int, key: str = "episode_return") -> float:
    """The logged ``key`` (training return) of the last iteration at or before ``frames`` that logged it."""
    return next(h[key] for h in reversed(history) if h["frames"] <= frames and key in h)


# ---- demos ----------------------------------------------------------------------------------------------
def demos(args) -> dict:
    from aeon_trl.cli.record_demos import record
    from aeon_trl.ppo import AdvancedPPO
    agent = AdvancedPPO.from_checkpoint(REPO / args.checkpoint)  # a relative path is the repository's
    env = agent.config.env.env_id
    # named relative to the repository, where the training processes start: the runs' configs stay the same
    demo_file, demo_info = (OUT / "runs" / f"demos-{env}.pt").relative_to(REPO), OUT / "runs" / f"demos-{env}.json"
    record_cmd = (f"aeon-record-demos {args.checkpoint} --episodes {args.episodes} "
                  f"--min-return {args.min_return} --out {demo_file}")
    if (REPO / demo_file).exists() and demo_info.exists() and json.loads(demo_info.read_text())["command"] == record_cmd:
        info = json.loads(demo_info.read_text())
        agent.close()
    else:
        try:
            buffer, returns = record(agent.trainer, args.episodes, args.min_return)
        finally:
            agent.close()
        buffer.save(REPO / demo_file)
        info = {"command": record_cmd, "expert_returns": returns, "transitions": len(buffer)}
        demo_info.write_text(json.dumps(info))
    expert = float(np.mean(info["expert_returns"]))
    target = args.fraction * expert
    # 10 episodes per periodic evaluation, as this benchmark has always measured (the default is fewer: cheap
    # curves); on envpool the lean periodic evaluator plays the episodes Trainer.evaluate(10) played before.
    common = [f"env_id={env}", f"total_timesteps={args.timesteps}", f"eval_every={args.eval_every}",
              "eval_every_episodes=10", *THREADS]
    variants = {"with demonstrations": [f"demos={demo_file}", *args.overrides], "without demonstrations": []}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {label: [pool.submit(run, f"demos-{env}-{'demos' if ov else 'none'}-s{seed}",
                                       [*common, f"seed={seed}", *ov]) for seed in args.seeds]
                   for label, ov in variants.items()}
        results = {label: [f.result() for f in fs] for label, fs in futures.items()}
    plot_arms({label: [training_curve(r["history"], "eval_return") for r in per_seed] for label, per_seed in results.items()},
              target, "target", "deterministic evaluation return (10 episodes)",
              f"{env}: PPO with and without {info['transitions']} expert transitions", OUT / f"demos_{env}.png",
              "lower right")
    rows = []
    for label, per_seed in results.items():
        steps = [first_reach(r["history"], target, "eval_return") for r in per_seed]
        checkpoints = [args.timesteps // 5, args.timesteps // 2, args.timesteps]
        rows.append({"variant": label, "overrides": " ".join(variants[label]) or "-", "steps_to_target": steps,
                     "train_steps_to_target": [first_reach(r["history"], target) for r in per_seed],
                     "eval_return_at": {str(c): [round(return_at(r["history"], c, "eval_return")) for r in per_seed]
                                        for c in checkpoints},
                     "train_return_at": {str(c): [round(return_at(r["history"], c)) for r in per_seed]
                                         for c in checkpoints},
                     "eval_returns": [round(r["eval_mean"], 1) for r in per_seed],
                     "eval_mean": float(np.mean([r["eval_mean"] for r in per_seed])),
                     "steps_per_second": statistics.median(r["steps_per_second"] for r in per_seed)})
    with_, without = rows[0]["steps_to_target"], rows[1]["steps_to_target"]
    per_seed_ok = [w is not None and w <= 0.5 * (b if b is not None else args.timesteps)
                   for b, w in zip(without, with_)]  # a baseline "not reached" counts as the budget: conservative
    return {"env_id": env, "checkpoint": args.checkpoint, "checkpoint_source": args.source,
            "record_command": record_cmd, "demo_transitions": info["transitions"],
            "expert_return": expert, "fraction": args.fraction, "target_return": target, "seeds": args.seeds,
            "timesteps": args.timesteps, "rows": rows, "half_or_less_per_seed": per_seed_ok,
            "measure": f"deterministic evaluation return (10 episodes, every {args.eval_every} iterations of "
                       "4,096 env steps; the first crossing counts)"}


def demos_md(data: dict) -> list[str]:
    fmt = lambda s: "not reached" if s is None else f"{s:,}"  # noqa: E731
    lines = [f"{data['env_id']}: {data['demo_transitions']:,} transitions from the checkpoint `{data['checkpoint']}` "
             f"({data['checkpoint_source']}), recorded with `{data['record_command']}`. Expert return "
             f"{data['expert_return']:.0f} (mean of every episode it played while recording); target "
             f"{data['fraction']:.0%} of it = **{data['target_return']:.0f}**, measured on the {data['measure']}. "
             f"Budget {data['timesteps']:,} env steps per run, seeds {data['seeds']}.", "",
             "| variant | overrides | env steps to target (deterministic eval), per seed | "
             + " | ".join(f"eval return at {int(c):,} steps" for c in data["rows"][0]["eval_return_at"])
             + " | env steps to target (training return), per seed | "
             + " | ".join(f"training return at {int(c):,} steps" for c in data["rows"][0]["train_return_at"])
             + " | final eval return, per seed (mean) | steps/s |",
             "|---|---|---|" + "---|" * (2 * len(data["rows"][0]["train_return_at"]) + 1) + "---|---|"]
    for r in data["rows"]:
        evals = " | ".join(str(v) for v in r["eval_return_at"].values())
        trains = " | ".join(str(v) for v in r["train_return_at"].values())
        lines.append(f"| {r['variant']} | `{r['overrides']}` | {', '.join(fmt(s) for s in r['steps_to_target'])} | "
                     f"{evals} | {', '.join(fmt(s) for s in r['train_steps_to_target'])} | {trains} | "
                     f"{r['eval_returns']} ({r['eval_mean']:.0f}) | {r['steps_per_second']:.0f} |")
    ok = data["half_or_less_per_seed"]
    lines += ["", f"Demonstrations needed at most half the steps of the run without them on {sum(ok)} of {len(ok)} "
              "seeds (a run without them that never reached the target counts as the whole budget): the target "
              f"(at most half on every seed) is **{'met' if all(ok) else 'not met'}**.", "",
              f"![demos](demos_{data['env_id']}.png)"]
    return lines


# ---- prioritized replay -------------------------------------------------------------------------------------
def per(args) -> dict:
    common = [f"env_id={args.env}", f"total_timesteps={args.timesteps}", *THREADS]
    rows = []
    for label, ov in PER_VARIANTS.items():
        if args.variants and label not in args.variants:
            continue
        tag = "-".join(o.split("=")[1] for o in ov if o.startswith("priority_key")) or "uniform"
        per_seed = [run(f"per-{args.env}-{tag}-s{seed}", [*common, f"seed={seed}", *ov, *args.overrides],
                        preset=False) for seed in args.seeds]
        rows.append({"variant": label, "overrides": " ".join([*ov, *args.overrides]) or "-",
                     "eval_returns": [round(r["eval_mean"], 1) for r in per_seed],
                     "eval_mean": float(np.mean([r["eval_mean"] for r in per_seed])),
                     "eval_std": float(np.std([r["eval_mean"] for r in per_seed])),
                     "final_train_returns": [round(r["history"][-1]["episode_return"], 1) for r in per_seed],
                     "steps_per_second": statistics.median(r["steps_per_second"] for r in per_seed)})
    return {"env_id": args.env, "seeds": args.seeds, "timesteps": args.timesteps,
            "config": "plain defaults (--no-preset)", "rows": rows}


def per_md(data: dict) -> list[str]:
    lines = [f"{data['env_id']}, {data['config']}, {data['timesteps']:,} env steps, seeds {data['seeds']}; "
             "returns are each run's final 10-episode deterministic evaluation.", "",
             "| variant | overrides | eval return (mean ± std) | per seed | final training return | steps/s |",
             "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['variant']} | `{r['overrides']}` | {r['eval_mean']:.0f} ± {r['eval_std']:.0f} | "
                     f"{r['eval_returns']} | {r['final_train_returns']} | {r['steps_per_second']:.0f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_replay_demos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["demos", "per"])
    parser.add_argument("overrides", nargs="*", help="config overrides of the demo / prioritized runs")
    parser.add_argument("--checkpoint", default="benchmarks/runs/expert-Hopper-v5/checkpoint.pt")
    parser.add_argument("--source", default="an aeon_trl checkpoint", help="where the checkpoint came from")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--min-return", type=float, default=3000.0)
    parser.add_argument("--fraction", type=float, default=0.8)
    parser.add_argument("--eval-every", type=int, default=5, help="demos: iterations between deterministic evaluations")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--variants", nargs="*", default=None, help="per: only these rows (labels)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--note", action="append", default=[], help="a note for the section (how settings were chosen)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    args = parser.parse_intermixed_args(argv)
    defaults = {"demos": ([1, 2, 3], 500_000), "per": ([4, 5], 300_000)}[args.kind]
    args.seeds, args.timesteps = args.seeds or defaults[0], args.timesteps or defaults[1]
    data = demos(args) if args.kind == "demos" else per(args)
    command = "python -m benchmarks.bench_replay_demos " + shlex.join(argv if argv is not None else sys.argv[1:])
    data.update(command=command, machine=machine(), date=time.strftime("%Y-%m-%d"))
    (OUT / f"{args.kind}.json").write_text(json.dumps(data, indent=2))
    title = {"demos": "## Expert demonstrations (DAPG-style)", "per": "## Prioritized minibatches"}[args.kind]
    body = demos_md(data) if args.kind == "demos" else per_md(data)
    SECTIONS.mkdir(parents=True, exist_ok=True)
    (SECTIONS / f"{args.kind}.md").write_text("\n".join(
        [title, "", f"- command: `{command}`", f"- machine: {data['machine']}", f"- date: {data['date']}", "",
         *body, *[f"\nNote: {n}" for n in args.note]]) + "\n")
    write_results_md()
    print((SECTIONS / f"{args.kind}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
