"""Launching: the preemption-safe training job, torch.distributed set-up, SLURM submission and summaries.

``TrainJob(cfg, run_dir)`` is one PPO run in one run folder; the same object runs in-process
(``TrainJob(cfg, "runs/x")()``), under ``torchrun``, or on SLURM through submitit (``aeon_trl.launch.submit``,
with a cluster profile of ``aeon_trl/launch/profiles``); ``aeon_trl.launch.collect`` summarises the run folders.
"""
from aeon_trl.launch.job import TrainJob

__all__ = ["TrainJob"]
