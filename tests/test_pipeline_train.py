"""aeon-train end to end on a tiny budget: run folder contents, resume, and exit codes for bad input."""

import csv
import json
import shutil

import numpy as np
import pytest

from aeon_trl.checkpoint import load_checkpoint
from aeon_trl.config import Config
from aeon_trl.cli.train import main

TINY = ["env_id=InvertedPendulum-v5", "env_backend=envpool", "num_envs=4", "steps_per_env=32", "batch_size=64",
        "epochs=2", "total_timesteps=256", "eval_episodes=2", "progress=false", "checkpoint_every=1", "seed=5"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    assert main([*TINY, "--run-dir", str(path)]) == 0
    return path


def test_run_writes_the_run_folder(run_dir, capsys):
    for name in ("config.yaml", "checkpoint.pt", "results.json", "history.json", "learning_curve.png"):
        assert (run_dir / name).is_file(), name
    assert Config.load(run_dir / "config.yaml") == Config().with_overrides(TINY)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["timesteps"] == 256 and results["env_id"] == "InvertedPendulum-v5" and results["seed"] == 5
    assert len(results["eval_returns"]) == 2 and all(1 <= r <= 1000 for r in results["eval_returns"])
    assert results["eval_mean"] == pytest.approx(np.mean(results["eval_returns"]))
    assert Config.from_dict(results["config"]) == Config().with_overrides(TINY)
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["frames"] for h in history] == [128, 256]
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == PNG
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["counters"] == {"frames": 256, "iteration": 2}
    # CSV logs (TorchRL's CSVLogger) somewhere under the run folder, one row per iteration.
    csvs = {p.stem: p for p in run_dir.rglob("*.csv")}
    assert {"loss_objective", "loss_critic", "kl_approx", "lr", "steps_per_second"} <= set(csvs)
    rows = list(csv.reader(csvs["loss_objective"].open()))
    assert len(rows) == 2 and all(np.isfinite(float(r[-1])) for r in rows)


def test_default_run_has_both_curves_the_time_axis_and_the_video(run_dir):
    """Issue 17: periodic evaluations by default (2 iterations: one each), the training return of every iteration,
    wall-clock seconds on every row (the PNG's top axis), and eval.mp4 of one deterministic episode."""
    from aeon_trl import render
    from aeon_trl.curves import learning_curve_figure
    history = json.loads((run_dir / "history.json").read_text())
    assert all(k in h for h in history for k in ("train_return", "episode_return", "eval_return", "wall_time"))
    assert 0 < history[0]["wall_time"] < history[1]["wall_time"]
    (ax,) = learning_curve_figure(history, "t").axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert "training return (stochastic policy, per iteration)" in labels
    assert "evaluation return (deterministic policy)" in labels and len(ax.child_axes) == 1  # the time axis
    results = json.loads((run_dir / "results.json").read_text())
    assert results["video"] == str(run_dir / "eval.mp4") and "video_error" not in results, results.get("video_error")
    assert render.count_frames(run_dir / "eval.mp4") >= 1


