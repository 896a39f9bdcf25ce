"""Train on SLURM through submitit: the same config and overrides as ``aeon-train``, plus a cluster profile.

    python -m slurm.submit env_id=Hopper-v5 total_timesteps=2e6                 # one job, returns at once
    python -m slurm.submit --profile slurm/profiles/gpu.yaml --seeds 0 1 2 3 --wait env_id=Hopper-v5
    python -m slurm.submit --time 120 --gpus-per-node 4 --nodes 2 env_id=Humanoid-v5   # 8-process data parallel
    python -m slurm.submit --sbatch-only slurm/train.sbatch --seeds 0 1 2 env_id=Hopper-v5   # a plain sbatch file

Each seed gets its own run folder ``RUN_DIR/seed_<s>`` (one task of a job array; a single run without
``--seeds`` uses ``RUN_DIR`` itself); submitit's pickles and logs go to ``RUN_DIR/slurm_logs/<job id>``.
A job that is preempted or reaches its time limit checkpoints and requeues itself (``aeon_trl.launch.job``).
Results: ``python -m slurm.collect RUN_DIR``.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

DEFAULT_PROFILE = Path(__file__).parent / "profiles" / "local.yaml"
LOG_DIR = "slurm_logs"


class ProfileError(ValueError):
    """A cluster profile or cluster option that cannot be submitted, with the fix in the message."""


@dataclass
class Profile:
    """A cluster profile (``slurm/profiles/*.yaml``). Every field is required in the file (``null`` where the
    cluster does not use it), so a typo or a forgotten key is an error, not a silently different job."""
    partition: str
    account: str | None
    qos: str | None
    time: int  # minutes
    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    mem: str | None  # per node, sbatch syntax ("32G"); null = the partition's default
    constraint: str | None
    array_parallelism: int
    # optional
    tasks_per_node: int | None = None  # default: one process per GPU (1 without GPUs)
    signal_delay_s: int = 90  # USR2 this long before the time limit: must exceed one training iteration
    max_num_timeout: int = 3  # requeues after time limits/preemptions before the job gives up
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load ...)
    job_name: str = "aeon"

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Profile":
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"cluster profile {path} does not exist (profiles shipped: "
                               f"{', '.join(sorted(p.name for p in DEFAULT_PROFILE.parent.glob('*.yaml')))})")
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
        if not isinstance(data, dict):
            raise ProfileError(f"cluster profile {path} must be a mapping of fields, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path), overrides=overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "profile",
                  overrides: dict[str, Any] | None = None) -> "Profile":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        for key in data:
            if key not in fields:
                hint = difflib.get_close_matches(key, list(fields), n=1)
                raise ProfileError(f"{source}: unknown field '{key}'." + (f" Did you mean '{hint[0]}'?" if hint else "")
                                   + f" Fields: {', '.join(fields)}")
        missing = [k for k in required if k not in data]
        if missing:
            raise ProfileError(f"{source}: missing field(s) {', '.join(missing)}. Every profile sets all of "
                               f"{', '.join(required)} (null where the cluster does not use one).")
        merged = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        profile = cls(**merged)
        profile.validate(source)
        return profile

    def validate(self, source: str = "profile") -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ProfileError(f"{source}: {name}={getattr(self, name)!r} {rule}")
        need(isinstance(self.partition, str) and bool(self.partition), "partition", "must be a partition name")
        for name in ("time", "nodes", "cpus_per_task", "array_parallelism", "max_num_timeout"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= (0 if name == "max_num_timeout" else 1),
                 name, "must be a positive integer" + (" (minutes)" if name == "time" else ""))
        need(isinstance(self.gpus_per_node, int) and self.gpus_per_node >= 0, "gpus_per_node", "must be an integer >= 0")
        need(self.tasks_per_node is None or (isinstance(self.tasks_per_node, int) and self.tasks_per_node >= 1),
             "tasks_per_node", "must be null (one per GPU) or an integer >= 1")
        need(isinstance(self.signal_delay_s, int) and 0 < self.signal_delay_s < self.time * 60, "signal_delay_s",
             f"must be positive and below the time limit ({self.time * 60} s)")
        need(self.mem is None or (isinstance(self.mem, str) and self.mem[:-1].isdigit() and self.mem[-1] in "KMGT")
             or (isinstance(self.mem, str) and self.mem.isdigit()), "mem", "must be null or sbatch syntax like '32G'")
        for name in ("account", "qos", "constraint"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), str), name, "must be a string or null")

    # ---- derived ------------------------------------------------------------------------
    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node

    def executor_parameters(self) -> dict[str, Any]:
        """Keyword arguments of ``submitit.AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "name": self.job_name, "timeout_min": self.time, "nodes": self.nodes,
            "tasks_per_node": self.ntasks_per_node, "cpus_per_task": self.cpus_per_task,
            "slurm_partition": self.partition, "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        for key in ("account", "qos", "constraint", "mem"):
            if getattr(self, key) is not None:
                params[f"slurm_{key}"] = getattr(self, key)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params

    def check_partition(self) -> None:
        """An unknown partition is refused here, not by sbatch after the pickles are written."""
        if shutil.which("sinfo") is None:
            return
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise ProfileError(f"sinfo failed ({out.stderr.strip()}): is SLURM running? "
                               "(locally: slurm/local_cluster.sh start; or submit with --local)")
        known = sorted(set(out.stdout.split()))
        if self.partition not in known:
            hint = difflib.get_close_matches(self.partition, known, n=1)
            raise ProfileError(f"unknown partition '{self.partition}'." + (f" Did you mean '{hint[0]}'?" if hint else "")
                               + f" This cluster has: {', '.join(known)}")


# ---- the command ------------------------------------------------------------------------
CLUSTER_OPTIONS = ("partition", "account", "qos", "time", "nodes", "gpus_per_node", "cpus_per_task", "mem",
                   "constraint", "array_parallelism", "tasks_per_node", "signal_delay_s", "max_num_timeout")
INT_OPTIONS = {"time", "nodes", "gpus_per_node", "cpus_per_task", "array_parallelism", "tasks_per_node",
               "signal_delay_s", "max_num_timeout"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m slurm.submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="training config overrides key=value (as aeon-train)")
    parser.add_argument("--profile", default=str(DEFAULT_PROFILE), help="cluster profile YAML (default: %(default)s)")
    parser.add_argument("--config", help="training config file (YAML/JSON), as aeon-train --config")
    parser.add_argument("--no-preset", action="store_true", help="ignore the env's shipped preset, as aeon-train")
    parser.add_argument("--run-dir", help="run folder (default: runs/<env_id>-<time>)")
    parser.add_argument("--seeds", nargs="+", metavar="SEED",
                        help="one array task per seed, each in RUN_DIR/seed_<s> (key=value after it are overrides)")
    parser.add_argument("--wait", action="store_true", help="stream progress until the jobs end, print results")
    parser.add_argument("--local", action="store_true", help="no SLURM: submitit's local executor (this machine)")
    parser.add_argument("--sbatch-only", nargs="?", const="-", metavar="PATH",
                        help="write a plain sbatch script from the profile (to PATH, or stdout) and submit nothing")
    group = parser.add_argument_group("cluster options (override the profile)")
    for name in CLUSTER_OPTIONS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=int if name in INT_OPTIONS else str)
    args = parser.parse_args(argv)
    if args.seeds:  # `--seeds 0 1 2 env_id=X` : argparse gives the overrides to --seeds
        args.overrides = [x for x in args.seeds if "=" in x] + args.overrides
        try:
            args.seeds = [int(x) for x in args.seeds if "=" not in x]
        except ValueError:
            parser.error(f"--seeds takes integers, got {args.seeds}")
    return args


def training_config(args: argparse.Namespace):
    """The same config ``aeon-train`` would train: defaults + the env's preset (or ``--config``) + overrides."""
    from aeon_trl.config import Config
    cfg, preset = Config.for_run(args.overrides, args.config, preset=not args.no_preset)
    if preset:
        print(f"aeon-submit: using the preset {preset.name} for {cfg.env.env_id} (--config replaces it, "
              "--no-preset skips it)", file=sys.stderr)
    return cfg


def default_run_dir(cfg) -> Path:
    return Path(cfg.train.run_dir) / f"{cfg.env.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_folders(run_dir: Path, seeds: list[int] | None) -> list[tuple[int | None, Path]]:
    return [(None, run_dir)] if not seeds else [(s, run_dir / f"seed_{s}") for s in seeds]


def check_world(cfg, profile: Profile) -> None:
    """Refuse, before submission, a config data-parallel training cannot run."""
    if profile.world_size > 1:
        from aeon_trl.launch.distributed import DistributedContext, rank_config
        rank_config(cfg, DistributedContext(rank=0, world_size=profile.world_size))


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
    """Submit one job (or one array task per seed); returns ``[(seed, run_folder, job)]``."""
    from aeon_trl.launch.job import TrainJob
    if not local:
        profile.check_partition()
    check_world(cfg, profile)
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
    """A self-contained sbatch file equivalent to ``slurm.submit`` with this profile (no submitit needed).

    USR2 arrives ``signal_delay_s`` before the time limit (and at preemption where the cluster sends it): the
    job checkpoints at the end of the iteration and runs ``scontrol requeue``; the requeued script resumes.
    """
    hours, minutes = divmod(profile.time, 60)
    lines = ["#!/bin/bash", f"# generated by: python -m slurm.submit --sbatch-only (profile partition {profile.partition})",
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


def main(argv=None) -> int:
    args = parse_args(argv)
    from aeon_trl.config import ConfigError
    try:
        profile = Profile.load(args.profile, {k: getattr(args, k) for k in CLUSTER_OPTIONS})
        cfg = training_config(args)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
        if args.sbatch_only:
            check_world(cfg, profile)
            text = sbatch_script(profile, run_dir.resolve(), args.overrides, args.seeds, args.config, sys.executable,
                                 args.no_preset)
            (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)  # sbatch does not create the --output folder
            if args.sbatch_only == "-":
                sys.stdout.write(text)
            else:
                Path(args.sbatch_only).write_text(text)
                print(f"wrote {args.sbatch_only}: submit it with `sbatch {args.sbatch_only}`")
            return 0
        submitted = submit(cfg, run_dir, profile, args.seeds, args.local)
    except (ProfileError, ConfigError) as exc:
        print(f"slurm.submit: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"job {job.job_id}{'' if seed is None else f' (seed {seed})'}: run folder {folder}, "
                    f"log {job.paths.stdout}" for seed, folder, job in submitted))
    if not args.wait:
        print(f"follow: squeue -u $USER;  results when done: python -m slurm.collect {run_dir.resolve()}")
        return 0
    failures = wait(submitted)
    if len(submitted) > 1 or failures == 0:
        from slurm.collect import collect, format_table
        print(format_table(collect(run_dir.resolve())))
    submitted.clear()  # finished local jobs' __del__ would otherwise run during interpreter shutdown and complain
    import gc
    gc.collect()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
