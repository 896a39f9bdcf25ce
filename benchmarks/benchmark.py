"""The learning, ablation, throughput and scaling benchmarks behind benchmarks/RESULTS.md (from the repository root):

    python -m benchmarks.benchmark learning   [--envs ...] [--seeds 0 1 2] [--timesteps 1000000] [--jobs 2]
                                              [--label NAME overrides...]   (a row beside the default one)
    python -m benchmarks.benchmark suite      [--envs ...] [--seeds 1 2 3] [--timesteps 1000000] [--jobs 2]
    python -m benchmarks.benchmark ablation   [--envs ...] [--seeds 0] [--timesteps 300000] [--jobs 2] [--reuse]
    python -m benchmarks.benchmark throughput [--repeats 3] [--timesteps 200000]
    python -m benchmarks.benchmark scaling    [--repeats 3] [--timesteps 100000] [--timeout S]

Each training run is a separate ``aeon-train`` process (seed-parallel with ``--jobs``) writing its
run folder under ``benchmarks/runs/``; the script aggregates their results.json into
``benchmarks/<kind>.json``, per-env learning-curve PNGs, and regenerates ``benchmarks/RESULTS.md``.
Everything is written next to this file, whatever the current folder; the training processes start in the
repository root, so the paths their configs name (``demos=benchmarks/runs/...``) stay the same.
``scaling`` measures collection frames/s against envpool worker threads, and training steps/s with 1 and 2
data-parallel processes (``torchrun -m aeon_trl.launch.job``); its 32-process figure is an estimate.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from aeon_trl.config import preset_path

OUT = Path(__file__).resolve().parent  # benchmarks/: results, plots and run folders
REPO = OUT.parent  # where training processes start
# Defaults were chosen on seed 0 and the ablation seeds 4-5 (benchmarks/NOTES.md); learning uses seeds 1-3.
ENVS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"]
TARGETS = {"HalfCheetah-v5": 5000, "Hopper-v5": 3000, "Walker2d-v5": 4000}
# The whole gymnasium MuJoCo v5 suite and issue 16's targets at 1M steps (None: reported only); no seed may end
# below SUITE_FLOOR of its task's target.
SUITE = {"HalfCheetah-v5": 6000, "Hopper-v5": 3000, "Walker2d-v5": 4000, "Ant-v5": 3300, "Humanoid-v5": 1500,
         "HumanoidStandup-v5": None, "Swimmer-v5": 300, "InvertedPendulum-v5": 1000,
         "InvertedDoublePendulum-v5": 9300, "Reacher-v5": -4.5, "Pusher-v5": -30}
SUITE_FLOOR = 0.7
# The ablation: one addition at a time, switched against the default config plus the task's preset (what a user
# trains). Each is (name, config section, key, value with it, value without it); where the preset already has
# the addition, the arm switches it off, so every cell reads "with minus without".
ADDITIONS = [
    ("sigmoid gating", "model", "gating", True, False),
    ("LayerNorm", "model", "layer_norm", True, False),
    ("critic ensemble (4 heads)", "model", "num_critics", 4, 1),
    ("Lookahead (k=5, alpha=0.5)", "optim", "lookahead", True, False),
    ("adaptive clip range", "ppo", "adaptive_clip", True, False),
    ("wider network [256, 256]", "model", "hidden_sizes", [256, 256], [64, 64]),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}"


def train_run(name: str, overrides: list[str], jobs: int, preset: bool = True) -> dict:
    """One aeon-train process; returns its results.json plus the whole-process wall time."""
    run_dir = OUT / "runs" / name
    threads = ["env_threads=1"] if jobs > 1 else []  # parallel runs share the cores
    flags = [] if preset else ["--no-preset"]
    # No video (software rendering of one 1,000-step episode took minutes here), unless a benchmark asks for it.
    cmd = [sys.executable, "-m", "aeon_trl.cli.train", *flags, *threads, "video=false", *overrides, "progress=false",
           "--run-dir", str(run_dir), "--overwrite"]  # a rerun replaces the run of the same name
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"run {name} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    results["process_wall_time"] = wall
    results["history"] = json.loads((run_dir / "history.json").read_text())
    results.pop("config", None)
    evaluation = f"eval {results['eval_mean']:.1f}, " if results["eval_returns"] else ""
    print(f"  {name}: {evaluation}{results['steps_per_second']:.0f} steps/s", flush=True)
    return results


def finished_run(name: str, overrides: list[str], preset: bool = True) -> dict | None:
    """An earlier run in ``benchmarks/runs/<name>`` of exactly the config ``train_run(name, overrides, jobs=1,
    preset)`` would train, read as ``train_run`` returns it; None if there is none (reruns skip finished runs)."""
    from aeon_trl.config import Config
    run_dir = OUT / "runs" / name
    results_file, history_file = run_dir / "results.json", run_dir / "history.json"
    if not (results_file.exists() and history_file.exists()):
        return None
    results = json.loads(results_file.read_text())
    expected = Config.for_run(["video=false", *overrides, "progress=false"], preset=preset)[0]
    saved = results.pop("config")
    train = saved.setdefault("train", {})
    train.setdefault("video", False)  # written before these keys existed: no video, and the periodic
    train.setdefault("eval_every_episodes", train.get("eval_episodes", 10))  # evaluations played eval_episodes
    if Config.from_dict(saved).to_dict() != expected.to_dict():
        return None
    results["history"] = json.loads(history_file.read_text())
    results["process_wall_time"] = results["wall_time"]  # the training loop's: the process's was not recorded
    print(f"  {name}: reusing the finished run in {run_dir}", flush=True)
    return results


def first_reach(history: list[dict], threshold: float, key: str = "episode_return") -> int | None:
    """Env steps at which the logged ``key`` (default: the training return of the last 20 episodes; or the
    periodic ``eval_return``) first reached ``threshold``."""
    return next((h["frames"] for h in history if h.get(key, -np.inf) >= threshold), None)


def evaluate_checkpoint(path: Path, episodes: int, seed: int, overrides: list[str]) -> list[float]:
    """Deterministic returns of a saved agent: its checkpointed config plus ``overrides``, on ``episodes`` envs."""
    from aeon_trl.checkpoint import load_checkpoint
    from aeon_trl.config import Config
    from aeon_trl.trainer import Trainer
    state = load_checkpoint(path)
    trainer = Trainer(Config.from_dict(state["config"]).with_overrides(overrides))
    try:
        trainer.load_state_dict(state)
        return trainer.evaluate(episodes, seed=seed)
    finally:
        trainer.close()


def run_grid(runs: dict[str, list[str]], jobs: int, preset: bool = True, reuse: bool = False) -> dict[str, dict]:
    """Each run in its own ``aeon-train`` process, ``jobs`` at a time; with ``reuse``, a run folder that already
    holds a finished run of exactly that config is read instead (e.g. to add seeds to a table)."""
    threads = ["env_threads=1"] if jobs > 1 else []  # as train_run adds them
    done = {name: finished_run(name, [*threads, *ov], preset) for name, ov in runs.items()} if reuse else {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {name: pool.submit(train_run, name, ov, jobs, preset) for name, ov in runs.items()
                   if done.get(name) is None}
        return {name: done.get(name) or futures[name].result() for name in runs}


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def plot_arms(arms: dict[str, list[tuple[list, list]]], line: float, line_label: str, ylabel: str, title: str,
              path: Path, legend_loc: str = "best") -> None:
    """Training curves ``(frames, returns)``, one colour per arm (its seeds alike), and a horizontal target line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, curves) in enumerate(arms.items()):
        for j, (frames, returns) in enumerate(curves):
            ax.plot(frames, returns, color=f"C{i}", alpha=0.8, label=label if j == 0 else None)
    ax.axhline(line, color="grey", ls="--", lw=1, label=line_label)
    ax.set(xlabel="env steps", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curve(history: list[dict], key: str = "episode_return") -> tuple[list, list]:
    """``(frames, values)`` of the iterations that logged ``key`` (``eval_return`` only every ``eval_every``)."""
    rows = [h for h in history if key in h]
    return [h["frames"] for h in rows], [h[key] for h in rows]


def plot_curves(env_id: str, runs: list[dict], path: Path, target: float | None = None,
                config: str = "defaults") -> None:
    """Each seed's training return (the sampling policy's; the table's final evaluation is deterministic)."""
    plot_arms({f"seed {r['seed']}": [training_curve(r["history"])] for r in runs}, np.nan if target is None else target,
              "target", "training episode return", f"{env_id}: aeon_trl PPO, {config}", path, "lower right")


def learning(args, targets: dict = TARGETS, prefix: str = "") -> dict:
    """Each env x seed a default run (plus the preset and ``args.overrides``); one row per env. ``args.label``
    names a variant (its runs, row and plot carry the label) so it sits beside the default row."""
    label = f"{args.label}-" if args.label else ""
    runs = {f"{prefix}{label}{env}-s{seed}": [f"env_id={env}", f"seed={seed}", f"total_timesteps={args.timesteps}",
                                               *args.overrides]
            for env in args.envs for seed in args.seeds}
    results = run_grid(runs, args.jobs)
    rows = []
    for env in args.envs:
        per_seed = [results[f"{prefix}{label}{env}-s{seed}"] for seed in args.seeds]
        ret_mean, ret_std = mean_std([r["eval_mean"] for r in per_seed])
        preset = preset_path(env)
        config = f"defaults + presets/{preset.name}" if preset else "defaults"
        plot_curves(env, per_seed, OUT / f"{prefix or 'learning_'}{label}{env}.png", targets.get(env),
                    ("defaults + preset" if preset else "defaults") + "".join(f" {o}" for o in args.overrides))
        rows.append({"env": env, "config": config + "".join(f" {o}" for o in args.overrides),
                     "label": args.label, "return_mean": ret_mean, "return_std": ret_std,
                     "per_seed": [round(r["eval_mean"], 1) for r in per_seed], "seeds": args.seeds,
                     "target": targets.get(env), "steps_per_second": statistics.median(r["steps_per_second"] for r in per_seed),
                     "wall_time": statistics.median(r["process_wall_time"] for r in per_seed),
                     "png": f"{prefix or 'learning_'}{label}{env}.png"})
    return {"rows": rows}


def suite(args) -> dict:
    """The learning benchmark over the whole MuJoCo v5 suite with issue 16's targets (rows and plots ``suite_*``)."""
    return learning(args, SUITE, prefix="suite_")


def ablation(args) -> dict:
    """Per task, the default run and one run per addition switched (see ADDITIONS); a cell is the arm's return and
    the addition's effect, R(with) - R(without)."""
    from aeon_trl.config import Config
    base_ov = {env: [f"env_id={env}", f"total_timesteps={args.timesteps}", *args.overrides] for env in args.envs}
    runs, arms = {}, {}
    for env in args.envs:
        base = Config.for_run(base_ov[env])[0].to_dict()
        for seed in args.seeds:
            runs[f"abl-{env}-default-s{seed}"] = [*base_ov[env], f"seed={seed}"]
        for name, section, key, on, off in ADDITIONS:
            has_it = base[section][key] == on
            arms[env, name] = (has_it, f"{key}={off if has_it else on}".replace(" ", "").replace("True", "true")
                               .replace("False", "false"))
            for seed in args.seeds:
                runs[f"abl-{env}-{key}-s{seed}"] = [*base_ov[env], arms[env, name][1], f"seed={seed}"]
    results = run_grid(runs, args.jobs, reuse=args.reuse)
    rows = []
    for env in args.envs:
        default = [results[f"abl-{env}-default-s{seed}"]["eval_mean"] for seed in args.seeds]
        row = {"env": env, "target": SUITE.get(env), "default": statistics.fmean(default),
               "default_per_seed": [round(r, 1) for r in default], "arms": {}}
        for name, _, key, _, _ in ADDITIONS:
            per_seed = [results[f"abl-{env}-{key}-s{seed}"]["eval_mean"] for seed in args.seeds]
            has_it, override = arms[env, name]
            arm = statistics.fmean(per_seed)
            row["arms"][name] = {"override": override, "preset_has_it": has_it, "return": arm,
                                 "per_seed": [round(r, 1) for r in per_seed],
                                 "effect": (row["default"] - arm) if has_it else (arm - row["default"])}
        rows.append(row)
    data = {"rows": rows, "seeds": args.seeds, "timesteps": args.timesteps,
            "additions": [name for name, *_ in ADDITIONS], "png": "ablation.png"}
    plot_ablation(data, OUT / data["png"])
    return data


def plot_ablation(data: dict, path: Path) -> None:
    """A heat map of each addition's effect per task, in units of the task's |target| (red hurts, blue helps)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in data["rows"] if r["target"]]
    effect = np.array([[r["arms"][n]["effect"] / abs(r["target"]) for n in data["additions"]] for r in rows])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 2))
    image = ax.imshow(effect, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(effect):
        ax.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(data["additions"])), data["additions"], rotation=25, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [r["env"] for r in rows], fontsize=8)
    ax.set_title(f"effect of each addition, (R(with) - R(without)) / |target|; seeds {data['seeds']}, "
                 f"{data['timesteps']:,} steps", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ablation_md(data: dict) -> list[str]:
    """One row per task (arm return, and the addition's effect in brackets), then the effect over the suite in
    units of each task's |target| (tasks without a target left out)."""
    names = data["additions"]
    lines = [f"Seeds {data['seeds']}, {data['timesteps']:,} env steps per run. A cell: the arm's return, then "
             "(the addition's effect, R(with) - R(without)). `off:` marks an arm that switched off what the "
             "task's preset has on.", "",
             "| env | default (+ preset) | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in data["rows"]:
        cells = [f"{'off: ' if a['preset_has_it'] else ''}{a['return']:.1f} ({a['effect']:+.1f})"
                 for a in (r["arms"][n] for n in names)]
        lines.append(f"| {r['env']} | {r['default']:.1f} | " + " | ".join(cells) + " |")
    scored = [r for r in data["rows"] if r["target"]]
    effects = {n: [r["arms"][n]["effect"] / abs(r["target"]) for r in scored] for n in names}
    lines.append("| **mean effect / \|target\|** | | " + " | ".join(f"**{statistics.fmean(e):+.3f}**"
                                                                     for e in effects.values()) + " |")
    lines.append("| tasks helped / hurt (by > 5% of \|target\|) | | " + " | ".join(
        f"{sum(x > 0.05 for x in e)} / {sum(x < -0.05 for x in e)}" for e in effects.values()) + " |")
    return lines + ["", f"![ablation]({data['png']})"]


def raw_env_rates(seconds: float = 3.0) -> dict:
    """Random-action step rates of the bare simulators, for the ratio to full training."""
    import gymnasium as gym
    env = gym.make("HalfCheetah-v5")
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (10_000, 6)).astype(np.float32)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, term, trunc, _ = env.step(actions[n % len(actions)])
        if term or trunc:
            env.reset()
        n += 1
    rates = {"gymnasium HalfCheetah-v5, 1 env": n / (time.perf_counter() - start)}
    import envpool
    pool = envpool.make("HalfCheetah-v5", env_type="gymnasium", num_envs=64, num_threads=2, seed=0)
    pool.reset()
    batch = np.random.default_rng(0).uniform(-1, 1, (64, 6))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pool.step(batch)
        n += 64
    rates["envpool HalfCheetah-v5, 64 envs, 2 threads"] = n / (time.perf_counter() - start)
    return rates


# Env paths compared at the same policy and transforms: (label, overrides).
ENV_PATHS = [
    ("envpool EnvPoolEnv, 128 envs (the default)", ["env_backend=envpool", "num_envs=128"]),
    ("envpool EnvPoolEnv, 64 envs", ["env_backend=envpool", "num_envs=64"]),
    ("gymnasium vector env in one GymEnv, 16 envs", ["env_backend=gymnasium", "num_envs=16"]),
    ("TorchRL SerialEnv of GymEnv, 8 envs", ["env_backend=serial", "num_envs=8"]),
    ("TorchRL ParallelEnv, 2 workers x 64 gymnasium envs (ids envpool lacks)",
     ["env_backend=parallel", "num_envs=128", "env_threads=2"]),
]


def collection_rate(overrides: list[str], frames: int = 16_384) -> float:
    """Frames/s of the real collector (policy + transforms) on one env path, after one warm-up batch."""
    from aeon_trl.config import Config
    from aeon_trl.trainer import Trainer
    cfg = Config().with_overrides([*overrides, "steps_per_env=128", "minibatch_size=256", "progress=false"])
    trainer = Trainer(cfg)
    try:
        trainer.collect()
        start, n = time.perf_counter(), 0
        while n < frames:
            n += trainer.collect().numel()
        return n / (time.perf_counter() - start)
    finally:
        trainer.close()


def throughput(args) -> dict:
    rates = [raw_env_rates() for _ in range(args.repeats)]
    raw = {k: statistics.median(r[k] for r in rates) for k in rates[0]}
    paths = {label: collection_rate(ov, frames=16_384 if "envpool" in label else 2_048) for label, ov in ENV_PATHS}
    base = [f"total_timesteps={args.timesteps}", "eval_episodes=0", *args.overrides]
    runs = [train_run(f"throughput-{i}", base, 1) for i in range(args.repeats)]
    # The default stops an iteration's epochs early once the KL passes its target; these arms run all 10: eager, the
    # same with the loss compiled, and compiled with 2 torch threads during the update (envpool's threads idle then;
    # strictly on-policy). The arms alternate run by run, so the host's drift over the
    # minutes hits them alike. The compiled loop rate includes the compiling at the first minibatch, so the steady
    # rate (median over iterations of collection + update) is reported beside it, for every arm.
    arms = {"eager": [], "compiled": ["compile=true"], "compiled-2threads": ["compile=true", "update_threads=2"]}
    runs_by_arm: dict[str, list[dict]] = {arm: [] for arm in arms}
    for i in range(args.repeats):
        for arm, extra in arms.items():
            name = f"throughput-10epochs-{i}" if arm == "eager" else f"throughput-10epochs-{arm}-{i}"
            runs_by_arm[arm].append(train_run(name, [*base, "kl_early_stop=false", *extra], 1))
    full, compiled, threaded = runs_by_arm.values()
    steady = lambda arm: statistics.median(statistics.median(h["steps_per_second"] for h in r["history"])  # noqa: E731
                                           for r in arm)
    train_sps = [r["steps_per_second"] for r in runs]
    from aeon_trl.config import Config
    cfg, preset = Config.for_run([*base, "progress=false"])  # what train_run's aeon-train builds
    setup = (f"{cfg.env.env_id}, defaults{f' + presets/{preset.name}' if preset else ''}: {cfg.env.num_envs} envs x "
             f"{cfg.train.steps_per_env} steps, minibatches of {cfg.train.minibatch_size}, up to {cfg.train.epochs} epochs")
    process_sps = [r["timesteps"] / r["process_wall_time"] for r in runs]
    collect = [statistics.median(h["collect_fps"] for h in r["history"]) for r in runs]
    return {"training_config": setup, "raw_env_steps_per_second": raw, "collection_frames_per_second_by_env_path": paths,
            "train_steps_per_second": train_sps,
            "train_steps_per_second_median": statistics.median(train_sps),
            "process_steps_per_second_median": statistics.median(process_sps),
            "epochs_run_mean": statistics.mean(h["epochs_run"] for r in runs for h in r["history"]),
            "train_steps_per_second_10_epochs": [r["steps_per_second"] for r in full],
            "train_steps_per_second_10_epochs_median": statistics.median(r["steps_per_second"] for r in full),
            "steady_steps_per_second_10_epochs_median": steady(full),
            "train_steps_per_second_10_epochs_compiled": [r["steps_per_second"] for r in compiled],
            "train_steps_per_second_10_epochs_compiled_median": statistics.median(
                r["steps_per_second"] for r in compiled),
            "steady_steps_per_second_10_epochs_compiled_median": steady(compiled),
            "train_steps_per_second_10_epochs_compiled_2threads": [r["steps_per_second"] for r in threaded],
            "train_steps_per_second_10_epochs_compiled_2threads_median": statistics.median(
                r["steps_per_second"] for r in threaded),
            "steady_steps_per_second_10_epochs_compiled_2threads_median": steady(threaded),
            "collect_frames_per_second_median": statistics.median(collect), "timesteps": args.timesteps}


# ---- scaling ------------------------------------------------------------------------------------------------
SCALING_THREADS = [1, 2, 4]   # envpool worker threads per process
SCALING_PROCESSES = [1, 2]    # data-parallel processes (torchrun --nproc_per_node)
PAPER_PROCESSES = 32          # 8 GPUs x 4 nodes, one process per GPU: estimated, never measured here


def torchrun_job(name: str, nproc: int, overrides: list[str], timeout: float) -> dict:
    """One data-parallel ``aeon_trl.launch.job`` run under torchrun; its results.json plus the whole-process
    wall time (torchrun start to exit: start-up, rendezvous, env creation, training, final save)."""
    run_dir = OUT / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # the job resumes from a checkpoint.pt left in its folder
    # python -m torch.distributed.run is the torchrun console script, with this interpreter
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "aeon_trl.launch.job", str(run_dir), "--no-preset", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = OUT / "runs" / f"{name}.log"  # a file, not a pipe: no blocking on a rank that outlives torchrun
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=REPO)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_torchrun(proc)
            raise RuntimeError(f"scaling run {name} did not finish within {timeout:.0f} s and was stopped "
                               f"({' '.join(cmd)}); log {log}:\n{log.read_text()[-3000:]}") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"scaling run {name} failed ({' '.join(cmd)}); log {log}:\n{log.read_text()[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    if results.get("world_size") != nproc:
        raise RuntimeError(f"scaling run {name}: asked for {nproc} processes, results.json says world_size "
                           f"{results.get('world_size')}")
    row = {k: results[k] for k in ("steps_per_second", "timesteps", "wall_time", "world_size")}
    row["process_wall_time"] = wall
    row["process_steps_per_second"] = results["timesteps"] / wall
    print(f"  {name}: {row['steps_per_second']:.0f} steps/s (training loop), "
          f"{row['process_steps_per_second']:.0f} steps/s (whole process, {wall:.1f} s)", flush=True)
    return row


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _stop_torchrun(proc: subprocess.Popen, grace: float = 45.0) -> None:
    """SIGTERM to torchrun, which passes it on to its ranks (each in a session of its own) and SIGKILLs them
    after 30 s; then SIGKILL whatever of this run is still alive: torchrun's group and the ranks it started."""
    ranks = _children(proc.pid)
    ranks += [g for r in ranks for g in _children(r)]  # env workers, if a backend forked any
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in ranks:
        with contextlib.suppress(OSError):
            if b"aeon_trl" in Path(f"/proc/{pid}/cmdline").read_bytes():  # still this run's, not a reused pid
                os.kill(pid, signal.SIGKILL)
    proc.wait()


def scaling(args) -> dict:
    from aeon_trl.config import Config
    env_id, seed = args.envs[0], args.seeds[0]
    num_envs = Config().with_overrides(args.overrides).env.num_envs  # the training runs' envs per process
    # 1. collector frames/s against envpool worker threads, one process
    collection, collection_runs = {}, {}
    for threads in SCALING_THREADS:
        ov = [f"env_id={env_id}", f"seed={seed}", *args.overrides, "env_backend=envpool", f"num_envs={num_envs}",
              f"env_threads={threads}"]
        rates = [collection_rate(ov, frames=args.collect_frames) for _ in range(args.repeats)]
        collection[str(threads)] = statistics.median(rates)
        collection_runs[str(threads)] = rates
        print(f"  collection, {threads} envpool thread(s): {collection[str(threads)]:,.0f} frames/s", flush=True)
    # 2. full training, 1 vs 2 data-parallel processes; total_timesteps is the global budget (each rank
    # trains ceil(T / N) frames, results.json reports the global frames and steps/s)
    timeout = args.timeout or 120 + args.timesteps / 100  # start-up plus >= 100 steps/s: only a hang is slower
    overrides = [f"env_id={env_id}", f"seed={seed}", *args.overrides, f"total_timesteps={args.timesteps}",
                 "env_threads=1", "progress=false", "eval_episodes=0", "logger=none"]
    training = {}
    for n in SCALING_PROCESSES:
        runs = [torchrun_job(f"scaling-n{n}-r{i}", n, overrides, timeout) for i in range(args.repeats)]
        training[str(n)] = {
            "steps_per_second_median": statistics.median(r["steps_per_second"] for r in runs),
            "process_steps_per_second_median": statistics.median(r["process_steps_per_second"] for r in runs),
            "process_wall_time_median": statistics.median(r["process_wall_time"] for r in runs),
            "runs": runs}
    one, two = training["1"], training["2"]
    efficiency = two["steps_per_second_median"] / (2 * one["steps_per_second_median"])
    process_efficiency = two["process_steps_per_second_median"] / (2 * one["process_steps_per_second_median"])
    # 3. the paper's 8 GPUs x 4 nodes: an estimate, not a measurement
    assumed = min(efficiency, 1.0)
    per_process = one["steps_per_second_median"]
    estimate = {
        "processes": PAPER_PROCESSES, "layout": "8 GPUs x 4 nodes, one process per GPU",
        "per_process_steps_per_second": per_process, "assumed_allreduce_efficiency": assumed,
        "steps_per_second": per_process * PAPER_PROCESSES * assumed,
        "formula": f"1-process steps/s x {PAPER_PROCESSES} x assumed efficiency",
        "assumption": "the measured 2-process scaling efficiency (capped at 1) holds at 32 processes; the "
                      "per-process rate is this machine's CPU rate, not a GPU node's; inter-node NCCL all-reduce "
                      "and stragglers are not measured here; on this machine the 2 processes also share its cores, so the "
                      "measured efficiency includes CPU contention, not only the all-reduce"}
    return {"env_id": env_id, "config": "plain defaults (--no-preset)"
            + (f" + {' '.join(args.overrides)}" if args.overrides else ""),
            "num_envs_per_process": num_envs, "timesteps": args.timesteps, "repeats": args.repeats,
            "collection_frames": args.collect_frames, "omp_num_threads": 1,
            "collection_frames_per_second_by_env_threads": collection,
            "collection_runs": collection_runs, "training_by_processes": training,
            "scaling_efficiency": efficiency, "process_scaling_efficiency": process_efficiency,
            "paper_estimate": estimate}


def _scaling_md(data: dict) -> list[str]:
    tr, est = data["training_by_processes"], data["paper_estimate"]
    lines = [f"{data['env_id']}, {data['config']}, {data['num_envs_per_process']} envs per process, median of "
             f"{data['repeats']} repeat(s). Training: `torchrun --standalone --nproc_per_node=N -m "
             f"aeon_trl.launch.job RUN_DIR --no-preset total_timesteps={data['timesteps']} env_threads=1 progress=false "
             f"eval_episodes=0 logger=none` with OMP_NUM_THREADS=1; total_timesteps is the global budget "
             f"(each of N ranks trains T/N frames, every rank its own {data['num_envs_per_process']} envs).", "",
             "| measurement | value |", "|---|---|"]
    for threads, rate in data["collection_frames_per_second_by_env_threads"].items():
        lines.append(f"| collector frames/s, 1 process, {threads} envpool thread(s) | {rate:,.0f} |")
    for n, row in tr.items():
        lines += [f"| training steps/s, {n} process(es), training loop | {row['steps_per_second_median']:,.0f} |",
                  f"| training steps/s, {n} process(es), whole process incl. start-up "
                  f"({row['process_wall_time_median']:.0f} s) | {row['process_steps_per_second_median']:,.0f} |"]
    lines += [f"| scaling efficiency, 2 processes: steps/s(2) / (2 x steps/s(1)), training loop | "
              f"{data['scaling_efficiency']:.2f} |",
              f"| scaling efficiency, 2 processes, whole process | {data['process_scaling_efficiency']:.2f} |",
              "| runs (training-loop steps/s) | " + "; ".join(
                  f"{n} process(es): {[round(r['steps_per_second']) for r in row['runs']]}" for n, row in tr.items())
              + " |", "",
              f"**Estimate, not a measurement** ({est['layout']}, {est['processes']} processes): "
              f"{est['per_process_steps_per_second']:,.0f} steps/s per process (measured, 1 process) x "
              f"{est['processes']} x {est['assumed_allreduce_efficiency']:.2f} assumed all-reduce efficiency "
              f"≈ **{est['steps_per_second']:,.0f} steps/s**. Assumption: {est['assumption']}."]
    return lines


def _learning_md(data: dict, floor: float | None) -> list[str]:
    """The learning table; with ``floor``, whether the mean meets the target and no seed is below floor x target."""
    def verdict(r) -> str:
        target = r["target"]
        if target is None:
            return "report"
        mean_ok = r["return_mean"] >= target
        # floor x target for a positive target; a negative one (Reacher, Pusher) allows 1/floor x as far below 0
        least = target * floor if target > 0 else target / floor
        seeds_ok = min(r["per_seed"]) >= least
        return (("met" if mean_ok else "not met") + "; " +
                (f"every seed >= {least:.4g}" if seeds_ok else f"a seed < {least:.4g}"))
    head = "| env | config | return (mean ± std over seeds) | per seed | target |"
    rule = "|---|---|---|---|---|"
    if floor is not None:
        head, rule = head + " verdict |", rule + "---|"
    parts = [head + " steps/s (median) | wall time/run |", rule + "---|---|"]
    for r in data["rows"]:
        config = r.get("config", "defaults") + (f" (`{r['label']}`)" if r.get("label") else "")
        digits = 1 if abs(r["return_mean"]) < 100 else 0  # Reacher's and Pusher's returns are a few units
        cells = [r["env"], config, f"{r['return_mean']:.{digits}f} ± {r['return_std']:.{digits}f}",
                 str(r["per_seed"]), str(r["target"])]
        if floor is not None:
            cells.append(verdict(r))
        cells += [f"{r['steps_per_second']:.0f}", f"{r['wall_time']:.0f} s"]
        parts.append("| " + " | ".join(cells) + " |")
    commands = sorted({r["command"] for r in data["rows"] if "command" in r})
    if len(commands) > 1:
        parts += ["", "Rows come from: " + "; ".join(f"`{c}`" for c in commands)]
    return parts + [""] + [f"![{r['env']}]({r.get('png', 'learning_' + r['env'] + '.png')})" for r in data["rows"]]


def load_span(start: float) -> str:
    """The host's load over a measurement (``start``: ``os.getloadavg()[0]`` when it began), as sections report it."""
    return (f"load average {start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (2 cores: above ~1, other "
            "work shared them)")


def publish(name: str, data: dict, text: str) -> None:
    """A feature benchmark's results: ``<name>.json``, its section ``sections/<name>.md``, then RESULTS.md."""
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=2))
    (OUT / "sections").mkdir(exist_ok=True)
    (OUT / "sections" / f"{name}.md").write_text(text + "\n")
    write_results_md()


