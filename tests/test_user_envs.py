"""Your own environment: ``module:EnvId`` ids through every entry point, ``env.imports``, ``env.kwargs``, Dict
observations (flattened, layout in the checkpoint), per-dimension action bounds, the parallel backend (worker
processes x in-process envs: same transitions as a serial env, no workers left behind), and the errors for bad input.

The envs are tests/user_env_module.py's (tiny, pure numpy) and its Pendulum variant."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import (ActionClip, check_env_id, child_pids, make_env, observation_layout, plan_workers,
                           resolve_backend)
from aeon_trl.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
MOD = "tests.user_env_module"
TINY, TINY_DICT, PENDULUM = f"{MOD}:TinyBox-v0", f"{MOD}:TinyDict-v0", f"{MOD}:TestPendulum-v0"
QUICK = ["num_envs=4", "steps_per_env=16", "minibatch_size=32", "epochs=2", "progress=false", "logger=none",
         "eval_episodes=2", "env_threads=2"]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # where `tests.user_env_module` imports from, as a user runs from their checkout


def cfg_for(*overrides: str) -> Config:
    return Config.for_run([*QUICK, *overrides])[0]


# ---- config keys --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("item", ["env.kwargs.scale=2.5", "env_kwargs.scale=2.5", "kwargs.scale=2.5",
                                  "env.env_kwargs.scale=2.5"])
def test_env_kwargs_keys(item):
    assert Config().with_overrides([item]).env.env_kwargs == {"scale": 2.5}


@pytest.mark.parametrize("item", ["env.imports=[a.b,c]", "env_imports=[a.b,c]", "imports=[a.b,c]"])
def test_env_imports_keys(item):
    assert Config().with_overrides([item]).env.env_imports == ["a.b", "c"]


def test_env_kwargs_must_be_a_mapping():
    with pytest.raises(ConfigError, match="env_kwargs=3 has the wrong type"):
        Config.from_dict({"env_kwargs": 3})


# ---- entry points -------------------------------------------------------------------------------------------
def test_module_env_id_trains_through_aeon_train(tmp_path):
    from aeon_trl.cli.train import main
    run = tmp_path / "run"
    assert main([f"env_id={PENDULUM}", *QUICK, "total_timesteps=128", "env.kwargs.reward_scale=0.5",
                 "--run-dir", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["timesteps"] == 128 and len(results["eval_returns"]) == 2
    assert results["config"]["env"]["env_kwargs"] == {"reward_scale": 0.5}


def test_module_env_id_trains_through_the_facade():
    from aeon_trl.ppo import AdvancedPPO
    ppo = AdvancedPPO(TINY, {**{k: v for k, v in (o.split("=") for o in QUICK)}, "total_timesteps": 128})
    try:
        summary = ppo.train(128)
        assert summary["timesteps"] == 128 and ppo.trainer.env.batch_size == torch.Size([4])
        action = ppo.get_action(np.full(4, 100.0))
        assert action.shape == (2,)
    finally:
        ppo.close()


def test_module_env_id_trains_through_the_slurm_job(tmp_path):
    from aeon_trl.launch.job import TrainJob
    cfg = cfg_for(f"env_id={TINY}", "total_timesteps=128", "checkpoint_every=0")
    results = TrainJob(cfg, tmp_path / "job", distributed=False)()
    assert results["timesteps"] == 128 and (tmp_path / "job" / "checkpoint.pt").exists()


def test_env_imports_register_before_make():
    sys.modules.pop(MOD, None)
    gym.envs.registry.pop("TinyBox-v0", None)
    assert check_env_id("TinyBox-v0", imports=[MOD]).shape == (2,)


def test_gym_env_with_a_spec_is_remade_num_envs_times():
    from aeon_trl.ppo import AdvancedPPO
    ppo = AdvancedPPO(gym.make(TINY, scale=0.0), {"num_envs": 4, "steps_per_env": 8, "minibatch_size": 16,
                                                   "epochs": 1, "env_threads": 2, "eval_episodes": 0})
    try:
        assert ppo.trainer.env.batch_size == torch.Size([4])
        batch = ppo.trainer.collect()
        assert torch.all(batch["next", "reward"] == 0)  # the spec's kwargs (scale=0) came along
    finally:
        ppo.close()


def test_gym_env_without_a_spec_trains_alone_and_says_so():
    from aeon_trl.ppo import AdvancedPPO
    from tests.user_env_module import TinyEnv
    with pytest.warns(UserWarning, match="without a spec.*one env alone.*register it"):
        ppo = AdvancedPPO(TinyEnv(), {"steps_per_env": 16, "minibatch_size": 16, "epochs": 1})
    try:
        assert ppo.config.env.num_envs == 1
        assert ppo.train(32)["timesteps"] == 32
    finally:
        ppo.close()


# ---- kwargs -------------------------------------------------------------------------------------------------
def test_env_kwargs_reach_the_env():
    env = make_env(cfg_for(f"env_id={PENDULUM}", "env.kwargs.reward_scale=0.0"))
    try:
        rollout = env.rollout(10, break_when_any_done=False)
        assert torch.all(rollout["next", "episode_reward"] == 0)
    finally:
        env.close()


def test_env_kwargs_go_to_envpool_when_it_takes_them(capsys):
    assert resolve_backend(cfg_for("env_id=HalfCheetah-v5", "env.kwargs.ctrl_cost_weight=0.2")) == "envpool"
    assert resolve_backend(cfg_for("env_id=HalfCheetah-v5", "env.kwargs.xml_file=my.xml")) == "parallel"
    assert "does not take env.kwargs xml_file" in capsys.readouterr().err


# ---- Dict observations --------------------------------------------------------------------------------------
def test_dict_observation_trains_and_its_checkpoint_keeps_the_flattening(tmp_path):
    cfg = cfg_for(f"env_id={TINY_DICT}")
    trainer = Trainer(cfg)
    try:
        layout = [["position", 2], ["sensors/grid", 6], ["sensors/speed", 2]]
        assert observation_layout(trainer.env) == layout
        trainer.train(128)
        path = trainer.save(tmp_path / "c.pt")
    finally:
        trainer.close()
    restored = Trainer(cfg)
    try:
        restored.load(path)
        assert observation_layout(restored.env) == layout and restored.frames == 128
    finally:
        restored.close()
    # same sizes (10 values), other keys: refused
    other = Trainer(cfg_for(f"env_id={TINY_DICT}", "env.kwargs.obs_mode=dict_renamed"))
    try:
        with pytest.raises(CheckpointError, match=r"observations \[position \(2\).*this env has \[pos \(2\)"):
            other.load(path)
    finally:
        other.close()


def test_dict_observation_flattening_matches_the_raw_leaves():
    env = make_env(cfg_for(f"env_id={TINY_DICT}", "norm_obs=false", "env_backend=serial"))
    try:
        td = env.reset()
        raw = [_gym(env, i)._obs() for i in range(4)]
        expect = np.stack([np.concatenate([r["position"], r["sensors"]["grid"].ravel(), r["sensors"]["speed"]])
                           for r in raw]).astype(np.float32)
        assert np.array_equal(td["observation"].numpy(), expect)
    finally:
        env.close()


def _gym(env, i):
    from aeon_trl import _compat
    return _compat.gym_env_of(_compat.serial_env_workers(env.base_env)[i]).unwrapped


# ---- action bounds ------------------------------------------------------------------------------------------
def test_per_dimension_action_bounds_clip_what_the_env_gets():
    from tests.user_env_module import ACTION_HIGH, ACTION_LOW
    env = make_env(cfg_for(f"env_id={TINY}", "env_backend=serial"))
    try:
        assert isinstance(env.transform[-1], ActionClip)
        td = env.reset()
        td["action"] = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [0.2, -2.0], [0.0, 0.0]])
        env.step(td)
        got = np.stack([_gym(env, i).last_action for i in range(4)])
        assert np.array_equal(got[0], ACTION_HIGH) and np.array_equal(got[1], ACTION_LOW)
        assert np.allclose(got[2], [0.2, -2.0])
        assert torch.equal(td["action"][0], torch.tensor([5.0, 5.0]))  # the loss sees the unclipped sample
    finally:
        env.close()


# ---- the parallel path --------------------------------------------------------------------------------------
def _rollout(cfg, actions):
    env = make_env(cfg)
    try:
        step = iter(actions)
        return env.rollout(len(actions), lambda td: td.set("action", next(step)), break_when_any_done=False)
    finally:
        env.close()


@pytest.mark.parametrize("workers", [2, 3, 1])
def test_parallel_path_gives_the_serial_transitions(workers):
    base = [f"env_id={TINY}", "num_envs=6", "steps_per_env=8", "minibatch_size=8", "seed=11", "norm_obs=false",
            "norm_reward=false"]
    actions = torch.rand(80, 6, 2, generator=torch.Generator().manual_seed(0)) * 4 - 2
    serial = _rollout(cfg_for(*base, "env_backend=serial"), actions)
    parallel = _rollout(cfg_for(*base, "env_backend=parallel", f"env_threads={workers}"), actions)
    assert 5 < serial["next", "done"].sum() < 6 * 80  # episodes end at different steps: partial resets happen
    for key in ["observation", ("next", "observation"), ("next", "reward"), ("next", "done"),
                ("next", "terminated"), ("next", "truncated"), ("next", "episode_reward")]:
        assert torch.equal(serial[key], parallel[key]), key


def test_the_learner_sleeps_while_its_workers_step():
    """torchrl's ParallelEnv spin-polls its workers on the learner's core, which on a 2-core machine is a core the
    2 workers need; the learner here sleeps between polls: 0.1 s worker steps cost it little CPU time."""
    env = make_env(cfg_for(f"env_id={TINY}", "num_envs=2", "env_threads=2", "env.kwargs.step_seconds=0.1",
                           "norm_obs=false", "norm_reward=false"))
    try:
        env.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        env.rollout(8, break_when_any_done=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        env.close()
    assert wall >= 0.8 and cpu < 0.25 * wall, (wall, cpu)


def test_a_worker_that_dies_mid_step_is_an_error_not_a_hang():
    env = make_env(cfg_for(f"env_id={TINY}", "num_envs=2", "env_threads=2", "env.kwargs.exit_after=3",
                           "norm_obs=false", "norm_reward=false"))
    try:
        env.reset()
        with pytest.raises(RuntimeError, match="dead"):
            env.rollout(10, break_when_any_done=False)
    finally:
        with pytest.raises(RuntimeError, match="exit code 3"):  # torchrl's close names the worker that failed
            env.close()


def test_auto_uses_workers_for_ids_envpool_does_not_ship(capsys):
    env = make_env(cfg_for(f"env_id={TINY}", "num_envs=6", "steps_per_env=8", "minibatch_size=8"))
    try:
        assert env.batch_size == torch.Size([6])
    finally:
        env.close()
    assert "2 worker processes x 3 envs (memory: estimated" in capsys.readouterr().err


def test_num_envs_not_divisible_uses_fewer_workers_and_says_so():
    plan = plan_workers(6, 4, env_mb=5, available_mb=10_000)
    assert (plan.workers, plan.envs_per_worker) == (3, 2)
    assert "num_envs=6 does not divide into 4 workers: using 3 worker(s) of 2 envs (num_envs=4 or 8" in plan.notes[0]


def test_memory_plan_shrinks_the_workers_or_refuses():
    plan = plan_workers(128, 8, env_mb=10, available_mb=3000)  # 8 workers: 1.2 GB + 1.28 GB > 80% of 3 GB
    assert plan.workers < 8 and plan.estimated_mb <= 0.8 * 3000 and "would need" in plan.notes[-1]
    with pytest.raises(ConfigError, match="num_envs=128 envs need ~12.5 GB.*lower num_envs"):
        plan_workers(128, 2, env_mb=100, available_mb=10_000)


def test_trainer_close_ends_the_workers():
    before = set(env_workers())  # children an earlier test of this process left behind are not this trainer's
    trainer = Trainer(cfg_for(f"env_id={TINY}"))
    trainer.collect()
    workers = [pid for pid in env_workers() if pid not in before]
    assert len(workers) >= 2
    trainer.close()
    _wait_gone(workers)


WORKER_SCRIPT = textwrap.dedent("""
    import os, sys, time, warnings
    warnings.filterwarnings("ignore")
    from aeon_trl.config import Config
    from aeon_trl.envs import child_pids
    from aeon_trl.ppo import AdvancedPPO
    from tests.test_user_envs import env_workers
    ppo = AdvancedPPO("{env_id}", {{"num_envs": 4, "steps_per_env": 8, "minibatch_size": 16, "env_threads": 2,
                                   "eval_episodes": 0}})
    ppo.trainer.collect()
    print(" ".join(map(str, env_workers())), flush=True)
    if sys.argv[1] == "raise":
        raise RuntimeError("boom")
    if sys.argv[1] == "wait":
        time.sleep(60)