def test_video_false_writes_no_video_and_tensorboard_gets_hparams_and_the_video(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert main([*TINY, "video=false", "--run-dir", str(tmp_path / "novideo")]) == 0
    results = json.loads((tmp_path / "novideo" / "results.json").read_text())
    assert not (tmp_path / "novideo" / "eval.mp4").exists() and "video" not in results and "video_error" not in results
    assert main([*TINY, "logger=tensorboard", "--run-dir", str(tmp_path / "tb")]) == 0
    (events,) = {p.parent for p in (tmp_path / "tb").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")
    assert acc.Scalars("hparams/eval_mean")[0].value == pytest.approx(
        json.loads((tmp_path / "tb" / "results.json").read_text())["eval_mean"])
    assert [i.step for i in acc.Images("eval/video")] == [256]
    assert {"train_return", "eval_return"} <= set(acc.Tags()["scalars"])


def test_resume_continues_from_the_saved_frames(run_dir, tmp_path, capsys):
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    before = json.loads((resumed / "history.json").read_text())
    log = resumed / "logs" / "scalars" / "loss_objective.csv"
    with log.open("a") as f:  # logged after the checkpoint by a run that was then killed
        f.write("384,999.0\n")
    assert main(["--resume", str(resumed), "total_timesteps=512"]) == 0
    results = json.loads((resumed / "results.json").read_text())
    assert results["timesteps"] == 512
    history = json.loads((resumed / "history.json").read_text())
    assert [h["frames"] for h in history] == [128, 256, 384, 512]  # continued, not restarted
    assert history[:2] == before
    assert load_checkpoint(resumed / "checkpoint.pt")["counters"] == {"frames": 512, "iteration": 4}
    assert Config.load(resumed / "config.yaml").train.total_timesteps == 512
    assert "512 steps" in capsys.readouterr().out
    rows = list(csv.reader(log.open()))
    assert [int(r[0]) for r in rows] == [128, 256, 384, 512] and "999.0" not in {r[1] for r in rows}


def test_resume_refuses_a_config_that_trains_differently(run_dir, tmp_path, capsys):
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    assert main(["--resume", str(resumed), "lr=0.01"]) == 2  # a config error (ConfigMismatchError is a ConfigError)
    assert "different config (optim.lr: checkpoint" in capsys.readouterr().err
    assert load_checkpoint(resumed / "checkpoint.pt")["counters"]["frames"] == 256  # untouched


def test_resume_reads_a_checkpoint_saved_under_the_old_key_names(run_dir, tmp_path):
    """Checkpoints written before the minibatch_size / curiosity.enabled renames still resume."""
    from aeon_trl.checkpoint import save_checkpoint
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    state = load_checkpoint(resumed / "checkpoint.pt")
    old = state["config"]
    old["train"]["batch_size"] = old["train"].pop("minibatch_size")
    old["curiosity"]["curiosity"] = old["curiosity"].pop("enabled")
    save_checkpoint(state, resumed / "checkpoint.pt")
    assert main(["--resume", str(resumed), "total_timesteps=384"]) == 0
    assert load_checkpoint(resumed / "checkpoint.pt")["counters"]["frames"] == 384


def test_unknown_key_exits_2_with_a_hint(tmp_path, capsys):
    assert main(["learnign_rate=1e-3", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learnign_rate'" in err and "Did you mean 'lr'?" in err
    assert not (tmp_path / "r").exists()


def test_out_of_range_value_exits_2(tmp_path, capsys):
    assert main(["gamma=1.5", "--run-dir", str(tmp_path / "r")]) == 2
    assert "gamma=1.5 is out of range" in capsys.readouterr().err


def test_unknown_env_id_exits_2(tmp_path, capsys):
    assert main(["env_id=HalfCheeta-v5", "--run-dir", str(tmp_path / "r")]) == 2
    assert "Did you mean 'HalfCheetah-v5'?" in capsys.readouterr().err


def test_corrupt_checkpoint_on_resume_exits_1(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(np.random.default_rng(1).bytes(2048))
    assert main(["--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aeon-train: error: checkpoint") and "corrupt, truncated" in err


def test_resume_without_a_checkpoint_exits_1(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_run_without_evaluation(tmp_path):
    overrides = [o for o in TINY if not o.startswith(("eval_episodes", "total_timesteps"))]
    assert main([*overrides, "eval_episodes=0", "total_timesteps=128", "--run-dir", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["eval_returns"] == []


def test_the_env_preset_applies_between_defaults_and_overrides(tmp_path):
    from aeon_trl.cli.train import build_config, parse_args
    cfg, _, _ = build_config(parse_args(["env_id=HalfCheetah-v5"]))
    assert cfg.model.gating is True  # aeon_trl/presets/HalfCheetah-v5.yaml
    cfg, _, _ = build_config(parse_args(["env_id=HalfCheetah-v5", "gating=false"]))
    assert cfg.model.gating is False  # overrides win over the preset
    cfg, _, _ = build_config(parse_args(["env_id=HalfCheetah-v5", "--no-preset"]))
    assert cfg.model.gating is False
    cfg, _, _ = build_config(parse_args(["env_id=Hopper-v5"]))
    assert cfg.model.gating is False  # Hopper's preset sets the rollout shape and gamma only
    assert cfg.ppo.gamma == 0.995 != Config().ppo.gamma
    assert (cfg.env.num_envs, cfg.train.steps_per_env) == (64, 64) != (Config().env.num_envs, Config().train.steps_per_env)
    own = tmp_path / "own.yaml"
    own.write_text("lr: 0.001\n")
    cfg, _, _ = build_config(parse_args(["env_id=HalfCheetah-v5", "--config", str(own)]))
    assert cfg.model.gating is False and cfg.optim.lr == 0.001  # --config replaces defaults + preset
