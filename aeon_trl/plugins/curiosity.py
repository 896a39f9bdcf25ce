"""``CuriosityPlugin``: the ICM intrinsic reward on each collected batch, before GAE (Pathak et al. 2017)."""
from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase

from aeon_trl.modules.curiosity import CuriosityModule
from aeon_trl.plugins.base import Plugin
from aeon_trl.transforms.curiosity import CuriosityTransform


class CuriosityPlugin(Plugin):
    """Rewards each batch with the ICM's current models, then trains them on it with its own optimizer."""

    name = "curiosity"

    def __init__(self, module: CuriosityModule, lr: float):
        self.module = module
        self.optimizer = torch.optim.Adam(module.loss.parameters(), lr=lr)

    @classmethod
    def from_config(cls, obs_dim: int, act_dim: int, c, device: torch.device) -> "CuriosityPlugin":
        return cls(CuriosityModule.from_config(obs_dim, act_dim, c, device), c.curiosity_lr)

    @property
    def transform(self) -> CuriosityTransform:
        return self.module.transform

    def on_batch(self, batch: TensorDictBase, progress: float) -> dict[str, float]:
        """``("next", "reward") += coef * r_i`` with the current models (before they learn from the batch:
        novelty is measured against what they knew), then one pass of minibatch updates over it."""
        transform, keys = self.module.transform, self.module.loss.tensor_keys
        coef = transform.set_progress(progress)
        transform(batch)
        flat = batch.reshape(-1).select(keys.observation, keys.action, keys.next_observation)
        sums, steps = {"loss_forward": 0.0, "loss_inverse": 0.0}, 0
        minibatch_size = self.trainer.cfg.train.minibatch_size
        for idx in torch.randperm(flat.numel(), device=flat.device).split(minibatch_size):
            for k, v in self.module.training_step(flat[idx], self.optimizer).items():
                sums[k] += v
            steps += 1
        nxt = batch.get("next")
        return {"curiosity_coef": coef, "reward_intrinsic": nxt.get(transform.intrinsic_key).mean().item(),
                "reward_extrinsic": nxt.get(transform.extrinsic_key).mean().item(),
                **{k: v / steps for k, v in sums.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"transform": self.module.transform.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.module.transform.load_state_dict(state["transform"])
            self.optimizer.load_state_dict(state["optimizer"])
