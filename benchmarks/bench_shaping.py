"""The benchmark of automated shaping: the speed curriculum, and ablation rows for dynamic batch sizing and LAMB.

    python -m benchmarks.bench_shaping curriculum [overrides ...] [--seeds 1 2 3] [--timesteps 400000]
    python -m benchmarks.bench_shaping ablation [overrides ...] [--seeds 4 5] [--timesteps 500000]

``curriculum``: HalfCheetah-v5 with ``curriculum=speed`` from level 0 against the same env started on its
hardest level (``curriculum_start=-1``: training on the final task directly), same seeds and budget; the figure
is the first env step at which the hardest level's success window passes the threshold ("not reached" if it
never does), and the final evaluation on the hardest level. ``ablation``: HalfCheetah-v5 with the plain
defaults (``--no-preset``) against ``dynamic_batch=true`` and ``optimizer=lamb``. Writes ``benchmarks/<curriculum|shaping_ablation>.json`` and a section
``benchmarks/sections/<same>.md``, then regenerates RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from benchmarks.benchmark import OUT, machine, mean_std, run_grid, train_run, write_results_md

ENV = "HalfCheetah-v5"
# The curriculum task: 200-step episodes; an episode succeeds when its mean forward speed reaches the level's
# target. The levels, window and threshold are the config's (``curriculum_levels=[...]`` overrides them).
CURRICULUM = ["curriculum=speed", "max_episode_steps=200"]
ABLATIONS = {"default": [], "+ dynamic batch (x1.5 when std(len) < 0.1 mean, cap 16384)": ["dynamic_batch=true"],
             "+ LAMB (layer-wise trust ratio)": ["optimizer=lamb"]}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def reached_at(history: list[dict]) -> int | None:
    """First env step at which the hardest level's success window passed the threshold."""
    return next((h["frames"] for h in history if h.get("curriculum_solved")), None)


def curriculum_arms(shaping) -> dict[str, list[str]]:
    levels = shaping.curriculum_levels
    return {f"curriculum (levels {levels[0]:g} -> {levels[-1]:g} m/s)": ["curriculum_start=0"],
            f"hardest level directly ({levels[-1]:g} m/s)": ["curriculum_start=-1"]}


def curriculum(args) -> dict:
    from aeon_trl.config import Config
    shaping = Config().with_overrides([*CURRICULUM, *args.overrides]).shaping
    arms = curriculum_arms(shaping)
    name = lambda arm, seed: f"curriculum-{_slug(arm)}-s{seed}"  # noqa: E731
    results = run_grid({name(arm, seed): [f"env_id={ENV}", f"seed={seed}", f"total_timesteps={args.timesteps}",
                                          *CURRICULUM, *ov, *args.overrides]
                        for arm, ov in arms.items() for seed in args.seeds}, args.jobs)
    rows = []
    for arm, ov in arms.items():
        runs = []
        for seed in args.seeds:
            r = results[name(arm, seed)]
            h = r["history"]
            runs.append({"seed": seed, "reached_at": reached_at(h), "final_level": h[-1]["curriculum_level"],
                         "level_changes": sum(a["curriculum_level"] != b["curriculum_level"] for a, b in zip(h, h[1:])),
                         "eval_mean": r["eval_mean"], "steps_per_second": r["steps_per_second"],
                         "curve": [[x["frames"], x["curriculum_level"], x["curriculum_success_rate"]] for x in h]})
        reached = [x["reached_at"] for x in runs if x["reached_at"] is not None]
        rows.append({"arm": arm, "overrides": " ".join(ov), "runs": runs, "reached": len(reached),
                     "reached_at_median": statistics.median(reached) if reached else None,
                     "eval_mean": mean_std([x["eval_mean"] for x in runs])})
    return {"env_id": ENV, "task": " ".join([*CURRICULUM, *args.overrides]), "timesteps": args.timesteps,
            "seeds": args.seeds, "levels": shaping.curriculum_levels, "window": shaping.curriculum_window,
            "threshold": shaping.curriculum_threshold, "margin": shaping.curriculum_margin, "rows": rows}