def write_results_md() -> None:
    """Regenerate RESULTS.md from every benchmarks/<kind>.json present."""
    parts = ["# Benchmark results", "", "Regenerated by `benchmarks/benchmark.py` from `benchmarks/<kind>.json`. "
             "Returns are the mean over seeds of each run's final 10-episode deterministic evaluation.", ""]
    for kind in ("learning", "suite", "ablation", "throughput", "scaling"):
        path = OUT / f"{kind}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        parts += [f"## {kind.capitalize()}", "", f"- command: `{data['command']}`", f"- machine: {data['machine']}",
                  f"- date: {data['date']}", ""]
        if kind in ("learning", "suite"):
            parts += _learning_md(data, floor=SUITE_FLOOR if kind == "suite" else None)
        elif kind == "scaling":
            parts += _scaling_md(data)
        elif kind == "ablation":
            parts += _ablation_md(data)
        else:
            parts += ["| measurement | value |", "|---|---|"]
            for name, rate in data["raw_env_steps_per_second"].items():
                parts.append(f"| raw random-action steps/s, {name} | {rate:,.0f} |")
            for name, rate in data["collection_frames_per_second_by_env_path"].items():
                parts.append(f"| collector frames/s with the MLP policy, {name} | {rate:,.0f} |")
            if "training_config" in data:
                parts.append(f"| training runs' config | {data['training_config']} |")
            parts += [f"| collection frames/s during training (median) | {data['collect_frames_per_second_median']:,.0f} |",
                      f"| full PPO training steps/s, training loop (median of {len(data['train_steps_per_second'])}) | "
                      f"{data['train_steps_per_second_median']:,.0f} |",
                      f"| full PPO training steps/s, whole process incl. start-up | "
                      f"{data['process_steps_per_second_median']:,.0f} |",
                      f"| runs (training-loop steps/s) | {[round(x) for x in data['train_steps_per_second']]} |"]
            if "train_steps_per_second_10_epochs" in data:
                parts += [f"| epochs run per iteration, default (KL early stop), mean | {data['epochs_run_mean']:.1f} |",
                          f"| full PPO training steps/s, all 10 epochs every iteration (`kl_early_stop=false`), "
                          f"median | {data['train_steps_per_second_10_epochs_median']:,.0f} |",
                          f"| runs, all 10 epochs (training-loop steps/s) | "
                          f"{[round(x) for x in data['train_steps_per_second_10_epochs']]} |"]
            if "train_steps_per_second_10_epochs_compiled" in data:
                parts += [f"| the same, loss compiled (`compile=true`), training loop incl. compiling, median | "
                          f"{data['train_steps_per_second_10_epochs_compiled_median']:,.0f} |",
                          f"| runs, all 10 epochs, compiled (training-loop steps/s) | "
                          f"{[round(x) for x in data['train_steps_per_second_10_epochs_compiled']]} |",
                          f"| steady rate, all 10 epochs (median over iterations of collection + update): eager / "
                          f"compiled | {data['steady_steps_per_second_10_epochs_median']:,.0f} / "
                          f"{data['steady_steps_per_second_10_epochs_compiled_median']:,.0f} |"]
            if "train_steps_per_second_10_epochs_compiled_2threads" in data:
                parts += [f"| the same, compiled, 2 torch threads during the update (`update_threads=2`), training "
                          f"loop, median | {data['train_steps_per_second_10_epochs_compiled_2threads_median']:,.0f} |",
                          f"| runs (training-loop steps/s) | "
                          f"{[round(x) for x in data['train_steps_per_second_10_epochs_compiled_2threads']]} |",
                          f"| steady rate, compiled, 2 update threads | "
                          f"{data['steady_steps_per_second_10_epochs_compiled_2threads_median']:,.0f} |"]
        parts.append("")
    # Feature benchmarks (their own scripts, benchmarks/bench_*.py) each write one section here.
    parts += ["Rollout shapes of the feature sections below: the curriculum, env-path and HalfCheetah tuning "
              "sections were measured with the current default, 128 envs x 32 steps; the demonstrations section and "
              "the Hopper tuning section with metric `eval_return` with Hopper's preset, 64 x 64 (as the learning "
              "table's Hopper row); "
              "aeon/SparseHalfCheetah-v5 with its own preset (16 x 256). The others (MountainCar curiosity, "
              "distillation, prioritized minibatches, shaping ablation, tuning with `100_episode_return`) were "
              "measured on 2026-11-29/30 with the earlier default, 64 envs x 64 steps (the same 4,096-frame batch); "
              "train with `num_envs=64 steps_per_env=64` to rerun one as it was measured. Sections that trained "
              "HalfCheetah-v5 with its preset before 2026-11-30 07:00 UTC used the preset of that time (gate + "
              "Lookahead, without `log_std_init=-0.5` and minibatches of 2,048, benchmarks/NOTES.md); add "
              "`log_std_init=0 batch_size=1024` to rerun one as it was measured; those that trained Hopper-v5 with its "
              "preset (demonstrations, Hopper tuning) used `gamma=0.99`, add it likewise.", ""]
    for section in sorted((OUT / "sections").glob("*.md")):
        parts += [section.read_text(), ""]
    extra = OUT / "NOTES.md"
    if extra.exists():
        parts += [extra.read_text()]
    (OUT / "RESULTS.md").write_text("\n".join(parts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["learning", "suite", "ablation", "throughput", "scaling", "report"])
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every run")
    parser.add_argument("--envs", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default=None, help="learning/suite: a variant's name (its overrides set it)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reuse", action="store_true",
                        help="ablation: read runs already finished with the same config (add seeds to the table)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="scaling: seconds before a torchrun run counts as hung (default 120 + timesteps/100)")
    parser.add_argument("--collect-frames", type=int, default=32_768,
                        help="scaling: frames timed per collection measurement, after one warm-up batch")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    OUT.mkdir(exist_ok=True)
    if args.kind != "report":
        defaults = {"learning": (ENVS, [1, 2, 3], 1_000_000), "suite": (list(SUITE), [1, 2, 3], 1_000_000),
                    "ablation": (list(SUITE), [0], 300_000),
                    "throughput": (["HalfCheetah-v5"], [0], 200_000),
                    "scaling": (["HalfCheetah-v5"], [0], 100_000)}[args.kind]
        args.envs, args.seeds = args.envs or defaults[0], args.seeds or defaults[1]
        args.timesteps = args.timesteps or defaults[2]
        data = {"learning": learning, "suite": suite, "ablation": ablation, "throughput": throughput,
                "scaling": scaling}[args.kind](args)
        command = "python -m benchmarks.benchmark " + " ".join(argv if argv is not None else sys.argv[1:])
        data.update(command=command, machine=machine(), date=time.strftime("%Y-%m-%d"))
        previous = OUT / f"{args.kind}.json"
        if args.kind in ("learning", "suite") and previous.exists():  # a rerun keeps the other rows
            old = json.loads(previous.read_text())
            for row in old["rows"]:
                row.setdefault("command", old["command"])
            for row in data["rows"]:
                row["command"] = command
            new = {(r["env"], r.get("label")) for r in data["rows"]}
            kept = [r for r in old["rows"] if (r["env"], r.get("label")) not in new]
            order = list(SUITE)
            data["rows"] = sorted(kept + data["rows"], key=lambda r: (order.index(r["env"]) if r["env"] in order
                                                                      else 99, r.get("label") or ""))
        (OUT / f"{args.kind}.json").write_text(json.dumps(data, indent=2))
    write_results_md()
    print((OUT / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
