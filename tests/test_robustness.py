"""Issue 14: runs that never lose work, and inputs refused with a clear message (items 1-10 and 13).

Every test here drives a real entry point (a real process where the behaviour is about processes: signals,
kill -9, interpreter exit) on real files and small real envs; nothing of aeon_trl is mocked. Written against the
code before the fixes: each test documents the wanted behaviour and fails until it is implemented.

The entry points are named in one place (the helpers below), so the restructure of issue 13
(pipelines/train.py -> aeon_trl/cli/train.py, slurm/submit.py -> aeon_trl/cli/submit.py, ...) switches them
by editing the module names only.
"""
from __future__ import annotations

import csv
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

# ---- entry points (switch here after the issue-13 restructure) ---------------------------------------------
TRAIN_MODULE = "aeon_trl.cli.train"
SUBMIT_MODULE = "aeon_trl.cli.submit"
RECORD_DEMOS_MODULE = "aeon_trl.cli.record_demos"
DISTILL_MODULE = "aeon_trl.cli.distill"
REPO = Path(__file__).resolve().parents[1]


def _call(module: str, argv) -> int:
    """``module.main(argv)`` in this process; an argparse exit (SystemExit) becomes its exit code."""
    main = importlib.import_module(module).main
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def train_main(argv) -> int:
    return _call(TRAIN_MODULE, argv)


def submit_main(argv) -> int:
    return _call(SUBMIT_MODULE, argv)


def record_demos_main(argv) -> int:
    return _call(RECORD_DEMOS_MODULE, argv)


def distill_main(argv) -> int:
    return _call(DISTILL_MODULE, argv)


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1"}


