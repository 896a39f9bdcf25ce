"""A user's own env on the vector path: ``benchmarks.user_envs.mycheetah:MyCheetah-v0`` (HalfCheetah-v5 with a
changed reward, which envpool does not ship), measured four ways:

1. raw single-process step rate (one gymnasium env, random actions, no TorchRL);
2. collection frames/s with the MLP policy on the default path (``env_backend=auto`` -> ``parallel``: worker
   processes x in-process envs), ``num_envs`` envs;
3. full training steps/s (collection + 10 epochs of minibatches, ``kl_early_stop=false``);
4. peak memory of the whole process tree (this process and its env workers): RSS summed (counts pages the forked
   workers share with the parent once per process, an upper bound) and PSS summed (shared pages split).

    python -m benchmarks.bench_user_env --section            # from the repository root
    python -m benchmarks.bench_user_env --repeats 3 env_threads=1   # another layout, json only

Prints a Markdown table and writes benchmarks/user_env.json (``--section``: also sections/user_env.md and
RESULTS.md). Targets (issue 15, 2-core machine): collection
>= 10,000 frames/s with 128 envs, training >= 5,000 steps/s, peak memory <= 4 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import warnings
from pathlib import Path

ENV_ID = "benchmarks.user_envs.mycheetah:MyCheetah-v0"
OUT = Path(__file__).parent / "user_env.json"


class TreeMemory:
    """Samples the memory of this process and all its descendants every ``interval`` s; keeps the peaks."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak_rss_mb, self.peak_pss_mb = interval, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        from aeon_trl.envs import child_pids, pss_mb, rss_mb
        tree, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += child_pids(pid)
        self.peak_rss_mb = max(self.peak_rss_mb, sum(rss_mb(p) for p in tree))
        self.peak_pss_mb = max(self.peak_pss_mb, sum(pss_mb(p) for p in tree))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def raw_step_rate(steps: int) -> float:
    import gymnasium as gym
    import numpy as np
    from aeon_trl.envs import make_gym_env
    env = make_gym_env(ENV_ID)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    rate = steps / (time.perf_counter() - t0)
    env.close()
    assert isinstance(env.action_space, gym.spaces.Box)
    return rate


