"""aeon-tune: population-based training of a base config (aeon-train's config + overrides) over a tuning YAML.

    aeon-tune --tuning tune.yaml env_id=Hopper-v5 --generations 5 --tune-dir runs/tune-hopper
    aeon-tune --tuning tune.yaml --config base.yaml --profile slurm/profiles/local.yaml   # one SLURM array per generation
    aeon-tune --tuning tune.yaml --tune-dir runs/tune-hopper --generations 5              # resume after an interruption

The tuning YAML holds ``population_size``, ``mutation_rate``, ``metric`` (100_episode_return | eval_return),
``eval_timesteps`` and ``parameters`` (config key -> ``{low, high, log}`` range or a list of values); see
README "Population-based tuning". The tune folder gets tuner_state.json (resumable), members/ (checkpoints),
members.md (the final table), tune_metric.png, tune_hparams.png and best.yaml, which
``aeon-train --config best.yaml`` trains from scratch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path



def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeon-tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="base config overrides key=value (as aeon-train)")
    parser.add_argument("--tuning", required=True, help="tuning YAML (population_size, mutation_rate, metric, "
                                                        "eval_timesteps, parameters, ...)")
    parser.add_argument("--config", help="base config file (YAML/JSON), as aeon-train --config")
    parser.add_argument("--no-preset", action="store_true", help="ignore the env's shipped preset")
    parser.add_argument("--generations", type=int, default=5, help="generations to run (default: %(default)s)")
    parser.add_argument("--tune-dir", help="tuner folder (default: <run_dir>/tune-<env_id>); an existing one resumes")
    parser.add_argument("--workers", type=int, help="parallel local trials (default: the tuning YAML's, else cores)")
    parser.add_argument("--profile", help="SLURM cluster profile: run each generation as a job array (submitit)")
    parser.add_argument("--inline", action="store_true", help="train the members in this process, one at a time")
    return parser.parse_args(argv)


def build(args: argparse.Namespace):
    """The base config, the tuning config, the tuner folder and the executor (nothing is trained here)."""
    from aeon_trl.config import load_mapping
    from aeon_trl.tuning import AutoTuner, TuningConfig
    from aeon_trl.cli.train import build_config

    base, _, _ = build_config(argparse.Namespace(resume=None, config=args.config, overrides=args.overrides,
                                                 no_preset=args.no_preset, run_dir=None))
    data = load_mapping(args.tuning, "tuning file")
    if args.workers is not None:
        data["workers"] = args.workers
    tuning = TuningConfig.from_dict(data, base)
    tune_dir = Path(args.tune_dir) if args.tune_dir else Path(base.train.run_dir) / f"tune-{base.env.env_id}"
    executor = "inline" if args.inline else None
    if args.profile:
        from aeon_trl.launch.profile import Profile
        from aeon_trl.launch.submit import make_executor
        profile = Profile.load(args.profile)
        profile.check_partition()
        executor = make_executor(profile, tune_dir.resolve() / "slurm_logs", local=False)
    return AutoTuner(base, tuning, tune_dir=tune_dir, executor=executor)


def members_table(state: dict) -> str:
    """Markdown: one row per member of the last generation, best first, with its lineage."""
    last = state["history"][-1]
    keys = list(last["members"][0]["hparams"])
    rows = [f"| rank | member | {state['tuning']['metric']} | eval return | parents | " + " | ".join(keys) + " |",
            "|" + "---|" * (5 + len(keys))]
    for rank, i in enumerate(last["ranking"], 1):
        m = last["members"][i]
        parents = [str(pa) for rec in state["history"][:-1] for lo, pa in rec["exploited"] if lo == i]
        rows.append(f"| {rank} | {i} | {_num(m['score'])} | {_num(m.get('eval_return'))} | "
                    f"{' -> '.join(parents) or '-'} | " + " | ".join(_num(m["hparams"][k]) for k in keys) + " |")
    return "\n".join(rows)


def plot(state: dict, folder: Path) -> list[Path]:
    """tune_metric.png (each member's metric and the best per generation) and tune_hparams.png (each
    hyperparameter's value per member and generation, after that generation's training)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = state["history"]
    gens = [rec["generation"] + 1 for rec in history]
    ids = [m["id"] for m in history[0]["members"]]
    metric = state["tuning"]["metric"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in ids:
        ax.plot(gens, [_nan(rec["members"][i]["score"]) for rec in history], marker="o", lw=1, alpha=0.6,
                label=f"member {i}")
    ax.plot(gens, [_nan(rec["members"][rec["ranking"][0]]["score"]) for rec in history], color="k", lw=2.5,
            label="best")
    ax.set_xlabel("generation")
    ax.set_xticks(gens)
    ax.set_ylabel(metric)
    ax.set_title(f"{state['base_config']['env']['env_id']}: population-based training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths = [folder / "tune_metric.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    keys = list(history[0]["members"][0]["hparams"])
    log_keys = {k for k, p in state["tuning"]["parameters"].items() if p.get("type") == "log"}
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for i in ids:
            values = [rec["members"][i]["hparams"][key] for rec in history]
            ax.plot(gens, values if not isinstance(values[0], str) else [str(v) for v in values], marker="o", lw=1,
                    alpha=0.7, color=f"C{i % 10}")
        ax.plot(gens, [rec["members"][rec["ranking"][0]]["hparams"][key] for rec in history], color="k", lw=2.5)
        if key in log_keys:
            ax.set_yscale("log")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("generation (black: the best member of each generation)")
    axes[-1, 0].set_xticks(gens)
    fig.tight_layout()
    paths.append(folder / "tune_hparams.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    args = parse_args(argv)
    from aeon_trl.checkpoint import CheckpointError
    from aeon_trl.tuning.autotuner import BEST
    try:
        tuner = build(args)
        tuner.run(args.generations)
    except (ValueError, CheckpointError) as exc:  # ConfigError, TuningError, ProfileError are ValueErrors
        print(f"aeon-tune: error: {exc}", file=sys.stderr)
        return 2
    table = members_table(tuner.state)
    (tuner.dir / "members.md").write_text(table + "\n")
    pngs = plot(tuner.state, tuner.dir)
    print(table)
    print(f"best config: {tuner.dir / BEST} (aeon-train --config {tuner.dir / BEST}); "
          f"plots: {', '.join(str(p) for p in pngs)}")
    return 0


def _num(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _nan(x):
    return float("nan") if x is None else x


if __name__ == "__main__":
    sys.exit(main())
