"""Launching: the preemption-safe training job and the torch.distributed set-up.

``TrainJob(cfg, run_dir)`` is one PPO run in one run folder; the same object runs in-process
(``TrainJob(cfg, "runs/x")()``), under ``torchrun``, or on SLURM through submitit (``slurm/submit.py``).
"""
from aeon_trl.launch.job import ConfigMismatchError, TrainJob

__all__ = ["ConfigMismatchError", "TrainJob"]
