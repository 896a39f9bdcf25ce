"""Submitting ``TrainJob``s through submitit (one job, or a job array over seeds), following them, and the
equivalent plain sbatch script. The command line is ``aeon-submit`` (``aeon_trl.cli.submit``).

Each seed gets its own run folder ``RUN_DIR/seed_<s>`` (one task of a job array; a single run without seeds
uses ``RUN_DIR`` itself); submitit's pickles and logs go to ``RUN_DIR/slurm_logs/<job id>``. A job that is
preempted or reaches its time limit checkpoints and requeues itself (``aeon_trl.launch.job``).
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from aeon_trl.driver import rank_config, validate_run
from aeon_trl.launch.job import TrainJob
from aeon_trl.launch.profile import Profile, ProfileError

LOG_DIR = "slurm_logs"


def run_folders(run_dir: Path, seeds: list[int] | None) -> list[tuple[int | None, Path]]:
    return [(None, run_dir)] if not seeds else [(s, run_dir / f"seed_{s}") for s in seeds]


def check_world(cfg, profile: Profile) -> None:
    """Refuse, before submission, a config data-parallel training cannot run."""
    if profile.world_size > 1:
        rank_config(cfg, rank=0, world_size=profile.world_size)


def make_executor(profile: Profile, log_dir: Path, local: bool):
    import submitit
    ctor = {} if local else {"slurm_max_num_timeout": profile.max_num_timeout}
    executor = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster="local" if local else None, **ctor)
    if not local and executor.cluster != "slurm":
        raise ProfileError(f"no SLURM here (submitit found cluster '{executor.cluster}': srun is not on PATH). "
                           "Start one (slurm/local_cluster.sh start) or submit with --local.")
    params = profile.executor_parameters()
    if local:
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    return executor


def submit(cfg, run_dir: Path, profile: Profile, seeds: list[int] | None = None, local: bool = False):
    """Submit one job (or one array task per seed); returns ``[(seed, run_folder, job)]``. The config is
    checked first as far as it can be without training (``validate_run``): a job must not fail at its start."""
    if not local:
        profile.check_partition()
    check_world(cfg, profile)
    validate_run(cfg)
    run_dir = run_dir.resolve()
    jobs_in = [(seed, folder, TrainJob(cfg if seed is None else cfg.with_overrides([f"seed={seed}"]), folder))
               for seed, folder in run_folders(run_dir, seeds)]
    executor = make_executor(profile, run_dir / LOG_DIR, local)
    if len(jobs_in) == 1:
        jobs = [executor.submit(jobs_in[0][2])]
    else:
        with executor.batch():  # one job array; every task keeps its own Checkpointable TrainJob
            jobs = [executor.submit(job) for _, _, job in jobs_in]
    return [(seed, folder, job) for (seed, folder, _), job in zip(jobs_in, jobs)]


def wait(submitted, poll_s: float = 2.0, stream=sys.stdout) -> int:
    """Stream the jobs' progress lines until they end; print each result or remote traceback."""
    from submitit.core.utils import FailedJobError, UncompletedJobError
    offsets = {job.job_id: 0 for _, _, job in submitted}
    pending = list(submitted)
    failures = 0
    while pending:
        for seed, folder, job in list(pending):
            offsets[job.job_id] = _stream_new_lines(job, offsets[job.job_id], stream)
            if not job.done():
                continue
            pending.remove((seed, folder, job))
            offsets[job.job_id] = _stream_new_lines(job, offsets[job.job_id], stream)
            try:
                result = job.results()[0]
                print(f"[{job.job_id}] finished: {result['timesteps']} frames, eval return "
                      f"{_fmt(result['eval_mean'])} ± {_fmt(result['eval_std'])}, starts {result['starts']} -> "
                      f"{folder / 'results.json'}", file=stream, flush=True)
            except FailedJobError as exc:
                failures += 1
                print(f"[{job.job_id}] FAILED (state {job.state}); the job's traceback:\n{exc}", file=stream, flush=True)
            except UncompletedJobError as exc:
                failures += 1
                print(f"[{job.job_id}] did not complete (state {job.state}): {str(exc).splitlines()[0]}",
                      file=stream, flush=True)
        if pending:
            time.sleep(poll_s)
    return failures


def _stream_new_lines(job, offset: int, stream) -> int:
    path = job.paths.stdout
    if not path.exists():
        return offset
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode(errors="replace").splitlines():
        if line.startswith("[aeon]"):
            print(f"[{job.job_id}] {line[7:]}", file=stream, flush=True)
    return offset + end


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


# ---- the plain sbatch template ----------------------------------------------------------
def sbatch_script(profile: Profile, run_dir: Path, overrides: list[str], seeds: list[int] | None = None,
                  config_file: str | None = None, python: str = "python", no_preset: bool = False) -> str:
    """A self-contained sbatch file equivalent to ``aeon-submit`` with this profile (no submitit needed).

    USR2 arrives ``signal_delay_s`` before the time limit (and at preemption where the cluster sends it): the
    job checkpoints at the end of the iteration and runs ``scontrol requeue``; the requeued script resumes.
    """
    hours, minutes = divmod(profile.time, 60)
    lines = ["#!/bin/bash", f"# generated by: aeon-submit --sbatch-only (profile partition {profile.partition})",
             f"#SBATCH --job-name={profile.job_name}", f"#SBATCH --partition={profile.partition}",
             f"#SBATCH --time={hours:02d}:{minutes:02d}:00", f"#SBATCH --nodes={profile.nodes}",
             f"#SBATCH --ntasks-per-node={profile.ntasks_per_node}", f"#SBATCH --cpus-per-task={profile.cpus_per_task}"]
    if profile.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={profile.gpus_per_node}")
    for key in ("account", "qos", "mem", "constraint"):
        if getattr(profile, key) is not None:
            lines.append(f"#SBATCH --{key}={getattr(profile, key)}")
    log = run_dir / LOG_DIR / ("%A_%a.out" if seeds else "%j.out")
    lines += ["# USR2 to every task before the time limit: checkpoint at the end of the iteration, scontrol requeue;",
              "# a requeued job appends to its log (the log folder must exist: --sbatch-only creates it)",
              f"#SBATCH --signal=USR2@{profile.signal_delay_s}", "#SBATCH --requeue", "#SBATCH --open-mode=append",
              f"#SBATCH --output={log}"]
    if seeds:
        lines.append(f"#SBATCH --array=0-{len(seeds) - 1}%{profile.array_parallelism}")
    lines += ["", "set -euo pipefail"] + list(profile.setup)
    args = " ".join(shlex.quote(o) for o in overrides)
    config = (f" --config {shlex.quote(config_file)}" if config_file else "") + (" --no-preset" if no_preset else "")
    if seeds:
        lines += [f"SEEDS=({' '.join(map(str, seeds))})", 'SEED=${SEEDS[$SLURM_ARRAY_TASK_ID]}',
                  f'RUN="{run_dir}/seed_$SEED"', "SEED_OVERRIDE=seed=$SEED"]
    else:
        lines += [f'RUN="{run_dir}"', "SEED_OVERRIDE="]
    lines += ["# one process per task; with several tasks they form a torch.distributed group (rank 0 checkpoints)",
              f'srun --kill-on-bad-exit=1 {python} -m aeon_trl.launch.job "$RUN"{config} {args} $SEED_OVERRIDE', ""]
    return "\n".join(lines)
