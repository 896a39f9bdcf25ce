"""Data parallelism without SLURM: the helpers in one process, and two gloo processes under torchrun."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aeon_trl.config import Config
from aeon_trl.driver import rank_config

REPO = Path(__file__).resolve().parents[1]


def test_rank_config_offsets_seed_and_splits_the_budget():
    cfg = Config.from_dict({"seed": 3, "total_timesteps": 1001})
    r1 = rank_config(cfg, rank=1, world_size=2)
    assert r1.train.seed == 4 and r1.train.total_timesteps == 501
    assert rank_config(cfg) is cfg  # one process: unchanged


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_end_identical(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    overrides = ["env_id=InvertedPendulum-v5", "num_envs=2", "steps_per_env=64", "batch_size=64", "epochs=2",
                 "total_timesteps=512", "eval_episodes=1", "max_episode_steps=50", "progress=false",
                 "logger=none"]  # KL early stop and adaptive lr on: ranks must agree through the averaged KL
    # --standalone: a rendezvous on a free local port; its own session, so a timeout ends every worker too
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "aeon_trl.launch.job",
                             str(tmp_path), *overrides], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "AEON_DIST_TIMEOUT_S": "120"})
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish in 300 s:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    digests = re.findall(r"param_digest ([0-9a-f]{64})", stdout)
    assert len(digests) == 2 and digests[0] == digests[1], stdout[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["world_size"] == 2 and results["timesteps"] == 512 and results["param_digest"] == digests[0]
