"""``AdvancedClipPPOLoss``: TorchRL's ``ClipPPOLoss`` plus a critic ensemble and an adaptive KL penalty.

What ``ClipPPOLoss`` already does is used as is: the clipped surrogate (Schulman et al. 2017), value
clipping ``old + clamp(value - old, -clip, clip)`` with the max of clipped/unclipped losses, the
entropy bonus, advantage normalization. This subclass overrides only what differs:
- ``loss_critic``: the loss over *every* head of the critic ensemble (each clipped around its own
  old value), not just the mean;
- ``forward``: adds ``loss_kl = kl_coef * KL`` (Schulman et al. 2017 sec. 4, adaptive-beta
  penalty) with the low-variance, non-negative k3 estimator ``(r - 1) - log r`` of KL(old || new),
  and reports that estimator as ``kl_approx``.
- ``reduce_loss``: every per-sample term (objective, critic, entropy, KL) is reduced with the
  importance-sampling weights of prioritized minibatches when the input carries them
  (``"priority_weight"``, written by torchrl's replay buffers with a ``PrioritizedSampler``). torchrl 0.14's
  ``LossModule._reduce_loss`` takes ``weights`` but ``ClipPPOLoss.forward`` never passes any; its weighted mean is
  ``sum(w * l) / sum(w)``;
- demonstrations (DAPG, Rajeswaran et al. 2018): rows flagged ``is_demo`` are split off before the
  PPO terms, which see agent rows only, and give ``loss_demo = demo_coef * mean(-log pi(a|s))``.
- a plain-tensor path: with the Gaussian actor and ensemble critic of ``make_ppo_operators`` (and the
  constructor's defaults otherwise), ``forward`` computes the same terms on the networks' tensors directly,
  without ``ClipPPOLoss.forward``'s per-call TensorDict/distribution plumbing (about two thirds of a small
  minibatch's step on CPU; ``tests/test_objectives_ppo.py`` checks both paths give the same numbers and
  gradients). Any other actor, critic or option, and prioritized (weighted) minibatches, take TorchRL's path.
Every key it reads is declared in ``_AcceptedKeys`` (remap with ``set_keys``); ``in_keys``/``out_keys`` list
what it reads and writes, and ``minibatch_keys`` what a stored on-policy row needs for an update.
``clip_epsilon``, ``entropy_coeff``, ``kl_coef`` and ``demo_coef`` are buffers, so schedules change them
between updates in place (``loss.clip_epsilon.fill_(0.15)``).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import IndependentNormal
from torchrl.objectives.utils import distance_loss

from aeon_trl import _compat


class AdvancedClipPPOLoss(_compat.ClipPPOLossHooks):
    """Clipped PPO with critic-ensemble loss, adaptive-KL penalty and schedulable coefficients."""

    @dataclass
    class _AcceptedKeys(_compat.ClipPPOLossHooks.AcceptedKeys):
        """ClipPPOLoss's keys plus: the critic ensemble's per-head values (read for value clipping) and their
        std (a diagnostic the critic writes), the importance weights of prioritized minibatches (optional
        input), and the flag of demonstration rows (optional input)."""

        value_ensemble: NestedKey = "state_value_ensemble"
        value_std: NestedKey = "state_value_std"
        priority_weight: NestedKey = "priority_weight"
        is_demo: NestedKey = "is_demo"

    default_keys = _AcceptedKeys
    # written besides ClipPPOLoss's outputs (the demo terms only when the input has demonstration rows)
    extra_out_keys = ("loss_kl", "explained_variance", "loss_demo", "demo_nll")

    def __init__(self, actor_network, critic_network, *, clip_epsilon: float = 0.2,
                 clip_value: float | None = 0.2, entropy_coeff: float = 0.0, critic_coeff: float = 0.5,
                 kl_coef: float = 0.0, demo_coef: float = 0.0, normalize_advantage: bool = True,
                 loss_critic_type: str = "l2", **kwargs):
        super().__init__(
            actor_network, critic_network, clip_epsilon=clip_epsilon, clip_value=clip_value or None,
            entropy_coeff=entropy_coeff, critic_coeff=critic_coeff, normalize_advantage=normalize_advantage,
            loss_critic_type=loss_critic_type, **kwargs)
        self.register_buffer("kl_coef", torch.tensor(float(kl_coef)))
        self.register_buffer("demo_coef", torch.tensor(float(demo_coef)))
        self._kl_sink: list | None = None  # open only during _ppo_forward, see there
        # The plain-tensor path holds for the options written out above; any other ClipPPOLoss option (a
        # reduction, asymmetric clipping, a delayed actor, functional parameters...) keeps TorchRL's path.
        defaults_only = set(kwargs) == {"functional"} and kwargs["functional"] is False \
            and isinstance(clip_epsilon, (int, float)) and isinstance(entropy_coeff, (int, float))
        self.networks = plain_networks(actor_network, critic_network, self.tensor_keys) if defaults_only else None
        self._compiled_terms = None  # compile() sets it

    @classmethod
    def from_config(cls, actor_network, critic_network, cfg) -> "AdvancedClipPPOLoss":
        """The loss a run's ``Config`` describes: the PPO coefficients of ``cfg.ppo``, and the demo term weighted
        by ``cfg.demo.demo_coef`` in every run (it is nonzero only on rows flagged ``is_demo``: the
        demonstrations plugin's minibatches, which also decay it, or a ``DemonstrationBuffer.sample`` batch
        given to ``Trainer.optimize_minibatch`` / ``AdvancedPPO.update_from_batch``)."""
        p = cfg.ppo
        return cls(actor_network, critic_network, clip_epsilon=p.clip_epsilon, clip_value=p.clip_value,
                   entropy_coeff=p.entropy_coef, critic_coeff=p.critic_coef, kl_coef=p.kl_coef,
                   demo_coef=cfg.demo.demo_coef, normalize_advantage=p.normalize_advantage, functional=False)

    # ---- keys -----------------------------------------------------------------------------------------
    def declare_in_keys(self) -> None:
        keys = self.tensor_keys
        read = [keys.advantage, keys.value_target] + ([keys.value_ensemble] if self.clip_value else [])
        self.in_keys = list(dict.fromkeys([*self.in_keys, *read]))

    @property
    def minibatch_keys(self) -> list[NestedKey]:
        """The keys an on-policy row must keep for an update (a uniform replay buffer stores only these): the
        networks' inputs, the action and its behaviour log-prob, advantage, value target, and the old values."""
        keys = self.tensor_keys
        return list(dict.fromkeys([*self.actor_network.in_keys, *self.critic_network.in_keys, keys.action,
                                   keys.sample_log_prob, keys.advantage, keys.value_target, keys.value,
                                   keys.value_ensemble]))

    # ---- terms ----------------------------------------------------------------------------------------
    def log_weight(self, tensordict, adv_shape):
        log_weight, dist, kl_approx, log_is_weight = super().log_weight(tensordict, adv_shape)
        if self._kl_sink is not None:
            self._kl_sink.append(torch.expm1(log_weight) - log_weight)  # k3 of KL(old || new), differentiable
        return log_weight, dist, kl_approx, log_is_weight

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        is_demo = tensordict.get(self.tensor_keys.is_demo, None)
        if is_demo is None:
            return self._ppo_forward(tensordict)
        is_demo = is_demo.reshape(tensordict.shape).bool()
        td_out = self._ppo_forward(tensordict[~is_demo]) if not is_demo.all() else TensorDict()
        nll = self.demo_nll(tensordict[is_demo])
        td_out.set("loss_demo", self.demo_coef * nll)
        td_out.set("demo_nll", nll.detach())
        return td_out

    def _ppo_forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.networks is not None and self.tensor_keys.priority_weight not in tensordict.keys():
            return self._tensor_forward(tensordict)
        # The penalty needs the differentiable log-ratio, which ClipPPOLoss.forward computes (in log_weight)
        # and keeps to itself: log_weight hands it over through a sink open for this call only; it leaves in
        # the output TensorDict, as loss_kl and kl_approx.
        self._kl_sink = sink = []
        try:
            td_out = super().forward(tensordict)
        finally:
            self._kl_sink = None
        (kl,) = sink
        td_out.set("kl_approx", kl.detach().mean())
        td_out.set("loss_kl", self.reduce_loss(self.kl_coef * kl, tensordict).squeeze(-1))
        return td_out

    def _tensor_forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``_ppo_forward``'s output from the rows' tensors (``tensor_terms``, compiled after ``compile()``)."""
        keys = self.tensor_keys
        old_heads = self._old_heads(tensordict) if self.clip_value is not None else None
        terms = self._terms(tensordict.get(self.networks.observation_key), tensordict.get(keys.action),
                            tensordict.get(keys.sample_log_prob), tensordict.get(keys.advantage),
                            tensordict.get(keys.value_target), old_heads)
        return TensorDict(terms)

    def tensor_terms(self, obs, action, old_log_prob, advantage, value_target, old_heads) -> dict:
        """ClipPPOLoss.forward's terms plus the KL penalty, on plain tensors, in its order and with its
        reductions (written out because ClipPPOLoss has no tensor-level entry point); ``old_heads`` None
        without value clipping."""
        networks = self.networks
        if self.normalize_advantage and advantage.numel() > 1:
            advantage = _compat.standardize(advantage)
        loc, scale = networks.policy(obs)
        dist = torch.distributions.Normal(loc, scale, validate_args=False)  # IndependentNormal, per dimension
        log_prob = dist.log_prob(action).sum(-1)
        log_weight = (log_prob - old_log_prob.reshape(log_prob.shape)).unsqueeze(-1)
        kl = torch.expm1(log_weight) - log_weight  # k3 of KL(old || new), here as in log_weight (same bits)
        with torch.no_grad():
            lw = log_weight.squeeze(-1)
            ess = (2 * lw.logsumexp(0) - (2 * lw).logsumexp(0)).exp() / log_weight.shape[0]
        log_weight_clip = log_weight.clamp((-self.clip_epsilon).log1p(), self.clip_epsilon.log1p())
        gain = torch.stack([log_weight.exp() * advantage, log_weight_clip.exp() * advantage], -1).min(-1).values
        entropy = dist.entropy().sum(-1)
        out = {"loss_objective": -gain.mean(),
               "clip_fraction": (log_weight_clip != log_weight).to(log_weight.dtype).mean(),
               "kl_approx": kl.detach().mean(), "entropy": entropy.detach().mean(),
               "loss_entropy": (-self.entropy_coeff * entropy).mean()}
        heads = networks.value(obs)[networks.ensemble_index]
        loss_critic, value_clip_fraction, explained_variance = self._critic_terms(heads, value_target, old_heads)
        out["loss_critic"] = loss_critic.mean()
        if value_clip_fraction is not None:
            out["value_clip_fraction"] = value_clip_fraction
        with torch.no_grad():
            ratio = log_weight.exp()
            out.update(explained_variance=explained_variance, ESS=ess, max_ratio=ratio.max(),
                       mean_ratio=ratio.mean())
        out["loss_kl"] = (self.kl_coef * kl).mean()
        return out

    @property
    def _terms(self):
        return self._compiled_terms or self.tensor_terms

    def compile(self, **compile_kwargs) -> bool:
        """``torch.compile`` the plain-tensor terms (forward and backward: one fused graph each instead of ~100
        op dispatches; ~1/3 off a minibatch's forward + backward on CPU, after ~20 s of compiling on the first
        call). Without the plain-tensor path there is nothing to compile: returns False. A failure to compile
        (no C++ compiler, an unsupported op) warns once, at the first call, and the eager terms take over."""
        if self.networks is None:
            return False
        compiled = torch.compile(self.tensor_terms, **compile_kwargs)

        def terms_or_eager(*args):
            try:
                return compiled(*args)
            except Exception as err:  # noqa: BLE001: any backend failure falls back, with its message
                warnings.warn(f"torch.compile of the PPO loss failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); training continues with the "
                              "eager loss (set compile=false to skip the attempt)", RuntimeWarning, stacklevel=2)
                self._compiled_terms = None
                return self.tensor_terms(*args)

        self._compiled_terms = terms_or_eager
        return True

    def demo_nll(self, demos: TensorDictBase) -> torch.Tensor:
        """Mean ``-log pi(a|s)`` of the current policy on demonstration rows (0 when there are none)."""
        if demos.numel() == 0:
            return torch.zeros((), device=self.demo_coef.device)
        return -self.current_log_prob(demos).mean()

    def reduce_loss(self, loss: torch.Tensor, tensordict: TensorDictBase | None = None, *,
                     weights: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if weights is None and tensordict is not None and loss.ndim:
            weights = tensordict.get(self.tensor_keys.priority_weight, None)
            if weights is not None:
                weights = weights.reshape(weights.shape[:1] + (1,) * (loss.ndim - 1)).expand_as(loss).to(loss)
        return super().reduce_loss(loss, tensordict, weights=weights, **kwargs)

    def critic_only(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The critic's loss alone and unclipped (``critic_warmup``: fitting a fresh critic to a pre-trained
        policy before PPO moves it; the value clip would hold the critic near its random initial values)."""
        loss, _, explained_variance = self._critic_loss(tensordict, clip=False)
        return TensorDict({"loss_critic": self.reduce_loss(loss, tensordict).squeeze(-1),
                           "explained_variance": explained_variance})

    def loss_critic(self, tensordict: TensorDictBase):
        """Loss of every ensemble head against the value target, each clipped around its own old value."""
        return self._critic_loss(tensordict, clip=self.clip_value is not None)

    def _critic_loss(self, tensordict: TensorDictBase, clip: bool):
        old_heads = self._old_heads(tensordict) if clip else None
        params = self.critic_network_params.to_module(self.critic_network, preserve_module_state=False) \
            if self.functional else contextlib.nullcontext()
        with params:
            heads = self.critic_network(tensordict.select(*self.critic_network.in_keys)).get(
                self.tensor_keys.value_ensemble)
        return self._critic_terms(heads, tensordict.get(self.tensor_keys.value_target), old_heads)

    def _old_heads(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The collected per-head values the value clip is centred on."""
        old_heads = tensordict.get(self.tensor_keys.value_ensemble, None)
        if old_heads is None:
            raise KeyError(f"value clipping needs the collected '{self.tensor_keys.value_ensemble}': run the critic "
                           "on the batch before the loss (the trainer does this when it computes GAE)")
        return old_heads

    def _critic_terms(self, heads: torch.Tensor, target: torch.Tensor, old_heads: torch.Tensor | None):
        """``(critic_coeff * per-row loss, value clip fraction, explained variance)`` of the heads ``[B, K]``,
        each clipped around its old value unless ``old_heads`` is None."""
        target_heads = target.expand_as(heads)
        loss = distance_loss(target_heads, heads, loss_function=self.loss_critic_type)
        clip_fraction = None
        if old_heads is not None:
            loss, clip_fraction = _compat.clip_value_loss(
                old_heads, heads, self.clip_value, target_heads, loss, self.loss_critic_type)
        loss = loss.mean(-1, keepdim=True)
        with torch.no_grad():
            value = heads.mean(-1, keepdim=True)
            explained_variance = 1 - (target - value).var(correction=0) / (target.var(correction=0) + 1e-8)
        return self.critic_coeff * loss, clip_fraction, explained_variance


@dataclass
class PlainNetworks:
    """The networks behind the loss's operators: ``policy(obs) -> (loc, scale)``, ``value(obs) -> (...)``."""

    policy: nn.Module
    value: nn.Module
    observation_key: NestedKey
    ensemble_index: int  # of the per-head values among the critic's outputs


def plain_networks(actor, critic, keys) -> PlainNetworks | None:
    """The networks of operators shaped as ``make_ppo_operators`` builds them (a one-input network writing
    ``loc``/``scale`` into an ``IndependentNormal``, a one-input critic on the same key); None for any other."""
    if not (isinstance(actor, ProbabilisticTensorDictSequential) and len(actor.module) == 2):
        return None
    params, dist = actor.module
    gaussian = isinstance(params, TensorDictModule) and params.out_keys == ["loc", "scale"] \
        and len(params.in_keys) == 1 and dist.in_keys == ["loc", "scale"] \
        and dist.distribution_class is IndependentNormal and set(dist.distribution_kwargs) <= {"validate_args"}
    if not (gaussian and isinstance(critic, TensorDictModule) and critic.in_keys == params.in_keys
            and keys.value_ensemble in critic.out_keys):
        return None
    return PlainNetworks(params.module, critic.module, params.in_keys[0], critic.out_keys.index(keys.value_ensemble))