""")


@pytest.mark.parametrize("how", ["exit", "raise", "sigterm"])
def test_no_worker_outlives_the_process(how):
    """After a normal exit without close(), an exception, and SIGTERM: no env worker is left."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT.format(env_id=TINY),
                             "wait" if how == "sigterm" else how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) >= 2, proc.stderr.read()
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == {"exit": 0, "raise": 1, "sigterm": -signal.SIGTERM}[how]
    _wait_gone(workers)


def env_workers() -> list[int]:
    """This process's children but multiprocessing's resource tracker (one per process, it stays)."""
    def cmdline(pid):
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""
    return sorted(p for p in child_pids() if b"resource_tracker" not in cmdline(p))


def _wait_gone(pids, timeout=15.0):
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"env workers still running: {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


# ---- bad input ----------------------------------------------------------------------------------------------
def test_module_that_does_not_exist():
    with pytest.raises(ConfigError, match=r"env module 'tests.no_such_envs' \(from env_id.*does not import: "
                                          r"ModuleNotFoundError"):
        check_env_id("tests.no_such_envs:X-v0")


def test_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_envs.py").write_text("import numpy\nraise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"env module 'broken_envs' \(env.imports\) does not import: "
                                          r"ImportError: needs libfoo"):
        check_env_id("X-v0", imports=["broken_envs"])


