"""``TrainJob``: one PPO run in one run folder that survives SLURM preemption and time limits.

The job is a ``submitit.helpers.Checkpointable`` (the pattern of submitit's own examples and Hydra's submitit
launcher): SLURM sends USR2 ahead of a time limit or at preemption, submitit calls ``checkpoint()``, pickles the
``DelayedSubmission`` it returns, runs ``scontrol requeue`` and exits; the requeued job unpickles the same
``TrainJob`` and calls it again, and ``__call__`` resumes from ``run_dir/checkpoint.pt``.

Why the signal is held until the end of an iteration: submitit's handler runs synchronously in the main thread,
between two bytecodes of whatever the loop is doing: between the parameter updates of one optimizer step, or
after a batch was collected but before the frame counter moved. A checkpoint written there is a state no
uninterrupted run passes through. So while the loop runs, ``TrainJob`` swaps in a handler that only sets a flag;
the ``on_iteration`` callback (networks, optimizer, normalization statistics, schedules, counters and RNG all
agree there) hands the signal on to submitit's handler, which calls ``checkpoint()``: it saves the trainer
atomically and returns the resubmission. The price is a delay of at most one iteration, so keep
``slurm_signal_delay_s`` (and a preemptible partition's ``GraceTime``) above one iteration's wall time; nothing of
the interrupted iteration is lost. Outside the loop (building envs, the final evaluation) the signal goes to
submitit at once: the state on disk is then already the newest one, so ``checkpoint()`` only resubmits.

Run folder: config.yaml, checkpoint.pt (atomic), progress.csv (one row per iteration; rows past the checkpoint
are dropped on resume, so the log continues where the checkpoint is), results.json (the keys of
``pipelines/train.py``'s results plus ``starts``: the frame counter at each (re)start), history.json.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import submitit
import torch

from aeon_trl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aeon_trl.config import Config

CHECKPOINT = "checkpoint.pt"  # the same name as pipelines/train.py's, so aeon-train --resume reads it
RESULTS = "results.json"
PROGRESS = "progress.csv"
PROGRESS_KEYS = ("frames", "iteration", "episode_return", "steps_per_second", "collect_fps", "loss_objective",
                 "loss_critic", "loss_entropy", "kl_approx", "clip_fraction", "entropy", "lr", "clip_epsilon")
# Keys that may differ between a checkpoint and the job resuming it: they change no parameter update.
BOOKKEEPING_KEYS = frozenset({"progress", "logger", "run_dir", "eval_episodes", "checkpoint_every", "device",
                              "torch_threads", "env_threads"})


class ConfigMismatchError(CheckpointError):
    """The run folder's checkpoint was written by a run with another config."""


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       ignore: frozenset[str] = BOOKKEEPING_KEYS) -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (saved, current)}`` for every leaf that differs and is not bookkeeping."""
    diffs = {}
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section, {}), current.get(section, {})
        for key in sorted(set(a) | set(b)):
            if key not in ignore and a.get(key) != b.get(key):
                diffs[f"{section}.{key}"] = (a.get(key), b.get(key))
    return diffs


def param_digest(module: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers, bitwise: equal digests mean identical networks."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class PreemptionGuard:
    """The job's handler for submitit's preemption signal, installed over submitit's own for the whole job.

    - While ``holding`` (the training loop runs), the signal only sets ``pending``; ``deliver_pending()`` at the
      end of an iteration hands it to submitit's handler (checkpoint(), scontrol requeue, exit).
    - Elsewhere it goes to submitit's handler at once.
    - Env worker processes must never act on it: SLURM signals every process of the job step, and a worker
      forked from this process inherits the handler (with submitit's, a worker would call checkpoint() on its
      stale copy of the job and requeue the job under the main process's feet: seen on the local cluster).
      ``blind_children()`` blocks the signal in the main thread while envs create their workers: the signal
      mask is inherited across fork and exec, so those workers never receive it (the main process still does,
      through another thread or when the block ends). A worker forked at another time still inherits this handler, which ignores it outside the main PID.
    """

    def __init__(self, signum: int | None = None):
        self.signum = signum if signum is not None else preemption_signal()
        self.main_pid = os.getpid()
        self.holding = False
        self.pending = False
        self._previous = None

    def install(self) -> "PreemptionGuard":
        previous = signal.getsignal(self.signum)
        if callable(previous) and previous is not self._handle:  # submitit's; with none, nothing to guard
            self._previous = previous
            signal.signal(self.signum, self._handle)
        return self

    def uninstall(self) -> None:
        if self._previous is not None and os.getpid() == self.main_pid:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self.main_pid:  # a forked env worker: the main process handles the signal
            return
        if self.holding:
            self.pending = True
            print(f"[aeon] caught {signal.Signals(signum).name}: checkpoint at the end of this iteration", flush=True)
        else:
            self._deliver()

    def _deliver(self) -> None:
        self.pending = False
        if self._previous is None:
            return
        try:
            self._previous(self.signum, None)
        except subprocess.CalledProcessError as exc:
            # submitit's `scontrol requeue` failed. At a real preemption SLURM requeues the job itself
            # (PreemptMode=REQUEUE) and may already have: the checkpoint is on disk, so leave without a result
            # file (an error pickle would tell the client the job failed while its requeued run goes on).
            print(f"[aeon] {' '.join(map(str, exc.cmd))} failed ({exc.returncode}): SLURM is requeueing this "
                  "job itself, or it cannot be requeued; exiting after the checkpoint", flush=True)
            sys.exit(-1)

    def deliver_pending(self) -> None:
        if self.pending:
            self._deliver()

    @contextlib.contextmanager
    def hold(self):
        self.holding = True
        try:
            yield self
        finally:
            self.holding = False
        self.deliver_pending()  # a signal held after the last iteration's callback: deliver it now

    @contextlib.contextmanager
    def blind_children(self):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {self.signum})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a signal that came meanwhile is handled here


def preemption_signal() -> int:
    """The signal submitit checkpoints on (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class TrainJob(submitit.helpers.Checkpointable):
    """Train PPO with ``cfg`` in ``run_dir``, resuming from ``run_dir/checkpoint.pt`` if it exists.

    ``distributed=True`` runs data-parallel when the process is one of several tasks (submitit's
    ``tasks_per_node``, or ``torchrun``): see ``aeon_trl.launch.distributed``. Only the config (a plain dict),
    the folder and the frame counters at each start are pickled for a requeue; the trainer never is.
    """

    def __init__(self, cfg: Config | Mapping[str, Any], run_dir: str | Path, distributed: bool = True):
        cfg = cfg if isinstance(cfg, Config) else Config.from_dict(cfg)  # validate before submission
        self.cfg_dict = cfg.to_dict()
        self.run_dir = str(run_dir)
        self.distributed = distributed
        # the frame counter at each (re)start; kept in the checkpoint ("launch" entry), so a requeued plain
        # sbatch job (a new process, not an unpickled TrainJob) continues the list too
        self.starts: list[int] = []
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._trainer = None
        self._dist = None
        # True only inside the on_iteration callback: the trainer's state is one an uninterrupted run passes
        # through, and newer than the checkpoint on disk. Elsewhere the checkpoint on disk is the newest state.
        self._consistent = False
        self._guard: PreemptionGuard | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_runtime()

    def __repr__(self) -> str:
        return f"TrainJob({self.cfg_dict['env']['env_id']}, seed={self.cfg_dict['train']['seed']}, {self.run_dir})"

    # ---- the run ------------------------------------------------------------------------
    def __call__(self) -> dict:
        from aeon_trl.launch import distributed as dp
        from aeon_trl.trainer import Trainer

        run_dir = Path(self.run_dir)
        self._guard = guard = PreemptionGuard().install()  # before anything forks an env worker
        base = Config.from_dict(self.cfg_dict)
        self._dist = ctx = dp.init_distributed() if self.distributed else dp.DistributedContext()
        trainer = None
        try:
            cfg = dp.rank_config(base, ctx)
            state = self._resume_state(run_dir / CHECKPOINT, dp.rank_config(base, ctx, rank=0))
            if ctx.is_main:
                run_dir.mkdir(parents=True, exist_ok=True)
                base.save(run_dir / "config.yaml")
            with guard.blind_children():
                self._trainer = trainer = Trainer(cfg)
            if state is not None:
                trainer.load_state_dict(state)
                self.starts = list(state.get("launch", {}).get("starts", self.starts))
                if ctx.rank:  # the checkpoint holds rank 0's RNG: give this rank its own stream again
                    dp.reseed(cfg.train.seed, trainer.frames)
            dp.attach(trainer, ctx)  # broadcast rank 0's parameters, all-reduce gradients (no-op on one process)
            self.starts.append(trainer.frames * ctx.world_size)
            self._log(f"{'resuming at' if state is not None else 'starting at'} frames {self.starts[-1]} "
                      f"(start {len(self.starts)}; world size {ctx.world_size}; run folder {run_dir})")
            progress = _ProgressLog(run_dir / PROGRESS, trainer.frames * ctx.world_size) if ctx.is_main else None
            summary = self._train(trainer, cfg, ctx, progress)
            eval_returns = []
            if ctx.is_main:
                with guard.blind_children():
                    eval_returns = trainer.evaluate(cfg.train.eval_episodes)
            return self._finish(trainer, cfg, ctx, summary, eval_returns)
        finally:
            if trainer is not None:
                trainer.close()
            dp.destroy()
            guard.uninstall()

    def _resume_state(self, path: Path, expected: Config) -> dict | None:
        if not path.exists():
            return None
        state = load_checkpoint(path)
        diffs = config_differences(state["config"], expected.to_dict())
        if diffs:
            listing = "; ".join(f"{k}: checkpoint {a!r}, job {b!r}" for k, (a, b) in diffs.items())
            raise ConfigMismatchError(
                f"{path} was written by a run with a different config ({listing}). Resume with the checkpoint's "
                "config, or give this job a new run folder.")
        return state

    def _train(self, trainer, cfg: Config, ctx, progress: "_ProgressLog | None") -> dict:
        from aeon_trl.launch import distributed as dp

        world, guard, path = ctx.world_size, self._guard, Path(self.run_dir) / CHECKPOINT

        def on_iteration(tr, m: dict) -> None:
            frames = m["frames"] * world
            if progress is not None:
                progress.write({**m, "frames": frames})
                self._log(f"iteration {m['iteration']} frames {frames} return {m['episode_return']:.2f} "
                          f"steps/s {m['steps_per_second'] * world:.0f}")
            stop = dp.any_rank(guard.pending, ctx)  # every rank must stop after the same iteration
            if stop and ctx.is_main:
                self._consistent = True
                try:
                    guard.pending = True     # the signal may have reached another rank only
                    guard.deliver_pending()  # submitit: checkpoint() saves -> scontrol requeue -> sys.exit
                finally:
                    self._consistent = False
                self._log("preemption signal but no submitit handler to pass it to: training goes on")
            elif stop:
                dp.wait_for_requeue()  # rank 0 saves and requeues; the requeue ends every task
            elif ctx.is_main and cfg.train.checkpoint_every and tr.iteration % cfg.train.checkpoint_every == 0:
                self._save(path)

        with guard.hold():  # a signal held past the last iteration is delivered on leaving, after the save
            summary = trainer.train(cfg.train.total_timesteps, on_iteration=on_iteration)
            if ctx.is_main:
                self._save(path)
        return summary

    def _finish(self, trainer, cfg: Config, ctx, summary: dict, eval_returns: list[float]) -> dict:
        world = ctx.world_size
        digest = param_digest(trainer.net)
        if not ctx.is_main:
            print(f"[aeon rank {ctx.rank}] done: param_digest {digest}", flush=True)
            return {"rank": ctx.rank, "world_size": world, "param_digest": digest, "timesteps": trainer.frames}
        from aeon_trl.trainer import results_record  # lazily, like Trainer: submitting needs no torchrl import

        base = Config.from_dict(self.cfg_dict)
        global_summary = {**summary, "timesteps": trainer.frames * world,
                          "steps_per_second": summary["steps_per_second"] * world}
        results = {**results_record(global_summary, base, eval_returns), "starts": list(self.starts), "rank": 0,
                   "world_size": world, "param_digest": digest, "job_id": _job_id()}
        run_dir = Path(self.run_dir)
        _write_json_atomic(run_dir / RESULTS, results)
        _write_json_atomic(run_dir / "history.json", trainer.history)
        self._log(f"done: {results['timesteps']} frames, eval return {results['eval_mean']}, param_digest {digest}, "
                  f"results in {run_dir / RESULTS}")
        return results

    # ---- preemption ---------------------------------------------------------------------
    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on USR2: save the trainer if its state is consistent, resubmit ``self``."""
        if self._trainer is not None and self._consistent and (self._dist is None or self._dist.is_main):
            path = self._save(Path(self.run_dir) / CHECKPOINT)
            self._log(f"checkpoint at frames {self._trainer.frames * self._dist.world_size} written to {path}; "
                      "requeueing")
        else:
            self._log("preempted outside the training loop: the checkpoint on disk is the newest state; requeueing")
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def _save(self, path: Path) -> Path:
        """The trainer's complete state plus the launcher's own bookkeeping, written atomically."""
        return save_checkpoint({**self._trainer.state_dict(), "launch": {"starts": list(self.starts)}}, path)

    def _log(self, message: str) -> None:
        if self._dist is None or self._dist.is_main:
            print(f"[aeon] {time.strftime('%H:%M:%S')} {message}", flush=True)


class _ProgressLog:
    """progress.csv, continued across requeues: rows logged after the checkpoint are dropped on resume."""

    def __init__(self, path: Path, resume_frames: int):
        self.path = path
        rows = []
        if path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if float(r["frames"]) <= resume_frames]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, PROGRESS_KEYS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, metrics: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, PROGRESS_KEYS).writerow({k: _num(metrics.get(k)) for k in PROGRESS_KEYS})


def _num(v):
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _job_id() -> str | None:
    """The submitit job id (SLURM's, or the local executor's), else a plain sbatch job's."""
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:  # not started by submitit
        return os.environ.get("SLURM_JOB_ID")


def _requeue_handler(job: TrainJob):
    """For a plain sbatch job (no submitit): what submitit's handler does, checkpoint then ``scontrol requeue``."""
    def handler(signum, frame) -> None:
        if job._dist is not None and not job._dist.is_main:
            return
        job.checkpoint()
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=False, timeout=60)
        print("[aeon] requeued; exiting", flush=True)
        sys.exit(0)
    return handler


def main(argv: list[str] | None = None) -> int:
    """``python -m aeon_trl.launch.job RUN_DIR [--config FILE] [--no-preset] key=value ...``: the job in this process,
    with the config ``aeon-train`` would build from the same arguments (the env's preset included).

    Also what the sbatch template runs under ``srun`` (one process per task: data-parallel when several) and
    what ``torchrun --nproc_per_node=N -m aeon_trl.launch.job RUN_DIR ...`` runs. Inside a plain SLURM job it
    checkpoints and requeues itself on USR2 (``#SBATCH --signal=USR2@90 --requeue``).
    """
    import argparse
    parser = argparse.ArgumentParser(prog="python -m aeon_trl.launch.job", description=main.__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    parser.add_argument("--config", help="YAML/JSON config file (replaces defaults + the env's preset)")
    parser.add_argument("--no-preset", action="store_true", help="ignore the env's shipped preset")
    args = parser.parse_args(argv)
    cfg = Config.for_run(args.overrides, args.config, preset=not args.no_preset)[0]
    job = TrainJob(cfg, args.run_dir)
    if os.environ.get("SLURM_JOB_ID") and not os.environ.get("SUBMITIT_FOLDER"):
        signal.signal(preemption_signal(), _requeue_handler(job))
    results = job()
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