def start_cli(module: str, argv, cwd: Path) -> subprocess.Popen:
    """``python -m module argv`` in its own session (pid == pgid == sid), stdout/stderr into files in ``cwd``:
    what a terminal does to a foreground job, minus the terminal. SIGINT is reset to its default in the child:
    under a non-interactive shell's background job it is inherited as ignored, and Python then never raises
    KeyboardInterrupt."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], cwd=cwd, env=cli_env(),
                            stdout=(cwd / "stdout.txt").open("wb"), stderr=(cwd / "stderr.txt").open("wb"),
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, command) of every live process of session ``sid`` (env workers, resource trackers, local jobs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]))
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture
def sessions():
    """Sessions started by a test; whatever is left of them is killed at teardown (by their group id only)."""
    started: list[int] = []
    yield started
    for sid in started:
        for pid, _ in session_members(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def csv_steps(run: Path, key: str = "steps_per_second") -> list[int]:
    """The steps (frames) of the rows of one TorchRL CSVLogger scalar file of a run folder."""
    files = list(run.rglob(f"{key}.csv"))
    if not files:
        return []
    return [int(float(row[0])) for row in csv.reader(files[0].open()) if row]


def checkpoint_frames(path: Path) -> int | None:
    from aeon_trl.checkpoint import CheckpointError, load_checkpoint
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path)["counters"]["frames"]
    except CheckpointError:
        return None


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tail(text: str, n: int = 25) -> str:
    return "\n".join(text.splitlines()[-n:])


# A run of 2 iterations of 128 frames on envpool's InvertedPendulum (threads, no worker processes): ~10 s.
TINY = ["env_id=InvertedPendulum-v5", "env_backend=envpool", "num_envs=4", "steps_per_env=32", "batch_size=64",
        "epochs=2", "total_timesteps=256", "eval_episodes=0", "progress=false", "checkpoint_every=1", "seed=5"]
FRAMES_PER_BATCH = 128


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "finished"
    assert train_main([*TINY, "--run-dir", path]) == 0
    return path


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ============================================================================================================
# 1. SIGINT / SIGTERM: finish the iteration, checkpoint atomically, print how to resume, exit 130 / 143, no
#    traceback spam, no env worker left behind.
# ============================================================================================================
# gymnasium's subprocess vector env: the backend whose workers printed the BrokenPipeError spam.
SIGNAL_RUN = ["env_id=Pendulum-v1", "env_backend=gymnasium", "num_envs=4", "steps_per_env=64", "batch_size=64",
              "epochs=1", "total_timesteps=100000000", "checkpoint_every=1000", "progress=false", "eval_episodes=0",
              "seed=3"]


def _interrupted_run_problems(proc: subprocess.Popen, run: Path, expected_rc: int, timeout: float = 120,
                              need_checkpoint: bool = True) -> list[str]:
    problems = []
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return [f"still running {timeout} s after the signal"]
    stderr = (run.parent / "stderr.txt").read_text(errors="replace")
    if rc != expected_rc:
        problems.append(f"exit code {rc}, wanted {expected_rc}")
    if need_checkpoint:
        frames = checkpoint_frames(run / "checkpoint.pt")
        if not frames:
            problems.append(f"no usable checkpoint.pt (frames {frames}) in {sorted(p.name for p in run.iterdir())}")
        if "--resume" not in stderr:
            problems.append("stderr does not say how to resume (--resume)")
    for word in ("Traceback", "BrokenPipeError"):
        if word in stderr:
            problems.append(f"stderr has {stderr.count(word)} x {word!r}")
    time.sleep(2)  # workers may take a moment to notice their parent is gone
    left = session_members(proc.pid)
    if left:
        problems.append(f"{len(left)} process(es) of the run left behind: {left}")
    if problems:
        problems.append("stderr tail:\n" + tail(stderr))
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("signum,to_group,expected_rc", [
    (signal.SIGINT, True, 130),    # Ctrl-C: the terminal signals the whole foreground process group
    (signal.SIGTERM, False, 143),  # `kill PID`, a scheduler's stop: the main process only
], ids=["SIGINT", "SIGTERM"])
def test_first_signal_checkpoints_and_exits_cleanly(tmp_path, sessions, signum, to_group, expected_rc):
    run = tmp_path / "cwd" / "run"
    proc = start_cli(TRAIN_MODULE, [*SIGNAL_RUN, "--run-dir", run], tmp_path / "cwd")
    sessions.append(proc.pid)
    wait_for(lambda: len(csv_steps(run)) >= 3, 240, proc, "3 logged iterations")
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    problems = _interrupted_run_problems(proc, run, expected_rc)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once(tmp_path, sessions):
    run = tmp_path / "cwd" / "run"
    proc = start_cli(TRAIN_MODULE, [*SIGNAL_RUN, "--run-dir", run], tmp_path / "cwd")
    sessions.append(proc.pid)
    wait_for(lambda: len(csv_steps(run)) >= 2, 240, proc, "2 logged iterations")
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    problems = _interrupted_run_problems(proc, run, 130, timeout=20, need_checkpoint=False)
    assert not problems, "\n".join(problems)


# ============================================================================================================
# 2. A new run into an existing run folder is refused (exit 2, naming --resume and --overwrite).
# ============================================================================================================
def test_new_run_into_an_existing_run_folder_is_refused(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "old")
    before = snapshot(run)
    rc = train_main([*TINY, "seed=6", "--run-dir", run])
    err = capsys.readouterr().err
    changed = sorted(k for k in set(before) | set(snapshot(run)) if before.get(k) != snapshot(run).get(k))
    assert (rc, changed) == (2, []), f"rc {rc}; files changed or added in the old run: {changed}"
    assert "--resume" in err and "--overwrite" in err, err


def test_overwrite_replaces_the_old_run(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "old")
    rc = train_main([*TINY, "seed=6", "--run-dir", run, "--overwrite"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert json.loads((run / "results.json").read_text())["seed"] == 6
    steps = csv_steps(run)
    assert steps == [128, 256], f"the logs must hold the new run only, got steps {steps}"


# ============================================================================================================
# 3. --resume checks the config against the checkpoint's (as the SLURM job does) and names the keys.
# ============================================================================================================
@pytest.mark.parametrize("override,key", [
    ("hidden_sizes=[128,128]", "hidden_sizes"),  # today: ten lines of torch size mismatches, no key named
    ("activation=relu", "activation"),  # today: accepted silently
    ("env_id=InvertedPendulum-v4", "env_id"),  # same shapes: accepted silently
])
def test_resume_with_a_different_config_is_refused_naming_the_key(finished_run, tmp_path, capsys, override, key):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    rc = train_main(["--resume", run, override])
    err = capsys.readouterr().err
    assert rc != 0, f"--resume with {override} was accepted"
    assert key in err, err
    assert "size mismatch" not in err and len(err.strip().splitlines()) <= 5, err
    after = snapshot(run)
    assert after["config.yaml"] == before["config.yaml"], "a refused resume rewrote config.yaml"
    assert after["checkpoint.pt"] == before["checkpoint.pt"]


def test_resume_accepts_keys_that_mean_continue(finished_run, tmp_path, capsys):
    """Guard for the fix above (passes today): budget, logging, evaluation, checkpointing, progress,
    device and threads may change on --resume."""
    run = copy_run(finished_run, tmp_path / "run")
    rc = train_main(["--resume", run, "total_timesteps=384", "logger=csv", "progress=false", "eval_episodes=1",
                     "eval_every=1", "checkpoint_every=2", "device=cpu", "torch_threads=1", "env_threads=1"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert json.loads((run / "results.json").read_text())["timesteps"] == 384


# ============================================================================================================
# 4. After kill -9: stale temp checkpoints are removed on start; the CSV logs are cut back to the checkpoint.
# ============================================================================================================
@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> Path:
    """A run killed with SIGKILL after it logged iterations past its last checkpoint."""
    cwd = tmp_path_factory.mktemp("killed")
    run = cwd / "run"
    argv = [a for a in TINY if not a.startswith(("total_timesteps", "checkpoint_every"))]
    proc = start_cli(TRAIN_MODULE, [*argv, "total_timesteps=100000000", "checkpoint_every=5", "--run-dir", run], cwd)
    try:
        def logged_past_checkpoint() -> bool:
            frames = checkpoint_frames(run / "checkpoint.pt")
            return frames is not None and max(csv_steps(run), default=0) > frames
        wait_for(logged_past_checkpoint, 240, proc, "an iteration logged past the checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    frames = checkpoint_frames(run / "checkpoint.pt")
    assert max(csv_steps(run)) > frames, "precondition: the killed run logged past its checkpoint"
    return run


@pytest.mark.slow
def test_stale_temp_checkpoint_is_removed_on_start(killed_run, tmp_path, capsys):
    run = copy_run(killed_run, tmp_path / "run")
    stale = run / ".checkpoint.pt.k9x2ab_q.tmp"  # what a kill -9 inside atomic_write leaves: a zero-byte temp file
    stale.write_bytes(b"")
    frames = checkpoint_frames(run / "checkpoint.pt")
    rc = train_main(["--resume", run, f"total_timesteps={frames + 2 * FRAMES_PER_BATCH}"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    left = sorted(p.name for p in run.glob(".checkpoint.pt.*.tmp"))
    assert left == [], f"stale temporary checkpoint files left: {left}"


@pytest.mark.slow
def test_resume_cuts_the_logs_back_to_the_checkpoint(killed_run, tmp_path, capsys):
    run = copy_run(killed_run, tmp_path / "run")
    frames = checkpoint_frames(run / "checkpoint.pt")
    total = frames + 2 * FRAMES_PER_BATCH
    rc = train_main(["--resume", run, f"total_timesteps={total}"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    expected = list(range(FRAMES_PER_BATCH, total + 1, FRAMES_PER_BATCH))
    bad = {}
    for path in sorted(run.rglob("*.csv")):
        steps = [int(float(r[0])) for r in csv.reader(path.open()) if r]
        if steps != sorted(set(steps)):
            bad[path.stem] = steps
    assert not bad, f"CSV logs with repeated frames after the resume (checkpoint at {frames}): {bad}"
    assert csv_steps(run) == expected


# ============================================================================================================
# 5. Zero-byte checkpoint or demonstration files: a clear CheckpointError / DemonstrationError, not IndexError.
# ============================================================================================================
@pytest.fixture
def empty_file(tmp_path) -> Path:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return path


def test_empty_checkpoint_file_is_named_as_empty(empty_file):
    from aeon_trl.checkpoint import CheckpointError, load_checkpoint
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(empty_file)
    assert str(empty_file) in str(info.value) and "empty" in str(info.value)


@pytest.mark.parametrize("how", ["from_file", "load_demonstrations_from_file"])
def test_empty_demonstration_file_is_named_as_empty(empty_file, how):
    from aeon_trl.data.demonstrations import DemonstrationBuffer, DemonstrationError
    with pytest.raises(DemonstrationError) as info:
        if how == "from_file":
            DemonstrationBuffer.from_file(empty_file)
        else:
            DemonstrationBuffer(10).load_demonstrations_from_file(empty_file)
    assert str(empty_file) in str(info.value) and "empty" in str(info.value)


@pytest.mark.parametrize("command", ["train --resume", "train demos=", "record-demos", "distill"])
def test_commands_report_an_empty_file(empty_file, tmp_path, capsys, command):
    if command == "train --resume":
        (tmp_path / "run").mkdir()
        shutil.copy(empty_file, tmp_path / "run" / "checkpoint.pt")
        path, rc = tmp_path / "run" / "checkpoint.pt", train_main(["--resume", tmp_path / "run"])
    elif command == "train demos=":
        path, rc = empty_file, train_main([*TINY, f"demos={empty_file}", "--run-dir", tmp_path / "r"])
    elif command == "record-demos":
        path, rc = empty_file, record_demos_main([empty_file, "--episodes", 1, "--out", tmp_path / "d.pt"])
    else:
        path, rc = empty_file, distill_main([empty_file, "--out", tmp_path / "student"])
    err = capsys.readouterr().err
    assert rc != 0 and str(path) in err and "empty" in err, f"rc {rc}: {err[-1500:]}"
    assert "Traceback" not in err


# (6. NaN statistics: tests/test_nonfinite.py)

# ============================================================================================================
# 7. Malformed YAML config or SLURM profile: the file and line named, exit 2 (not a parser traceback).
# ============================================================================================================
BAD_YAML = {
    "syntax": "lr: 0.001\nseed: [1, 2\nnum_envs: 4\n",  # an unclosed flow list
    "list": "- lr: 0.001\n- seed: 1\n",  # a list instead of a mapping
    "directory": None,
}


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / ("bad_dir.yaml" if kind == "directory" else "bad.yaml")
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text(BAD_YAML[kind])
    return path


def _check_bad_file_message(rc: int, err: str, path: Path, kind: str) -> None:
    assert rc == 2, f"exit code {rc}: {err[-1500:]}"
    assert path.name in err and "Traceback" not in err, err
    if kind == "syntax":
        assert re.search(r"line \d+", err), f"no line number in: {err}"
    if kind == "list":
        assert "mapping" in err, err
    if kind == "directory":
        assert "directory" in err.lower(), err


@pytest.mark.parametrize("kind", list(BAD_YAML))
def test_malformed_config_file_is_reported_with_exit_2(tmp_path, capsys, kind):
    path = _bad_file(tmp_path, kind)
    rc = train_main(["--config", path, "--run-dir", tmp_path / "r"])
    _check_bad_file_message(rc, capsys.readouterr().err, path, kind)


@pytest.mark.parametrize("kind", list(BAD_YAML))
def test_malformed_slurm_profile_is_reported_with_exit_2(tmp_path, capsys, kind):
    path = _bad_file(tmp_path, kind)
    rc = submit_main(["--profile", path, "--sbatch-only", tmp_path / "job.sbatch", "--run-dir", tmp_path / "r",
                      "env_id=Pendulum-v1"])
    _check_bad_file_message(rc, capsys.readouterr().err, path, kind)


# ============================================================================================================
# 8. Values the config must refuse, naming the key.
# ============================================================================================================
@pytest.mark.parametrize("values,key", [
    ({"lr": float("inf")}, "lr"),
    ({"seed": -1}, "seed"),
    ({"lr": 0.05, "max_lr": 0.01}, "max_lr"),  # lr above the KL-adaptive lr's ceiling
], ids=["lr=inf", "seed=-1", "lr>max_lr"])
def test_config_refuses_the_value_naming_the_key(values, key):
    from aeon_trl.config import Config, ConfigError
    with pytest.raises(ConfigError, match=key):
        Config.from_dict(values)


def test_command_line_lr_inf_exits_2(tmp_path, capsys):
    rc = train_main([*TINY, "lr=inf", "--run-dir", tmp_path / "r"])
    err = capsys.readouterr().err
    assert rc == 2 and "lr=inf" in err, f"rc {rc}: {err[-1500:]}"
    assert not (tmp_path / "r").exists()


# ============================================================================================================
# 9. aeon-submit validates the whole config before submitting; --local without --wait exits cleanly.
# ============================================================================================================
@pytest.mark.parametrize("override,message", [
    ("env_id=NoSuchEnv-v0", "unknown env id"),
    ("env_id=CartPole-v1", "Box action space"),
    ("demos=/nonexistent/demos.pt", "/nonexistent/demos.pt"),
])
def test_submit_validates_the_config_before_submission(tmp_path, capsys, override, message):
    script = tmp_path / "job.sbatch"
    rc = submit_main(["--sbatch-only", script, "--run-dir", tmp_path / "r", override])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, f"rc {rc}: {err[-1500:]}"
    assert not script.exists() and not (tmp_path / "r").exists(), "something was prepared for submission"


@pytest.mark.slow
def test_submit_local_without_wait_exits_without_a_traceback(tmp_path, sessions):
    cwd = tmp_path / "cwd"
    proc = start_cli(SUBMIT_MODULE, ["--local", "--run-dir", cwd / "run", *TINY], cwd)
    sessions.append(proc.pid)
    rc = proc.wait(timeout=120)
    err = (cwd / "stderr.txt").read_text(errors="replace")
    assert rc == 0, tail(err)
    assert "Traceback" not in err and "__del__" not in err, tail(err)


# ============================================================================================================
# 10. Small ones: --resume FILE, aeon-record-demos RUN_DIR, overrides around an option, results after resume.
# ============================================================================================================
def test_resume_accepts_the_checkpoint_file(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    rc = train_main(["--resume", run / "checkpoint.pt", f"total_timesteps={3 * FRAMES_PER_BATCH}"])
    assert rc == 0, capsys.readouterr().err[-1500:]
    assert json.loads((run / "results.json").read_text())["timesteps"] == 3 * FRAMES_PER_BATCH


def test_record_demos_accepts_the_run_folder(finished_run, tmp_path, capsys):
    out = tmp_path / "demos.pt"
    rc = record_demos_main([finished_run, "--episodes", 1, "--out", out])
    assert rc == 0, capsys.readouterr().err[-1500:]
    assert out.is_file()


def test_overrides_may_come_before_and_after_an_option(tmp_path, capsys):
    run = tmp_path / "r"
    rc = train_main([*TINY[:-1], "--run-dir", run, "seed=7"])
    assert rc == 0, capsys.readouterr().err[-1500:]
    assert json.loads((run / "results.json").read_text())["seed"] == 7


def test_results_after_a_resume_relate_steps_and_time_consistently(finished_run, tmp_path, capsys):
    """Decision: after a resume, results.json reports the whole run: ``timesteps`` (all frames), ``wall_time``
    (the training time of all segments, kept in the checkpoint) and ``steps_per_second = timesteps / wall_time``.
    Today the frames of all segments are reported against the last segment's time."""
    first = json.loads((finished_run / "results.json").read_text())
    run = copy_run(finished_run, tmp_path / "run")
    assert train_main(["--resume", run, f"total_timesteps={3 * FRAMES_PER_BATCH}"]) == 0, capsys.readouterr().err
    r = json.loads((run / "results.json").read_text())
    assert r["timesteps"] == 3 * FRAMES_PER_BATCH
    assert r["steps_per_second"] == pytest.approx(r["timesteps"] / r["wall_time"], rel=1e-6), \
        f"steps_per_second {r['steps_per_second']:.1f}, but timesteps / wall_time = {r['timesteps'] / r['wall_time']:.1f}"
    assert r["wall_time"] > first["wall_time"], (r["wall_time"], first["wall_time"])