def ablation(args) -> dict:
    runs: dict[str, list[dict]] = {label: [] for label in ABLATIONS}
    # Seeds outside, variants inside, the JSON saved after every run: a cut-short benchmark still reports
    # every variant on the seeds it finished (marked incomplete).
    for seed in args.seeds:
        for label in runs:
            ov = ABLATIONS[label]
            runs[label].append(train_run(f"shaping-abl-{_slug(label)}-s{seed}", [f"env_id={ENV}", f"seed={seed}",
                               f"total_timesteps={args.timesteps}", *ov, *args.overrides], jobs=1, preset=False))
            save(args, "shaping_ablation", _ablation_data(args, runs) | {"incomplete": True})
    return _ablation_data(args, runs)


def _ablation_data(args, runs: dict[str, list[dict]]) -> dict:
    rows = []
    for label, per_seed in runs.items():
        if not per_seed:
            continue
        ov = ABLATIONS[label]
        ret_mean, ret_std = mean_std([r["eval_mean"] for r in per_seed])
        extra = {}
        if "dynamic_batch=true" in ov:
            extra["final_frames_per_batch"] = [r["history"][-1]["frames_per_batch"] for r in per_seed]
        rows.append({"variant": label, "overrides": " ".join(ov) or "-", "return_mean": ret_mean,
                     "return_std": ret_std, "per_seed": [round(r["eval_mean"], 1) for r in per_seed],
                     "seeds": [r["seed"] for r in per_seed],
                     "steps_per_second": statistics.median(r["steps_per_second"] for r in per_seed),
                     "source": "this run", **extra})
    return {"env_id": ENV, "timesteps": args.timesteps, "seeds": args.seeds, "rows": rows}


NOTES = {
    "curriculum": (
        "Notes. **The curriculum reached the hardest level's target sooner than training on it directly**: on "
        "seeds 2 and 3 it passed the 3 m/s test at 335,872 and 307,200 steps, while the direct arm passed it on no "
        "seed within 400k (its last success rates 0.39, 0.67, 0.14); on seed 1 neither arm got there (curriculum "
        "0.36, direct 0.39). The deterministic evaluations at 3 m/s lean the same way but overlap (151.6 ± 12.2 vs "
        "136.0 ± 10.4). The curriculum arm passed 1.5 m/s at 180k-204k steps. How the levels were chosen (seed 0, "
        "not a benchmark seed, same budget): two levels [1.5, 3.0] passed 3 m/s at 258,048 steps, the direct arm at "
        "307,200, the six default levels [0.5 ... 3.0] not within 400k (level 5 reached at 360k): each level costs "
        "at least one full window of episodes, and the 200-step episodes of 128 envs end together, one wave per "
        "25,600 frames. An earlier version of this table (2026-11-30, the six levels, 64 envs x 64 steps) reached "
        "3 m/s on 1 of 3 seeds in each arm (372,736 vs 385,024 steps): target not met then. While setting up this "
        "run a bug surfaced and was fixed: with 128 envs a wave of 128 outcomes, judged against the old level's "
        "target, filled the next level's 64-episode window at once and marked the hardest level solved on promotion; "
        "`Curriculum.record` now drops the outcomes after a level change (tests/test_transforms_curriculum.py). "
        "Both arms use the same reward and success test (the direct arm is the curriculum started on its last "
        "level); two runs at a time, env_threads=1."),
    "shaping_ablation": (
        "Notes. **Neither addition beats the default here**: seed 4 improved (dynamic batch 1862, LAMB 1364 vs "
        "1342) and seed 5 collapsed in the deterministic evaluation of both (-143, -27 vs 1338), with training "
        "returns (mean of the last 100 episodes) of 759 / 518 (dynamic batch, s4 / s5) and 1007 / 991 (LAMB): "
        "the seed-5 policies run in training but their deterministic (mean-action) evaluation falls over "
        "(LAMB s5: eval std 408 over 10 episodes). Two seeds at 500k steps cannot separate these rows from noise. "
        "The default row was reused from benchmarks/ablation.json (the HalfCheetah-only ablation of 2026-11-29, since "
        "replaced by the suite ablation): same config (plain defaults, `--no-preset`), "
        "seeds and budget, and this branch leaves the default path unchanged (no curriculum, no StepCounter, the "
        "same collector and minibatch count); checked: `python -m pipelines.train --no-preset env_threads=1 "
        "torch_threads=1 env_id=HalfCheetah-v5 seed=5 total_timesteps=500000` on this branch evaluates to 1338.2 "
        "± 140.0, the reused row's seed-5 value exactly. The dynamic batch grew at each wave of 64 finished 1000-step "
        "episodes (length std 0): 4,096 -> 6,144 -> 9,216 -> 13,824 -> 16,384 frames (cap) at about 72k, 142k, "
        "211k and 283k steps; the minibatch size stays 1024, so the gradient steps per sample do not change. LAMB "
        "keeps the KL-adaptive lr, which now sets each tensor's relative step. One run at a time, "
        "`env_threads=1 torch_threads=1`, on a host shared with other jobs: steps/s are not comparable between "
        "rows run at different times (the default row ran two at a time on a quieter host)."),
}


