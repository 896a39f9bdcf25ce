"""Atomic checkpoint writes, safe loads, and the config check before resuming.

A checkpoint is one ``torch.save`` file of tensors, numbers, strings and dicts only, so it loads with
``torch.load(weights_only=True)`` and never runs pickled code. It is written to a temporary file in
the same folder, fsynced, then ``os.replace``d over the old one: a process killed mid-write leaves
the previous checkpoint intact. The run folder's JSON files are written the same way.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import torch

from aeon_trl.config import ConfigError

FORMAT = "aeon_trl.checkpoint"
VERSION = 1
CHECKPOINT = "checkpoint.pt"  # a run folder's checkpoint


# Config keys that may differ between a checkpoint and the run resuming it: they change no parameter update.
BOOKKEEPING_KEYS = frozenset({"progress", "logger", "run_dir", "eval_episodes", "eval_every_episodes", "video",
                              "checkpoint_every", "device", "torch_threads", "update_threads", "compile",
                              "env_threads"})
# What a resumed run (aeon-train --resume, a requeued SLURM job) may change besides bookkeeping: a longer budget
# continues the run (the schedules stretch to the new horizon); evaluations during training update nothing.
CONTINUE_KEYS = BOOKKEEPING_KEYS | {"total_timesteps", "eval_every"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, foreign or incompatible."""


class ConfigMismatchError(CheckpointError, ConfigError):
    """The run folder's checkpoint was written by a run with another config (a config error: exit 2)."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    return atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


def atomic_torch_save(payload: Any, path: str | Path) -> Path:
    """``torch.save`` of ``payload``, atomically (checkpoints, demonstration files)."""
    return atomic_write(path, lambda f: torch.save(payload, f))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """``write(file)`` into a temporary file next to ``path``, fsync, ``os.replace``: readers see the old
    file or the new one, never a partial one (checkpoints, the tuner's state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


TMP_SUFFIX = ".tmp"


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files ``atomic_write`` leaves in ``folder`` when its process is killed mid-write
    (``.checkpoint.pt.<random>.tmp``, ``.results.json.<random>.tmp``, ...); returns them. Call it when a run
    starts in its folder: one process per run folder, so no live write is removed."""
    stale = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON, atomically (results.json, history.json)."""
    return atomic_write(path, lambda f: f.write(json.dumps(data, indent=2).encode()))


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file a user names: a run folder means its ``checkpoint.pt``, a file itself."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name when it has none
    (``EOFError()`` from ``torch.load`` of an empty file)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state in a checkpoint file (or in a run folder's ``checkpoint.pt``), checked to be an aeon_trl one."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the path of a file written by "
                              "AdvancedPPO.save or aeon-train (runs/<name>/checkpoint.pt), or its run folder")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the process writing it was stopped mid-write "
                              "or the disk was full; use an earlier checkpoint or retrain")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt/unsafe files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {first_line(exc)}). "
            "It is corrupt, truncated, or holds pickled objects that are not loaded for safety; "
            "use an earlier checkpoint or retrain.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an aeon_trl checkpoint (no '{FORMAT}' marker): it was written "
                              "by another program; load it with that program instead")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {state.get('version')}, this aeon_trl "
                              f"reads version {VERSION}")
    return state


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       ignore: frozenset[str] = BOOKKEEPING_KEYS) -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (saved, current)}`` for every leaf that differs and is not in ``ignore``."""
    diffs = {}
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section, {}), current.get(section, {})
        for key in sorted(set(a) | set(b)):
            if key not in ignore and a.get(key) != b.get(key):
                diffs[f"{section}.{key}"] = (a.get(key), b.get(key))
    return diffs


def check_resumable(path: str | Path, saved: Mapping[str, Any], current: Mapping[str, Any],
                    ignore: frozenset[str] = BOOKKEEPING_KEYS) -> None:
    """Refuse to continue the checkpoint at ``path`` (config ``saved``) with a config that trains differently:
    loading it would silently restore the old optimizer and schedules under the new numbers."""
    diffs = config_differences(saved, current, ignore)
    if diffs:
        listing = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in diffs.items())
        raise ConfigMismatchError(
            f"{path} was written by a run with a different config ({listing}). Resume with the checkpoint's "
            "config, or train in a new run folder.")
