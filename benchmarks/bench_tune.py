"""Benchmark of the AutoTuner: does population-based training find a config that beats the base config?

    python -m benchmarks.bench_tune                      # Hopper-v5, benchmarks/tuning/hopper.yaml, 5 generations
    python -m benchmarks.bench_tune --generations 3 --seeds 100 101

1. Tune (resumable: benchmarks/runs/tune-<env>): population 8, each generation ``eval_timesteps`` steps per member.
2. Train the base config and the best config from scratch for the best lineage's total steps
   (generations x eval_timesteps), on fresh seeds (never the tuner's), one run at a time, and compare their
   final 10-episode deterministic evaluations. The best member's own final policy (trained under the PBT
   schedule) is evaluated too, on a fresh evaluation seed.
Writes benchmarks/tune.json, benchmarks/sections/tune.md, benchmarks/tune_metric.png, benchmarks/tune_hparams.png.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from benchmarks.benchmark import OUT, evaluate_checkpoint, machine, mean_std, train_run

TUNING = Path(__file__).parent / "tuning" / "hopper.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--tuning", default=str(TUNING))
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102],
                        help="fresh seeds of the from-scratch comparison (the tuner uses seed 0: members 1000+)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override tuning keys of the YAML (e.g. metric=eval_return eval_timesteps=24576)")
    parser.add_argument("--name", default="tune", help="output name: benchmarks/<name>.json, sections/<name>.md")
    parser.add_argument("--note", action="append", default=[], help="a note for the section (kept in the JSON)")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the section and plots from benchmarks/tune.json and the tuner's state")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from aeon_trl.config import Config
    from aeon_trl.tuning import AutoTuner, TuningConfig
    from aeon_trl.cli.tune import members_table, plot

    tune_dir = OUT / "runs" / f"{args.name}-{args.env}"
    if args.report:
        state = json.loads((tune_dir / "tuner_state.json").read_text())
        for png in plot(state, tune_dir):
            shutil.copy(png, OUT / png.name.replace("tune", args.name, 1))
        data = json.loads((OUT / f"{args.name}.json").read_text())
        if args.note:
            data["notes"] = args.note
            (OUT / f"{args.name}.json").write_text(json.dumps(data, indent=1))
        write_section(data, members_table(state), args.name)
        from benchmarks.benchmark import write_results_md
        write_results_md()
        return 0
    command = "python -m benchmarks.bench_tune " + " ".join(argv if argv is not None else sys.argv[1:])
    # The base is what aeon-train (and so the from-scratch comparison below) runs: defaults + the env's preset.
    base, preset = Config.for_run([f"env_id={args.env}", "env_threads=1", "torch_threads=1", "progress=false"])
    data = OmegaConf.merge(OmegaConf.load(args.tuning), OmegaConf.from_dotlist(args.set))
    tuning = TuningConfig.from_dict(OmegaConf.to_container(data, resolve=True), base)
    start = time.perf_counter()
    tuner = AutoTuner(base, tuning, tune_dir=tune_dir, log=lambda m: print(m, flush=True))
    best = tuner.run(args.generations)
    tune_wall = time.perf_counter() - start
    state = tuner.state
    pngs = plot(state, tune_dir)
    for png in pngs:
        shutil.copy(png, OUT / png.name.replace("tune", args.name, 1))
    last = state["history"][-1]
    best_member = last["members"][last["ranking"][0]]
    horizon = best.train.total_timesteps
    print(f"tuned in {tune_wall:.0f} s; best member {best_member['id']}: {best_member['hparams']}", flush=True)

    own = evaluate_checkpoint(tune_dir / state["members"][best_member["id"]]["checkpoint"], 10, seed=7_000_003,
                              overrides=["env_threads=1"])
    rows = {"base": [], "best": []}
    best_overrides = [f"{k}={v}" for k, v in best_member["hparams"].items()]
    for seed in args.seeds:
        common = [f"env_id={args.env}", f"total_timesteps={horizon}", f"seed={seed}", "torch_threads=1"]
        rows["base"].append(train_run(f"{args.name}-base-s{seed}", common, jobs=2))
        rows["best"].append(train_run(f"{args.name}-best-s{seed}", common + best_overrides, jobs=2))
    summary = {}
    for name, runs in rows.items():
        evals = [r["eval_mean"] for r in runs]
        mean, std = mean_std(evals)
        summary[name] = {"eval_mean": mean, "eval_std": std, "per_seed": evals,
                         "steps_per_second": float(np.median([r["steps_per_second"] for r in runs]))}
    data = {
        "command": command, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "env": args.env, "generations": args.generations, "tuning": tuning.to_dict(), "horizon": horizon,
        "tune_wall_time": tune_wall, "seeds": args.seeds, "best_member": best_member,
        "best_member_own_policy_eval": {"mean": float(np.mean(own)), "std": float(np.std(own)), "returns": own},
        "base_hparams": {k: getattr(base._section_of(k), k) for k in tuning.parameters},
        "from_scratch": summary, "history": state["history"], "notes": args.note,
        "base_source": f"defaults + presets/{preset.name}" if preset else "defaults",
    }
    (OUT / f"{args.name}.json").write_text(json.dumps(data, indent=1))
    write_section(data, members_table(state), args.name)
    from benchmarks.benchmark import write_results_md
    write_results_md()
    b, t = summary["base"], summary["best"]
    print(f"base {b['eval_mean']:.0f} ± {b['eval_std']:.0f}  vs  tuned {t['eval_mean']:.0f} ± {t['eval_std']:.0f}")
    return 0


def write_section(data: dict, table: str, name: str = "tune") -> None:
    b, t = data["from_scratch"]["base"], data["from_scratch"]["best"]
    own = data["best_member_own_policy_eval"]
    tc = data["tuning"]
    verdict = "beats" if t["eval_mean"] > b["eval_mean"] else "does NOT beat"
    overlap = max(t["eval_mean"] - t["eval_std"], b["eval_mean"] - b["eval_std"]) <= \
        min(t["eval_mean"] + t["eval_std"], b["eval_mean"] + b["eval_std"])
    wins = sum(x > y for x, y in zip(t["per_seed"], b["per_seed"]))
    best_id = data["best_member"]["id"]
    copies = [(rec["generation"] + 1, pa) for rec in data["history"] for lo, pa in rec["exploited"] if lo == best_id]
    final_since = copies[-1][0] + 1 if copies else 1
    lineage = ("; ".join(f"after generation {g} it copied member {pa}" for g, pa in copies) or "it was never exploited")
    lines = [
        f"## Population-based tuning (AutoTuner): {data['env']}, metric {data['tuning']['metric']}", "",
        f"- command: `{data['command']}`", f"- machine: {data['machine']}", f"- date: {data['date']}",
        f"- tuner: {data['env']}, population {tc['population_size']}, {data['generations']} generations x "
        f"{tc['eval_timesteps']} steps per member, metric `{tc['metric']}`, mutation_rate {tc['mutation_rate']}, "
        f"bottom {tc['exploit_fraction']:.0%} exploit the top {tc['exploit_fraction']:.0%}, {tc['workers']} parallel "
        f"workers (env_threads=1, torch_threads=1); tuning wall time {data['tune_wall_time'] / 60:.0f} min on a "
        "shared 2-core machine",
        f"- comparison: base config vs the best member's final hyperparameters, each trained from scratch for "
        f"{data['horizon']} steps (the best lineage's total) on fresh seeds {data['seeds']} (the tuner's members "
        "used seeds 1000+), final 10-episode deterministic evaluation", "",
        "| config | eval return (mean ± std over seeds) | per seed | steps/s |", "|---|---|---|---|",
        f"| base ({data.get('base_source', 'defaults')}) | {b['eval_mean']:.0f} ± {b['eval_std']:.0f} | {[round(x) for x in b['per_seed']]} | "
        f"{b['steps_per_second']:.0f} |",
        f"| tuned (best member's hyperparameters) | {t['eval_mean']:.0f} ± {t['eval_std']:.0f} | "
        f"{[round(x) for x in t['per_seed']]} | {t['steps_per_second']:.0f} |",
        f"| best member's own policy (PBT schedule, same steps; 10 episodes, one fresh eval seed) | "
        f"{own['mean']:.0f} ± {own['std']:.0f} (over episodes) | - | - |", "",
        f"Result: the tuned config {verdict} the base config at equal steps; it is better on {wins} of "
        f"{len(t['per_seed'])} seeds" + (" (the ± ranges overlap: not a significant difference)." if overlap
                                         else " (the ± ranges do not overlap)."), "",
        f"Notes: PBT ranks lineages, not configs trained from scratch. The winner (member {best_id}) trained with "
        f"its final hyperparameters only from generation {final_since} of {data['generations']} on ({lineage}; "
        "member 0 starts at the base config), and the tuning metric is " + (
            "the lineage's noisy training return" if tc["metric"] == "100_episode_return" else
            f"a {tc['eval_episodes']}-episode deterministic evaluation of the lineage on one fixed seed") + ". So the "
        "table compares a from-scratch run of the winner's last hyperparameters with the base config, which is what "
        "`aeon-train --config best.yaml` gives; the best member's own policy row is what PBT itself produced.",
        "", "Base hyperparameters: " + ", ".join(f"`{k}={v}`" for k, v in data["base_hparams"].items()), "",
        "Final generation (rank by the tuning metric; parents = the members it copied, generation by generation):",
        "", table, "", f"![metric per generation]({name}_metric.png)", f"![hyperparameters per generation]({name}_hparams.png)",
        *[f"\nNote: {n}" for n in data.get("notes", [])],
    ]
    (OUT / "sections").mkdir(parents=True, exist_ok=True)
    (OUT / "sections" / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
