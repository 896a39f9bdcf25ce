"""TrainJob without SLURM: the run folder, resume, config refusal, and preemption held to the end of an
iteration (submitit's handler replaced by a stand-in that records what it saw)."""
import json
import os
import pickle
import signal
import subprocess
import threading
import time

import pytest
import submitit

from aeon_trl.checkpoint import ConfigMismatchError, config_differences, load_checkpoint
from aeon_trl.config import Config
from aeon_trl.launch import TrainJob
from aeon_trl.launch.job import PreemptionGuard

# serial: in-process simulators, whose state the checkpoint holds, so resuming is bitwise exact
TINY = {"env_id": "InvertedPendulum-v5", "env_backend": "serial", "num_envs": 4, "steps_per_env": 32, "batch_size": 64, "epochs": 1,
        "eval_episodes": 1, "max_episode_steps": 50, "progress": False, "checkpoint_every": 0, "logger": "csv",
        "total_timesteps": 512, "lr": 3e-4}


def test_config_differences_names_keys_and_ignores_bookkeeping():
    a, b = Config.from_dict(TINY).to_dict(), Config.from_dict({**TINY, "lr": 1e-3, "progress": True}).to_dict()
    assert config_differences(a, b) == {"optim.lr": (3e-4, 1e-3)}


def test_job_pickles_without_runtime_state():
    job = TrainJob(TINY, "/tmp/x")
    job._run = object()  # what a running job holds; never pickled into the requeue
    clone = pickle.loads(pickle.dumps(job))
    assert clone._run is None and clone.cfg_dict == job.cfg_dict and clone.starts == []


def test_invalid_config_is_refused_before_submission():
    from aeon_trl.config import ConfigError
    with pytest.raises(ConfigError):
        TrainJob({**TINY, "clip_epsilon": 2.0}, "/tmp/x")


def test_guard_holds_signal_until_released():
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: seen.append(s))
    try:
        guard = PreemptionGuard(signal.SIGUSR2).install()
        with guard.hold():
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
            assert guard.pending and seen == []  # held
            guard.deliver_pending()
            assert seen == [signal.SIGUSR2] and not guard.pending
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
        assert seen == [signal.SIGUSR2] * 2  # delivered on leaving hold()
        os.kill(os.getpid(), signal.SIGUSR2)  # not holding: straight through
        time.sleep(0.05)
        assert len(seen) == 3
        with guard.blind_children():
            child = subprocess.Popen(["sleep", "30"])
        try:  # the mask is inherited across fork and exec: the env worker never acts on the signal
            blocked = int(next(line for line in open(f"/proc/{child.pid}/status") if line.startswith("SigBlk:"))
                          .split()[1], 16)
            assert blocked & (1 << (signal.SIGUSR2 - 1))
        finally:
            child.kill()
            child.wait()
        guard.uninstall()
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_preempted_job_checkpoints_at_an_iteration_boundary_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    job = TrainJob(TINY, run_dir)
    calls = []

    def submitit_handler(signum, frame):  # what submitit does: checkpoint(), requeue, exit
        calls.append((job._run.trainer.frames, job._consistent))
        delayed = job.checkpoint()
        assert isinstance(delayed, submitit.helpers.DelayedSubmission)
        raise SystemExit(-1)

    def preempt_after_first_iteration():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (job._run is None or job._run.trainer.frames < 128):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        threading.Thread(target=preempt_after_first_iteration, daemon=True).start()
        with pytest.raises(SystemExit):
            job()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    [(frames, consistent)] = calls
    assert consistent and frames % 128 == 0 and 0 < frames < 512
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["frames"] == frames
    # the requeued job is the pickled one: it resumes from the checkpoint and continues the counters
    resumed = pickle.loads(pickle.dumps(job))
    results = resumed()
    assert results["starts"] == [0, frames] and results["timesteps"] == 512
    assert [h["frames"] for h in json.loads((run_dir / "history.json").read_text())] == list(range(128, 513, 128))
    assert json.loads((run_dir / "results.json").read_text())["starts"] == [0, frames]
    # the log (TorchRL's CSVLogger) continues where the checkpoint is: every iteration logged exactly once
    with open(run_dir / "logs" / "scalars" / "steps_per_second.csv") as f:
        assert [int(line.split(",")[0]) for line in f] == list(range(128, 513, 128))
    # and it ends exactly where an uninterrupted run with the same seed ends
    straight = TrainJob(TINY, tmp_path / "straight")()
    assert results["param_digest"] == straight["param_digest"]
    assert results["eval_returns"] == straight["eval_returns"]


def test_resuming_with_a_different_config_is_refused(tmp_path):
    TrainJob({**TINY, "total_timesteps": 128}, tmp_path)()
    with pytest.raises(ConfigMismatchError, match=r"optim.lr: checkpoint 0.0003, this run 0.001"):
        TrainJob({**TINY, "total_timesteps": 128, "lr": 1e-3}, tmp_path)()
