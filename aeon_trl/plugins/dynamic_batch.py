"""``DynamicBatch``: the rollout grows while episode lengths are stable (``optim.schedules.DynamicBatchSize``)."""
from __future__ import annotations

from tensordict import TensorDictBase

from aeon_trl.optim.schedules import DynamicBatchSize
from aeon_trl.plugins.base import Plugin


class DynamicBatch(Plugin):
    """Resizes the trainer's collector after each update; the replay storage is sized for the cap."""

    name = "dynamic_batch"
    varies_batch_size = True

    def __init__(self, sizer: DynamicBatchSize, cap: int):
        self.sizer, self.cap = sizer, cap

    @classmethod
    def from_config(cls, cfg) -> "DynamicBatch":
        sh = cfg.shaping
        return cls(DynamicBatchSize(cfg.train.steps_per_env, cfg.env.num_envs, sh.dynamic_batch_cap,
                                    sh.dynamic_batch_growth, sh.dynamic_batch_cv), sh.dynamic_batch_cap)

    def batch_capacity(self, frames_per_batch: int) -> int:
        return self.cap  # the storage holds the cap; the sampler draws from what the batch filled

    def after_update(self, batch: TensorDictBase) -> dict[str, float]:
        trainer = self.trainer
        if ("next", "step_count") not in batch.keys(include_nested=True):
            return {}  # a batch from AdvancedPPO.store(): no episode lengths, the batch size stays
        done = batch.get(("next", "done")).squeeze(-1)
        lengths = batch.get(("next", "step_count")).squeeze(-1)[done].tolist()
        steps = self.sizer.update(lengths)
        if trainer.metric_reducer is not None:  # data-parallel ranks must run the same number of minibatches
            steps = self.sizer.steps_per_env = round(trainer.metric_reducer(float(steps)))
        trainer.resize_batch(steps * trainer.cfg.env.num_envs)
        return {}

    def state_dict(self) -> dict:
        return {"frames_per_batch": self.trainer.frames_per_batch, "batch_sizer": self.sizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("batch_sizer"):
            self.sizer.load_state_dict(state["batch_sizer"])
            self.trainer.resize_batch(state["frames_per_batch"])
