"""aeon-submit: train on SLURM through submitit, with the config and overrides of ``aeon-train`` plus a cluster profile.

    aeon-submit env_id=Hopper-v5 total_timesteps=2e6                 # one job, returns at once
    aeon-submit --profile slurm/profiles/gpu.yaml --seeds 0 1 2 3 --wait env_id=Hopper-v5
    aeon-submit --time 120 --gpus-per-node 4 --nodes 2 env_id=Humanoid-v5   # 8-process data parallel
    aeon-submit --sbatch-only slurm/train.sbatch --seeds 0 1 2 env_id=Hopper-v5   # a plain sbatch file

Each seed gets its own run folder ``RUN_DIR/seed_<s>`` (one task of a job array; a single run without
``--seeds`` uses ``RUN_DIR`` itself); submitit's pickles and logs go to ``RUN_DIR/slurm_logs/<job id>``.
A job that is preempted or reaches its time limit checkpoints and requeues itself (``aeon_trl.launch.job``).
Results: ``aeon-collect RUN_DIR``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from aeon_trl.config import Config, ConfigError
from aeon_trl.data.demonstrations import DemonstrationError
from aeon_trl.driver import validate_run
from aeon_trl.launch.collect import collect, format_table
from aeon_trl.launch.profile import DEFAULT_PROFILE, Profile, ProfileError
from aeon_trl.launch.submit import LOG_DIR, check_world, sbatch_script, submit, wait

CLUSTER_OPTIONS = ("partition", "account", "qos", "time", "nodes", "gpus_per_node", "cpus_per_task", "mem",
                   "constraint", "array_parallelism", "tasks_per_node", "signal_delay_s", "max_num_timeout")
INT_OPTIONS = {"time", "nodes", "gpus_per_node", "cpus_per_task", "array_parallelism", "tasks_per_node",
               "signal_delay_s", "max_num_timeout"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeon-submit", description=__doc__,
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
    args = parser.parse_intermixed_args(argv)  # key=value overrides before and after the options
    if args.seeds:  # `--seeds 0 1 2 env_id=X` : argparse gives the overrides to --seeds
        args.overrides = [x for x in args.seeds if "=" in x] + args.overrides
        try:
            args.seeds = [int(x) for x in args.seeds if "=" not in x]
        except ValueError:
            parser.error(f"--seeds takes integers, got {args.seeds}")
    return args


def training_config(args: argparse.Namespace):
    """The same config ``aeon-train`` would train: defaults + the env's preset (or ``--config``) + overrides."""
    cfg, preset = Config.for_run(args.overrides, args.config, preset=not args.no_preset)
    if preset:
        print(f"aeon-submit: using the preset {preset.name} for {cfg.env.env_id} (--config replaces it, "
              "--no-preset skips it)", file=sys.stderr)
    return cfg


def default_run_dir(cfg) -> Path:
    return Path(cfg.train.run_dir) / f"{cfg.env.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        profile = Profile.load(args.profile, {k: getattr(args, k) for k in CLUSTER_OPTIONS})
        cfg = training_config(args)
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
        if args.sbatch_only:
            check_world(cfg, profile)
            validate_run(cfg)
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
    except (ProfileError, ConfigError, DemonstrationError) as exc:
        print(f"aeon-submit: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"job {job.job_id}{'' if seed is None else f' (seed {seed})'}: run folder {folder}, "
                    f"log {job.paths.stdout}" for seed, folder, job in submitted))
    failures = 0
    if not args.wait:
        follow = "a local job runs on after this command" if args.local else "follow: squeue -u $USER"
        print(f"{follow};  results when done: aeon-collect {run_dir.resolve()}")
    else:
        failures = wait(submitted)
        if len(submitted) > 1 or failures == 0:
            print(format_table(collect(run_dir.resolve())))
    # Local jobs' __del__ would otherwise run during interpreter shutdown, with submitit's modules half torn
    # down, and print a traceback. Dropping them here cancels nothing: submitit's local controller outlives us.
    submitted.clear()
    import gc
    gc.collect()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
