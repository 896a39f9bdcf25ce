"""aeon-distill: distill a trained aeon_trl policy into a smaller student and export it for deployment.

    aeon-distill runs/x/checkpoint.pt --hidden 32 32              # KL distillation + 3 DAgger rounds
    aeon-distill runs/x --hidden 16 16 --loss mse --dagger-rounds 0 --out runs/x/student-16
    aeon-distill --benchmark                                      # benchmarks/distill.json + sections/distill.md

The output folder gets student.pt2 (torch.export), student.onnx (when the onnx package is installed),
student.json (shapes, action bounds, provenance) and results.json: teacher and student parameters, their
deterministic returns on the real env (same seeds), latency per step at batch 1, and the per-round history.
``examples/infer_student.py`` runs the exported files with torch/onnx only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import ConfigError
from aeon_trl.distill import DistillConfig, Distiller, latency_us

BENCH_ENVS = ["HalfCheetah-v5", "Hopper-v5"]
# Student widths of the trade-off (parameter ratios depend on the env: [32, 32] is 0.19 of the gated
# HalfCheetah teacher, 0.30 of the Hopper one).
BENCH_SIZES = [[32, 32], [16, 16], [8, 8]]


def parse_args(argv=None) -> argparse.Namespace:
    d = DistillConfig()
    p = argparse.ArgumentParser(prog="aeon-distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="teacher: an aeon_trl checkpoint.pt or its run folder")
    p.add_argument("--hidden", nargs="+", type=int, default=d.hidden_sizes, metavar="W",
                   help="student hidden widths (default: %(default)s)")
    p.add_argument("--activation", default=d.activation)
    p.add_argument("--loss", default=d.loss, help="kl (Gaussian KL, teacher || student) or mse (on the means)")
    p.add_argument("--teacher-frames", type=int, default=d.teacher_frames)
    p.add_argument("--dagger-rounds", type=int, default=d.dagger_rounds)
    p.add_argument("--dagger-frames", type=int, default=d.dagger_frames)
    p.add_argument("--explore", action="store_true", help="collect with the Gaussian's noise, not its mean")
    p.add_argument("--num-envs", type=int, default=d.num_envs)
    p.add_argument("--grad-steps", type=int, default=d.grad_steps, help="optimizer steps per round")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--latency-calls", type=int, default=2000, help="calls timed per latency figure (median)")
    p.add_argument("--out", help="output folder (default: <teacher run folder>/student-<widths>)")
    p.add_argument("--benchmark", action="store_true", help="the distillation benchmark over BENCH_ENVS x sizes")
    p.add_argument("--report", action="store_true", help="rewrite the section from benchmarks/distill.json")
    p.add_argument("--envs", nargs="+", default=BENCH_ENVS, help="--benchmark: teachers benchmarks/runs/<env>-s2")
    p.add_argument("--sizes", nargs="+", default=None, metavar="W,W",
                   help="--benchmark: student widths, e.g. 32,32 16,16 (default: 32,32 16,16 8,8)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace, **overrides) -> DistillConfig:
    values = dict(hidden_sizes=args.hidden, activation=args.activation, loss=args.loss,
                  teacher_frames=args.teacher_frames, dagger_rounds=args.dagger_rounds,
                  dagger_frames=args.dagger_frames, explore=args.explore, num_envs=args.num_envs,
                  grad_steps=args.grad_steps, batch_size=args.batch_size, lr=args.lr,
                  eval_episodes=args.eval_episodes, seed=args.seed)
    return DistillConfig(**{**values, **overrides})


def run(checkpoint: str | Path, cfg: DistillConfig, out_dir: str | Path | None = None, latency_calls: int = 2000,
        teacher_returns: list[float] | None = None, log=print) -> dict:
    """Distill, export, check the export, evaluate both policies and time them; writes results.json."""
    distiller = Distiller(checkpoint, cfg)  # first: a bad checkpoint must not leave an empty folder behind
    ckpt = Path(checkpoint)
    out = Path(out_dir) if out_dir else (ckpt if ckpt.is_dir() else ckpt.parent) / \
        f"student-{'x'.join(map(str, cfg.hidden_sizes))}"
    try:
        log(f"teacher: {distiller.teacher_config.env.env_id}, {distiller.teacher_params} actor parameters; "
            f"student {cfg.hidden_sizes}: {distiller.student_params} ({distiller.student_params / distiller.teacher_params:.2f}x)")
        start = time.perf_counter()
        distiller.train(on_round=lambda r: log(
            f"  round {r['round']} ({r['collected_by']}'s states, buffer {r['buffer']}): loss on fresh states "
            f"{r['fresh_loss_distill']:.4g} -> train loss {r['train_loss_distill']:.4g}, |mean error| "
            f"{r['train_mean_abs_error']:.4f}"))
        train_seconds = time.perf_counter() - start
        files = distiller.export(out)
        obs = distiller.buffer[:256].get("observation")
        exported = torch.export.load(files["pt2"]).module()
        deployed_student, deployed_teacher = distiller.deployable(distiller.student), distiller.deployable(distiller.teacher)
        with torch.no_grad():
            export_error = (exported(obs) - deployed_student(obs)).abs().max().item()
            action_error = (deployed_student(obs) - deployed_teacher(obs)).abs().mean().item()
        if teacher_returns is None:
            teacher_returns = distiller.evaluate(distiller.teacher)
        student_returns = distiller.evaluate(distiller.student)
        one, one_np = obs[:1], obs[0].numpy()
        latency = latency_us({
            "teacher_module": lambda: deployed_teacher(one),
            "student_module": lambda: deployed_student(one),
            "student_pt2": lambda: exported(one),
            "teacher_get_action": lambda: distiller.agent.get_action(one_np, deterministic=True),
        }, latency_calls)
        load = os.getloadavg()[0]  # latency on a shared machine means little without the load it ran under
    finally:
        distiller.close()
    t_mean, s_mean = _mean(teacher_returns), _mean(student_returns)
    results = {
        "teacher_checkpoint": str(checkpoint), "env_id": distiller.teacher_config.env.env_id,
        "teacher_hidden_sizes": distiller.teacher_config.model.hidden_sizes,
        "teacher_params": distiller.teacher_params, "student_params": distiller.student_params,
        "param_ratio": distiller.student_params / distiller.teacher_params,
        "teacher_returns": teacher_returns, "student_returns": student_returns,
        "teacher_return": t_mean, "student_return": s_mean,
        # A fraction of the return is only meaningful for a positive teacher return (Pendulum's are negative).
        "return_ratio": s_mean / t_mean if teacher_returns and student_returns and t_mean > 0 else None,
        "action_mean_abs_error": action_error, "export_max_abs_error": export_error,
        "latency_us": latency, "load_average": load, "train_seconds": train_seconds, "files": files,
        "config": dataclasses.asdict(cfg), "history": distiller.history,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log(f"teacher return {t_mean:.1f}, student return {s_mean:.1f} ({_percent(results['return_ratio'])}); latency per step at batch 1 (median): "
        + ", ".join(f"{k} {v:.1f} us" for k, v in latency.items()))
    log(f"exported: {', '.join(v for v in files.values() if v)} (max |pt2 - student| = {export_error:.2g})")
    return results


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.1f}%"


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def benchmark(args: argparse.Namespace) -> dict:
    """Every size in ``--sizes`` for every teacher in ``--envs``; the teacher is evaluated once per env."""
    sizes = [[int(w) for w in s.split(",")] for s in args.sizes] if args.sizes else BENCH_SIZES
    rows = []
    for env_id in args.envs:
        checkpoint = Path("benchmarks/runs") / f"{env_id}-s2" / "checkpoint.pt"
        teacher_returns = None
        for hidden in sizes:
            cfg = config_from_args(args, hidden_sizes=hidden)
            name = f"{env_id}-{'x'.join(map(str, hidden))}-{cfg.loss}-dagger{cfg.dagger_rounds}{'-noisy' * cfg.explore}"
            res = run(checkpoint, cfg, Path("benchmarks/runs/distill") / name, args.latency_calls, teacher_returns)
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
            f"{r['student_return']:.0f} ± {np.std(r['student_returns']):.0f} | {_percent(r['return_ratio'])} | "
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


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.benchmark or args.report:
            from pipelines.benchmark import OUT, machine, write_results_md
            if args.benchmark:
                command = "python -m pipelines.distill " + " ".join(argv if argv is not None else sys.argv[1:])
                data = benchmark(args)
                data.update(command=command, machine=machine(), date=time.strftime("%Y-%m-%d"))
                merge_previous(data, OUT / "distill.json")
                (OUT / "distill.json").write_text(json.dumps(data, indent=2))
            else:
                data = json.loads((OUT / "distill.json").read_text())
            write_section({**data, "notes": NOTES}, OUT / "sections" / "distill.md")
            write_results_md()
            return 0
        if not args.checkpoint:
            raise ConfigError("give the teacher checkpoint (aeon-distill runs/x/checkpoint.pt) or --benchmark")
        run(args.checkpoint, config_from_args(args), args.out, args.latency_calls)
    except (ConfigError, CheckpointError) as exc:
        print(f"aeon-distill: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
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
