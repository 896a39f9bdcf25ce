"""Running observation normalization: TorchRL's ``VecNormV2`` with a variance that cannot go negative, and
per-key tensor arithmetic instead of TensorDict arithmetic on the hot path.

``VecNormV2`` keeps E[x] and E[x^2] and takes ``sqrt(E[x^2] - E[x]^2)``; in float32 the difference rounds
below zero for a near-constant feature (seen on Pendulum-v1 within the first steps), and torchrl 0.14.1 then
returns NaN observations. Keeping E[x^2] >= E[x]^2 after every update makes the difference exactly >= 0.

Speed: ``VecNormV2`` updates and applies its statistics through TensorDict ``lerp_``/``pow``/``div``, about
1.5 ms of Python per env step for one observation key (64 envs, HalfCheetah), a fifth of the collector's
step. With ``decay=1`` and ``reduce_batch_dims`` (how ``make_env`` builds it) the same formulas on each
key's tensors cost a tenth of that; other settings take ``VecNormV2``'s own path.

``ObsNorm.of(env)`` is the one handle on an env stack's normalization for everything outside the env: the
policy's view of a raw observation (demonstrations, the facade, recording), freezing, folding extra
observations into the statistics, checkpoint state, and the frozen copy a distilled policy carries.
"""
from __future__ import annotations

import copy
import math

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import ClipTransform, EnvBase, VecNormV2

from aeon_trl import _compat
from aeon_trl.normalize import standardize
from aeon_trl.transforms.reward import ReturnScaling

OBS_NORM, REWARD_NORM = "obs_norm", "reward_norm"  # the sections of ObsNorm.state_dict()


def vecnorm_scale(loc: torch.Tensor, var: torch.Tensor, eps: float) -> torch.Tensor:
    """``VecNormV2``'s scale from its moments (decay 1): ``sqrt(E[x^2] - E[x]^2)``, at least ``eps``."""
    return (var - loc.pow(2)).sqrt().clamp_min(eps)


class SafeVecNorm(_compat.VecNormHooks):
    """``VecNormV2`` whose stored second moment never drops below the squared mean."""

    def _fast(self) -> bool:
        return self.decay == 1.0 and self.reduce_batch_dims and \
            list(self.out_keys[:len(self.in_keys)]) == list(self.in_keys)

    def update_statistics(self, data: TensorDictBase) -> None:
        if self.frozen:
            return
        if not (self._fast() and data.ndim):
            super().update_statistics(data)
            keys = data.keys(True, True)
            locs, variances, _ = _compat.vecnorm_moments(self)
        else:  # VecNormV2's reduce_batch_dims update with decay 1: a running mean over every batch element
            locs, variances, counts = _compat.vecnorm_moments(self)
            dims, n = tuple(range(data.ndim)), data.batch_size.numel()
            keys = list(data.keys(True, True))
            for key in keys:
                x = data.get(key)
                x = x if x.dtype.is_floating_point else x.to(torch.get_default_dtype())
                count = counts.get(key)
                count += n
                weight = n / count
                loc, var = locs.get(key), variances.get(key)
                loc.lerp_(x.mean(dim=dims).to(loc.device), weight)
                var.lerp_(x.pow(2).mean(dim=dims).to(var.device), weight)
        for key in keys:
            var = variances.get(key)
            torch.maximum(var, locs.get(key).pow(2), out=var)

    def normalize(self, data: TensorDictBase) -> TensorDictBase:
        if not self._fast():
            return super().normalize(data)
        out = data.empty()
        locs, variances, _ = _compat.vecnorm_moments(self)
        for key in data.keys(True, True):
            x = data.get(key)
            loc, var = locs.get(key).to(x.device), variances.get(key).to(x.device)
            out.set(key, standardize(x, loc, vecnorm_scale(loc, var, self.eps)))
        return out