def measure(cfg, iterations: int, collect_batches: int) -> dict:
    """One fresh trainer: collection frames/s over ``collect_batches`` batches, then training steps/s over
    ``iterations`` iterations (each after one warm-up), and the peak memory of the process tree meanwhile."""
    from aeon_trl.trainer import Trainer
    with TreeMemory() as memory:
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        startup = time.perf_counter() - t0
        try:
            trainer.collect()  # warm-up: workers' first reset, the collector's buffers
            t0 = time.perf_counter()
            for _ in range(collect_batches):
                trainer.collect()
            collect_fps = collect_batches * cfg.frames_per_batch / (time.perf_counter() - t0)
            trainer.train(trainer.frames + cfg.frames_per_batch)  # warm-up iteration
            start_frames, t0 = trainer.frames, time.perf_counter()
            trainer.train(trainer.frames + iterations * cfg.frames_per_batch)
            train_sps = (trainer.frames - start_frames) / (time.perf_counter() - t0)
            epochs = [row["epochs_run"] for row in trainer.history[-iterations:]]
        finally:
            trainer.close()
    return {"startup_seconds": startup, "collection_frames_per_second": collect_fps,
            "training_steps_per_second": train_sps, "epochs_run": epochs, "peak_rss_mb": memory.peak_rss_mb,
            "peak_pss_mb": memory.peak_pss_mb}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. env_threads=2)")
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=10, help="training iterations measured (after one warm-up)")
    parser.add_argument("--collect-batches", type=int, default=10, help="batches timed for the collection rate")
    parser.add_argument("--repeats", type=int, default=3, help="fresh trainers measured; medians are reported")
    parser.add_argument("--raw-steps", type=int, default=20_000)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--section", action="store_true",
                        help="also write benchmarks/sections/user_env.md and regenerate RESULTS.md")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    from aeon_trl.config import Config
    from aeon_trl.envs import available_cpus, resolve_backend

    cfg = Config.for_run([f"env_id={ENV_ID}", f"num_envs={args.num_envs}", "kl_early_stop=false", "epochs=10",
                          "progress=false", "logger=none", "eval_episodes=0", "video=false", *args.overrides])[0]
    load_before = os.getloadavg()[0]
    raws, runs = [], []
    for _ in range(args.repeats):
        raws.append(raw_step_rate(args.raw_steps))
        runs.append(measure(cfg, args.iterations, args.collect_batches))
    median = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    data = {
        "env_id": ENV_ID, "num_envs": cfg.env.num_envs, "steps_per_env": cfg.train.steps_per_env,
        "frames_per_batch": cfg.frames_per_batch, "epochs": cfg.train.epochs,
        "epochs_run": [e for r in runs for e in r["epochs_run"]], "minibatch_size": cfg.train.minibatch_size,
        "env_backend": resolve_backend(cfg), "env_threads": cfg.env.env_threads or available_cpus(),
        "torch_threads": torch.get_num_threads(), "overrides": args.overrides, "repeats": args.repeats,
        "raw_steps_per_second": statistics.median(raws), "startup_seconds": median("startup_seconds"),
        "collection_frames_per_second": median("collection_frames_per_second"),
        "training_steps_per_second": median("training_steps_per_second"),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "peak_pss_mb": max(r["peak_pss_mb"] for r in runs),
        "runs": [{k: v for k, v in r.items() if k != "epochs_run"} for r in runs], "raw_runs": raws,
        "load_average": [load_before, os.getloadavg()[0]], "cpus": available_cpus(), "machine": platform.platform(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).write_text(json.dumps(data, indent=2))
    table = markdown(data, args)
    print(table)
    if args.section:
        from benchmarks.benchmark import OUT as BENCH, write_results_md
        (BENCH / "sections" / "user_env.md").write_text(table)
        write_results_md()
    print(f"written: {args.out}")
    return data


def markdown(data: dict, args) -> str:
    from benchmarks.benchmark import machine
    each = lambda key, fmt: ", ".join(format(r[key], fmt) for r in data["runs"])  # noqa: E731
    command = "python -m benchmarks.bench_user_env " + " ".join(
        [*data["overrides"], *(["--section"] if args.section else [])])
    rows = [("raw single-process step rate (1 env, random actions, no TorchRL)",
             f"{data['raw_steps_per_second']:,.0f} steps/s", "", ", ".join(f"{x:,.0f}" for x in data["raw_runs"])),
            (f"collection, MLP policy, {data['num_envs']} envs, env_backend={data['env_backend']} on "
             f"{data['env_threads']} worker(s)", f"{data['collection_frames_per_second']:,.0f} frames/s", ">= 10,000",
             each("collection_frames_per_second", ",.0f")),
            ("training (collection + all 10 epochs, kl_early_stop=false)",
             f"{data['training_steps_per_second']:,.0f} steps/s", ">= 5,000", each("training_steps_per_second", ",.0f")),
            ("peak memory of the process tree, RSS summed (upper bound)", f"{data['peak_rss_mb'] / 1024:.2f} GB",
             "<= 4 GB", each("peak_rss_mb", ",.0f") + " MB"),
            ("peak memory of the process tree, PSS summed", f"{data['peak_pss_mb'] / 1024:.2f} GB", "<= 4 GB",
             each("peak_pss_mb", ",.0f") + " MB"),
            ("start-up (probe, workers, networks)", f"{data['startup_seconds']:.1f} s", "", each("startup_seconds", ".1f"))]
    lines = ["## Your own env on the parallel path (issue 15)", "",
             f"- command: `{command}`", f"- machine: {machine()}", f"- date: {data['time'][:10]}",
             f"- load average: {data['load_average'][0]:.2f} at the start, {data['load_average'][1]:.2f} at the end",
             "", f"`{data['env_id']}` (HalfCheetah-v5 with a changed reward; envpool does not ship it), "
             f"{data['num_envs']} envs x {data['steps_per_env']} steps, minibatches of {data['minibatch_size']}, "
             f"torch threads {data['torch_threads']}. Medians of {data['repeats']} fresh trainers, in one process "
             f"(collection over {args.collect_batches} batches, training over {args.iterations} iterations, each "
             "after a warm-up).", "", "| measurement | median | target | runs |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
