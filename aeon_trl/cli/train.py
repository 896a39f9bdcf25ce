"""aeon-train: train PPO from defaults + a config file + ``key=value`` overrides.

    aeon-train                                   # HalfCheetah-v5, 1M steps, default config + its preset
    aeon-train env_id=Hopper-v5 lr=1e-4 seed=3    # overrides (flat, nested ppo.clip_epsilon=0.3, or seed keys)
    aeon-train --config my.yaml --run-dir runs/x  # a YAML/JSON config file
    aeon-train --resume runs/x                    # continue from runs/x/checkpoint.pt (or name the file)

The run folder is ``aeon_trl.driver.run_training``'s: config.yaml, logs/ (TorchRL CSV or TensorBoard logger),
checkpoint.pt (atomic, every ``checkpoint_every`` iterations), results.json, history.json, learning_curve.png,
eval.mp4 (``video=false``: none).
A folder that already holds a run is refused unless ``--overwrite``. ``--resume`` may change what means
"continue" (total_timesteps to train longer, logging, evaluation, checkpointing, device, threads); other config
changes are refused, naming the keys. Ctrl-C (or SIGTERM) stops after the current iteration with a checkpoint
(exit 130 / 143); a second Ctrl-C quits at once. Bad input (config, files, values) exits 2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from aeon_trl.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, resolve_checkpoint
from aeon_trl.config import Config, ConfigError
from aeon_trl.data.demonstrations import DemonstrationError
from aeon_trl.driver import Callback, Run, TrainingStopped, run_training
from aeon_trl.launch.signals import StopGuard
from aeon_trl.trainer import NonFiniteError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeon-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (OmegaConf dotlist)")
    parser.add_argument("--config", help="YAML/JSON config file (nested or flat keys)")
    parser.add_argument("--run-dir", help="run folder (default: <run_dir>/<env_id>-s<seed>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="resume the run in RUN_DIR from its checkpoint (RUN_DIR/checkpoint.pt, or name the file)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run a --run-dir already holds")
    parser.add_argument("--no-preset", action="store_true", help="ignore the env's shipped preset (plain defaults)")
    return parser.parse_intermixed_args(argv)  # key=value overrides before and after the options


def build_config(args: argparse.Namespace) -> tuple[Config, Path, bool]:
    """The config, the run folder and whether it resumes; with --resume, the checkpointed config (overrides
    still apply)."""
    if args.resume:
        checkpoint = resolve_checkpoint(args.resume)
        state = load_checkpoint(checkpoint)
        return Config.from_dict(state["config"]).with_overrides(args.overrides), checkpoint.parent, True
    cfg, preset = Config.for_run(args.overrides, args.config, preset=not args.no_preset)
    if preset:
        print(f"aeon-train: using the preset {preset.name} for {cfg.env.env_id} (--config replaces it, --no-preset "
              "skips it)", file=sys.stderr)
    run_dir = Path(args.run_dir) if args.run_dir else \
        Path(cfg.train.run_dir) / f"{cfg.env.env_id.split(':')[-1]}-s{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    return cfg, run_dir, False


class ProgressBar(Callback):
    """A tqdm bar over the run's env steps with the recent return and steps/s (``progress=false``: none)."""

    def training(self, run: Run):
        self.bar = tqdm(total=run.cfg.train.total_timesteps, initial=run.trainer.frames, unit="step",
                        dynamic_ncols=True, disable=not run.cfg.train.progress, desc=run.cfg.env.env_id)
        return self.bar

    def on_iteration(self, run: Run, metrics: dict) -> None:
        self.bar.update(metrics["frames"] - self.bar.n)
        self.bar.set_postfix(ret=f"{metrics['episode_return']:.1f}", sps=f"{metrics['steps_per_second']:.0f}",
                             refresh=False)


class StopOnSignal(Callback):
    """Ctrl-C / SIGTERM (``StopGuard``): held while the loop runs, the run stops after the iteration; env workers
    never see them."""

    def __init__(self, guard: StopGuard):
        self.guard = guard

    def spawning(self):
        return self.guard.blind_children()

    def training(self, run: Run):
        return self.guard.hold()

    def stop_requested(self, run: Run) -> bool:
        return self.guard.pending


def main(argv=None) -> int:
    args = parse_args(argv)
    guard = StopGuard().install()  # before anything starts an env worker
    try:
        cfg, run_dir, resume = build_config(args)
        guard.on_quit = lambda: (f"; resume from the last checkpoint with: aeon-train --resume {run_dir}"
                                 if (run_dir / CHECKPOINT).is_file() else "")
        results = run_training(cfg, run_dir, resume=resume, overwrite=args.overwrite,
                               callbacks=[ProgressBar(), StopOnSignal(guard)])
    except TrainingStopped as stop:
        print(f"aeon-train: stopped at {stop.frames} frames, checkpoint written; resume with: "
              f"aeon-train --resume {stop.run_dir}", file=sys.stderr)
        return 128 + guard.received
    except (ConfigError, CheckpointError, NonFiniteError, DemonstrationError) as exc:
        print(f"aeon-train: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    finally:
        guard.uninstall()
    evaluation = (f"; final evaluation return {results['eval_mean']:.1f} ± {results['eval_std']:.1f} over "
                  f"{len(results['eval_returns'])} episodes") if results["eval_returns"] else ""
    print(f"{cfg.env.env_id}: {results['timesteps']} steps in {results['wall_time']:.0f} s "
          f"({results['steps_per_second']:.0f} steps/s){evaluation}")
    video = ", eval.mp4" if results.get("video") else ""
    print(f"run folder: {run_dir} (results.json, learning_curve.png{video}, checkpoint.pt)")
    if results.get("video_error"):
        print(f"aeon-train: no video: {results['video_error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
