"""Checkpoints: round trip, atomic replace, and refusal (with a clear CheckpointError) of every bad file."""

import pickle

import numpy as np
import pytest
import torch

from aeon_trl.checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint, save_checkpoint
from aeon_trl.config import Config
from aeon_trl.trainer import Trainer

TINY = {"env_backend": "envpool", "num_envs": 2, "steps_per_env": 16, "batch_size": 32, "epochs": 1,
        "total_timesteps": 32, "eval_episodes": 0, "progress": False}


def _state():
    return {"net": {"w": torch.randn(4, 3), "b": torch.arange(3, dtype=torch.float64)},
            "counters": {"frames": 1234, "iteration": 7}, "history": [{"lr": 3e-4, "kl": 0.01}],
            "config": Config().to_dict(), "name": "run", "flag": True}


def _assert_state_equal(a, b):
    assert torch.equal(a["net"]["w"], b["net"]["w"]) and a["net"]["w"].dtype == b["net"]["w"].dtype
    assert torch.equal(a["net"]["b"], b["net"]["b"]) and b["net"]["b"].dtype == torch.float64
    for key in ("counters", "history", "config", "name", "flag"):
        assert a[key] == b[key]


def test_round_trip(tmp_path):
    state = _state()
    path = save_checkpoint(state, tmp_path / "sub" / "ck.pt")  # creates the folder
    assert path == tmp_path / "sub" / "ck.pt" and path.is_file()
    loaded = load_checkpoint(path)
    _assert_state_equal(state, loaded)
    assert loaded["format"] == FORMAT and loaded["version"] == VERSION
    assert Config.from_dict(loaded["config"]) == Config()


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    old = _state()
    save_checkpoint(old, path)
    old_bytes = path.read_bytes()
    # A big tensor first, then a value torch.save cannot pickle: the write fails part-way through.
    bad = {"big": torch.randn(200_000), "callback": lambda: None}
    with pytest.raises(Exception) as info:
        save_checkpoint(bad, path)
    assert not isinstance(info.value, CheckpointError)  # the real cause propagates, not masked
    assert path.read_bytes() == old_bytes
    _assert_state_equal(old, load_checkpoint(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temporary file left behind


def test_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(Exception):
        save_checkpoint({"callback": lambda: None}, tmp_path / "ck.pt")
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"cannot be read .*corrupt, truncated"):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    good = save_checkpoint(_state(), tmp_path / "good.pt").read_bytes()
    path = tmp_path / "ck.pt"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError, match="not an aeon_trl checkpoint"):
        load_checkpoint(path)
    torch.save([torch.zeros(2)], path)  # not even a dict
    with pytest.raises(CheckpointError, match="not an aeon_trl checkpoint"):
        load_checkpoint(path)


def test_other_format_version(tmp_path):
    path = tmp_path / "ck.pt"
    torch.save({"format": FORMAT, "version": VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=f"format version {VERSION + 1}"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this calls open(marker, 'w'), i.e. creates the marker file: code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "ck.pt"
    torch.save({"format": FORMAT, "version": VERSION, "net": {}, "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled objects that are not loaded for safety"):
        load_checkpoint(path)
    assert not marker.exists()
    # The payload is live: an unsafe load does run it (so the check above is meaningful).
    torch.load(path, weights_only=False)["x"].close()  # "x" is the file object open() returned
    assert marker.exists()


def test_pickle_protocol_file_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "ck.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT, "x": _Payload(marker)}))  # legacy, non-zip pickle
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_trainer_refuses_a_checkpoint_from_another_env(tmp_path):
    path = tmp_path / "ck.pt"
    source = Trainer(Config.from_dict({**TINY, "env_id": "InvertedPendulum-v5"}))  # obs 4, action 1
    try:
        source.train()
        source.save(path)
    finally:
        source.close()
    target = Trainer(Config.from_dict({**TINY, "env_id": "Pendulum-v1"}))  # obs 3, action 1
    try:
        before = {k: v.clone() for k, v in target.net.state_dict().items()}
        with pytest.raises(CheckpointError, match=r"sizes \[4, 1\].*has \[3, 1\].*'InvertedPendulum-v5'"):
            target.load(path)
        assert all(torch.equal(before[k], v) for k, v in target.net.state_dict().items())
        assert target.frames == 0
    finally:
        target.close()


def test_trainer_refuses_a_checkpoint_with_another_model(tmp_path):
    path = tmp_path / "ck.pt"
    cfg = {**TINY, "env_id": "InvertedPendulum-v5"}
    source = Trainer(Config.from_dict(cfg))
    source.save(path)
    source.close()
    target = Trainer(Config.from_dict({**cfg, "hidden_sizes": [32, 32]}))
    try:
        with pytest.raises(CheckpointError, match="do not match this config's model"):
            target.load(path)
    finally:
        target.close()
