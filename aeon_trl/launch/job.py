"""``TrainJob``: one PPO run in one run folder that survives SLURM preemption and time limits.

The job is a ``submitit.helpers.Checkpointable`` (the pattern of submitit's own examples and Hydra's submitit
launcher): SLURM sends USR2 ahead of a time limit or at preemption, submitit calls ``checkpoint()``, pickles the
``DelayedSubmission`` it returns, runs ``scontrol requeue`` and exits; the requeued job unpickles the same
``TrainJob`` and calls it again, and ``__call__`` resumes from ``run_dir/checkpoint.pt``.

Why the signal is held until the end of an iteration: submitit's handler runs synchronously in the main thread,
between two bytecodes of whatever the loop is doing: between the parameter updates of one optimizer step, or
after a batch was collected but before the frame counter moved. A checkpoint written there is a state no
uninterrupted run passes through. So while the loop runs, ``TrainJob`` swaps in a handler that only sets a flag
(``PreemptionGuard``, ``aeon_trl.launch.signals``, whose ``StopGuard`` does the same for aeon-train's Ctrl-C);
the ``on_iteration`` callback (networks, optimizer, normalization statistics, schedules, counters and RNG all
agree there) hands the signal on to submitit's handler, which calls ``checkpoint()``: it saves the trainer
atomically and returns the resubmission. The price is a delay of at most one iteration, so keep
``slurm_signal_delay_s`` (and a preemptible partition's ``GraceTime``) above one iteration's wall time; nothing of
the interrupted iteration is lost. Outside the loop (building envs, the final evaluation) the signal goes to
submitit at once: the state on disk is then already the newest one, so ``checkpoint()`` only resubmits.

The training itself is ``aeon_trl.driver.run_training``, as for ``aeon-train``, so the run folder is the same
(see there); results.json has the driver's keys plus ``starts`` (the frame counter at each (re)start),
``rank``, ``world_size``, ``param_digest`` and ``job_id``. The job's own parts are callbacks of the driver.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import submitit
import torch

from aeon_trl.config import Config
from aeon_trl.driver import Callback, Run, run_training
from aeon_trl.launch import distributed as dp
from aeon_trl.launch.signals import PreemptionGuard, preemption_signal


def param_digest(module: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers, bitwise: equal digests mean identical networks."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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
        self._run: Run | None = None
        self._dist: dp.DistributedContext | None = None
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
        self._guard = guard = PreemptionGuard().install()  # before anything forks an env worker
        self._dist = ctx = dp.init_distributed() if self.distributed else dp.DistributedContext()
        try:
            results = run_training(Config.from_dict(self.cfg_dict), self.run_dir, resume=True,
                                   callbacks=[_JobCallback(self)], rank=ctx.rank, world_size=ctx.world_size)
        finally:
            dp.destroy()
            guard.uninstall()
        if ctx.is_main:
            self._log(f"done: {results['timesteps']} frames, eval return {results['eval_mean']}, param_digest "
                      f"{results['param_digest']}, results in {Path(self.run_dir) / 'results.json'}")
        else:
            print(f"[aeon rank {ctx.rank}] done: param_digest {results['param_digest']}", flush=True)
        return results

    # ---- preemption ---------------------------------------------------------------------
    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on USR2: save the trainer if its state is consistent, resubmit ``self``."""
        if self._run is not None and self._consistent and self._run.is_main:
            path = self._run.save()
            self._log(f"checkpoint at frames {self._run.frames} written to {path}; requeueing")
        else:
            self._log("preempted outside the training loop: the checkpoint on disk is the newest state; requeueing")
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def _log(self, message: str) -> None:
        if self._dist is None or self._dist.is_main:
            print(f"[aeon] {time.strftime('%H:%M:%S')} {message}", flush=True)


class _JobCallback(Callback):
    """The job's part of the run: env workers blind to the preemption signal, the signal held until the end of
    an iteration, the restarts counted (kept in the checkpoint's "launch" entry, so a requeued plain sbatch job,
    a new process rather than an unpickled ``TrainJob``, continues the list too), data parallelism attached."""

    key = "launch"

    def __init__(self, job: TrainJob):
        self.job = job

    def spawning(self):
        return self.job._guard.blind_children()

    def state_dict(self) -> dict:
        return {"starts": list(self.job.starts)}

    def load_state_dict(self, state: dict) -> None:
        self.job.starts = list(state.get("starts", self.job.starts))

    def on_start(self, run: Run, resumed: bool) -> None:
        job = self.job
        job._run = run
        if resumed and run.rank:  # the checkpoint holds rank 0's RNG: give this rank its own stream again
            dp.reseed(run.cfg.train.seed, run.trainer.frames)
        dp.attach(run.trainer, job._dist)  # broadcast rank 0's parameters, all-reduce gradients (no-op on one process)
        job.starts.append(run.frames)
        job._log(f"{'resuming at' if resumed else 'starting at'} frames {run.frames} (start {len(job.starts)}; "
                 f"world size {run.world_size}; run folder {run.run_dir})")

    def training(self, run: Run):
        return self.job._guard.hold()  # a signal held past the last iteration is delivered after the final save

    def on_iteration(self, run: Run, metrics: dict) -> None:
        job, guard, ctx = self.job, self.job._guard, self.job._dist
        job._log(f"iteration {metrics['iteration']} frames {run.frames} return {metrics['episode_return']:.2f} "
                 f"steps/s {metrics['steps_per_second'] * run.world_size:.0f}")
        if not dp.any_rank(guard.pending, ctx):  # every rank must stop after the same iteration
            return
        if not run.is_main:
            dp.wait_for_requeue()  # rank 0 saves and requeues; the requeue ends every task
        job._consistent = True
        try:
            guard.pending = True     # the signal may have reached another rank only
            guard.deliver_pending()  # submitit: checkpoint() saves -> scontrol requeue -> sys.exit
        finally:
            job._consistent = False
        job._log("preemption signal but no submitit handler to pass it to: training goes on")

    def results(self, run: Run) -> dict:
        digest = param_digest(run.trainer.net)
        if not run.is_main:
            return {"param_digest": digest}
        return {"starts": list(self.job.starts), "rank": 0, "world_size": run.world_size, "param_digest": digest,
                "job_id": _job_id()}


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
    args = parser.parse_intermixed_args(argv)
    cfg = Config.for_run(args.overrides, args.config, preset=not args.no_preset)[0]
    job = TrainJob(cfg, args.run_dir)
    if os.environ.get("SLURM_JOB_ID") and not os.environ.get("SUBMITIT_FOLDER"):
        signal.signal(preemption_signal(), _requeue_handler(job))
    results = job()
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
