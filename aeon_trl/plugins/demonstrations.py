"""``Demonstrations``: expert transitions in PPO (DAPG, Rajeswaran et al. 2018; ``data/demonstrations.py``).

Behaviour-cloning pre-training before the first update (``on_start``), then demo rows mixed into every
minibatch with a loss weight ``demo_coef * demo_coef_decay ** iteration``.
"""
from __future__ import annotations

import warnings

from tensordict import TensorDictBase

from aeon_trl.data.demonstrations import DemonstrationBuffer
from aeon_trl.optim.schedules import GeometricDecay
from aeon_trl.plugins.base import Plugin


class Demonstrations(Plugin):
    """Pre-trains on the demonstrations, then mixes them into the minibatches with a decaying BC term."""

    name = "demonstrations"
    loss_keys = ("loss_demo",)

    def __init__(self, demos: DemonstrationBuffer, cfg):
        self.demos, self.cfg = demos, cfg  # cfg: the run's DemoConfig
        self.coef = GeometricDecay(cfg.demo_coef, cfg.demo_coef_decay)  # DAPG: lambda_0 * lambda_1^k

    @classmethod
    def from_config(cls, cfg, env) -> "Demonstrations":
        return cls(DemonstrationBuffer.from_file(cfg.demo.demos, env=env, env_id=cfg.env.env_id), cfg.demo)

    def register(self, trainer) -> None:
        super().register(trainer)
        if self.cfg.demo_obs_stats:
            trainer.obs_norm.fold_in(self.demos.transitions.get(trainer.obs_norm.key))
        if trainer.cfg.ppo.critic_warmup == 0:
            warnings.warn("demonstrations with critic_warmup=0: the first PPO updates see the initial policy's "
                          "log-probs and an untrained critic's advantages, which can undo the cloned policy; "
                          "critic_warmup >= 1 keeps it (benchmarks/RESULTS.md, demonstrations)",
                          UserWarning, stacklevel=3)

    def _set_coef(self) -> None:
        self.trainer.loss.demo_coef.fill_(self.coef.value(self.trainer.iteration))

    def on_start(self) -> None:
        """DAPG's behaviour-cloning initialization, after the first batch has folded the states of the initial
        policy into the obs statistics: cloned on demo states alone, the policy would meet a shifted
        normalization as soon as its own states arrive (benchmarks/NOTES.md, demonstrations). The first batch's
        log-probs are then those of the initial policy, so use ``critic_warmup`` >= 1 with demonstrations."""
        self._set_coef()
        trainer = self.trainer
        for _ in range(self.cfg.demo_pretrain_steps):
            trainer.optimize_minibatch(self.demos.sample(trainer.cfg.train.minibatch_size, None,
                                                         is_demo_key=trainer.loss.tensor_keys.is_demo))
        if self.cfg.demo_freeze_obs_stats:
            trainer.obs_norm.freeze()

    def on_batch(self, batch: TensorDictBase, progress: float) -> dict[str, float]:
        self._set_coef()  # DAPG: lambda_0 * lambda_1^k
        return {}

    def sample_minibatch(self) -> TensorDictBase:
        # exact=False: a short minibatch at the end of the sampler's epoch, as these runs have always drawn
        return self.demos.sample(self.trainer.cfg.train.minibatch_size, self.trainer.buffer, self.cfg.demo_ratio,
                                 is_demo_key=self.trainer.loss.tensor_keys.is_demo, exact=False)

    def load_state_dict(self, state: dict) -> None:
        if self.cfg.demo_freeze_obs_stats and self.trainer.iteration > 0:
            self.trainer.obs_norm.freeze()  # as on_start() left them
