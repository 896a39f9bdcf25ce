"""aeon-train: train PPO from defaults + a config file + ``key=value`` overrides.

    aeon-train                                   # HalfCheetah-v5, 1M steps, default config + its preset
    aeon-train env_id=Hopper-v5 lr=1e-4 seed=3    # overrides (flat, nested ppo.clip_epsilon=0.3, or seed keys)
    aeon-train --config my.yaml --run-dir runs/x  # a YAML/JSON config file
    aeon-train --resume runs/x                    # continue from runs/x/checkpoint.pt

The run folder gets config.yaml, progress.csv/TensorBoard logs (TorchRL loggers), checkpoint.pt
(atomic, every ``checkpoint_every`` iterations), results.json and learning_curve.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from aeon_trl.checkpoint import CheckpointError, load_checkpoint
from aeon_trl.config import Config, ConfigError
from aeon_trl.data.demonstrations import DemonstrationError
from aeon_trl.trainer import NonFiniteError, Trainer, results_record

CHECKPOINT = "checkpoint.pt"
LOGGED = ("episode_return", "steps_per_second", "collect_fps", "loss_objective", "loss_critic", "loss_entropy",
          "eval_return", "loss_kl", "kl_approx", "clip_fraction", "entropy", "explained_variance", "lr", "clip_epsilon",
          "kl_coef", "entropy_coef", "value_std", "epochs_run", "loss_demo", "demo_coef",
          # with curiosity=true: the two per-step reward parts (normalized), the ICM losses, the coefficient
          "reward_extrinsic", "reward_intrinsic", "loss_forward", "loss_inverse", "curiosity_coef",
          # dynamic batch sizing and the curriculum
          "frames_per_batch", "curriculum_level", "curriculum_target", "curriculum_success_rate", "curriculum_solved")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeon-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (OmegaConf dotlist)")
    parser.add_argument("--config", help="YAML/JSON config file (nested or flat keys)")
    parser.add_argument("--run-dir", help="run folder (default: <run_dir>/<env_id>-s<seed>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="resume the run in RUN_DIR from its checkpoint")
    parser.add_argument("--no-preset", action="store_true", help="ignore the env's shipped preset (plain defaults)")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> tuple[Config, Path, dict | None]:
    """The config and run folder; with --resume, the checkpointed config (overrides still apply)."""
    if args.resume:
        run_dir = Path(args.resume)
        state = load_checkpoint(run_dir / CHECKPOINT)
        return Config.from_dict(state["config"]).with_overrides(args.overrides), run_dir, state
    cfg, preset = Config.for_run(args.overrides, args.config, preset=not args.no_preset)
    if preset:
        print(f"aeon-train: using the preset {preset.name} for {cfg.env.env_id} (--config replaces it, --no-preset "
              "skips it)", file=sys.stderr)
    run_dir = Path(args.run_dir) if args.run_dir else \
        Path(cfg.train.run_dir) / f"{cfg.env.env_id}-s{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    return cfg, run_dir, None


def make_logger(cfg: Config, run_dir: Path):
    if cfg.train.logger == "none":
        return None
    from torchrl.record.loggers import CSVLogger, TensorboardLogger
    cls = TensorboardLogger if cfg.train.logger == "tensorboard" else CSVLogger
    return cls(exp_name="logs", log_dir=str(run_dir))


def plot_learning_curve(history: list[dict], path: Path, title: str, eval_return: float | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    frames = [h["frames"] for h in history]
    returns = [h["episode_return"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(frames, returns, label="training episode return (last 20 episodes)")
    evals = [(h["frames"], h["eval_return"]) for h in history if "eval_return" in h]
    if evals:
        ax.plot(*zip(*evals), "o-", color="C2", ms=3, label="deterministic evaluation (eval_every)")
    if eval_return is not None and frames:
        ax.scatter([frames[-1]], [eval_return], color="C3", zorder=3, label="final deterministic evaluation")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: Config, run_dir: Path, resume_state: dict | None = None) -> dict:
    """Train, checkpoint, evaluate, plot; returns the results written to results.json."""
    from tqdm import tqdm

    trainer = Trainer(cfg)  # first: a bad env id must not leave an empty run folder behind
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    logger = make_logger(cfg, run_dir)
    bar = tqdm(total=cfg.train.total_timesteps, initial=trainer.frames, unit="step", dynamic_ncols=True,
               disable=not cfg.train.progress, desc=cfg.env.env_id)

    def on_iteration(tr: Trainer, m: dict) -> None:
        bar.update(m["frames"] - bar.n)
        bar.set_postfix(ret=f"{m['episode_return']:.1f}", sps=f"{m['steps_per_second']:.0f}", refresh=False)
        if logger is not None:
            for key in LOGGED:
                if np.isfinite(m.get(key, np.nan)):  # curiosity/demo/curriculum keys exist only when those are on
                    logger.log_scalar(key, m[key], step=m["frames"])
        if cfg.train.checkpoint_every and tr.iteration % cfg.train.checkpoint_every == 0:
            tr.save(run_dir / CHECKPOINT)

    try:
        summary = trainer.train(cfg.train.total_timesteps, on_iteration=on_iteration)
        bar.close()
        trainer.save(run_dir / CHECKPOINT)
        eval_returns = trainer.evaluate(cfg.train.eval_episodes)
    finally:
        bar.close()
        trainer.close()
    results = results_record(summary, cfg, eval_returns)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    (run_dir / "history.json").write_text(json.dumps(trainer.history))
    plot_learning_curve(trainer.history, run_dir / "learning_curve.png",
                        f"{cfg.env.env_id} seed {cfg.train.seed}", results["eval_mean"])
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg, run_dir, state = build_config(args)
        results = run(cfg, run_dir, state)
    except (ConfigError, CheckpointError, NonFiniteError, DemonstrationError) as exc:
        print(f"aeon-train: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    evaluation = (f"; final evaluation return {results['eval_mean']:.1f} ± {results['eval_std']:.1f} over "
                  f"{len(results['eval_returns'])} episodes") if results["eval_returns"] else ""
    print(f"{cfg.env.env_id}: {results['timesteps']} steps in {results['wall_time']:.0f} s "
          f"({results['steps_per_second']:.0f} steps/s){evaluation}")
    print(f"run folder: {run_dir} (results.json, learning_curve.png, checkpoint.pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
