"""Cluster profiles: the SLURM resources of a job (``aeon_trl/launch/profiles/*.yaml``, also under ``slurm/profiles``
in the repository), validated before anything is submitted."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeon_trl._util import did_you_mean
from aeon_trl.config import ConfigError, load_mapping

DEFAULT_PROFILE = Path(__file__).parent / "profiles" / "local.yaml"


class ProfileError(ConfigError):
    """A cluster profile or cluster option that cannot be submitted, with the fix in the message."""


@dataclass
class Profile:
    """A cluster profile (``aeon_trl/launch/profiles/*.yaml``). Every field is required in the file (``null`` where the
    cluster does not use it), so a typo or a forgotten key is an error, not a silently different job."""
    partition: str
    account: str | None
    qos: str | None
    time: int  # minutes
    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    mem: str | None  # per node, sbatch syntax ("32G"); null = the partition's default
    constraint: str | None
    array_parallelism: int
    # optional
    tasks_per_node: int | None = None  # default: one process per GPU (1 without GPUs)
    signal_delay_s: int = 90  # USR2 this long before the time limit: must exceed one training iteration
    max_num_timeout: int = 3  # requeues after time limits/preemptions before the job gives up
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load ...)
    job_name: str = "aeon"

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "Profile":
        path = Path(path)
        if not path.exists():
            raise ProfileError(f"cluster profile {path} does not exist (profiles shipped: "
                               f"{', '.join(sorted(p.name for p in DEFAULT_PROFILE.parent.glob('*.yaml')))})")
        try:
            data = load_mapping(path, "cluster profile")
        except ConfigError as exc:
            raise ProfileError(str(exc)) from None
        return cls.from_dict(data, source=str(path), overrides=overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "profile",
                  overrides: dict[str, Any] | None = None) -> "Profile":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        for key in data:
            if key not in fields:
                raise ProfileError(f"{source}: unknown field '{key}'.{did_you_mean(key, fields)} "
                                   f"Fields: {', '.join(fields)}")
        missing = [k for k in required if k not in data]
        if missing:
            raise ProfileError(f"{source}: missing field(s) {', '.join(missing)}. Every profile sets all of "
                               f"{', '.join(required)} (null where the cluster does not use one).")
        merged = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        profile = cls(**merged)
        profile.validate(source)
        return profile

    def validate(self, source: str = "profile") -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ProfileError(f"{source}: {name}={getattr(self, name)!r} {rule}")
        need(isinstance(self.partition, str) and bool(self.partition), "partition", "must be a partition name")
        for name in ("time", "nodes", "cpus_per_task", "array_parallelism", "max_num_timeout"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= (0 if name == "max_num_timeout" else 1),
                 name, "must be a positive integer" + (" (minutes)" if name == "time" else ""))
        need(isinstance(self.gpus_per_node, int) and self.gpus_per_node >= 0, "gpus_per_node", "must be an integer >= 0")
        need(self.tasks_per_node is None or (isinstance(self.tasks_per_node, int) and self.tasks_per_node >= 1),
             "tasks_per_node", "must be null (one per GPU) or an integer >= 1")
        need(isinstance(self.signal_delay_s, int) and 0 < self.signal_delay_s < self.time * 60, "signal_delay_s",
             f"must be positive and below the time limit ({self.time * 60} s)")
        need(self.mem is None or (isinstance(self.mem, str) and self.mem[:-1].isdigit() and self.mem[-1] in "KMGT")
             or (isinstance(self.mem, str) and self.mem.isdigit()), "mem", "must be null or sbatch syntax like '32G'")
        for name in ("account", "qos", "constraint"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), str), name, "must be a string or null")

    # ---- derived ------------------------------------------------------------------------
    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node

    def executor_parameters(self) -> dict[str, Any]:
        """Keyword arguments of ``submitit.AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "name": self.job_name, "timeout_min": self.time, "nodes": self.nodes,
            "tasks_per_node": self.ntasks_per_node, "cpus_per_task": self.cpus_per_task,
            "slurm_partition": self.partition, "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        for key in ("account", "qos", "constraint", "mem"):
            if getattr(self, key) is not None:
                params[f"slurm_{key}"] = getattr(self, key)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params

    def check_partition(self) -> None:
        """An unknown partition is refused here, not by sbatch after the pickles are written."""
        if shutil.which("sinfo") is None:
            return
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise ProfileError(f"sinfo failed ({out.stderr.strip()}): is SLURM running? "
                               "(locally: slurm/local_cluster.sh start; or submit with --local)")
        known = sorted(set(out.stdout.split()))
        if self.partition not in known:
            raise ProfileError(f"unknown partition '{self.partition}'.{did_you_mean(self.partition, known)} "
                               f"This cluster has: {', '.join(known)}")
