"""Curiosity as a reward transform (Pathak et al. 2017, ICM), and ``CuriosityModule``, its trainable bundle.

``CuriosityTransform`` adds the intrinsic reward ``r_i = eta/2 * ||phi_hat(s') - phi(s')||^2 / std(r_i)``
(std: running, over every transition seen, so the scale does not drift as the forward model improves) and
writes ``reward = extrinsic + coef * r_i``, keeping both parts under their own keys. It works on a
collector batch ``[N, T]`` in one batched forward (what the trainer does, before GAE, so GAE sees the
combined reward while ``episode_reward`` stays extrinsic) and, like any TorchRL transform, inside an env.
Written by hand: TorchRL has no curiosity/ICM transform.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import Transform

from aeon_trl.modules.curiosity import ICMNetworks
from aeon_trl.objectives.curiosity import CuriosityLoss
from aeon_trl.optim.schedules import linear_schedule
from aeon_trl.transforms.reward import merge_moments


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


class CuriosityModule:
    """The ICM with its transform, loss and optimizer: what the trainer and a hand-written loop use.

        icm = CuriosityModule(obs_dim, act_dim)
        r_int = icm.get_intrinsic_reward(state, action, next_state)   # tensor [B] (or scalar)
        icm.update(state, action, next_state)                          # one gradient step
    """

    def __init__(self, obs_dim: int, act_dim: int, feature_dim: int = 32, eta: float = 1.0, beta: float = 0.2,
                 lr: float = 1e-3, coef: float = 0.1, coef_end: float | None = None,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.transform = CuriosityTransform(ICMNetworks(obs_dim, act_dim, feature_dim), eta=eta, coef=coef,
                                            coef_end=coef_end).to(self.device)
        self.loss = CuriosityLoss(self.transform.icm, beta=beta)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=lr)

    @classmethod
    def from_config(cls, obs_dim: int, act_dim: int, c, device: torch.device | str = "cpu") -> "CuriosityModule":
        """From a ``CuriosityConfig`` (``curiosity_coef_end < 0``: no decay)."""
        return cls(obs_dim, act_dim, feature_dim=c.curiosity_feature_dim, eta=c.curiosity_eta, beta=c.curiosity_beta,
                   lr=c.curiosity_lr, coef=c.curiosity_coef,
                   coef_end=c.curiosity_coef_end if c.curiosity_coef_end >= 0 else None, device=device)

    def _transitions(self, state, action, next_state) -> TensorDict:
        as_t = lambda x: torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                                         dtype=torch.float32, device=self.device)
        obs, act, nxt = as_t(state), as_t(action), as_t(next_state)
        obs_dim, act_dim = self.transform.icm.obs_dim, self.transform.icm.act_dim
        obs, nxt, act = obs.reshape(-1, obs_dim), nxt.reshape(-1, obs_dim), act.reshape(-1, act_dim)
        return TensorDict({"observation": obs, "action": act, ("next", "observation"): nxt}, batch_size=obs.shape[:1])

    def get_intrinsic_reward(self, state, action, next_state) -> torch.Tensor:
        """Normalized intrinsic reward of one transition (0-d tensor) or a batch (``[B]``)."""
        td = self._transitions(state, action, next_state)
        reward = self.transform.intrinsic_reward(td["observation"], td["action"], td["next", "observation"])
        return reward.reshape(()) if np.ndim(state) == 1 else reward.squeeze(-1)

    def update(self, state, action, next_state) -> dict[str, float]:
        """One gradient step of the forward + inverse losses on the given transitions."""
        return self._step(self._transitions(state, action, next_state))

    def _step(self, td: TensorDictBase) -> dict[str, float]:
        out = self.loss(td)
        self.optimizer.zero_grad(set_to_none=True)
        (out["loss_forward"] + out["loss_inverse"]).backward()
        self.optimizer.step()
        return {k: out[k].item() for k in ("loss_forward", "loss_inverse")}

    def process(self, batch: TensorDictBase, progress: float, batch_size: int) -> dict[str, float]:
        """The trainer's step on a collected batch: reward it with the current models (before they learn from
        it: novelty is measured against what they knew), then one pass of minibatch updates over it."""
        coef = self.transform.set_progress(progress)
        self.transform(batch)
        flat = batch.reshape(-1).select(self.loss.tensor_keys.observation, self.loss.tensor_keys.action,
                                        self.loss.tensor_keys.next_observation)
        sums, steps = {"loss_forward": 0.0, "loss_inverse": 0.0}, 0
        for idx in torch.randperm(flat.numel(), device=flat.device).split(batch_size):
            for k, v in self._step(flat[idx]).items():
                sums[k] += v
            steps += 1
        nxt = batch.get("next")
        return {"curiosity_coef": coef, "reward_intrinsic": nxt.get(self.transform.intrinsic_key).mean().item(),
                "reward_extrinsic": nxt.get(self.transform.extrinsic_key).mean().item(),
                **{k: v / steps for k, v in sums.items()}}

    def to(self, device: torch.device | str) -> "CuriosityModule":
        self.device = torch.device(device)
        self.transform.to(self.device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"transform": self.transform.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.transform.load_state_dict(state["transform"])
        self.optimizer.load_state_dict(state["optimizer"])
