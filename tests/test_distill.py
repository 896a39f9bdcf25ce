"""Distillation: the loss against hand computations, a short distillation of a real (tiny) Pendulum teacher,
the exported files against the in-memory student, the torch-only example, and bad input."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import ConfigError
from aeon_trl.distill import DistillConfig, Distiller
from aeon_trl.modules.student import FrozenObsNorm, make_student
from aeon_trl.objectives.distill import DistillationLoss
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.cli import distill as cli
from benchmarks import bench_distill as bench

ROOT = Path(__file__).resolve().parents[1]
TEACHER = {"num_envs": 8, "steps_per_env": 64, "batch_size": 256, "epochs": 4, "total_timesteps": 4096,
           "hidden_sizes": [32, 32], "eval_episodes": 0, "progress": False, "env_threads": 1, "seed": 3}
SMALL = dict(hidden_sizes=[8], teacher_frames=2048, dagger_rounds=1, dagger_frames=1024, num_envs=8,
             grad_steps=400, batch_size=128, lr=3e-3, eval_episodes=2)


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory):
    """A teacher trained for a few seconds on Pendulum-v1: its quality does not matter, its function does."""
    agent = AdvancedPPO("Pendulum-v1", TEACHER)
    try:
        agent.train()
        return agent.save(tmp_path_factory.mktemp("teacher") / "checkpoint.pt")
    finally:
        agent.close()


@pytest.fixture(scope="module")
def distilled(teacher_checkpoint, tmp_path_factory):
    d = Distiller(teacher_checkpoint, DistillConfig(**SMALL))
    d.before = d.score(d.collect(d.teacher, 1024))  # held-out teacher states, scored before training
    d.train()
    d.files = d.export(tmp_path_factory.mktemp("student"))
    yield d
    d.close()


# ---- the loss --------------------------------------------------------------------------
def _passthrough_student():
    """A 'student' whose loc/scale are read from the observation, so the test sets them directly."""
    return TensorDictModule(lambda obs: (obs[..., :3], obs[..., 3:].exp()), in_keys=["observation"],
                            out_keys=["loc", "scale"])


def _batch(n=64):
    g = torch.Generator().manual_seed(0)
    s_loc, s_log = torch.randn(n, 3, generator=g), 0.5 * torch.randn(n, 3, generator=g)
    t_loc, t_scale = torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g) + 0.2
    td = TensorDict({"observation": torch.cat([s_loc, s_log], -1), "teacher_loc": t_loc, "teacher_scale": t_scale},
                    batch_size=[n])
    return td, s_loc, s_log.exp(), t_loc, t_scale


def test_kl_loss_is_the_gaussian_kl_by_hand():
    td, s_loc, s_scale, t_loc, t_scale = _batch()
    out = DistillationLoss(_passthrough_student(), "kl")(td)
    by_hand = []
    for i in range(td.shape[0]):  # KL(N(mt, st^2) || N(ms, ss^2)), summed over the 3 action dims
        kl = 0.0
        for j in range(3):
            mt, st, ms, ss = (float(x[i, j]) for x in (t_loc, t_scale, s_loc, s_scale))
            kl += math.log(ss / st) + (st ** 2 + (mt - ms) ** 2) / (2 * ss ** 2) - 0.5
        by_hand.append(kl)
    assert out["loss_distill"].item() == pytest.approx(np.mean(by_hand), rel=1e-5)
    assert out["kl"].item() == pytest.approx(np.mean(by_hand), rel=1e-5)
    assert out["mean_abs_error"].item() == pytest.approx((s_loc - t_loc).abs().mean().item(), rel=1e-6)


def test_mse_loss_is_the_squared_error_of_the_means_by_hand():
    td, s_loc, _, t_loc, _ = _batch()
    out = DistillationLoss(_passthrough_student(), "mse")(td)
    by_hand = np.mean([(float(s_loc[i, j]) - float(t_loc[i, j])) ** 2 for i in range(64) for j in range(3)])
    assert out["loss_distill"].item() == pytest.approx(by_hand, rel=1e-5)


def test_loss_is_zero_for_an_identical_student_and_keys_can_be_remapped():
    td, s_loc, s_scale, _, _ = _batch()
    td = TensorDict({"observation": td["observation"], "t_mu": s_loc, "t_sigma": s_scale}, batch_size=td.shape)
    loss = DistillationLoss(_passthrough_student(), "kl")
    loss.set_keys(teacher_loc="t_mu", teacher_scale="t_sigma")
    assert loss(td)["loss_distill"].item() == pytest.approx(0.0, abs=1e-6)


def test_loss_gradient_reaches_the_student_only():
    norm = FrozenObsNorm(torch.zeros(3), torch.ones(3), 10.0)
    student = make_student(norm, 1, [4])
    loss = DistillationLoss(TensorDictModule(student, ["observation"], ["loc", "scale"]), "kl")
    td = TensorDict({"observation": torch.randn(16, 3), "teacher_loc": torch.randn(16, 1),
                     "teacher_scale": torch.full((16, 1), 0.5)}, batch_size=[16])
    loss(td)["loss_distill"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert not any(b.requires_grad for b in student.norm.buffers())


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="unknown: use one of"):
        DistillationLoss(_passthrough_student(), "huber")


# ---- a real distillation ---------------------------------------------------------------
def test_teacher_on_raw_observations_is_the_trained_agent(distilled):
    obs = np.array([[1.0, 0.0, 0.5], [-1.0, 0.0, -3.0], [0.0, 1.0, 8.0]], np.float32)
    expected = distilled.agent.get_action(obs, deterministic=True)
    got = distilled.deployable(distilled.teacher)(torch.from_numpy(obs)).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert distilled.teacher.norm.scale.ne(1).any()  # real statistics, not the identity


def test_distillation_reduces_the_loss_and_the_student_matches_the_teacher(distilled):
    held_out = distilled.collect(distilled.teacher, 1024)  # fresh teacher states, never trained on
    after = distilled.score(held_out)
    assert after["loss_distill"] < 0.2 * distilled.before["loss_distill"]
    assert after["mean_abs_error"] < 0.1  # Pendulum torques lie in [-2, 2]
    h = distilled.history
    assert [r["collected_by"] for r in h] == ["teacher", "student"] and h[-1]["buffer"] == 2048 + 1024
    # The student's own states, labelled by the teacher, were new to it and are fitted after training.
    assert h[1]["train_loss_distill"] < h[1]["fresh_loss_distill"]


def test_student_inherits_the_teacher_normalization_and_std(distilled):
    assert torch.equal(distilled.student.norm.loc, distilled.teacher.norm.loc)
    assert torch.equal(distilled.student.norm.scale, distilled.teacher.norm.scale)
    assert distilled.student.norm is not distilled.teacher.norm
    assert distilled.student_params == 3 * 8 + 8 + 8 * 1 + 1 + 1  # trunk + mean head + log-std
    assert distilled.teacher_params == (3 * 32 + 32) + (32 * 32 + 32) + (32 * 1 + 1) + 1


def test_evaluation_uses_the_real_env(distilled):
    returns = distilled.evaluate(distilled.student, n_episodes=2)
    assert len(returns) == 2 and all(-2000 < r <= 0 for r in returns)  # Pendulum: 200 steps of costs <= 0


def test_exported_files_give_the_in_memory_students_actions(distilled):
    obs = torch.randn(5, 3) * torch.tensor([1.0, 1.0, 4.0])
    with torch.no_grad():
        expected = distilled.deployable(distilled.student)(obs)
    pt2 = torch.export.load(distilled.files["pt2"]).module()
    torch.testing.assert_close(pt2(obs), expected)
    torch.testing.assert_close(pt2(obs[:1]), expected[:1])  # batch size is dynamic, batch 1 included
    assert expected.abs().max() <= 2.0  # clipped to Pendulum's bounds
    from onnx.reference import ReferenceEvaluator
    onnx_actions = ReferenceEvaluator(distilled.files["onnx"]).run(None, {"observation": obs.numpy()})[0]
    np.testing.assert_allclose(onnx_actions, expected.numpy(), atol=1e-5)
    meta = json.loads(Path(distilled.files["json"]).read_text())
    assert (meta["env_id"], meta["obs_dim"], meta["act_dim"], meta["action_high"]) == ("Pendulum-v1", 3, 1, 2.0)


def test_export_without_the_onnx_package_writes_the_pt2_and_says_so(distilled, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else find_spec(name, *a))
    with pytest.warns(UserWarning, match="ONNX export skipped.*pip install onnx"):
        files = distilled.export(tmp_path)
    assert files["onnx"] is None and not (tmp_path / "student.onnx").exists() and Path(files["pt2"]).is_file()
    assert json.loads(Path(files["json"]).read_text())["files"]["onnx"] is None


def test_example_runs_the_export_without_aeon_trl(distilled, tmp_path):
    obs = np.array([[0.5, -0.5, 2.0], [1.0, 0.0, -1.0]], np.float32)
    np.save(tmp_path / "obs.npy", obs)
    example = ROOT / "examples" / "infer_student.py"
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert not [m for m in sys.modules if m.startswith('aeon_trl')], 'the example imported aeon_trl'")
    proc = subprocess.run([sys.executable, "-c", code, str(example), str(Path(distilled.files["pt2"]).parent),
                           "--obs", str(tmp_path / "obs.npy"), "--episodes", "1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = distilled.deployable(distilled.student)(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(out["pt2"], expected, atol=1e-6)
    np.testing.assert_allclose(out["onnx"], expected, atol=1e-5)
    assert len(out["returns"]) == 1 and -2000 < out["returns"][0] <= 0


def test_student_larger_than_teacher_is_allowed(teacher_checkpoint):
    d = Distiller(teacher_checkpoint, DistillConfig(hidden_sizes=[64, 64]))
    try:
        assert d.student_params > d.teacher_params
    finally:
        d.close()


# ---- the command line and bad input -----------------------------------------------------
def test_cli_writes_results_and_exports(teacher_checkpoint, tmp_path, capsys):
    out = tmp_path / "student"
    argv = [str(teacher_checkpoint.parent), "--hidden", "8", "--teacher-frames", "512", "--dagger-rounds", "1",
            "--dagger-frames", "256", "--grad-steps", "50", "--eval-episodes", "2", "--latency-calls", "20",
            "--loss", "mse", "--out", str(out)]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["loss"] == "mse" and res["config"]["hidden_sizes"] == [8]
    assert len(res["teacher_returns"]) == len(res["student_returns"]) == 2
    assert set(res["latency_us"]) == {"teacher_module", "student_module", "student_pt2", "teacher_get_action"}
    assert res["export_max_abs_error"] < 1e-5
    assert (out / "student.pt2").is_file() and (out / "student.onnx").is_file()
    assert "student return" in capsys.readouterr().out
    assert res["return_ratio"] is None  # Pendulum's returns are negative: no "fraction kept"
    row = {**res, "return_ratio": 0.96}
    bench.write_section({"command": "c", "machine": "m", "date": "d", "rows": [row, {**row, "param_ratio": 0.5}]},
                      tmp_path / "section.md")
    text = (tmp_path / "section.md").read_text()
    assert text.startswith("## Distillation")
    assert text.count("| Pendulum-v1 [32, 32] | [8] | mse, 512 teacher states + 1 x 256 DAgger |") == 2
    assert "Pendulum-v1: target met" in text
    assert "target NOT met" in "\n".join(bench.verdicts([{**row, "return_ratio": 0.9}]))


@pytest.mark.parametrize("hidden", [[], [0], [32, -1], "32", [32.5], [True]])
def test_bad_hidden_sizes(hidden):
    with pytest.raises(ConfigError, match="hidden_sizes=.*non-empty list of positive"):
        DistillConfig(hidden_sizes=hidden)


@pytest.mark.parametrize("key,value", [("loss", "huber"), ("activation", "gelu"), ("grad_steps", 0),
                                       ("dagger_rounds", -1), ("lr", 0.0)])
def test_bad_distill_values(key, value):
    with pytest.raises(ConfigError, match=f"{key}="):
        DistillConfig(**{key: value})


def test_missing_and_foreign_checkpoints(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="does not exist"):
        Distiller(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        Distiller(tmp_path)  # a folder without checkpoint.pt
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an aeon_trl checkpoint"):
        Distiller(tmp_path / "foreign.pt")
    assert cli.main([str(tmp_path / "foreign.pt")]) == 1
    assert "not an aeon_trl checkpoint" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "foreign.pt"), "--hidden", "0"]) == 2
    assert cli.main([]) == 2


def test_benchmark_rerun_keeps_the_other_rows(tmp_path):
    def row(env, hidden, params):
        return {"env_id": env, "student_params": params, "config": {
            "hidden_sizes": hidden, "loss": "kl", "teacher_frames": 5000, "dagger_rounds": 1, "dagger_frames": 1000,
            "explore": False}}
    (tmp_path / "d.json").write_text(json.dumps({"command": "old", "rows": [
        row("A", [32, 32], 30), row("A", [16, 16], 10), row("B", [16, 16], 5)]}))
    data = {"command": "new", "rows": [row("B", [24, 24], 8), row("A", [16, 16], 11)]}
    bench.merge_previous(data, tmp_path / "d.json")
    got = [(r["env_id"], r["config"]["hidden_sizes"], r["command"]) for r in data["rows"]]
    assert got == [("A", [32, 32], "old"), ("A", [16, 16], "new"), ("B", [24, 24], "new"), ("B", [16, 16], "old")]
