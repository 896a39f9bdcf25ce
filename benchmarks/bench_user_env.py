"""A user's own env on the vector path: ``benchmarks.user_envs.mycheetah:MyCheetah-v0`` (HalfCheetah-v5 with a
changed reward, which envpool does not ship), measured four ways:

1. raw single-process step rate (one gymnasium env, random actions, no TorchRL);
2. collection frames/s with the MLP policy on the default path (``env_backend=auto`` -> worker processes x
   in-process envs), ``num_envs`` envs;
3. full training steps/s (collection + 10 epochs of minibatches, ``kl_early_stop=false``);
4. peak memory of the whole process tree (this process and its env workers): RSS summed (counts pages the forked
   workers share with the parent once per process, an upper bound) and PSS summed (shared pages split).

    python -m benchmarks.bench_user_env                      # from the repository root
    python -m benchmarks.bench_user_env --num-envs 128 --iterations 6 env_threads=2

Prints a Markdown table and writes benchmarks/user_env.json. Targets (issue 15, 2-core machine): collection
>= 10,000 frames/s with 128 envs, training >= 5,000 steps/s, peak memory <= 4 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. env_threads=2)")
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=6, help="training iterations measured (after one warm-up)")
    parser.add_argument("--raw-steps", type=int, default=5000)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch
    from aeon_trl.config import Config
    from aeon_trl.envs import available_cpus
    from aeon_trl.trainer import Trainer

    raw = raw_step_rate(args.raw_steps)
    cfg = Config.for_run([f"env_id={ENV_ID}", f"num_envs={args.num_envs}", "kl_early_stop=false", "epochs=10",
                          "progress=false", "logger=none", "eval_episodes=0", *args.overrides])[0]
    with TreeMemory() as memory:
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        startup = time.perf_counter() - t0
        try:
            trainer.collect()  # warm-up: workers' first reset, the collector's buffers
            t0 = time.perf_counter()
            collect_batches = 3
            for _ in range(collect_batches):
                trainer.collect()
            collect_fps = collect_batches * cfg.frames_per_batch / (time.perf_counter() - t0)
            trainer.train(trainer.frames + cfg.frames_per_batch)  # warm-up iteration
            start_frames, t0 = trainer.frames, time.perf_counter()
            trainer.train(trainer.frames + args.iterations * cfg.frames_per_batch)
            train_sps = (trainer.frames - start_frames) / (time.perf_counter() - t0)
            epochs = [row["epochs_run"] for row in trainer.history[-args.iterations:]]
        finally:
            trainer.close()
    data = {
        "env_id": ENV_ID, "num_envs": cfg.env.num_envs, "steps_per_env": cfg.train.steps_per_env,
        "frames_per_batch": cfg.frames_per_batch, "epochs": cfg.train.epochs, "epochs_run": epochs,
        "minibatch_size": cfg.train.minibatch_size, "env_threads": cfg.env.env_threads or available_cpus(),
        "torch_threads": torch.get_num_threads(), "overrides": args.overrides,
        "raw_steps_per_second": raw, "startup_seconds": startup, "collection_frames_per_second": collect_fps,
        "training_steps_per_second": train_sps, "peak_rss_mb": memory.peak_rss_mb, "peak_pss_mb": memory.peak_pss_mb,
        "cpus": available_cpus(), "machine": platform.platform(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    Path(args.out).write_text(json.dumps(data, indent=2))
    rows = [("raw single-process step rate (1 env, no TorchRL)", f"{raw:,.0f} steps/s", ""),
            (f"collection, MLP policy, {cfg.env.num_envs} envs on {data['env_threads']} workers",
             f"{collect_fps:,.0f} frames/s", ">= 10,000"),
            ("training (collection + 10 epochs, kl_early_stop=false)", f"{train_sps:,.0f} steps/s", ">= 5,000"),
            ("peak memory of the process tree, RSS summed", f"{memory.peak_rss_mb / 1024:.2f} GB", "<= 4 GB"),
            ("peak memory of the process tree, PSS summed", f"{memory.peak_pss_mb / 1024:.2f} GB", "<= 4 GB"),
            ("start-up (probe, workers, networks)", f"{startup:.1f} s", "")]
    print(f"\n{ENV_ID}, {data['cpus']} CPUs, torch threads {data['torch_threads']}\n")
    print("| measurement | value | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nwritten: {args.out}")
    return data


if __name__ == "__main__":
    main()
