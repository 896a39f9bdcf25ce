"""The cost of the default periodic evaluation (issue 17): training steps/s with and without it, and the time of one
evaluation on the lean path (``PeriodicEvaluator``) against ``Trainer.evaluate``'s TorchRL rollout.

    python -m benchmarks.bench_eval_cost [--timesteps 300000] [--repeats 3] [--episodes 1 2 10]

1. Steps/s: the default HalfCheetah-v5 run (``aeon-train``, preset, 128 envs x 32 steps) with the default periodic
   evaluation (``eval_every=-1``: every ``default_eval_every(1M, 4096) = 12`` iterations, 20 evaluations over the
   default 1M steps) and without it (``eval_every=0``), ``--repeats`` times each, alternating, one run at a time;
   the medians of results.json's ``steps_per_second`` (env steps over the training loop's wall time, periodic
   evaluations included; the final evaluation is not part of it). A run shorter than the default 1M steps keeps
   the default run's interval (an explicit ``eval_every``), so evaluations are as dense per env step as in the
   default run and the relative cost is the default run's.
2. One evaluation: in one process, a trainer after a few iterations (normalization statistics, a policy that
   moves), ``Trainer.evaluate(n)`` and the lean ``PeriodicEvaluator`` (``n`` episodes) alternately, ``--repeats``
   times each; medians, and the two paths' returns (other starts of the same distribution: Welch's t of the
   difference of the means). Then, on HalfCheetah-v5, a shared host's estimate: 3 training iterations and one
   periodic evaluation (``Trainer.periodic_evaluate``, the default episodes) alternately, ``--repeats`` * 3
   times; 20 such evaluations' share of a 1M-step run at the chunks' median steps/s. A load that comes and goes
   hits both sides of each alternation alike, where separate runs (part 1) may catch it on one side only.

Writes benchmarks/eval_cost.json and sections/eval_cost.md, then regenerates RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from benchmarks.bench_envpaths import welch_t
from benchmarks.benchmark import load_span, machine, publish, train_run

ENV = "HalfCheetah-v5"
DEFAULT_TIMESTEPS = 1_000_000


def steps_per_second(timesteps: int, repeats: int) -> dict:
    from aeon_trl.config import Config
    from aeon_trl.evaluation import default_eval_every
    cfg = Config.for_run([f"env_id={ENV}"])[0]
    every = default_eval_every(DEFAULT_TIMESTEPS, cfg.frames_per_batch)  # the default run's interval
    arms = {"with periodic evaluation": [f"eval_every={-1 if timesteps == DEFAULT_TIMESTEPS else every}"],
            "without (eval_every=0)": ["eval_every=0"]}
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for i in range(repeats):
        for arm, overrides in arms.items():
            name = f"evalcost-{'with' if 'with ' in arm else 'without'}-{i}"
            r = train_run(name, [f"env_id={ENV}", f"total_timesteps={timesteps}", "eval_episodes=10", *overrides], 1)
            evals = sum(1 for h in r["history"] if "eval_return" in h)
            runs[arm].append({"steps_per_second": r["steps_per_second"], "wall_time": r["wall_time"],
                              "evaluations": evals})
    medians = {arm: statistics.median(x["steps_per_second"] for x in rs) for arm, rs in runs.items()}
    with_, without = medians.values()
    return {"timesteps": timesteps, "eval_every": every, "episodes_per_evaluation": cfg.train.eval_every_episodes,
            "runs": runs, "median_steps_per_second": medians, "drop": 1 - with_ / without}


def one_evaluation(env_id: str, episodes: list[int], repeats: int, iterations: int = 60) -> dict:
    import torch

    from aeon_trl.config import Config
    from aeon_trl.evaluation import PeriodicEvaluator
    from aeon_trl.trainer import Trainer
    cfg = Config.for_run([f"env_id={env_id}", "progress=false", "logger=none", "eval_episodes=0"])[0]
    trainer = Trainer(cfg)
    rows = []
    try:
        trainer.train(cfg.frames_per_batch * iterations)
        space = trainer.env.action_spec.space
        low, high = space.low.min().item(), space.high.max().item()
        for n in episodes:
            lean = PeriodicEvaluator(cfg, n)
            times = {"Trainer.evaluate": [], "PeriodicEvaluator": []}
            for _ in range(repeats):
                t = time.perf_counter()
                old = trainer.evaluate(n)
                times["Trainer.evaluate"].append(time.perf_counter() - t)
                t = time.perf_counter()
                with torch.random.fork_rng(devices=[]):
                    new = lean.evaluate(trainer.net.policy_mean, trainer.obs_norm.export(), low, high)
                times["PeriodicEvaluator"].append(time.perf_counter() - t)
            lean.close()
            medians = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"env": env_id, "episodes": n, "seconds": times, "median_seconds": medians,
                         "speedup": medians["Trainer.evaluate"] / medians["PeriodicEvaluator"],
                         "returns": {"Trainer.evaluate": old, "PeriodicEvaluator": new},
                         "mean": {"Trainer.evaluate": float(np.mean(old)), "PeriodicEvaluator": float(np.mean(new))},
                         "welch_t": welch_t(old, new) if n > 1 else None})
            print(f"  {env_id}, {n} episodes: Trainer.evaluate {medians['Trainer.evaluate']:.2f} s "
                  f"(return {np.mean(old):.1f}), PeriodicEvaluator {medians['PeriodicEvaluator']:.2f} s "
                  f"(return {np.mean(new):.1f})", flush=True)
        estimate = share_estimate(trainer, 3 * repeats) if env_id == ENV else None
    finally:
        trainer.close()
    return {"iterations_trained": iterations, "rows": rows, "estimate": estimate}


def share_estimate(trainer, alternations: int, iterations: int = 3) -> dict:
    """20 periodic evaluations' share of a default 1M-step run, from alternating training chunks and evaluations."""
    steps_per_second, seconds = [], []
    for _ in range(alternations):
        t = time.perf_counter()
        trainer.train(trainer.frames + iterations * trainer.cfg.frames_per_batch)
        steps_per_second.append(iterations * trainer.cfg.frames_per_batch / (time.perf_counter() - t))
        t = time.perf_counter()
        trainer.periodic_evaluate()
        seconds.append(time.perf_counter() - t)
    sps, evaluation = statistics.median(steps_per_second), statistics.median(seconds)
    share = 20 * evaluation / (DEFAULT_TIMESTEPS / sps + 20 * evaluation)
    print(f"  estimate: training {sps:.0f} steps/s, one periodic evaluation {evaluation:.3f} s -> 20 of them are "
          f"{100 * share:.1f}% of a 1M-step run", flush=True)
    return {"episodes": trainer.cfg.train.eval_every_episodes, "steps_per_second": steps_per_second,
            "evaluation_seconds": seconds, "median_steps_per_second": sps, "median_evaluation_seconds": evaluation,
            "share": share}