def _curriculum_md(d: dict) -> list[str]:
    top = f"{d['levels'][-1]:g} m/s"
    lines = ["## Curriculum (speed levels on HalfCheetah-v5)", "",
             f"- command: `{d['command']}`", f"- machine: {d['machine']}", f"- date: {d['date']}", "",
             f"Task: `{d['task']}` (aeon-train's HalfCheetah preset), levels {d['levels']} m/s, {d['timesteps']:,} "
             f"env steps per run, seeds {d['seeds']}. Reward: 1 at or above the level's target forward speed, falling "
             f"linearly to 0 at {d['margin']:g} m/s below it (so the {top} level alone is a sparse reward). An "
             "episode (200 steps) succeeds when its mean forward speed reaches the target; the level rises when "
             f"{d['threshold']:.0%} of the last {d['window']} episodes succeed. \"Reached\" = the first env step "
             f"at which the hardest level ({top}) passes that test. Evaluation: 10 deterministic episodes on the "
             "hardest level (return out of 200).", "",
             f"| arm | reached the {top} target | env steps to reach it, per seed | median | final level per seed "
             f"| eval return at {top} (mean ± std) |", "|---|---|---|---|---|---|"]
    for r in d["rows"]:
        per_seed = ", ".join(f"s{x['seed']}: {x['reached_at']:,}" if x["reached_at"] is not None
                             else f"s{x['seed']}: not reached" for x in r["runs"])
        median = f"{r['reached_at_median']:,.0f}" if r["reached_at_median"] is not None else "not reached"
        levels = ", ".join(str(x["final_level"]) for x in r["runs"])
        lines.append(f"| {r['arm']} | {r['reached']}/{len(r['runs'])} | {per_seed} | {median} | {levels} | "
                     f"{r['eval_mean'][0]:.1f} ± {r['eval_mean'][1]:.1f} |")
    return lines


