"""Expert demonstrations for PPO (Vecerik et al. 2017; Rajeswaran et al. 2018, DAPG).

``DemonstrationBuffer`` keeps transitions in a torchrl ``ReplayBuffer`` (``LazyTensorStorage``, uniform
sampling) and mixes them into PPO minibatches with an ``is_demo`` flag; the loss
(``AdvancedClipPPOLoss``) turns demo rows into a behaviour-cloning term and keeps them out of the PPO terms.

Observations are stored RAW (before the run's observation normalization, which keeps moving during
training); the trainer normalizes demo rows with the current statistics just before the loss. Actions are
stored as the env executed them (clipped to its bounds), which is a point of the actor's unbounded Gaussian
action space. Files are a ``.pt`` of plain tensors (read with ``torch.load(weights_only=True)``) or a
TensorDict memmap folder; both are checked against the env before use.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer
from torchrl.envs import EnvBase

from aeon_trl.checkpoint import atomic_torch_save, first_line
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss

FORMAT = "aeon_trl.demonstrations"
VERSION = 1
META = "aeon_demonstrations.json"  # the metadata file of a memmap folder
IS_DEMO = AdvancedClipPPOLoss.default_keys.is_demo  # the loss's default key for the flag
RECORD_HINT = "record demonstrations for this env with: aeon-record-demos CHECKPOINT_OR_RUN_DIR --out PATH"


class DemonstrationError(ValueError):
    """A demonstration file or transition batch that does not fit the env (or cannot be read)."""


class DemonstrationBuffer:
    """Up to ``capacity`` expert transitions; ``env`` (and ``env_id``) fix what they must look like."""

    def __init__(self, capacity: int, env: EnvBase | None = None, env_id: str | None = None):
        if capacity < 1:
            raise ValueError(f"DemonstrationBuffer capacity must be >= 1, got {capacity}")
        self.capacity, self.env_id = capacity, env_id
        self.spec = _spec_of(env) if env is not None else None
        self._rb = ReplayBuffer(storage=LazyTensorStorage(capacity), sampler=RandomSampler())

    def __len__(self) -> int:
        return len(self._rb)

    @property
    def transitions(self) -> TensorDictBase:
        return self._rb[:]

    def add(self, transitions: TensorDictBase, source: str = "add()") -> None:
        """Append a batch ``[N]`` of transitions (keys: see ``REQUIRED``), checked against the env."""
        transitions = self._validate(transitions, source)
        if len(self) + transitions.shape[0] > self.capacity:
            raise DemonstrationError(
                f"{source}: {len(self) + transitions.shape[0]} transitions do not fit a DemonstrationBuffer of "
                f"capacity {self.capacity}; create it with a larger capacity")
        self._rb.extend(transitions)
        if self.spec is None:
            self.spec = _spec_from_data(transitions)

    # ---- files ------------------------------------------------------------------------------------
    def load_demonstrations_from_file(self, path: str | Path) -> "DemonstrationBuffer":
        """Add the transitions of a ``.pt`` file or memmap folder written by ``save`` / aeon-record-demos."""
        return self._add_file(path, *_read(Path(path)))

    @classmethod
    def from_file(cls, path: str | Path, env: EnvBase | None = None, env_id: str | None = None,
                  capacity: int | None = None) -> "DemonstrationBuffer":
        """A buffer holding the file's transitions (``capacity`` defaults to their number)."""
        meta, transitions = _read(Path(path))
        size = transitions.shape[0] if transitions.batch_dims else 1
        return cls(capacity or max(1, size), env=env, env_id=env_id)._add_file(path, meta, transitions)

    def _add_file(self, path, meta: dict, transitions: TensorDictBase) -> "DemonstrationBuffer":
        if self.env_id and meta.get("env_id") and meta["env_id"] != self.env_id:
            raise DemonstrationError(f"demonstration file {path} was recorded on {meta['env_id']}, this run trains "
                                     f"{self.env_id}; {RECORD_HINT}")
        self.add(transitions, source=f"demonstration file {path}")
        if self.env_id is None:
            self.env_id = meta.get("env_id") or None
        return self

    def save(self, path: str | Path) -> Path:
        """Write atomically: a ``.pt`` file when ``path`` ends in .pt, else a TensorDict memmap folder."""
        path = Path(path)
        meta = {"format": FORMAT, "version": VERSION, "env_id": self.env_id or ""}
        data = self.transitions.select(*REQUIRED).to_tensordict()
        if path.suffix == ".pt":
            return atomic_torch_save({**meta, "transitions": data.to_dict()}, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            data.memmap(tmp / "transitions")
            # memmap files are mapped, not parsed: a truncated one is only noticed against these sizes
            sizes = {str(f.relative_to(tmp)): f.stat().st_size for f in (tmp / "transitions").rglob("*") if f.is_file()}
            (tmp / META).write_text(json.dumps({**meta, "file_sizes": sizes}))
            old = path.with_name(f".{path.name}.old") if path.exists() else None
            if old is not None:
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    # ---- sampling ---------------------------------------------------------------------------------
    def sample(self, batch_size: int, agent_buffer: ReplayBuffer | None, demo_ratio: float = 0.3,
               is_demo_key: NestedKey = IS_DEMO, exact: bool = True) -> TensorDictBase:
        """``batch_size`` rows: ``batch_size - round(batch_size * demo_ratio)`` agent rows drawn from
        ``agent_buffer`` (e.g. ``AdvancedPPO.buffer``), then ``round(batch_size * demo_ratio)`` demo rows
        (``is_demo`` True, raw observations, agent-only keys zero-filled). Without ``agent_buffer``: ``batch_size``
        demo rows (behaviour-cloning pre-training). ``is_demo_key``: the loss's ``tensor_keys.is_demo``.

        A sampler without replacement returns fewer rows than asked at the end of its epoch: the rest are drawn
        from its next epoch. ``exact=False`` keeps the short draw instead (the demonstrations plugin does, so
        the minibatches of runs with ``demos=`` stay those they have been)."""
        if agent_buffer is None:
            return self._rb.sample(batch_size).set(is_demo_key, torch.ones(batch_size, dtype=torch.bool))
        n_demo = round(batch_size * demo_ratio)
        if not 0 < n_demo < batch_size:
            raise ValueError(f"batch_size={batch_size} with demo_ratio={demo_ratio} gives {n_demo} demo rows; "
                             "it must leave at least one demo row and one agent row")
        if len(self) == 0:
            raise DemonstrationError("the DemonstrationBuffer is empty: load a file or add() transitions first")
        if len(agent_buffer) == 0:
            raise DemonstrationError("the agent buffer is empty: train (or store() a full batch) before sampling")
        parts = [agent_buffer.sample(batch_size - n_demo)]
        while exact and sum(p.shape[0] for p in parts) < batch_size - n_demo:
            parts.append(agent_buffer.sample(batch_size - n_demo - sum(p.shape[0] for p in parts)))
        agent = parts[0] if len(parts) == 1 else torch.cat(parts)
        demo = self._rb.sample(n_demo).to(agent.device)
        rows = torch.zeros_like(agent[:1]).expand(n_demo).clone()
        rows.update(demo.select("observation", "action"))
        mixed = torch.cat([agent, rows])
        mixed.set(is_demo_key, torch.arange(mixed.shape[0], device=agent.device) >= agent.shape[0])
        return mixed

    # ---- validation -------------------------------------------------------------------------------
    def _validate(self, td: TensorDictBase, source: str) -> TensorDictBase:
        if not isinstance(td, TensorDictBase):
            raise DemonstrationError(f"{source}: expected a TensorDict of transitions, got {type(td).__name__}")
        missing = [k for k in REQUIRED if k not in td.keys(include_nested=True)]
        if missing:
            raise DemonstrationError(f"{source}: missing keys {missing}; a transition needs {list(REQUIRED)}")
        td = td.select(*REQUIRED)
        if td.batch_dims != 1 or td.shape[0] == 0:
            raise DemonstrationError(f"{source}: expected a non-empty flat batch [N] of transitions, "
                                     f"got batch size {list(td.shape)}")
        obs_shape, obs_dtype, act_shape, act_dtype, low, high = self.spec or _spec_from_data(td)
        expect = {"observation": (obs_shape, obs_dtype), ("next", "observation"): (obs_shape, obs_dtype),
                  "action": (act_shape, act_dtype), ("next", "reward"): ((1,), torch.float32),
                  ("next", "done"): ((1,), torch.bool), ("next", "terminated"): ((1,), torch.bool)}
        env = f"this env ({self.env_id})" if self.env_id else "the env"
        for key, (shape, dtype) in expect.items():
            value = td.get(key)
            if tuple(value.shape[1:]) != tuple(shape) or value.dtype != dtype:
                raise DemonstrationError(
                    f"{source}: {_name(key)} is {value.dtype} of shape {tuple(value.shape[1:])} per transition, "
                    f"{env} needs {dtype} of shape {tuple(shape)}: the demonstrations belong to another env or "
                    f"were written by another program; {RECORD_HINT}")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise DemonstrationError(f"{source}: {_name(key)} holds NaN/inf in "
                                         f"{int((~torch.isfinite(value)).any(-1).sum())} transition(s); "
                                         "the file is corrupt: record the demonstrations again")
        action = td.get("action")
        if low is not None and ((action < low - 1e-5).any() or (action > high + 1e-5).any()):
            raise DemonstrationError(f"{source}: actions outside the env's bounds [{low}, {high}] "
                                     f"(min {action.min().item():.3g}, max {action.max().item():.3g}); store the "
                                     "executed (clipped) actions")
        return td.to_tensordict()


REQUIRED = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"),
            ("next", "terminated"))


