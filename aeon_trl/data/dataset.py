"""``ExperienceDataset``: the seed's dataset of PPO rows, a thin layer over one flat TensorDict.

The keys are those ``AdvancedClipPPOLoss`` reads (its ``tensor_keys``: pass a loss whose keys were remapped
with ``set_keys``), so a row or minibatch goes straight into the loss (or into any torchrl replay buffer via
``dataset.data``).
"""
from __future__ import annotations

from typing import Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from torch.utils.data import Dataset

from aeon_trl.objectives.ppo import AdvancedClipPPOLoss


class ExperienceDataset(Dataset):
    """``ExperienceDataset(obs, acts, advantages, returns, values, log_probs)``: ``N`` rows.

    ``values`` is ``[N]`` or ``[N, 1]`` (one critic) or ``[N, K]`` (a critic ensemble: its mean is the
    value, its heads are what value clipping needs); ``returns`` are the value targets.
    """

    def __init__(self, obs, acts, advantages, returns, values, log_probs, loss: AdvancedClipPPOLoss | None = None):
        obs, acts = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(acts, dtype=torch.float32)
        n = obs.shape[0]
        column = lambda x, name: _rows(x, n, name).reshape(n, 1)  # noqa: E731
        heads = _rows(values, n, "values").reshape(n, -1)
        keys = loss.tensor_keys if loss is not None else AdvancedClipPPOLoss.default_keys()
        observation = loss.actor_network.in_keys[0] if loss is not None else "observation"
        self.data = TensorDict(batch_size=[n])
        for key, value in ((observation, obs), (keys.action, acts.reshape(n, -1)),
                           (keys.advantage, column(advantages, "advantages")),
                           (keys.value_target, column(returns, "returns")),
                           (keys.value, heads.mean(-1, keepdim=True)), (keys.value_ensemble, heads),
                           (keys.sample_log_prob, _rows(log_probs, n, "log_probs").reshape(n))):
            self.data.set(key, value)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index) -> TensorDictBase:
        return self.data[index]

    def minibatches(self, batch_size: int, shuffle: bool = True,
                    generator: torch.Generator | None = None) -> Iterator[TensorDictBase]:
        """One pass over the rows in minibatches of ``batch_size`` (the last one may be smaller)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            yield self.data[order[start:start + batch_size]]


def _rows(x, n: int, name: str) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.shape[:1] != (n,):
        raise ValueError(f"ExperienceDataset: '{name}' has {x.shape[0] if x.ndim else 'no'} rows, obs has {n}; "
                         "every argument needs one row per transition")
    return x
