"""aeon-eval / aeon_trl.evaluation on a tiny trained InvertedPendulum-v5 run: the JSON, videos whose frame count is
the episode length, agreement with a plain one-env loop, and the no-renderer path (JSON still written)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

from aeon_trl import render
from aeon_trl.cli.eval import main
from aeon_trl.evaluation import default_eval_every, evaluate_agent, evaluate_run, record_video
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.envs import episode_limit
from tiny_run import train_tiny_run

ROOT = Path(__file__).resolve().parents[1]
SIZE = ["--size", "96", "64"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "tiny", seed=3)


@pytest.fixture(scope="module")
def agent(run_dir):
    agent = AdvancedPPO.from_checkpoint(run_dir / "checkpoint.pt")
    yield agent
    agent.close()


def test_eval_writes_json_and_a_video_with_one_frame_per_step(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main([str(run_dir), "--episodes", "3", "--video", "--gif", "--out", str(out), "--seed", "11", *SIZE]) == 0, \
        f"{render.select_gl_backend().message}"
    record = json.loads((out / "evaluation.json").read_text())
    assert record["env_id"] == "InvertedPendulum-v5" and record["episodes"] == 3 and record["deterministic"]
    assert record["seed"] == 11 and "video_error" not in record
    returns, lengths = record["returns"], record["lengths"]
    assert len(returns) == len(lengths) == 3 and all(isinstance(n, int) and n >= 1 for n in lengths)
    assert record["mean"] == pytest.approx(np.mean(returns)) and record["std"] == pytest.approx(np.std(returns))
    # InvertedPendulum-v5 pays 1 per step the pole stays up: a terminated episode earns length - 1.
    assert all(r in (n, n - 1) for r, n in zip(returns, lengths))
    mp4, gif = out / "episode-0.mp4", out / "episode-0.gif"
    assert record["videos"] == [str(mp4), str(gif)] and record["video_frames"] == [lengths[0]]
    # Read back: one decoded frame per step of the first episode (the states after each step, no reset frame).
    with imageio.get_reader(mp4, format="FFMPEG") as reader:
        frames = [frame for frame in reader]
        assert reader.get_meta_data()["fps"] == pytest.approx(record["fps"])
    assert len(frames) == lengths[0] == render.count_frames(mp4)
    assert frames[0].shape == (64, 96, 3) and frames[0].dtype == np.uint8 and frames[0].max() > 0
    # pillow merges identical consecutive GIF frames, so a GIF has at most one frame per step.
    assert 1 <= render.count_frames(gif) <= lengths[0]
    printed = capsys.readouterr().out
    assert "InvertedPendulum-v5: 3 deterministic episodes" in printed and f"video: {mp4}" in printed


def test_lockstep_episodes_match_a_plain_one_env_loop(agent):
    """The batched lockstep evaluation plays each episode as a plain gymnasium loop with get_action would."""
    evaluation = evaluate_agent(agent, episodes=3, seed=20)
    for i in range(3):
        env = gym.make("InvertedPendulum-v5", max_episode_steps=episode_limit(agent.config))
        obs, _ = env.reset(seed=20 + i)
        ret, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.get_action(obs, deterministic=True))
            ret, length, done = ret + reward, length + 1, terminated or truncated
        env.close()
        assert (evaluation.returns[i], evaluation.lengths[i]) == (pytest.approx(ret), length)


def test_stochastic_evaluation_is_seeded(agent):
    a = evaluate_agent(agent, episodes=2, deterministic=False, seed=5)
    b = evaluate_agent(agent, episodes=2, deterministic=False, seed=5)
    assert a.returns == b.returns and a.lengths == b.lengths and not a.deterministic
    assert evaluate_agent(agent, episodes=2, seed=5).deterministic


def test_record_video_for_the_driver(agent, tmp_path):
    evaluation = record_video(agent, tmp_path, seed=0, size=(64, 64))
    assert evaluation.render_message == ""
    assert render.count_frames(tmp_path / "eval.mp4") == evaluation.lengths[0] == len(evaluation.frames[0])


def test_no_renderer_still_writes_the_json(run_dir, tmp_path, monkeypatch):
    """A real failing backend: EGL with no vendor library to load, and nothing else to try."""
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", str(tmp_path / "none.json"))
    monkeypatch.setattr(render, "CANDIDATES", ("egl",))
    monkeypatch.setattr(render, "_choice", None)
    record = evaluate_run(run_dir, episodes=2, video=True, out_dir=tmp_path / "eval")
    assert record["videos"] == [] and len(record["returns"]) == 2
    assert record["video_error"].startswith("no OpenGL backend can render MuJoCo offscreen here (egl: ")
    assert "apt-get install -y libegl1 libgl1-mesa-dri" in record["video_error"]
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text()) == record
    assert not list((tmp_path / "eval").glob("*.mp4"))


def test_cli_with_rendering_turned_off(run_dir, tmp_path):
    """MUJOCO_GL=disable (set before anything is imported, in a fresh process): a clear message, exit code 0, JSON."""
    env = {**os.environ, "MUJOCO_GL": "disable", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "aeon_trl.cli.eval", str(run_dir), "--episodes", "2", "--video",
                          "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "aeon-eval: no video: rendering is turned off (MUJOCO_GL=disable)" in out.stderr
    record = json.loads((tmp_path / "evaluation.json").read_text())
    assert record["video_error"] == "rendering is turned off (MUJOCO_GL=disable)" and len(record["lengths"]) == 2


def test_bad_paths_exit_with_a_message(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 1
    assert "folder without a checkpoint.pt" in capsys.readouterr().err
    assert main([str(tmp_path), "--episodes", "0"]) == 2


@pytest.mark.parametrize("total, batch", [(1_000_000, 4096), (1024, 256), (100_000, 4096), (4096 * 21, 4096)])
def test_default_eval_every_gives_at_least_20_points(total, batch):
    every = default_eval_every(total, batch)
    iterations = -(-total // batch)
    evaluations = sum(1 for i in range(1, iterations + 1) if i % every == 0)
    assert evaluations >= min(20, iterations)
    assert default_eval_every(total, batch, points=20) == max(1, iterations // 20)


def test_from_trainer_acts_as_the_loaded_agent(agent, run_dir):
    """The driver's facade over its own trainer (no copy) gives the actions the checkpointed agent gives."""
    from aeon_trl.trainer import Trainer
    trainer = Trainer(agent.config)
    try:
        trainer.load(run_dir / "checkpoint.pt")
        driver_agent = AdvancedPPO.from_trainer(trainer)
        assert driver_agent.trainer is trainer and driver_agent.config is trainer.cfg
        obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        assert np.allclose(driver_agent.get_action(obs, deterministic=True), agent.get_action(obs, deterministic=True))
    finally:
        trainer.close()


