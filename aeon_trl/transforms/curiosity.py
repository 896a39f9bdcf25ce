"""Curiosity as a reward transform (Pathak et al. 2017, ICM); its trainable bundle is ``modules.curiosity.CuriosityModule``.

``CuriosityTransform`` adds the intrinsic reward ``r_i = eta/2 * ||phi_hat(s') - phi(s')||^2 / std(r_i)``
(std: running, over every transition seen, so the scale does not drift as the forward model improves) and
writes ``reward = extrinsic + coef * r_i``, keeping both parts under their own keys. It works on a
collector batch ``[N, T]`` in one batched forward (what the trainer does, before GAE, so GAE sees the
combined reward while ``episode_reward`` stays extrinsic) and, like any TorchRL transform, inside an env.
Written by hand: TorchRL has no curiosity/ICM transform.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import Transform

from aeon_trl.optim.schedules import linear_schedule
from aeon_trl.transforms.reward import merge_moments

if TYPE_CHECKING:
    from aeon_trl.modules.curiosity import ICMNetworks


class CuriosityTransform(Transform):
    """Adds the ICM intrinsic reward to ``reward``; ``coef`` decays linearly from ``coef`` to ``coef_end``
    with ``set_progress``. Output keys: ``reward`` (combined), ``intrinsic_reward`` (normalized r_i),
    ``extrinsic_reward`` (the reward it was given)."""

    def __init__(self, icm: ICMNetworks, eta: float = 1.0, coef: float = 0.1, coef_end: float | None = None,
                 eps: float = 1e-8, observation_key: NestedKey = "observation", action_key: NestedKey = "action",
                 reward_key: NestedKey = "reward", intrinsic_key: NestedKey = "intrinsic_reward",
                 extrinsic_key: NestedKey = "extrinsic_reward"):
        super().__init__(in_keys=[observation_key, action_key, reward_key],
                         out_keys=[reward_key, intrinsic_key, extrinsic_key])
        if eta <= 0 or coef < 0 or (coef_end is not None and coef_end < 0):
            raise ValueError(f"CuriosityTransform needs eta > 0 and coef, coef_end >= 0; got eta={eta}, "
                             f"coef={coef}, coef_end={coef_end}")
        self.icm, self.eta, self.eps = icm, float(eta), eps
        self.observation_key, self.action_key, self.reward_key = observation_key, action_key, reward_key
        self.intrinsic_key, self.extrinsic_key = intrinsic_key, extrinsic_key
        self.coef_start, self.coef_end = float(coef), float(coef if coef_end is None else coef_end)
        self.register_buffer("coef", torch.tensor(float(coef)))
        # Running moments of the raw (un-normalized) intrinsic reward.
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.full((), 1e-4, dtype=torch.float64))

    def set_progress(self, progress: float) -> float:
        """Moves the coefficient along its linear decay (progress 0 -> ``coef``, 1 -> ``coef_end``)."""
        self.coef.fill_(linear_schedule(self.coef_start, self.coef_end, progress))
        return self.coef.item()

    @torch.no_grad()
    def intrinsic_reward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor,
                         update_stats: bool = True) -> torch.Tensor:
        """Normalized ``eta/2 * ||phi_hat(s') - phi(s')||^2``, shape ``[..., 1]``; updates the running std first,
        so the first batch is already on the right scale."""
        raw = self.eta * self.icm.prediction_error(obs, action, next_obs)
        if update_stats:
            merge_moments(self.mean, self.var, self.count, raw)
        return raw / (self.var + self.eps).sqrt().to(raw.dtype)

    def _combine(self, obs, action, next_obs, reward, out: TensorDictBase, prefix: tuple = ()) -> TensorDictBase:
        intrinsic = self.intrinsic_reward(obs, action, next_obs).reshape(reward.shape)
        out.set(prefix + _tuple(self.extrinsic_key), reward)
        out.set(prefix + _tuple(self.intrinsic_key), intrinsic)
        out.set(prefix + _tuple(self.reward_key), reward + self.coef.to(reward.dtype) * intrinsic)
        return out

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A batch of transitions (e.g. the collector's ``[N, T]`` output): rewards under ``"next"``."""
        nxt = ("next",)
        return self._combine(tensordict.get(self.observation_key), tensordict.get(self.action_key),
                             tensordict.get(nxt + _tuple(self.observation_key)),
                             tensordict.get(nxt + _tuple(self.reward_key)), tensordict, prefix=nxt)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._combine(tensordict.get(self.observation_key), tensordict.get(self.action_key),
                             next_tensordict.get(self.observation_key), next_tensordict.get(self.reward_key),
                             next_tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        """Inside an env, the two reward parts are reported as observations (one reward key stays the reward)."""
        reward_spec = self.parent.full_reward_spec[self.reward_key]
        for key in (self.intrinsic_key, self.extrinsic_key):
            observation_spec[key] = Unbounded(reward_spec.shape, dtype=reward_spec.dtype, device=reward_spec.device)
        return observation_spec


def _tuple(key: NestedKey) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def __getattr__(name: str):
    # ``CuriosityModule`` (an nn.Module: networks + transform + loss) lives in aeon_trl.modules.curiosity now;
    # the old import path keeps working. Lazy: that module imports this one.
    if name == "CuriosityModule":
        from aeon_trl.modules.curiosity import CuriosityModule
        return CuriosityModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
