"""``Plugin``: one optional feature of a PPO run, as a set of hooks the trainer calls at fixed points of its loop.

The trainer composes a list of plugins built from the config (``build_plugins``) and never asks which ones it
has, as TorchRL's ``Trainer`` calls its registered hooks. One iteration, in the order the hooks run:

    update(batch):  [iteration 0: on_start()]  ->  lr anneal  ->  on_batch(batch, progress)   (before GAE)
                    ->  critic + GAE  ->  fill_buffer(flat, progress) or the uniform buffer
                    ->  epochs x [sample_minibatch() or buffer.sample()  ->  loss  ->  optimizer step
                                  ->  on_minibatch(mb, out)]
    step(batch):    update  ->  after_update(batch)   (batch size, curriculum)  ->  counters, one history row

A hook that returns metrics returns a dict merged into the iteration's row. Every hook is optional; the base
class does nothing. ``state_dict`` / ``load_state_dict`` hold what the plugin needs to resume exactly; the
trainer's checkpoint keeps them under ``"plugins"``, one entry per plugin ``name``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tensordict import TensorDictBase

if TYPE_CHECKING:  # plugins are handed the trainer; they import nothing of it
    from torchrl.data import ReplayBuffer

    from aeon_trl.trainer import Trainer


class Plugin:
    """A feature of the run: hooks into the trainer's loop plus its own checkpoint state."""

    name: str = "plugin"  # its key in the checkpoint's "plugins" and in error messages
    loss_keys: tuple[str, ...] = ()  # loss terms it adds to the loss's output (summed with the PPO terms)
    varies_batch_size: bool = False  # the collector's batch size changes between batches

    def register(self, trainer: "Trainer") -> None:
        """Called once by the trainer, after its env, networks, loss and optimizer exist (before its buffer)."""
        self.trainer = trainer

    def batch_capacity(self, frames_per_batch: int) -> int:
        """The most frames one batch may hold (the replay storage is sized for it)."""
        return frames_per_batch

    def make_buffer(self, capacity: int, minibatch_size: int) -> "ReplayBuffer | None":
        """A replay buffer for the on-policy batch, or None for the trainer's uniform one."""
        return None

    def on_start(self) -> None:
        """Once, before the first update of a run (the first batch is collected, its states are in the obs
        statistics)."""

    def on_batch(self, batch: TensorDictBase, progress: float) -> dict[str, float]:
        """On the collected batch ``[num_envs, T]`` before the critic and GAE see it (e.g. reward shaping)."""
        return {}

    def fill_buffer(self, flat: TensorDictBase, progress: float) -> bool:
        """Put the flat batch (with advantages) into the trainer's buffer; False leaves it to the trainer."""
        return False

    def sample_minibatch(self) -> TensorDictBase | None:
        """The next minibatch, or None for ``trainer.buffer.sample()``."""
        return None

    def on_minibatch(self, minibatch: TensorDictBase, out: TensorDictBase) -> None:
        """After the optimizer step on ``minibatch`` (``out``: the loss's output)."""

    def after_update(self, batch: TensorDictBase) -> dict[str, float]:
        """After the update on ``batch`` and the frame count: adapt what the next batch looks like."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Called after the trainer's own state (counters included) is loaded."""