# ============================================================================================================
# 13. Dict observation spaces: a clear error naming the space (support comes with another issue).
# ============================================================================================================
class DictObsEnv(gym.Env):
    """A tiny continuous-action env whose observations are a Dict of two Boxes."""

    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (2,), np.float32),
                                         "velocity": gym.spaces.Box(-1, 1, (2,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, **kwargs):  # TorchRL's GymEnv passes frameskip (and render_mode) through gym.make
        super().__init__()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(-np.square(action).sum()), False, False, {}


DICT_ID = "AeonTest/DictObs-v0"
if DICT_ID not in gym.registry:
    gym.register(DICT_ID, entry_point=DictObsEnv, max_episode_steps=50)
DICT_CONFIG = {"env_backend": "serial", "num_envs": 2, "steps_per_env": 32, "batch_size": 32}


@pytest.mark.parametrize("given_as", ["id", "gymnasium env"])
def test_dict_observation_space_is_refused_clearly(given_as):
    from aeon_trl import AdvancedPPO
    from aeon_trl.config import ConfigError
    env = DICT_ID if given_as == "id" else DictObsEnv()
    with pytest.raises(ConfigError, match="Dict") as info:
        AdvancedPPO(env, DICT_CONFIG)
    assert "observation space" in str(info.value)


def test_aeon_train_refuses_a_dict_observation_space_with_exit_2(tmp_path, capsys):
    rc = train_main([f"env_id={DICT_ID}", *(f"{k}={v}" for k, v in DICT_CONFIG.items()), "total_timesteps=64",
                     "progress=false", "eval_episodes=0", "--run-dir", tmp_path / "r"])
    err = capsys.readouterr().err
    assert rc == 2 and "Dict" in err, f"rc {rc}: {err[-1500:]}"