# ---- PeriodicEvaluator: the trainer's evaluation during training --------------------------------------------
def _trained(overrides, iterations=2):
    from aeon_trl.config import Config
    from aeon_trl.trainer import Trainer
    cfg = Config().with_overrides(["num_envs=4", "steps_per_env=64", "minibatch_size=128", "epochs=2", "progress=false",
                                   "eval_episodes=0", "seed=2", *overrides])
    trainer = Trainer(cfg)
    trainer.train(cfg.frames_per_batch * iterations)
    return trainer


def _lean(trainer, episodes, seed=None):
    from aeon_trl.evaluation import PeriodicEvaluator
    evaluator = PeriodicEvaluator(trainer.cfg, episodes, seed)
    space = trainer.env.action_spec.space
    try:
        return evaluator.evaluate(trainer.net.policy_mean, trainer.obs_norm.export(), space.low.min().item(),
                                  space.high.max().item())
    finally:
        evaluator.close()


def test_periodic_evaluator_matches_a_plain_gymnasium_loop():
    """Each env's first episode is played as a one-env gymnasium loop with seed + i would (aeon-eval's episodes),
    acting with the clipped mean of the frozen-normalized observation; the same starts on every call. The
    trainer collects on envpool: the evaluation plays gymnasium's env all the same."""
    import torch
    trainer = _trained(["env_id=Hopper-v5", "env_backend=envpool"])
    try:
        returns = _lean(trainer, 3, seed=40)
        assert _lean(trainer, 3, seed=40) == returns
        norm, space = trainer.obs_norm.export(), trainer.env.action_spec.space
        for i in range(3):
            env = gym.make("Hopper-v5", max_episode_steps=episode_limit(trainer.cfg))
            obs, _ = env.reset(seed=40 + i)
            ret, done = 0.0, False
            while not done:
                with torch.no_grad():
                    loc, _ = trainer.policy(norm(torch.as_tensor(obs, dtype=torch.float32)[None]))
                action = loc.clamp(space.low.min().item(), space.high.max().item())[0].numpy()
                obs, reward, terminated, truncated, _ = env.step(action)
                ret, done = ret + reward, terminated or truncated
            env.close()
            # a batch of 3 rows through the network may round the last float32 bit otherwise than one row
            assert returns[i] == pytest.approx(ret, rel=1e-6)
    finally:
        trainer.close()


def test_periodic_evaluator_draws_nothing_from_the_global_generators():
    import torch
    trainer = _trained(["env_id=InvertedPendulum-v5", "env_backend=serial"], iterations=1)
    try:
        torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
        _lean(trainer, 2)
        assert torch.equal(torch.get_rng_state(), torch_state)
        assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    finally:
        trainer.close()


def test_videos_follow_the_body():
    """gymnasium's v5 renderer resets its free camera to "free" every frame: HalfCheetah-v5's never moves and a
    running cheetah leaves the frame. The rendering env's camera tracks the root body instead."""
    import mujoco

    from aeon_trl.evaluation import _make_env
    env = _make_env(gym, "HalfCheetah-v5", 1000, (32, 32))
    try:
        renderer = env.unwrapped.mujoco_renderer
        assert renderer.camera_id is None and renderer.default_cam_config["trackbodyid"] == 1
        assert renderer.default_cam_config["type"] == mujoco.mjtCamera.mjCAMERA_TRACKING
        assert renderer.default_cam_config["distance"] == 4.0  # the env's own settings are kept
    finally:
        env.close()
