"""One training run in one run folder: the loop around ``Trainer`` that ``aeon-train`` and the SLURM/torchrun
job (``aeon_trl.launch.job.TrainJob``) share, so both write the same folder the same way.

    results = run_training(cfg, "runs/x")                  # train, checkpoint, evaluate, write the folder
    results = run_training(cfg, "runs/x", resume=True)     # continue from runs/x/checkpoint.pt if there is one

Run folder: config.yaml; checkpoint.pt (atomic; every ``checkpoint_every`` iterations and at the end);
logs/ (TorchRL's CSVLogger or TensorboardLogger per ``train.logger``: ``run_log.LOGGED`` against env
steps; on resume the rows past the checkpoint are dropped, so the log continues where the checkpoint is);
results.json and history.json (atomic); learning_curve.png.

What differs between entry points are ``Callback``s (TorchRL trainer hooks in spirit): the command line's
progress bar, the job's preemption handling and restart bookkeeping. With ``world_size > 1`` this process is
rank ``rank`` of a data-parallel run: it trains the rank's config (``rank_config``), and only rank 0 writes the
folder and evaluates.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Iterable, Sequence

from aeon_trl.checkpoint import (BOOKKEEPING_KEYS, atomic_write_json, check_resumable, load_checkpoint,
                                 save_checkpoint)
from aeon_trl.config import Config
from aeon_trl.curves import plot_learning_curve
from aeon_trl.run_log import log_metrics, make_logger
from aeon_trl.trainer import Trainer, results_record

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
RESULTS = "results.json"
HISTORY = "history.json"


class Callback:
    """A hook into ``run_training``; override what you need. ``key`` names the entry of ``state_dict()`` in the
    checkpoint (None: the callback keeps no state)."""

    key: str | None = None

    def spawning(self) -> ContextManager:
        """Entered around whatever starts env workers (building the trainer, the final evaluation)."""
        return contextlib.nullcontext()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def on_start(self, run: "Run", resumed: bool) -> None:
        """The trainer is built and, when ``resumed``, restored from the checkpoint."""

    def training(self, run: "Run") -> ContextManager:
        """Entered around the training loop and the final checkpoint."""
        return contextlib.nullcontext()

    def on_iteration(self, run: "Run", metrics: dict) -> None:
        """After each iteration, before its periodic checkpoint: the state is one an uninterrupted run has."""

    def results(self, run: "Run") -> dict:
        """Extra keys for this rank's results (rank 0: results.json)."""
        return {}


@dataclass
class Run:
    """What callbacks see: this process's config and trainer, the run folder, its place in the world."""
    cfg: Config
    run_dir: Path
    trainer: Trainer
    rank: int = 0
    world_size: int = 1
    callbacks: Sequence[Callback] = field(default_factory=tuple)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def frames(self) -> int:
        """Env steps of the whole run (every rank's)."""
        return self.trainer.frames * self.world_size

    def save(self) -> Path:
        """The trainer's complete state plus each callback's, atomically, to ``run_dir/checkpoint.pt``."""
        extra = {cb.key: cb.state_dict() for cb in self.callbacks if cb.key}
        return save_checkpoint({**self.trainer.state_dict(), **extra}, self.run_dir / CHECKPOINT)


def rank_config(cfg: Config, rank: int = 0, world_size: int = 1) -> Config:
    """The config one rank trains with: seed ``seed + rank`` (every rank collects other episodes) and its share
    of the global frame budget (the schedules read ``frames / total_timesteps`` per rank)."""
    if world_size == 1:
        return cfg
    train = dataclasses.replace(cfg.train, seed=cfg.train.seed + rank,
                                total_timesteps=math.ceil(cfg.train.total_timesteps / world_size))
    return dataclasses.replace(cfg, train=train)


def run_training(cfg: Config, run_dir: str | Path, *, resume: bool = False, callbacks: Iterable[Callback] = (),
                 may_change: Iterable[str] = (), rank: int = 0, world_size: int = 1) -> dict:
    """Train ``cfg`` in ``run_dir``; returns this rank's results (rank 0: what results.json holds).

    ``resume``: continue from ``run_dir/checkpoint.pt`` when it exists; a checkpoint whose config differs
    in more than bookkeeping keys and ``may_change`` is refused (``ConfigMismatchError``)."""
    run_dir, callbacks = Path(run_dir), list(callbacks)
    trained = rank_config(cfg, rank, world_size)
    state = None
    if resume and (run_dir / CHECKPOINT).exists():
        state = load_checkpoint(run_dir / CHECKPOINT)
        check_resumable(run_dir / CHECKPOINT, Config.upgrade_dict(state["config"]), rank_config(cfg, 0, world_size).to_dict(),
                        BOOKKEEPING_KEYS | frozenset(may_change))
    with _entered(cb.spawning() for cb in callbacks):
        trainer = Trainer(trained)  # before the folder: a bad env id must not leave an empty run folder behind
    run = Run(trained, run_dir, trainer, rank, world_size, callbacks)
    try:
        if run.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(run_dir / CONFIG)
        if state is not None:
            trainer.load_state_dict(state)
            for cb in callbacks:
                cb.load_state_dict(state.get(cb.key, {}) if cb.key else {})
        for cb in callbacks:
            cb.on_start(run, resumed=state is not None)
        logger = make_logger(cfg, run_dir, resume_step=run.frames if resume else None) if run.is_main else None

        def on_iteration(tr, metrics: dict) -> None:
            if logger is not None:
                log_metrics(logger, metrics, step=metrics["frames"] * world_size)
            for cb in callbacks:
                cb.on_iteration(run, metrics)
            every = trained.train.checkpoint_every
            if run.is_main and every and tr.iteration % every == 0:
                run.save()

        with _entered(cb.training(run) for cb in callbacks):
            summary = trainer.train(trained.train.total_timesteps, on_iteration=on_iteration)
            if run.is_main:
                run.save()
        eval_returns = []
        if run.is_main:
            with _entered(cb.spawning() for cb in callbacks):
                eval_returns = trainer.evaluate(trained.train.eval_episodes)
    finally:
        trainer.close()
    extra = {k: v for cb in callbacks for k, v in cb.results(run).items()}
    if not run.is_main:
        return {"rank": rank, "world_size": world_size, "timesteps": trainer.frames, **extra}
    whole_run = {**summary, "timesteps": run.frames, "steps_per_second": summary["steps_per_second"] * world_size}
    results = {**results_record(whole_run, cfg, eval_returns), **extra}
    atomic_write_json(run_dir / RESULTS, results)
    atomic_write_json(run_dir / HISTORY, trainer.history)
    plot_learning_curve(trainer.history, run_dir / "learning_curve.png", f"{cfg.env.env_id} seed {cfg.train.seed}",
                        results["eval_mean"])
    return results


@contextlib.contextmanager
def _entered(contexts: Iterable[ContextManager]):
    """All of ``contexts`` at once (the callbacks' contexts around one step)."""
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield
