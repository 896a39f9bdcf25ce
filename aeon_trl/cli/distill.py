"""aeon-distill: distill a trained aeon_trl policy into a smaller student and export it for deployment.

    aeon-distill runs/x/checkpoint.pt --hidden 32 32              # KL distillation + 3 DAgger rounds
    aeon-distill runs/x --hidden 16 16 --loss mse --dagger-rounds 0 --out runs/x/student-16

The output folder gets student.pt2 (torch.export), student.onnx (when the onnx package is installed),
student.json (shapes, action bounds, provenance) and results.json: teacher and student parameters, their
deterministic returns on the real env (same seeds), latency per step at batch 1, and the per-round history.
``examples/infer_student.py`` runs the exported files with torch/onnx only.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aeon_trl.checkpoint import CheckpointError, atomic_write_json
from aeon_trl.config import ConfigError
from aeon_trl.distill import DistillConfig, Distiller, latency_us


def parser(prog: str = "aeon-distill", description: str | None = __doc__) -> argparse.ArgumentParser:
    """The distillation options (the distillation benchmark adds its own to them)."""
    d = DistillConfig()
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = parser()
    p.add_argument("checkpoint", nargs="?", help="teacher: an aeon_trl checkpoint.pt or its run folder")
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
    atomic_write_json(out / "results.json", results)
    log(f"teacher return {t_mean:.1f}, student return {s_mean:.1f} ({percent(results['return_ratio'])}); latency per step at batch 1 (median): "
        + ", ".join(f"{k} {v:.1f} us" for k, v in latency.items()))
    log(f"exported: {', '.join(v for v in files.values() if v)} (max |pt2 - student| = {export_error:.2g})")
    return results


def percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.1f}%"


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not args.checkpoint:
            raise ConfigError("give the teacher checkpoint (aeon-distill runs/x/checkpoint.pt)")
        run(args.checkpoint, config_from_args(args), args.out, args.latency_calls)
    except (ConfigError, CheckpointError) as exc:
        print(f"aeon-distill: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
