"""aeon-compare: grouping by config minus the seed, mean ± std bands against a naive computation, the table, and the
command on two tiny trained runs."""
import json

import numpy as np
import pytest

from aeon_trl.cli.compare import main
from aeon_trl.compare import (CompareError, comparison_table, find_runs, group_runs, load_run, parse_references,
                              plot_comparison)
from aeon_trl.config import Config
from aeon_trl.curves import band
from tiny_run import train_tiny_run

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path, seed, lr=3e-4, final=100.0, frames=(1000, 2000, 3000), sps=500.0, **extra):
    """A run folder with a made-up history: eval_return = seed + lr * 1e4 * frames / 1000."""
    path.mkdir(parents=True)
    Config().with_overrides([f"seed={seed}", f"lr={lr}", f"run_dir=runs/{path.name}", *extra.get("overrides", [])]) \
        .save(path / "config.yaml")
    history = [{"frames": f, "episode_return": f / 100 + seed, "eval_return": seed + lr * 1e4 * f / 1000,
                "wall_time": f / sps} for f in frames]
    (path / "history.json").write_text(json.dumps(history))
    (path / "results.json").write_text(json.dumps({"eval_mean": final, "steps_per_second": sps}))
    return path


def test_groups_are_configs_minus_the_seed(tmp_path):
    paths = [fake_run(tmp_path / "a0", 0), fake_run(tmp_path / "a1", 1), fake_run(tmp_path / "b0", 0, lr=1e-3)]
    groups = group_runs([load_run(p) for p in paths])
    assert list(groups) == ["lr=0.0003", "lr=0.001"]  # the label names the key that differs, not run_dir or seed
    assert [r.seed for r in groups["lr=0.0003"]] == [0, 1] and [r.seed for r in groups["lr=0.001"]] == [0]
    one = group_runs([load_run(p) for p in paths[:2]])
    assert list(one) == ["HalfCheetah-v5"]


def test_band_is_the_mean_and_std_over_seeds():
    curves = [(np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0])),
              (np.array([0.0, 20.0]), np.array([2.0, 6.0]))]  # seed 2 evaluated less often: interpolated
    grid, mean, std = band(curves)
    assert grid.tolist() == [0.0, 10.0, 20.0]
    naive = np.array([[0.0, 1.0, 2.0], [2.0, 4.0, 6.0]])
    assert np.allclose(mean, naive.mean(0)) and np.allclose(std, naive.std(0))
    grid, *_ = band([(np.array([0.0, 30.0]), np.array([0.0, 3.0])), (np.array([10.0, 20.0]), np.array([1.0, 2.0]))])
    assert grid.tolist() == [10.0, 20.0]  # only the range every seed covers


def test_table_rows(tmp_path):
    paths = [fake_run(tmp_path / "a0", 0, final=100.0), fake_run(tmp_path / "a1", 1, final=200.0, sps=700.0),
             fake_run(tmp_path / "b0", 0, lr=1e-3, final=50.0)]
    table = comparison_table(group_runs([load_run(p) for p in paths]))
    lines = table.splitlines()
    assert lines[0].startswith("| group | seeds | final eval return")
    assert lines[2] == "| lr=0.0003 | 0, 1 | 150.0 ± 50.0 | 30.5 ± 0.5 | 600 | 3,000 |"
    assert lines[3] == "| lr=0.001 | 0 | 50.0 ± 0.0 | 30.0 ± 0.0 | 500 | 3,000 |"


def test_plot_and_references(tmp_path):
    paths = [fake_run(tmp_path / "a0", 0), fake_run(tmp_path / "a1", 1)]
    out = plot_comparison(group_runs([load_run(p) for p in paths]), tmp_path / "plots" / "c.png",
                          references={"SB3 zoo PPO": 1800.0})
    assert out.read_bytes()[:8] == PNG
    assert parse_references(["SB3 zoo PPO=1800", "a=b=2"]) == {"SB3 zoo PPO": 1800.0, "a=b": 2.0}
    with pytest.raises(CompareError, match="NAME=VALUE"):
        parse_references(["1800"])


def test_find_runs_expands_a_folder_of_runs(tmp_path):
    paths = [fake_run(tmp_path / "runs" / "a0", 0), fake_run(tmp_path / "runs" / "a1", 1)]
    assert find_runs([tmp_path / "runs"]) == paths
    with pytest.raises(CompareError, match="not a run folder"):
        find_runs([tmp_path])  # holds runs/ only, not run folders


def test_cli_on_two_tiny_trained_runs(tmp_path, capsys):
    runs = [train_tiny_run(tmp_path / f"s{seed}", seed=seed) for seed in (0, 1)]
    plot, table = tmp_path / "out" / "plot.png", tmp_path / "out" / "table.md"
    assert main([*map(str, runs), "--out", str(plot), "--table", str(table), "--reference", "target=1000"]) == 0
    assert plot.read_bytes()[:8] == PNG
    text = table.read_text()
    finals = [json.loads((r / "results.json").read_text())["eval_mean"] for r in runs]
    assert f"| InvertedPendulum-v5 | 0, 1 | {np.mean(finals):.1f} ± {np.std(finals):.1f} |" in text
    assert "1,024 |" in text and text in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "p.png")]) == 2
    assert "is not a folder" in capsys.readouterr().err