class ObsNorm:
    """An env stack's observation normalization, found once: its ``VecNormV2`` (``SafeVecNorm``), the clip after
    it, and the reward's ``ReturnScaling`` (checkpointed together, as ``state_dict()``). With ``norm_obs`` off
    (no VecNorm) every method is the identity / a no-op."""

    def __init__(self, env: EnvBase, vecnorm: VecNormV2 | None = None, clip: float | None = None,
                 reward: ReturnScaling | None = None):
        self.env, self.vecnorm, self.clip, self.reward = env, vecnorm, clip, reward
        self.key = vecnorm.in_keys[0] if vecnorm is not None else "observation"

    @classmethod
    def of(cls, env: EnvBase) -> "ObsNorm":
        """The handle on ``env``'s transforms (as ``make_env`` stacks them: VecNorm, then a ``ClipTransform``
        on its key)."""
        vecnorm = clip = reward = None
        for t in getattr(env, "transform", ()):
            if isinstance(t, VecNormV2) and vecnorm is None:
                vecnorm = t
            elif isinstance(t, ClipTransform) and vecnorm is not None and clip is None \
                    and list(t.in_keys) == list(vecnorm.in_keys[:1]) and t.high is not None:
                clip = float(t.high)
            elif isinstance(t, ReturnScaling) and reward is None:
                reward = t
        return cls(env, vecnorm, clip, reward)

    @property
    def initialized(self) -> bool:
        """Whether the statistics exist (``VecNormV2`` creates them on the first data)."""
        return self.vecnorm is not None and bool(self.vecnorm.initialized)

    def loc_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vecnorm.loc[self.key], self.vecnorm.scale[self.key]

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations as the policy sees them: the current statistics, then the clip (identity before
        the statistics exist or without normalization)."""
        if not self.initialized:
            return obs
        loc, scale = self.loc_scale()
        return standardize(obs, loc.to(obs), scale.to(obs), self.clip)

    def freeze(self) -> None:
        """Stop updating the observation statistics (evaluation; a policy cloned from demonstrations is a
        function of the normalized observation: statistics that drift with its own early states change it)."""
        if self.vecnorm is not None:
            self.vecnorm.freeze()

    def fold_in(self, obs: torch.Tensor) -> None:
        """Add observations that did not come through the env (e.g. demonstrations) to the running statistics."""
        if self.vecnorm is None:
            return
        if not self.vecnorm.initialized:
            self._create_statistics()
        _compat.vecnorm_update(self.vecnorm, TensorDict({self.key: obs.to(torch.float32)}, batch_size=obs.shape[:1]))

    def state_dict(self) -> dict:
        """The live statistics of the obs and reward normalizers (``{OBS_NORM: ..., REWARD_NORM: ...}``)."""
        state = {}
        if self.vecnorm is not None:
            state[OBS_NORM] = self.vecnorm.state_dict()
        if self.reward is not None:
            state[REWARD_NORM] = self.reward.state_dict()
        return state

    def load_state_dict(self, state: dict, freeze: bool = False) -> None:
        """Copy statistics saved by ``state_dict``; ``freeze`` for evaluation, where the statistics must stay
        those the policy was trained with."""
        # VecNormV2 adopts the given tensors as its statistics and updates them in place: copy, so the source
        # (a checkpoint, the training env's live statistics) stays as it is
        if self.vecnorm is not None:
            if OBS_NORM in state:
                if not self.vecnorm.initialized:
                    self._create_statistics()
                self.vecnorm.load_state_dict(copy.deepcopy(state[OBS_NORM]))
            if freeze:
                self.vecnorm.freeze()
        if self.reward is not None:
            if REWARD_NORM in state:
                self.reward.load_state_dict(copy.deepcopy(state[REWARD_NORM]))
            if freeze:
                self.reward.freeze()

    def export(self):
        """The normalization as a frozen ``nn.Module`` (``FrozenObsNorm``) for a policy that acts on raw
        observations (distillation, deployment); the identity before statistics exist."""
        from aeon_trl.modules.student import FrozenObsNorm
        if self.initialized:
            loc, scale = self.loc_scale()
            return FrozenObsNorm(loc, scale, self.clip)
        spec = self.env.observation_spec[self.key]
        return FrozenObsNorm.identity(math.prod(spec.shape[len(self.env.batch_size):]))

    def _create_statistics(self) -> None:
        """VecNormV2 creates its buffers lazily on the first data; run one reset to create them."""
        frozen = self.vecnorm.frozen
        self.vecnorm.unfreeze()
        self.env.reset()
        if frozen:
            self.vecnorm.freeze()
