"""aeon_trl against its peers, side by side in one run on the same machine: whole-process steps/s.

    python -m benchmarks.bench_peers [--envs HalfCheetah-v5 benchmarks.user_envs.mycheetah:MyCheetah-v0]
                                     [--timesteps 102400] [--repeats 1] [--arms sb3 cleanrl aeon ...]

Every run is a process of its own, started from the repository root (PYTHONPATH=repo, so ``module:EnvId`` ids of
``benchmarks/user_envs`` import), timed from start to exit: imports, env and network construction and training
are all in the figure, as a user who runs the command sees it. Arms:

- ``sb3``: Stable-Baselines3's ``PPO("MlpPolicy", env)`` with its default hyperparameters and SB3's default of
  one env (n_steps 2048, minibatches of 64, 10 epochs, no normalization), ``benchmarks/peers/sb3_ppo.py``;
- ``cleanrl``: CleanRL's ``ppo_continuous_action.py`` with its defaults (1 env, 2048 steps, 32 minibatches,
  10 epochs, obs/reward normalization), vendored in ``benchmarks/peers/`` with the edits gymnasium 1.4 needs;
- ``aeon``: ``python -m aeon_trl.cli.train`` with the default config plus the env's shipped preset, if any;
- ``aeon-no-preset``: the same with ``--no-preset`` (the plain defaults).

No arm evaluates at the end (aeon_trl: ``eval_episodes=0``; the peers never do). The peers set no torch thread
count; they run with ``OMP_NUM_THREADS=1`` (``--peer-threads 1``, the default), their faster setting on this 2-core
machine (torch's default of 2 threads contends with the simulator: SB3 ran at ~170 steps/s with it on the busy
host); ``--peer-threads 0`` leaves torch's default. aeon_trl uses its config's ``torch_threads=1``. ``--timesteps`` defaults to 102,400:
a whole number of every arm's batches (SB3/CleanRL 2,048, aeon_trl 4,096), so all train exactly that many steps.
Writes ``benchmarks/peers.json`` and the section ``benchmarks/sections/peers.md``; RESULTS.md is regenerated.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.benchmark import OUT, REPO, machine, raw_env_rates, write_results_md

PEERS = ("sb3", "cleanrl")
ARMS = {
    "sb3": "SB3 PPO(\"MlpPolicy\"), default hyperparameters, 1 env",
    "cleanrl": "CleanRL ppo_continuous_action.py, defaults, 1 env",
    "aeon": "aeon_trl, defaults + the env's preset",
    "aeon-no-preset": "aeon_trl, plain defaults (--no-preset)",
}
DEFAULT_ARMS = list(ARMS)


def command(arm: str, env_id: str, timesteps: int, seed: int, run_dir: Path) -> tuple[list[str], int]:
    """The arm's command line and the env steps it trains for ``timesteps``."""
    py = sys.executable
    if arm == "sb3":
        return [py, "-m", "benchmarks.peers.sb3_ppo", env_id, str(timesteps), "--seed", str(seed)], \
            -(-timesteps // 2048) * 2048  # learn() finishes the rollout it is in
    if arm == "cleanrl":
        script = OUT / "peers" / "cleanrl_ppo_continuous_action.py"
        return [py, str(script), "--env-id", env_id, "--total-timesteps", str(timesteps), "--seed", str(seed)], \
            timesteps // 2048 * 2048  # num_iterations = total_timesteps // batch_size
    flags = ["--no-preset"] if arm == "aeon-no-preset" else []
    return [py, "-m", "aeon_trl.cli.train", *flags, f"env_id={env_id}", f"seed={seed}",
            f"total_timesteps={timesteps}", "eval_episodes=0", "progress=false", "logger=none", "video=false",
            "--run-dir", str(run_dir), "--overwrite"], -1  # -1: read from its results.json


def run_arm(arm: str, env_id: str, timesteps: int, seed: int, peer_threads: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"peers-{arm}-") as tmp:  # CleanRL writes runs/ into its cwd
        run_dir = Path(tmp) / "run"
        cmd, steps = command(arm, env_id, timesteps, seed, run_dir)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        if arm in PEERS and peer_threads:
            env["OMP_NUM_THREADS"] = str(peer_threads)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp if arm == "cleanrl" else REPO, env=env)
        wall = time.perf_counter() - start
        row = {"arm": arm, "label": ARMS[arm], "env_id": env_id, "seed": seed, "wall_time": wall,
               "command": " ".join(cmd[1:]).replace(str(run_dir), "RUN_DIR").replace(str(REPO) + "/", "")}
        if proc.returncode != 0:
            row["error"] = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]
            print(f"  {env_id} {arm}: FAILED ({row['error']})", flush=True)
            return row
        if steps < 0:
            steps = json.loads((run_dir / "results.json").read_text())["timesteps"]
    row.update(timesteps=steps, steps_per_second=steps / wall)
    print(f"  {env_id} {arm}: {steps} steps in {wall:.1f} s = {row['steps_per_second']:,.0f} steps/s", flush=True)
    return row


