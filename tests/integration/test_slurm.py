"""The launcher against a real SLURM (``slurm/local_cluster.sh start``), through submitit: a training job and
its results, a seed array and its summary, preemption by USR2 and by a higher-priority partition (the job
checkpoints, requeues, resumes and ends bitwise where an uninterrupted run ends), a SIGKILLed job reported
failed, and 2-process gloo data parallelism.

Where SLURM is not installed (no ``sinfo``, a laptop), the same tests run through submitit's local executor
and the test header says so; the ones only a real cluster has (partition preemption, the sbatch template) are
skipped there. CI runs them against the real one (.ci/run starts it). ``AEON_TEST_EXECUTOR=local`` forces the
local executor. Where SLURM is installed but not running, the tests fail and say how to start it. Every wait
has a deadline, so nothing hangs.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm
LOCAL = os.environ.get("AEON_TEST_EXECUTOR", "slurm" if shutil.which("sinfo") else "local") == "local"
needs_slurm = pytest.mark.skipif(LOCAL, reason="needs a real SLURM (submitit's local executor has no partitions "
                                               "or sbatch): start one with `slurm/local_cluster.sh start`")

REPO = Path(__file__).resolve().parents[2]
FRAMES_PER_ITERATION = 256  # num_envs * steps_per_env below
TINY = ["env_id=InvertedPendulum-v5", "num_envs=4", "steps_per_env=64", "batch_size=128", "epochs=2",
        "eval_episodes=2", "max_episode_steps=100", "progress=false", "checkpoint_every=0", "torch_threads=1"]
JOB_DEADLINE_S = 240  # generous: CI shares two cores with other work


@pytest.fixture(scope="module")
def cluster():
    if LOCAL:
        return {"partitions": set(), "cpus": os.cpu_count(), "accounting": False}
    out = subprocess.run(["sinfo", "-h", "-o", "%R %t"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        pytest.fail(f"SLURM is installed but not answering ({out.stderr.strip()}); start it with "
                    "`slurm/local_cluster.sh start` (CI: .ci/run does)")
    partitions = {line.split()[0] for line in out.stdout.splitlines()}
    cpus = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True).stdout.split()[0])
    accounting = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True).returncode == 0
    return {"partitions": partitions, "cpus": cpus, "accounting": accounting}


def profile(**overrides):
    from aeon_trl.launch.profile import DEFAULT_PROFILE, Profile
    return Profile.load(DEFAULT_PROFILE, {"time": 10, "signal_delay_s": 30, "max_num_timeout": 10, **overrides})


def config(*overrides: str):
    from aeon_trl.config import Config
    return Config().with_overrides(TINY + list(overrides))


def submit(run_dir: Path, *overrides: str, seeds=None, **profile_overrides):
    from aeon_trl.launch.submit import submit as submit_
    return submit_(config(*overrides), run_dir, profile(**profile_overrides), seeds=seeds, local=LOCAL)


def wait_for(predicate, what: str, timeout: float = JOB_DEADLINE_S, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def log(job) -> str:
    return job.paths.stdout.read_text() if job.paths.stdout.exists() else ""


def results(job, timeout: float = JOB_DEADLINE_S):
    wait_for(job.done, f"job {job.job_id} to end (log: {job.paths.stdout})", timeout)
    return job.results()


def training_pid(job) -> int:
    """The PID of the job's Python process (submitit runs it as `python -m submitit.core._submit FOLDER`)."""
    if LOCAL:  # the local executor's controller process starts the task processes
        out = subprocess.run(["pgrep", "-P", str(job._process.pid)], capture_output=True, text=True, timeout=30).stdout
        pids = out.split()
    else:
        out = subprocess.run(["scontrol", "listpids", job.job_id], capture_output=True, text=True, timeout=30).stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        # PID JOBID STEPID ...: the job step's processes, not the batch script's (its `srun` has the same arguments)
        pids = [r[0] for r in rows if len(r) >= 3 and r[0].isdigit() and r[2] != "batch"]
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline:
            return int(pid)
    raise AssertionError(f"no submitit process found for job {job.job_id}: the process list was {out!r}")


def send_usr2(job) -> None:
    """What SLURM sends before the time limit (``scancel --signal USR2``); the local executor only sends it
    near its own timeout, so there the task process gets it directly."""
    if LOCAL:
        os.kill(training_pid(job), signal.SIGUSR2)
    else:
        job._interrupt(timeout=True)