def _name(key) -> str:
    return "/".join(key) if isinstance(key, tuple) else key


def _spec_of(env: EnvBase):
    b = len(env.batch_size)
    obs, act = env.observation_spec["observation"], env.action_spec
    return (tuple(obs.shape[b:]), obs.dtype, tuple(act.shape[b:]), act.dtype,
            act.space.low.min().item(), act.space.high.max().item())


def _spec_from_data(td: TensorDictBase):
    """Without an env, the first add() fixes the shapes the rest must match."""
    obs, act = td.get("observation"), td.get("action")
    return tuple(obs.shape[1:]), obs.dtype, tuple(act.shape[1:]), act.dtype, None, None


def _read(path: Path) -> tuple[dict, TensorDictBase]:
    if not path.exists():
        raise DemonstrationError(f"demonstration file {path} does not exist; {RECORD_HINT}")
    meta, transitions = _read_memmap(path) if path.is_dir() else _read_pt(path)
    if meta.get("format") != FORMAT:
        raise DemonstrationError(f"{path} is not an aeon_trl demonstration file (no '{FORMAT}' marker); "
                                 f"{RECORD_HINT}")
    return meta, transitions


def _read_pt(path: Path) -> tuple[dict, TensorDictBase]:
    if path.is_file() and path.stat().st_size == 0:
        raise DemonstrationError(f"demonstration file {path} is empty (0 bytes): the process writing it was stopped "
                                 f"mid-write or the disk was full; {RECORD_HINT}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt/unsafe files
        raise DemonstrationError(
            f"demonstration file {path} cannot be read ({type(exc).__name__}: {first_line(exc)}): "
            f"it is truncated or corrupt, or holds pickled objects that are not loaded for safety; "
            f"{RECORD_HINT}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("transitions"), dict):
        return {}, TensorDict()
    flat = _flatten(payload["transitions"])
    lengths = {k: v.shape[0] if v.ndim else 0 for k, v in flat.items()}
    if len(set(lengths.values())) != 1:
        raise DemonstrationError(f"demonstration file {path} is inconsistent: its entries have different numbers "
                                 f"of transitions {lengths}; it is truncated or was edited; {RECORD_HINT}")
    n = next(iter(lengths.values()))
    td = TensorDict({}, batch_size=[n])
    for key, value in flat.items():
        td.set(key, value)
    return {k: v for k, v in payload.items() if k != "transitions"}, td


def _read_memmap(path: Path) -> tuple[dict, TensorDictBase]:
    try:
        meta = json.loads((path / META).read_text())
        for name, size in meta.get("file_sizes", {}).items():
            if (path / name).stat().st_size != size:
                raise OSError(f"{name} has {(path / name).stat().st_size} bytes, {size} were written")
        td = TensorDict.load_memmap(path / "transitions").to_tensordict()
    except Exception as exc:
        raise DemonstrationError(
            f"demonstration folder {path} cannot be read ({type(exc).__name__}: "
            f"{first_line(exc)}): it is truncated or not a folder written by "
            f"DemonstrationBuffer.save; {RECORD_HINT}") from None
    return meta, td


def _flatten(tree: dict, prefix: tuple = ()) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, prefix + (key,)))
        elif isinstance(value, torch.Tensor):
            out[prefix + (key,) if prefix else key] = value
    return out