def test_id_the_module_does_not_register():
    with pytest.raises(ConfigError, match=r"unknown env id 'TinyBx-v0': 'tests.user_env_module' imported, but no "
                                          r"env 'TinyBx-v0' is registered. Did you mean 'TinyBox-v0'\?.*Ids "
                                          r"registered from it: TestPendulum-v0, TinyBox-v0"):
        check_env_id(f"{MOD}:TinyBx-v0")


def test_kwarg_the_env_does_not_take():
    with pytest.raises(ConfigError, match=r"does not take the keyword argument\(s\) given in env.kwargs \(bogus\).*"
                                          r"It takes: scale, end_prob, obs_mode"):
        Trainer(cfg_for(f"env_id={TINY}", "env.kwargs.bogus=1"))


def test_image_observations_are_refused():
    with pytest.raises(ConfigError, match=r"image observations \('observation': Box \(8, 8, 3\) uint8\).*not "
                                          r"support yet"):
        Trainer(cfg_for(f"env_id={MOD}:TinyImage-v0"))


def test_action_clip_transform():
    clip = ActionClip(torch.tensor([-1.0, -3.0]), torch.tensor([1.0, 0.5]))
    from tensordict import TensorDict
    td = clip.inv(TensorDict({"action": torch.tensor([[2.0, 2.0], [-2.0, -4.0]])}, [2]))
    assert torch.equal(td["action"], torch.tensor([[1.0, 0.5], [-1.0, -3.0]]))
