"""A run's log: the metrics every entry point logs, through TorchRL's loggers (the learning-curve PNG:
``aeon_trl.curves``).

``make_logger`` picks CSVLogger or TensorboardLogger per ``train.logger``; their files go to
``<run folder>/logs``. A resumed run first drops what was logged after its checkpoint, so the log reads
as one uninterrupted run: CSV rows past the checkpoint's step are removed, TensorBoard hides the events
past it (``SummaryWriter(purge_step=...)``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torchrl.record.loggers import CSVLogger, TensorboardLogger

from aeon_trl.checkpoint import atomic_write
from aeon_trl.config import Config

LOGS = "logs"  # the loggers' experiment name
LOGGED = ("train_return", "episode_return", "eval_return", "steps_per_second", "collect_fps", "loss_objective",
          "loss_critic", "loss_entropy", "loss_kl", "kl_approx", "clip_fraction", "entropy", "explained_variance", "lr",
          "clip_epsilon", "kl_coef", "entropy_coef", "value_std", "epochs_run", "loss_demo", "demo_coef",
          # with curiosity=true: the two per-step reward parts (normalized), the ICM losses, the coefficient
          "reward_extrinsic", "reward_intrinsic", "loss_forward", "loss_inverse", "curiosity_coef",
          # dynamic batch sizing and the curriculum
          "frames_per_batch", "curriculum_level", "curriculum_target", "curriculum_success_rate", "curriculum_solved")


def make_logger(cfg: Config, run_dir: Path, resume_step: int | None = None) -> CSVLogger | TensorboardLogger | None:
    """The logger ``train.logger`` names (None for "none"). ``resume_step``: the run continues a checkpoint
    taken at that step (env steps), so what was logged after it is dropped."""
    if cfg.train.logger == "none":
        return None
    if cfg.train.logger == "tensorboard":
        if resume_step is None:
            return TensorboardLogger(exp_name=LOGS, log_dir=str(run_dir))
        return ResumedTensorboardLogger(exp_name=LOGS, log_dir=str(run_dir), purge_step=resume_step + 1)
    if resume_step is not None:
        drop_rows_after(run_dir / LOGS / "scalars", resume_step)
    return CSVLogger(exp_name=LOGS, log_dir=str(run_dir))


def log_metrics(logger: CSVLogger | TensorboardLogger, metrics: dict, step: int) -> None:
    for key in LOGGED:
        if np.isfinite(metrics.get(key, np.nan)):  # curiosity/demo/curriculum keys exist only when those are on
            logger.log_scalar(key, metrics[key], step=step)


def flush_logger(logger: CSVLogger | TensorboardLogger | None) -> None:
    """Write out what the logger buffers (TensorBoard's event writer; CSVLogger writes every row at once)."""
    flush = getattr(getattr(logger, "experiment", None), "flush", None)
    if callable(flush):
        flush()


def drop_rows_after(folder: Path, step: int) -> None:
    """Keep only the rows ``step,value`` at or before ``step`` in every CSV of ``folder`` (CSVLogger appends)."""
    for path in sorted(folder.glob("*.csv")):
        lines = path.read_text().splitlines(keepends=True)
        # a row without its newline is one a kill cut short: CSVLogger would append the next row to it
        kept = [line for line in lines if line.endswith("\n") and float(line.split(",", 1)[0]) <= step]
        if kept != lines:  # atomically: a run killed now keeps the old file, not half of it
            atomic_write(path, lambda f: f.write("".join(kept).encode()))


class ResumedTensorboardLogger(TensorboardLogger):
    """TensorboardLogger whose writer hides the events at ``purge_step`` and later: a resumed run's."""

    def __init__(self, exp_name: str, log_dir: str, purge_step: int):
        self.purge_step = purge_step
        super().__init__(exp_name=exp_name, log_dir=log_dir)

    def _create_experiment(self):
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(log_dir=os.path.join(self.log_dir, self.exp_name), purge_step=self.purge_step)