def summarize(rows: list[dict], envs: list[str], arms: list[str]) -> list[dict]:
    table = []
    for env_id in envs:
        entry = {"env_id": env_id, "arms": {}}
        for arm in arms:
            ok = [r for r in rows if r["env_id"] == env_id and r["arm"] == arm and "steps_per_second" in r]
            failed = [r for r in rows if r["env_id"] == env_id and r["arm"] == arm and "error" in r]
            entry["arms"][arm] = {
                "steps_per_second_median": statistics.median(r["steps_per_second"] for r in ok) if ok else None,
                "runs": [round(r["steps_per_second"]) for r in ok],
                "wall_time_median": statistics.median(r["wall_time"] for r in ok) if ok else None,
                "error": failed[0]["error"] if failed and not ok else None}
        peers = [entry["arms"][p]["steps_per_second_median"] for p in PEERS if p in entry["arms"]]
        peers = [p for p in peers if p]
        ours = entry["arms"].get("aeon", {}).get("steps_per_second_median")
        entry["faster_peer_steps_per_second"] = max(peers) if peers else None
        entry["ratio_to_faster_peer"] = ours / max(peers) if peers and ours else None
        table.append(entry)
    return table


def section(data: dict) -> str:
    lines = ["## Peers: whole-process steps/s, side by side", "",
             f"- command: `{data['command']}`", f"- machine: {data['machine']}", f"- date: {data['date']}", "",
             f"Each run is one process, timed from start to exit (imports, set-up and training; no final "
             f"evaluation), {data['timesteps']:,} env steps, seed {data['seed']}, median of {data['repeats']} "
             "repeat(s), the arms alternating. SB3: `PPO(\"MlpPolicy\", env)` with SB3's defaults and one env; "
             "CleanRL: `ppo_continuous_action.py` (vendored, `benchmarks/peers/`) with its defaults and one env; "
             + (f"both with OMP_NUM_THREADS={data['peer_threads']}. " if data.get("peer_threads") else
                "both with torch's default thread count. ") + "aeon_trl: `python -m aeon_trl.cli.train` "
             "(envpool for HalfCheetah-v5; a user env goes through the parallel path: worker processes x in-process gymnasium envs). "
             f"Raw envpool HalfCheetah-v5 random-action rate in this run: "
             f"{data['raw_env_steps_per_second'].get('envpool HalfCheetah-v5, 64 envs, 2 threads', float('nan')):,.0f} "
             "steps/s.", ""]
    arms = data["arms"]
    lines += ["| env | " + " | ".join(ARMS[a] for a in arms) + " | aeon_trl (preset) / faster peer |",
              "|---|" + "---|" * (len(arms) + 1)]
    for entry in data["table"]:
        cells = []
        for arm in arms:
            a = entry["arms"][arm]
            cells.append(f"{a['steps_per_second_median']:,.0f}" if a["steps_per_second_median"]
                         else f"failed: {a['error']}")
        ratio = entry["ratio_to_faster_peer"]
        lines.append(f"| {entry['env_id']} | " + " | ".join(cells) + f" | {f'{ratio:.1f}x' if ratio else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "benchmarks.user_envs.mycheetah:MyCheetah-v0"])
    parser.add_argument("--timesteps", type=int, default=102_400)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    parser.add_argument("--peer-threads", type=int, default=1,
                        help="OMP_NUM_THREADS of the peers' processes (0: torch's default)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave peers.json and RESULTS.md")
    args = parser.parse_args(argv)
    raw = raw_env_rates(seconds=2.0)
    rows = []
    for repeat in range(args.repeats):
        for env_id in args.envs:
            for arm in args.arms:
                rows.append(run_arm(arm, env_id, args.timesteps, args.seed, args.peer_threads) | {"repeat": repeat})
    data = {"command": "python -m benchmarks.bench_peers " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "timesteps": args.timesteps,
            "seed": args.seed, "repeats": args.repeats, "peer_threads": args.peer_threads, "arms": args.arms, "raw_env_steps_per_second": raw,
            "table": summarize(rows, args.envs, args.arms), "runs": rows}
    text = section(data)
    print(text)
    if not args.no_write:
        (OUT / "peers.json").write_text(json.dumps(data, indent=2))
        (OUT / "sections").mkdir(exist_ok=True)
        (OUT / "sections" / "peers.md").write_text(text)
        write_results_md()
    return 0


if __name__ == "__main__":
    sys.exit(main())
