"""Prioritized minibatches over PPO's on-policy batch (Schaul et al. 2016, "Prioritized Experience Replay").

The batch goes into a torchrl ``TensorDictReplayBuffer`` with torchrl's ``PrioritizedSampler``
(``P(i) = (p_i + eps)^alpha / sum_j (p_j + eps)^alpha``, weights ``(N P(i))^-beta / max_j (N P(j))^-beta``
written as ``"priority_weight"``, ``update_tensordict_priority``). What torchrl has no notion of, and lives
here, is what a PPO row's priority is:

- ``advantage``: ``|A_i|``, the size of the row's policy-gradient signal. After a minibatch step, a row whose
  ratio left the clip range on the side its advantage pushes it to has no clipped-surrogate gradient left
  for this batch, so its priority drops to 0 (the sampler's ``eps`` keeps it drawable);
- ``td_error``: the critic's one-step ``|r + gamma (1 - terminated) V(s') - V(s)|``, recomputed with the
  current critic after each minibatch step.

``beta`` is annealed linearly from ``priority_beta`` to ``priority_beta_end`` over training, as in the paper.
"""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from aeon_trl import _compat
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.optim.schedules import LinearSchedule

PRIORITY = "priority"
PRIORITY_EPS = 1e-6  # added to every priority by the sampler: no row becomes undrawable


class _FlatTree:
    """Flat-tensor stand-in for one of torchrl's compiled segment trees (same indexing and queries)."""

    def __init__(self, size: int, identity: float):
        self.values = torch.full((size,), identity, dtype=torch.float64)

    def __getitem__(self, index):
        return self.values[torch.as_tensor(index, dtype=torch.long)]

    def __setitem__(self, index, value):
        self.values[torch.as_tensor(index, dtype=torch.long)] = torch.as_tensor(value, dtype=torch.float64)


class _FlatSumTree(_FlatTree):
    def __init__(self, size: int):
        super().__init__(size, 0.0)

    def query(self, left: int, right: int) -> float:
        return self.values[left:right].sum().item()

    def scan_lower_bound(self, mass) -> torch.Tensor:
        """The first index whose prefix sum reaches ``mass`` (torchrl's ``ScanLowerBound``)."""
        return torch.searchsorted(self.values.cumsum(0), torch.as_tensor(mass, dtype=torch.float64))


class _FlatMinTree(_FlatTree):
    def __init__(self, size: int):
        super().__init__(size, float("inf"))

    def query(self, left: int, right: int) -> float:
        return self.values[left:right].min().item()


class PPOPrioritizedSampler(_compat.PrioritizedSamplerHooks):
    """torchrl's ``PrioritizedSampler``, runnable without torchrl's C++ extension.

    Written because torchrl 0.14.1's compiled sum/min segment trees do not load against torch 2.13 (undefined
    symbol in ``torchrl._torchrl``), which leaves the stock sampler unusable on CPU; flat tensors (O(N) per
    query, exact, cheap for an on-policy batch of a few thousand rows) stand in for the trees then, and every
    other line of the sampler is torchrl's."""

    def init_trees(self) -> None:
        capacity, device = _compat.sampler_capacity_and_device(self)
        if _compat.segment_tree_extension_loaded() or (device and device.type == "cuda"):
            return super().init_trees()
        _compat.install_segment_trees(self, _FlatSumTree(capacity), _FlatMinTree(capacity))


class PPOPriority:
    """Builds the prioritized buffer, and computes/updates the priorities of PPO rows."""

    def __init__(self, kind: str, alpha: float, beta: float, beta_end: float, gamma: float):
        if kind not in ("advantage", "td_error"):
            raise ValueError(f"priority_key must be 'advantage' or 'td_error', got {kind!r}")
        self.kind, self.alpha, self.beta, self.beta_end, self.gamma = kind, alpha, beta, beta_end, gamma
        self.beta_schedule = LinearSchedule(beta, beta_end)

    def make_buffer(self, capacity: int, batch_size: int, device=None) -> TensorDictReplayBuffer:
        sampler = PPOPrioritizedSampler(capacity, alpha=self.alpha, beta=self.beta, eps=PRIORITY_EPS)
        storage = LazyTensorStorage(capacity) if device is None else LazyTensorStorage(capacity, device=device)
        return TensorDictReplayBuffer(storage=storage, sampler=sampler,
                                      priority_key=PRIORITY, batch_size=batch_size)

    def beta_at(self, progress: float) -> float:
        return self.beta_schedule.value(progress)

    @torch.no_grad()
    def __call__(self, td: TensorDictBase, loss: AdvancedClipPPOLoss) -> torch.Tensor:
        """Per-row priority ``[B]`` under the loss's current actor/critic."""
        keys = loss.tensor_keys
        if self.kind == "advantage":
            adv = td.get(keys.advantage).reshape(td.shape)
            log_prob = loss.current_log_prob(td)
            ratio = (log_prob - td.get(keys.sample_log_prob).reshape(td.shape)).exp()
            eps = loss.clip_epsilon.item()
            spent = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
            return adv.abs().masked_fill(spent, 0.0)
        value = loss.critic_network(td.select(*loss.critic_network.in_keys)).get(keys.value).reshape(td.shape)
        nxt = td.get("next")
        next_value = loss.critic_network(nxt.select(*loss.critic_network.in_keys)).get(keys.value).reshape(td.shape)
        reward = nxt.get(keys.reward).reshape(td.shape)
        terminated = nxt.get(keys.terminated).reshape(td.shape).float()
        return (reward + self.gamma * (1 - terminated) * next_value - value).abs()

    def fill(self, buffer: TensorDictReplayBuffer, batch: TensorDictBase, loss: AdvancedClipPPOLoss,
             progress: float) -> None:
        """Replace the buffer's content with ``batch`` (flat), prioritized; anneal beta."""
        buffer.empty()
        buffer.sampler.beta = self.beta_at(progress)
        batch.set(PRIORITY, self(batch, loss))
        buffer.extend(batch)

    def update(self, buffer: TensorDictReplayBuffer, minibatch: TensorDictBase,
               loss: AdvancedClipPPOLoss) -> None:
        """New priorities for the minibatch's agent rows (demo rows have no slot in the buffer)."""
        is_demo = minibatch.get(loss.tensor_keys.is_demo, None)
        rows = minibatch if is_demo is None else minibatch[~is_demo.reshape(minibatch.shape).bool()]
        rows.set(PRIORITY, self(rows, loss))
        buffer.update_tensordict_priority(rows)