def _ablation_md(d: dict) -> list[str]:
    lines = ["## Shaping ablation (dynamic batch, LAMB) on HalfCheetah-v5", "",
             f"- command: `{d['command']}`", f"- machine: {d['machine']}", f"- date: {d['date']}", "",
             f"Plain defaults (no preset), {d['timesteps']:,} env steps, seeds {d['seeds']}; one change per row. "
             "Returns: final 10-episode deterministic evaluation, mean over seeds.", "",
             "| variant | overrides | return (mean ± std) | per seed | steps/s | source |", "|---|---|---|---|---|---|"]
    for r in d["rows"]:
        seeds = f" (seeds {r['seeds']})" if r.get("seeds", d["seeds"]) != d["seeds"] else ""
        lines.append(f"| {r['variant']} | `{r['overrides']}` | {r['return_mean']:.0f} ± {r['return_std']:.0f} | "
                     f"{r['per_seed']}{seeds} | {r['steps_per_second']:.0f} | {r['source']} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_shaping", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["curriculum", "ablation", "report"])
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every run")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="curriculum: runs at a time (each with env_threads=1)")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    if args.kind == "report":  # re-render both sections from their JSON (e.g. after editing the notes below)
        for name in ("curriculum", "shaping_ablation"):
            if (OUT / f"{name}.json").exists():
                write_section(name, json.loads((OUT / f"{name}.json").read_text()))
        write_results_md()
        return 0
    args.seeds = args.seeds or ([1, 2, 3] if args.kind == "curriculum" else [4, 5])
    args.timesteps = args.timesteps or (400_000 if args.kind == "curriculum" else 500_000)
    data = {"curriculum": curriculum, "ablation": ablation}[args.kind](args)
    name = "curriculum" if args.kind == "curriculum" else "shaping_ablation"
    print(save(args, name, data))
    return 0


def save(args, name: str, data: dict) -> str:
    """Write benchmarks/<name>.json and its section, regenerate RESULTS.md; returns the section."""
    data.update(command="python -m benchmarks.bench_shaping " + " ".join(args.argv), machine=machine(),
                date=time.strftime("%Y-%m-%d"))
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=2))
    text = write_section(name, data)
    write_results_md()
    return text


def plot_curriculum(data: dict, path) -> None:
    """Left: the curriculum arm's level; right: the success rate on the hardest level, both arms."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    top = max(level for row in data["rows"] for run in row["runs"] for _, level, _ in run["curve"])
    for i, row in enumerate(data["rows"]):
        for run in row["runs"]:
            frames = [f for f, _, _ in run["curve"]]
            rate = [r if level == top else np.nan for _, level, r in run["curve"]]
            right.plot(frames, rate, color=f"C{i}", ls=["-", "--", ":", "-."][run["seed"] % 4], alpha=0.8,
                       label=f"{row['arm']}, seed {run['seed']}")
            if i == 0:
                left.step(frames, [level for _, level, _ in run["curve"]], where="post", label=f"seed {run['seed']}")
    left.set(xlabel="env steps", ylabel="curriculum level", title=f"curriculum arm: level (targets {data['levels']} m/s)")
    right.axhline(data["threshold"], color="grey", ls="--", lw=1)
    right.set(xlabel="env steps", ylabel=f"success rate, last {data['window']} episodes", ylim=(-0.02, 1.02),
              title=f"success rate on the hardest level ({data['levels'][-1]:g} m/s)")
    for ax in (left, right):
        ax.set_xlim(0, data.get("timesteps", None))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# What curriculum.json files written before the levels were recorded in them were measured with.
CURRICULUM_DEFAULTS = {"levels": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "window": 64, "threshold": 0.8, "margin": 0.5}


def write_section(name: str, data: dict) -> str:
    if name == "curriculum":
        data = {**CURRICULUM_DEFAULTS, **data}
    lines = (_curriculum_md if name == "curriculum" else _ablation_md)(data)
    if name == "curriculum":
        plot_curriculum(data, OUT / "curriculum.png")
        lines += ["", "![curriculum](curriculum.png)"]
    if data.get("incomplete"):
        lines += ["", "**Incomplete**: the benchmark was cut short; rows show the seeds that finished."]
    text = "\n".join(lines + ["", NOTES[name]]) + "\n"
    (OUT / "sections").mkdir(exist_ok=True)
    (OUT / "sections" / f"{name}.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
