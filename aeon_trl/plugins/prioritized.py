"""``PrioritizedMinibatches``: PPO's minibatches drawn by priority (Schaul et al. 2016; ``data/prioritized.py``)."""
from __future__ import annotations

from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer

from aeon_trl.data.prioritized import PPOPriority
from aeon_trl.plugins.base import Plugin


class PrioritizedMinibatches(Plugin):
    """Owns the prioritized buffer: fills it with the batch's priorities, updates them after each minibatch."""

    name = "prioritized"

    def __init__(self, priority: PPOPriority):
        self.priority = priority

    @classmethod
    def from_config(cls, cfg) -> "PrioritizedMinibatches":
        r = cfg.replay
        return cls(PPOPriority(r.priority_key, r.priority_alpha, r.priority_beta, r.priority_beta_end, cfg.ppo.gamma))

    def make_buffer(self, capacity: int, minibatch_size: int) -> ReplayBuffer:
        return self.priority.make_buffer(capacity, minibatch_size, self.trainer.device)

    def fill_buffer(self, flat: TensorDictBase, progress: float) -> bool:
        # every key, not only the loss's: the td_error priority reads ("next", ...) after each minibatch step
        self.priority.fill(self.trainer.buffer, flat, self.trainer.loss, progress)
        return True

    def on_minibatch(self, minibatch: TensorDictBase, out: TensorDictBase) -> None:
        self.priority.update(self.trainer.buffer, minibatch, self.trainer.loss)