def uninterrupted(run_dir: Path, *overrides: str) -> dict:
    """The same training in this process, never interrupted: what a resumed job must end bitwise equal to."""
    from aeon_trl.launch.job import TrainJob
    return TrainJob(config(*overrides), run_dir, distributed=False)()


def progress_frames(run_dir: Path) -> list[int]:
    """The env steps of the rows of the run's log (TorchRL's CSVLogger: one file per metric, rows step,value)."""
    with (run_dir / "logs" / "scalars" / "steps_per_second.csv").open() as f:
        return [int(float(step)) for step, _ in csv.reader(f)]


def assert_resumed(run_dir: Path, result: dict, total: int):
    """Two starts, the second from a checkpoint past the first iterations; the frame counter continued
    (every iteration logged exactly once, no restart from 0) and the run reached its budget."""
    assert len(result["starts"]) == 2, result["starts"]
    first, resumed = result["starts"]
    assert first == 0 and 0 < resumed < total and resumed % FRAMES_PER_ITERATION == 0, result["starts"]
    assert result["timesteps"] == total
    assert progress_frames(run_dir) == list(range(FRAMES_PER_ITERATION, total + 1, FRAMES_PER_ITERATION))
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["frames"] for h in history] == list(range(FRAMES_PER_ITERATION, total + 1, FRAMES_PER_ITERATION))


def test_training_job_writes_results(cluster, tmp_path):
    [(_, run_dir, job)] = submit(tmp_path / "one", "total_timesteps=768")
    [result] = results(job)
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["timesteps"] == result["timesteps"] == 768
    assert on_disk["job_id"] == job.job_id and on_disk["starts"] == [0]
    assert len(on_disk["eval_returns"]) == 2 and on_disk["eval_mean"] > 0
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "config.yaml").exists()
    assert progress_frames(run_dir) == [256, 512, 768]
    # a job that raises reports the remote traceback here: resuming this folder with another config is refused
    from submitit.core.utils import FailedJobError
    [(_, _, bad)] = submit(tmp_path / "one", "total_timesteps=768", "lr=0.001")
    with pytest.raises(FailedJobError, match=r"(?s)ConfigMismatchError.*optim\.lr"):
        results(bad)


