"""Data-parallel PPO with ``torch.distributed``: one process per GPU (or per CPU task), each with its own
collector and env workers, gradients averaged across processes.

Who starts the processes does not matter here: SLURM through submitit (``tasks_per_node=N``) or a plain
``srun`` (the rank and rendezvous come from ``submitit.helpers.TorchDistributedEnvironment``, which reads the
SLURM task variables), ``torchrun --nproc_per_node=N`` (its ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``
variables), or nobody (one process, nothing initialised).

What each rank does differently, and why (the first two are ``aeon_trl.driver.rank_config``):
- seed ``seed + rank``: every rank collects different episodes (the point of data parallelism);
- ``total_timesteps / world_size`` frames: the config's budget is the global one, and the LR/entropy
  schedules read ``frames / total_timesteps`` per rank, so every rank sees the same progress;
- rank 0's initial parameters are broadcast, since the per-rank seeds initialise the networks differently;
- gradients are averaged (one flat all-reduce per minibatch, through ``Trainer.gradient_hooks``) before
  clipping and the optimizer step, so all ranks apply the same update and stay bitwise identical;
- rank 0 alone logs, checkpoints, evaluates and writes results.

KL-driven schedules (``kl_early_stop``, ``adaptive_lr``, ``adaptive_clip``, ``kl_coef``) read the KL averaged
over ranks (``Trainer.metric_reducer``), so all ranks run the same number of epochs and never wait alone in
the all-reduce. Not shared (yet): observation/reward normalisation statistics stay per rank (each rank
normalises its own stream; the parameters are still identical).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from aeon_trl._util import seed_everything


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None, timeout_s: float | None = None) -> DistributedContext:
    """Join the process group described by torchrun's or submitit's environment; one process: no group.

    ``backend``: NCCL when CUDA is available, else gloo. ``timeout_s`` (default ``AEON_DIST_TIMEOUT_S`` or
    600 s): how long a collective waits for a rank that died before raising instead of hanging.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(),
                                  int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun (or a user who exported them)
        rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    elif os.environ.get("SUBMITIT_FOLDER") or int(os.environ.get("SLURM_STEP_NUM_TASKS", 1)) > 1:
        # a submitit job (SLURM or its local executor), or the tasks of a plain `srun` (slurm/ sbatch template)
        import submitit
        if submitit.JobEnvironment().num_tasks == 1:
            return DistributedContext()
        # exports MASTER_ADDR (first node's name), MASTER_PORT (from the job id), RANK, WORLD_SIZE, LOCAL_RANK
        env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        rank, world, local = env.rank, env.world_size, env.local_rank
    else:
        return DistributedContext()
    if world == 1:
        return DistributedContext()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local)  # device "auto"/"cuda" in the trainer is then this rank's GPU
    timeout = timedelta(seconds=float(timeout_s or os.environ.get("AEON_DIST_TIMEOUT_S", 600)))
    dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
    return DistributedContext(rank, world, local, backend)


def reseed(seed: int, frames: int) -> None:
    """A resumed rank > 0 loaded rank 0's RNG state from the checkpoint: give it its own stream again."""
    seed_everything((seed * 1_000_003 + frames) % 2**63)


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src)


def allreduce_gradients(module: torch.nn.Module) -> None:
    """Average gradients over ranks in one flat all-reduce. A parameter without a gradient counts as zero
    on that rank, and every rank writes the average back, so all ranks hold the same gradients."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def mean_over_ranks(value: float) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def attach(trainer, ctx: DistributedContext) -> None:
    """Make ``trainer`` one replica of a data-parallel run (no-op on one process)."""
    if not ctx.enabled:
        return
    broadcast_parameters(trainer.net)
    trainer.gradient_hooks.append(allreduce_gradients)
    trainer.metric_reducer = mean_over_ranks  # the KL every rank's schedules read is the mean over ranks


def any_rank(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on any."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def wait_for_requeue(limit_s: float = 120.0) -> None:
    """Rank > 0 after a preemption signal: rank 0 checkpoints and runs ``scontrol requeue``, which ends every
    task of the job. If that has not happened after ``limit_s`` (rank 0 could not requeue), exit."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
    raise SystemExit(f"rank {dist.get_rank() if dist.is_initialized() else '?'}: preempted, but the job was not "
                     f"requeued within {limit_s:.0f} s")


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