def section(data: dict) -> str:
    sps, per_eval = data["steps_per_second"], data["one_evaluation"]
    with_, without = sps["median_steps_per_second"].values()
    evals = sorted({r["evaluations"] for r in sps["runs"]["with periodic evaluation"]})
    lines = ["## Cost of the default periodic evaluation", "",
             f"- command: `{data['command']}`", f"- machine: {data['machine']}", f"- date: {data['date']}",
             f"- load: {data['load']}", "",
             f"The default {ENV} run with its default periodic evaluation ({sps['episodes_per_evaluation']} "
             f"deterministic episode(s) every {sps['eval_every']} iterations: 20 evaluations over the default 1M steps) "
             f"and without it, {sps['timesteps']:,} steps"
             + ("" if sps["timesteps"] == DEFAULT_TIMESTEPS else
                f" (the default run's interval kept: {evals[0] if len(evals) == 1 else evals} evaluations, as dense "
                "per env step as in a 1M-step run)")
             + f", {len(sps['runs']['without (eval_every=0)'])} runs each, alternating, one at a time. Steps/s: "
             "results.json's, env steps over the training loop's wall time, periodic evaluations included.", "",
             "| | median steps/s | runs (steps/s) |", "|---|---|---|"]
    for arm, runs in sps["runs"].items():
        lines.append(f"| {arm} | {sps['median_steps_per_second'][arm]:,.0f} | "
                     f"{', '.join(format(r['steps_per_second'], ',.0f') for r in runs)} |")
    lines += ["", f"Steps/s drop from the periodic evaluation: **{100 * sps['drop']:.1f}%** (issue 17 asks for at most "
              f"5%; {with_:,.0f} vs {without:,.0f}).", "",
              f"One evaluation, after {per_eval['iterations_trained']} training iterations, medians of "
              f"{len(per_eval['rows'][0]['seconds']['Trainer.evaluate'])} alternating calls: `Trainer.evaluate` (a "
              "TorchRL env stack built per call, rolled out for the whole episode limit) against the lean "
              "`PeriodicEvaluator` (gymnasium envs and arrays in the training process) that periodic evaluations "
              "use.", "",
              "| env | episodes | Trainer.evaluate (s) | PeriodicEvaluator (s) | speed-up "
              "| mean return (Trainer.evaluate / PeriodicEvaluator) | Welch t |", "|---|---|---|---|---|---|---|"]
    for r in per_eval["rows"]:
        m, mean, t = r["median_seconds"], r["mean"], r["welch_t"]
        lines.append(f"| {r['env']} | {r['episodes']} | {m['Trainer.evaluate']:.2f} | {m['PeriodicEvaluator']:.2f} | "
                     f"{r['speedup']:.1f}x | {mean['Trainer.evaluate']:.1f} / {mean['PeriodicEvaluator']:.1f} | "
                     f"{'n/a' if t is None else format(t, '.2f')} |")
    est = per_eval.get("estimate")
    if est:
        lines += ["", f"Shared-host estimate ({ENV}, one process, {len(est['evaluation_seconds'])} alternations of 3 "
                  f"training iterations and one periodic evaluation of {est['episodes']} episode(s)): training "
                  f"{est['median_steps_per_second']:,.0f} steps/s, one evaluation {est['median_evaluation_seconds']:.3f} "
                  f"s, so 20 evaluations are **{100 * est['share']:.1f}%** of a 1M-step run's time."]
    lines += ["", "The two paths play other starts of the same distribution (envpool's RNG or TorchRL's seeding for "
              "`Trainer.evaluate`, gymnasium's `reset(seed=s + i)` for the lean one, as aeon-eval); |t| < 2: the same "
              "mean at the 5% level."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_eval_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--episodes", type=int, nargs="+", default=[1, 2, 10])
    parser.add_argument("--eval-envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_eval_cost " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = os.getloadavg()[0]
    per_eval = {"iterations_trained": 60, "rows": [], "estimate": None}
    for env_id in args.eval_envs:
        part = one_evaluation(env_id, args.episodes, args.repeats)
        per_eval["rows"] += part["rows"]
        per_eval["estimate"] = per_eval["estimate"] or part["estimate"]
    sps = steps_per_second(args.timesteps, args.repeats)
    print(f"  steps/s: {sps['median_steps_per_second']}, drop {100 * sps['drop']:.1f}%", flush=True)
    data = {"command": command.strip(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "load": load_span(load_start), "steps_per_second": sps, "one_evaluation": per_eval}
    publish("eval_cost", data, section(data))
    print(section(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