def test_seed_array_and_summary(cluster, tmp_path):
    submitted = submit(tmp_path / "sweep", "total_timesteps=512", seeds=[0, 1, 2])
    ids = [job.job_id for _, _, job in submitted]
    if not LOCAL:  # one SLURM job array (the local executor gives each task a PID for an id)
        assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1", "2"], ids
    for seed, folder, job in submitted:
        [result] = results(job)
        assert result["seed"] == seed and folder.name == f"seed_{seed}"
    out = subprocess.run([sys.executable, "-m", "aeon_trl.cli.collect", str(tmp_path / "sweep"), "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [r["seed"] for r in summary["runs"]] == [0, 1, 2] and summary["missing"] == []
    assert summary["eval_return"]["n"] == 3 and summary["eval_return"]["std"] >= 0
    assert summary["steps_per_second"]["mean"] > 0
    table = subprocess.run([sys.executable, "-m", "aeon_trl.cli.collect", str(tmp_path / "sweep")], cwd=REPO,
                           capture_output=True, text=True, timeout=60).stdout
    assert "eval return over 3 run(s)" in table and "±" in table


def test_usr2_checkpoints_and_resumes(cluster, tmp_path):
    # gymnasium's AsyncVectorEnv forks env workers: they must not act on the signal (see PreemptionGuard)
    total = 2560
    [(_, run_dir, job)] = submit(tmp_path / "usr2", f"total_timesteps={total}", "env_backend=gymnasium")
    wait_for(lambda: "frames 512 " in log(job), "the job to train 2 iterations")
    send_usr2(job)
    [result] = results(job)
    assert "checkpoint at frames" in log(job) and "resuming at frames" in log(job), log(job)[-2000:]
    assert_resumed(run_dir, result, total)


@needs_slurm
def test_real_preemption_by_higher_priority_partition(cluster, tmp_path):
    if not {"preemptible", "urgent"} <= cluster["partitions"]:
        pytest.skip("this cluster has no 'preemptible'/'urgent' partitions (slurm/local_cluster.sh makes them)")
    # in-process simulators: the checkpoint holds their state. 40 iterations: SLURM takes a few seconds to preempt,
    # and the job must still be training then (10 iterations once finished first: the resume started at the end)
    total, exact = 10240, "env_backend=serial"
    # the low-priority job takes every CPU, so the urgent job can only run by preempting it
    [(_, run_dir, job)] = submit(tmp_path / "preempted", f"total_timesteps={total}", exact, partition="preemptible",
                                 cpus_per_task=cluster["cpus"])
    wait_for(lambda: "frames 512 " in log(job), "the preemptible job to train 2 iterations")
    import submitit
    urgent = submitit.AutoExecutor(folder=str(tmp_path / "urgent" / "%j"))
    urgent.update_parameters(timeout_min=5, slurm_partition="urgent", cpus_per_task=1)
    assert results(urgent.submit(sum, [1, 2, 3]), 120) == [6]
    [result] = results(job)
    assert "checkpoint at frames" in log(job), log(job)[-2000:]
    assert_resumed(run_dir, result, total)
    straight = uninterrupted(tmp_path / "straight", f"total_timesteps={total}", exact)
    assert result["param_digest"] == straight["param_digest"]  # resumed = uninterrupted, bitwise
    assert result["eval_returns"] == straight["eval_returns"]


def test_sigkilled_job_is_reported_failed(cluster, tmp_path):
    if not cluster["accounting"] and not LOCAL:
        pytest.fail("sacct does not work: without SLURM accounting a killed job is never seen as finished and "
                    "job.result() waits forever. Start the cluster with accounting (the default of local_cluster.sh)")
    from submitit.core.utils import UncompletedJobError
    from aeon_trl.checkpoint import load_checkpoint
    [(_, run_dir, job)] = submit(tmp_path / "killed", "total_timesteps=100000", "checkpoint_every=1")
    wait_for(lambda: "frames 768 " in log(job), "the job to train 3 iterations")
    # SIGKILL the training process itself, as the OOM killer would (`scancel --signal=KILL` is recorded as a
    # cancellation instead): no Python code runs, no result pickle is written
    os.kill(training_pid(job), signal.SIGKILL)
    wait_for(job.done, "submitit to see the killed job end", timeout=120)
    with pytest.raises(UncompletedJobError):
        job.results()
    if not LOCAL:  # the local executor has no accounting to call the job FAILED: no result is what it sees
        assert job.state == "FAILED", job.state
    # killed at any moment, mid-write included: the checkpoint on disk is whole and at an iteration boundary
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["counters"]["frames"] >= 512 and state["counters"]["frames"] % FRAMES_PER_ITERATION == 0


def test_two_process_gloo_data_parallel(cluster, tmp_path):
    [(_, run_dir, job)] = submit(tmp_path / "ddp", "total_timesteps=1024",
                                 tasks_per_node=2)
    rank0, rank1 = results(job)
    assert (rank0["rank"], rank1["rank"]) == (0, 1) and rank0["world_size"] == 2
    assert rank0["param_digest"] == rank1["param_digest"]  # bitwise identical networks after training
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["timesteps"] == 1024 and on_disk["world_size"] == 2  # the global budget, 512 per rank
    assert progress_frames(run_dir) == [512, 1024]


@needs_slurm
def test_plain_sbatch_template_runs_and_requeues(cluster, tmp_path):
    """The script `aeon-submit --sbatch-only` writes runs without submitit and checkpoints + requeues itself."""
    run_dir, script, total = tmp_path / "sbatch", tmp_path / "train.sbatch", 2560
    made = subprocess.run([sys.executable, "-m", "aeon_trl.cli.submit", "--sbatch-only", str(script), "--run-dir",
                           str(run_dir), "--time", "10", "--signal-delay-s", "30", *TINY, f"total_timesteps={total}"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    job_id = subprocess.run(["sbatch", "--parsable", str(script)], cwd=REPO, capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    out = run_dir / "slurm_logs" / f"{job_id}.out"
    try:
        wait_for(lambda: out.exists() and "frames 512 " in out.read_text(), "the sbatch job to train 2 iterations")
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        wait_for(lambda: (run_dir / "results.json").exists(), f"the requeued sbatch job to finish ({out})")
    finally:
        subprocess.run(["scancel", job_id], timeout=30)  # no-op once it finished
    assert "requeued" in out.read_text() and "resuming at frames" in out.read_text(), out.read_text()[-2000:]
    assert_resumed(run_dir, json.loads((run_dir / "results.json").read_text()), total)
