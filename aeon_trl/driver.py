"""One training run in one run folder: the loop around ``Trainer`` that ``aeon-train`` and the SLURM/torchrun
job (``aeon_trl.launch.job.TrainJob``) share, so both write the same folder the same way.

    results = run_training(cfg, "runs/x")                  # train, checkpoint, evaluate, write the folder
    results = run_training(cfg, "runs/x", resume=True)     # continue from runs/x/checkpoint.pt if there is one

Run folder: config.yaml; checkpoint.pt (atomic; every ``checkpoint_every`` iterations and at the end);
logs/ (TorchRL's CSVLogger or TensorboardLogger per ``train.logger``: ``run_log.LOGGED`` against env
steps; on resume the rows past the checkpoint are dropped, so the log continues where the checkpoint is);
results.json and history.json (atomic; history rows carry ``wall_time``, training seconds since the run
started, resumed segments included); learning_curve.png (``curves.plot_learning_curve``); eval.mp4, one
deterministic episode filmed after the final evaluation (``train.video``; results.json says ``video`` or
``video_error``). With ``logger=tensorboard`` the config and final scores go to the HParams tab and the episode
to the Images tab (``tb_logging``).

A folder is never lost by accident: a new run into a folder that holds one is refused (``RunFolderError``)
unless ``overwrite``, which clears it only once the new run's envs are built; temporary files a killed write
left are removed at every start; a resumed run continues only a checkpoint whose config differs in
``CONTINUE_KEYS`` alone (``ConfigMismatchError``, before anything is written). A callback may ask the run to
stop (``stop_requested``, aeon-train's Ctrl-C): the iteration ends, the checkpoint and history are written and
``run_training`` raises ``TrainingStopped``.

What differs between entry points are ``Callback``s (TorchRL trainer hooks in spirit): the command line's
progress bar, the job's preemption handling and restart bookkeeping. With ``world_size > 1`` this process is
rank ``rank`` of a data-parallel run: it trains the rank's config (``rank_config``), and only rank 0 writes the
folder and evaluates.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Iterable, Sequence

from torchrl.record.loggers import TensorboardLogger

from aeon_trl.checkpoint import (CHECKPOINT, CONTINUE_KEYS, CheckpointError, atomic_write_json, check_resumable,
                                 load_checkpoint, remove_stale_temp_files, save_checkpoint)
from aeon_trl.config import Config, ConfigError
from aeon_trl.curves import plot_learning_curve
from aeon_trl.data.demonstrations import DemonstrationBuffer, DemonstrationError
from aeon_trl.envs import check_env_id
from aeon_trl.run_log import LOGS, flush_logger, log_metrics, make_logger
from aeon_trl.tb_logging import log_hparams, log_video
from aeon_trl.trainer import Trainer, results_record

CONFIG = "config.yaml"
RESULTS = "results.json"
HISTORY = "history.json"
CURVE = "learning_curve.png"
VIDEO = "eval.mp4"
RUN_FILES = (CHECKPOINT, CONFIG, RESULTS, HISTORY, CURVE, VIDEO, LOGS)  # what a run writes into its folder


class RunFolderError(ConfigError):
    """A new run into a folder that already holds one."""


class TrainingStopped(Exception):
    """The run stopped on request (``Callback.stop_requested``) after writing its checkpoint at ``frames``."""

    def __init__(self, run_dir: Path, frames: int):
        super().__init__(f"stopped at {frames} frames; checkpoint {run_dir / CHECKPOINT}")
        self.run_dir, self.frames = run_dir, frames


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

    def stop_requested(self, run: "Run") -> bool:
        """Asked after ``on_iteration``: True stops the run there (checkpoint, history, ``TrainingStopped``)."""
        return False

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


def run_training(cfg: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                 callbacks: Iterable[Callback] = (), rank: int = 0, world_size: int = 1) -> dict:
    """Train ``cfg`` in ``run_dir``; returns this rank's results (rank 0: what results.json holds).

    ``resume``: continue from ``run_dir/checkpoint.pt`` when it exists; a checkpoint whose config differs
    in more than ``CONTINUE_KEYS`` is refused (``ConfigMismatchError``). Without ``resume``, a folder that
    holds a run is refused (``RunFolderError``), or with ``overwrite`` cleared once the envs are built."""
    timing = _TrainingTime()
    run_dir, callbacks = Path(run_dir), [*callbacks, timing]
    trained = rank_config(cfg, rank, world_size)
    state = None
    if resume and (run_dir / CHECKPOINT).exists():
        state = load_checkpoint(run_dir / CHECKPOINT)
        check_resumable(run_dir / CHECKPOINT, Config.upgrade_dict(state["config"]),
                        rank_config(cfg, 0, world_size).to_dict(), CONTINUE_KEYS)
    elif not resume and rank == 0 and not overwrite and (held := existing_run(run_dir)):
        raise RunFolderError(f"run folder {run_dir} already holds a run ({held}): continue it with --resume "
                             f"{run_dir}, or replace it with --overwrite (or choose another --run-dir)")
    with _entered(cb.spawning() for cb in callbacks):
        trainer = Trainer(trained)  # before the folder: a bad env id must not leave an empty run folder behind
    run = Run(trained, run_dir, trainer, rank, world_size, callbacks)
    try:
        if run.is_main:
            if overwrite and not resume:
                clear_run(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(run_dir)  # what a write killed mid-way left (one process per run folder)
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
            stop = any([cb.stop_requested(run) for cb in callbacks])
            every = trained.train.checkpoint_every
            if run.is_main and (stop or every and tr.iteration % every == 0):
                run.save()
            if stop:
                raise _Stop

        with _entered(cb.training(run) for cb in callbacks):
            try:
                summary = trainer.train(trained.train.total_timesteps, on_iteration=on_iteration)
            except _Stop:
                summary = None
            else:
                if run.is_main:
                    run.save()
        flush_logger(logger)
        if summary is None:
            if run.is_main:
                atomic_write_json(run_dir / HISTORY, trainer.history)
            raise TrainingStopped(run_dir, run.frames)
        eval_returns, video = [], {}
        if run.is_main:
            with _entered(cb.spawning() for cb in callbacks):
                eval_returns = trainer.evaluate(trained.train.eval_episodes)
                if trained.train.video:  # rendering probes OpenGL backends in subprocesses
                    video = film(trainer, run_dir, logger, run.frames)
    finally:
        trainer.close()
    extra = {k: v for cb in callbacks for k, v in cb.results(run).items()}
    if not run.is_main:
        return {"rank": rank, "world_size": world_size, "timesteps": trainer.frames, **extra}
    whole_run = {**summary, "timesteps": run.frames, "steps_per_second": summary["steps_per_second"] * world_size,
                 **timing.whole_run(run, summary["wall_time"])}
    results = {**results_record(whole_run, cfg, eval_returns), **video, **extra}
    atomic_write_json(run_dir / RESULTS, results)
    atomic_write_json(run_dir / HISTORY, trainer.history)
    plot_learning_curve(trainer.history, run_dir / CURVE, f"{cfg.env.env_id} seed {cfg.train.seed}",
                        results["eval_mean"])
    if isinstance(logger, TensorboardLogger):
        last = trainer.history[-1] if trainer.history else {}
        log_hparams(logger, cfg.to_dict(), {"eval_mean": results["eval_mean"], "steps_per_second": results[
            "steps_per_second"], "train_return": last.get("train_return")})
        flush_logger(logger)
    return results


# Software rendering costs ~60 ms a frame at 240 x 240 here, twice that at gymnasium's 480 x 480: the run's own
# video is the smaller one (a 1,000-step episode ~1 min); aeon-eval --video --size renders larger on request.
RUN_VIDEO_SIZE = (240, 240)


def film(trainer: Trainer, run_dir: Path, logger, step: int) -> dict:
    """One deterministic episode (aeon-eval's first) filmed into ``run_dir/eval.mp4``: ``{"video": path}``, or
    ``{"video_error": why}`` when nothing renders here (or the encoding failed): a video never fails a run. With
    TensorBoard, the episode also goes to its Images tab at ``step``."""
    from aeon_trl.evaluation import record_video
    from aeon_trl.ppo import AdvancedPPO
    try:
        evaluation = record_video(AdvancedPPO.from_trainer(trainer), run_dir, size=RUN_VIDEO_SIZE, stem=Path(VIDEO).stem)
        if not evaluation.frames:
            return {"video_error": evaluation.render_message}
        if isinstance(logger, TensorboardLogger):
            log_video(logger, evaluation.frames[0], step, evaluation.fps)
    except Exception as exc:  # a missing encoder, a renderer failing mid-episode, an env id gymnasium cannot make
        return {"video_error": f"{type(exc).__name__}: {exc}"}
    return {"video": str(run_dir / VIDEO)}


class _Stop(Exception):
    """Raised out of the trainer's loop when a callback asked to stop (after the checkpoint)."""


class _TrainingTime(Callback):
    """The training seconds of every segment of a run (a resumed run has several), kept in the checkpoint, so
    results.json relates the whole run's steps to the whole run's time: ``steps_per_second = timesteps /
    wall_time``. ``segments``: each start's frame counter and seconds (None: a checkpoint from before this was
    kept). Each history row gets ``wall_time``: the training seconds of the run up to it, earlier segments
    included (the learning curve's time axis)."""

    key = "training_time"

    def __init__(self):
        self.segments: list[dict] = []  # the earlier segments
        self._start_frames, self._started, self._before = 0, None, 0.0

    def state_dict(self) -> dict:
        now = time.perf_counter() - self._started if self._started is not None else 0.0
        return {"segments": [*self.segments, {"start_frames": self._start_frames, "seconds": now}]}

    def load_state_dict(self, state: dict) -> None:
        self.segments = list(state.get("segments", [{"start_frames": 0, "seconds": None}]))

    def on_start(self, run: Run, resumed: bool) -> None:
        self._start_frames = run.frames
        # the earlier segments' seconds; where one is unknown, the time of the last row that has one
        known = [seg["seconds"] for seg in self.segments]
        stamped = [h["wall_time"] for h in run.trainer.history if "wall_time" in h]
        self._before = sum(known) if None not in known else (stamped[-1] if stamped else 0.0)

    def on_iteration(self, run: Run, metrics: dict) -> None:
        metrics["wall_time"] = self._before + time.perf_counter() - self._started

    def training(self, run: Run):
        self._started = time.perf_counter()
        return contextlib.nullcontext()

    def whole_run(self, run: Run, wall_time: float) -> dict:
        """results.json's timing of a run whose last segment trained ``wall_time`` seconds."""
        if not self.segments:  # one segment: the trainer's summary is the whole run
            return {}
        segments = [*self.segments, {"start_frames": self._start_frames, "seconds": wall_time}]
        if any(seg["seconds"] is None for seg in segments):  # an earlier segment's time is unknown
            return {"segments": segments}
        wall = sum(seg["seconds"] for seg in segments)
        return {"wall_time": wall, "steps_per_second": run.frames / wall if wall > 0 else float("nan"),
                "segment_steps_per_second": (run.frames - self._start_frames) / wall_time if wall_time > 0
                else float("nan"), "segments": segments}


def validate_run(cfg: Config) -> None:
    """Refuse, without building the training envs, what a run of ``cfg`` would refuse at its start (for a job
    before it is submitted): an unknown env id or one without a Box action space, a demonstrations file that
    cannot be read, was recorded on another env or has other actions (``ConfigError``, ``DemonstrationError``)."""
    action_space = check_env_id(cfg.env.env_id)
    if cfg.demo.demos:
        demos = DemonstrationBuffer.from_file(cfg.demo.demos, env_id=cfg.env.env_id)
        shape = tuple(demos.transitions.get("action").shape[1:])
        if shape != tuple(action_space.shape):
            raise DemonstrationError(f"demonstration file {cfg.demo.demos} has actions of shape {shape}, "
                                     f"{cfg.env.env_id} has {tuple(action_space.shape)}")


def existing_run(run_dir: Path) -> str | None:
    """What of a run ``run_dir`` holds (None: nothing, so a new run may start there)."""
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not found:
        return None
    try:
        frames = load_checkpoint(run_dir / CHECKPOINT)["counters"]["frames"]
        return f"{CHECKPOINT} at {frames} frames"
    except CheckpointError:
        return ", ".join(found)


def clear_run(run_dir: Path) -> None:
    """Remove what a run wrote into ``run_dir`` (``RUN_FILES``, temporary files); anything else stays."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if run_dir.is_dir():
        remove_stale_temp_files(run_dir)


@contextlib.contextmanager
def _entered(contexts: Iterable[ContextManager]):
    """All of ``contexts`` at once (the callbacks' contexts around one step)."""
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield
