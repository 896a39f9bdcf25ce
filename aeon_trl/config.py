"""One typed, validated configuration for everything: env, model, PPO, optimizer, training.

The tree is a set of dataclasses; every leaf name is unique across sections, so a user can write
either nested keys (``{"ppo": {"clip_epsilon": 0.3}}``, ``ppo.clip_epsilon=0.3``) or flat ones
(``clip_epsilon=0.3``), and the seed's dict keys (``clip_range``, ``entropy_coef``, ``kl_target``,
``adaptive_lr``, ``gamma``, ``gae_lambda``, ``batch_size``, ``epochs``, ``lr``, ``wd``) are accepted
as they are. Command-line overrides are parsed by OmegaConf's dotlist parser, never by hand.

``minibatch_size`` is the minibatch (TorchRL's and CleanRL's ``batch_size`` is the whole on-policy batch, here
``num_envs * steps_per_env``); the seed's ``batch_size`` key is still read as the minibatch, with a
``DeprecationWarning``. ``curiosity.enabled`` switches the ICM on; the flat ``curiosity=true`` is its short form.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf

from aeon_trl._util import did_you_mean


class ConfigError(ValueError):
    """A configuration key or value that cannot be used, with the fix in the message."""


@dataclass
class EnvConfig:
    # A gymnasium id, or gymnasium's "module:EnvId" (imports `module`, which registers EnvId)
    env_id: str = "HalfCheetah-v5"
    num_envs: int = 128
    # "auto" picks envpool when it ships the id, else "parallel": env_threads worker processes (torchrl
    # ParallelEnv, shared memory), each stepping num_envs/env_threads envs in-process (a gymnasium SyncVectorEnv);
    # one worker steps them in this process ("vector" is its earlier name). "gymnasium": gymnasium's
    # AsyncVectorEnv in one GymEnv (one process per env); "serial": torchrl SerialEnv of single GymEnvs in this
    # process (slower; its checkpoints hold the simulators' state, for bitwise resume).
    env_backend: str = "auto"
    # envpool threads, or the parallel backend's worker processes; 0 = the CPUs this process may use (SLURM allocation)
    env_threads: int = 0
    # Modules imported before the env is made, in this process and in env workers: ones that register envs
    # (`env.imports=[my_pkg.envs]`).
    env_imports: list = field(default_factory=list)
    # Keyword arguments of the env's constructor, passed to gymnasium.make (`env.kwargs.ctrl_cost_weight=0.2`).
    env_kwargs: dict = field(default_factory=dict)
    norm_obs: bool = True
    norm_reward: bool = True
    obs_clip: float = 10.0
    max_episode_steps: int = 0  # 0 = the env's own limit


@dataclass
class ModelConfig:
    hidden_sizes: list = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    # Off by default: they cost return on Hopper-v5 (benchmarks/RESULTS.md, ablation).
    layer_norm: bool = False
    gating: bool = False
    num_critics: int = 1  # >1 turns on the critic ensemble (its std is the value uncertainty)
    shared_trunk: bool = False
    log_std_init: float = 0.0
    log_std_min: float = -5.0
    log_std_max: float = 2.0


@dataclass
class PPOConfig:
    clip_epsilon: float = 0.2
    clip_value: float = 0.2  # 0 disables value clipping
    entropy_coef: float = 0.0
    entropy_coef_end: float = -1.0  # < 0: no annealing (stays at entropy_coef)
    critic_coef: float = 0.5
    kl_coef: float = 0.0  # initial adaptive-KL penalty beta; 0 disables the penalty
    kl_target: float = 0.02  # drives the KL penalty, adaptive clip, adaptive LR and early stop
    kl_early_stop: bool = True
    adaptive_clip: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantage: bool = True
    # Iterations at the start in which only the critic learns (unclipped): a pre-trained policy (demos) is then
    # not pushed around by the advantages of a random critic.
    critic_warmup: int = 0


@dataclass
class OptimConfig:
    lr: float = 3e-4
    wd: float = 0.0
    optimizer: str = "adam"
    adam_eps: float = 1e-5
    lookahead: bool = False
    lookahead_k: int = 5
    lookahead_alpha: float = 0.5
    max_grad_norm: float = 0.5
    anneal_lr: bool = True
    adaptive_lr: bool = True  # KL-driven lr: large on-policy batches need a larger lr than Adam's 3e-4
    min_lr: float = 1e-5
    max_lr: float = 1e-2


@dataclass
class TrainConfig:
    total_timesteps: int = 1_000_000
    steps_per_env: int = 32  # rollout length T; frames per batch = num_envs * steps_per_env
    minibatch_size: int = 1024  # rows per gradient step (the seed's `batch_size`)
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    torch_threads: int = 1
    # torch threads for the update only, while the simulator's threads idle; 0 = torch_threads. 2 on the 2-core
    # host: updates ~10-20% faster when quiet, but many times slower while other jobs hold the cores (OpenMP waits)
    update_threads: int = 0
    # torch.compile the loss's forward and backward and take Adam's fused kernel (~1/3 off each minibatch step on
    # CPU, after ~20 s of compiling; the numbers differ from eager in the last bits); falls back to the eager loss,
    # with a warning, where compiling fails
    compile: bool = False
    eval_episodes: int = 10  # episodes of the final deterministic evaluation; 0 = no evaluation at all
    # iterations between deterministic evaluations during training (eval_return); -1 = auto, at least 20 per run;
    # 0 = the final evaluation only
    eval_every: int = -1
    # episodes of each evaluation during training: one (the same start every time), so that the default run's 20
    # cost <= 5% of its steps/s (benchmarks/RESULTS.md: two came close to 5%)
    eval_every_episodes: int = 1
    # film one deterministic episode after the final evaluation into the run folder as eval.mp4 (needs an
    # OpenGL renderer: docs/evaluation.md)
    video: bool = True
    checkpoint_every: int = 50  # iterations between checkpoints; 0 = only at the end
    logger: str = "csv"
    run_dir: str = "runs"
    progress: bool = True

    @property
    def batch_size(self) -> int:
        """Deprecated: the minibatch is ``minibatch_size``."""
        warnings.warn("TrainConfig.batch_size is deprecated: use minibatch_size", DeprecationWarning, stacklevel=2)
        return self.minibatch_size


@dataclass
class CuriosityConfig:
    """ICM intrinsic reward (Pathak et al. 2017); ``curiosity.enabled=true`` (or ``curiosity=true``) switches it on."""

    enabled: bool = False
    curiosity_coef: float = 0.1  # weight of the (std-normalized) intrinsic reward in the combined reward
    curiosity_coef_end: float = -1.0  # < 0: no decay; else linear decay to this value over the run
    curiosity_eta: float = 1.0  # the paper's scale eta of r_i = eta/2 * ||phi_hat(s') - phi(s')||^2
    curiosity_beta: float = 0.2  # forward vs inverse loss weight (the paper's beta)
    curiosity_lr: float = 1e-3
    curiosity_feature_dim: int = 32


@dataclass
class ReplayConfig:
    """Prioritized minibatches over the on-policy batch (Schaul et al. 2016, applied to PPO's epochs)."""
    prioritized: bool = False
    priority_key: str = "advantage"  # advantage: |GAE advantage|; td_error: the critic's one-step |TD error|
    priority_alpha: float = 0.6  # P(i) = p_i^alpha / sum_j p_j^alpha; 0 = uniform
    priority_beta: float = 0.4  # importance-sampling exponent at the start of training ...
    priority_beta_end: float = 1.0  # ... annealed linearly to this at total_timesteps


@dataclass
class DemoConfig:
    """Expert demonstrations mixed into the minibatches with a decaying behaviour-cloning term (DAPG)."""
    demos: str = ""  # demonstration file (.pt) or memmap folder written by aeon-record-demos; "" = off
    demo_ratio: float = 0.3  # fraction of every minibatch drawn from the demonstrations
    # More pre-training steps shrink the cloned policy's std until PPO's KL-adaptive lr stalls
    # (benchmarks/NOTES.md, demonstrations).
    demo_coef: float = 1.0  # weight of the demo log-likelihood term at iteration 0 ...
    demo_coef_decay: float = 0.98  # ... multiplied by this every iteration (DAPG's lambda_1)
    demo_pretrain_steps: int = 2000  # behaviour-cloning steps on demo-only minibatches before the first update
    # Fold the demonstrations' states into the running obs statistics at the start, so the states the policy
    # is cloned on are not normalized (and clipped) by statistics of the first random-policy batch alone.
    demo_obs_stats: bool = True
    # Freeze the obs statistics once the policy is cloned: its own early (falling) states would shift them and
    # with them the cloned policy's actions (benchmarks/NOTES.md, demonstrations).
    demo_freeze_obs_stats: bool = True


@dataclass
class ShapingConfig:
    """Automated shaping of the training problem: a curriculum of env difficulties and the batch size."""
    # "speed": reward for running forward at a target speed, raised level by level (transforms/curriculum.py)
    curriculum: str = "none"
    # Target speeds (m/s). Few levels: each level costs a window of episodes before the next promotion
    # (benchmarks/NOTES.md, curriculum).
    curriculum_levels: list = field(default_factory=lambda: [1.5, 3.0])
    curriculum_start: int = 0  # first level; -1 = the hardest (training on the final task directly)
    curriculum_threshold: float = 0.8  # promote when this fraction of the last window of episodes succeeds
    curriculum_demote: float = 0.0  # demote when the success rate falls below this; 0 never demotes
    curriculum_window: int = 64  # episodes per success-rate window
    curriculum_margin: float = 0.5  # m/s below the target where the speed reward has fallen to 0
    dynamic_batch: bool = False  # grow steps_per_env when episode lengths are stable
    dynamic_batch_cap: int = 16384  # the most frames per batch it grows to
    dynamic_batch_growth: float = 1.5
    dynamic_batch_cv: float = 0.1  # grow when std(episode length) < cv * mean(episode length)


PRESETS = Path(__file__).parent / "presets"


def preset_path(env_id: str) -> Path | None:
    """The shipped per-env preset (``aeon_trl/presets/<env_id>.yaml``), if there is one."""
    path = PRESETS / f"{env_id}.yaml"
    return path if path.is_file() else None


SECTIONS = {"env": EnvConfig, "model": ModelConfig, "ppo": PPOConfig, "optim": OptimConfig, "train": TrainConfig,
            "curiosity": CuriosityConfig, "replay": ReplayConfig, "demo": DemoConfig, "shaping": ShapingConfig}

# The seed's names (and a few common ones from SB3/CleanRL) mapped onto ours.
ALIASES = {
    "clip_range": "clip_epsilon",
    "clip_coef": "clip_epsilon",
    "ent_coef": "entropy_coef",
    "vf_coef": "critic_coef",
    "learning_rate": "lr",
    "weight_decay": "wd",
    "n_epochs": "epochs",
    "update_epochs": "epochs",
    "n_envs": "num_envs",
    "n_steps": "steps_per_env",
    "num_steps": "steps_per_env",
    "imports": "env_imports",  # env.imports=[...]
    "kwargs": "env_kwargs",  # env.kwargs.<name>=value
    "curiosity": "enabled",  # the flat switch `curiosity=true` (and the old nested `curiosity.curiosity`)
}
# Old names still read, with a DeprecationWarning that names the new one.
DEPRECATED = {
    "batch_size": ("minibatch_size", "it is the minibatch, not TorchRL's/CleanRL's batch_size (the whole "
                   "num_envs * steps_per_env batch)"),
}

CHOICES = {
    "env_backend": ("auto", "envpool", "parallel", "vector", "gymnasium", "serial"),
    "activation": ("tanh", "relu", "elu", "silu"),
    "optimizer": ("adam", "adamw", "sgd", "lamb", "lars"),
    "logger": ("csv", "tensorboard", "none"),
    "priority_key": ("advantage", "td_error"),
    "curriculum": ("none", "speed"),
}


def _leaf_owner() -> dict[str, str]:
    return {f.name: sec for sec, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curiosity: CuriosityConfig = field(default_factory=CuriosityConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)

    def __post_init__(self):
        self.validate()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, base: "Config | None" = None) -> "Config":
        """Build from nested and/or flat keys on top of ``base`` (defaults if None)."""
        tree = (base or cls()).to_dict()
        owner = _leaf_owner()
        for key, value in (data or {}).items():
            if key in SECTIONS and (isinstance(value, Mapping) or ALIASES.get(key) not in owner):  # `curiosity`: both
                if not isinstance(value, Mapping):
                    raise ConfigError(f"config section '{key}' must be a mapping, got {value!r}")
                for sub, sub_value in value.items():
                    _set_leaf(tree, owner, _canonical(sub, owner, prefix=f"{key}."), sub_value, expect=key)
            else:
                _set_leaf(tree, owner, _canonical(key, owner), value)
        return cls._from_tree(tree)

    @classmethod
    def _from_tree(cls, tree: Mapping[str, Mapping[str, Any]]) -> "Config":
        sections = {}
        for name, sec_cls in SECTIONS.items():
            values = dict(tree.get(name, {}))
            for f in dataclasses.fields(sec_cls):
                if f.name in values:
                    values[f.name] = _coerce(f.name, values[f.name], f.default if f.default is not dataclasses.MISSING else f.default_factory())
            sections[name] = sec_cls(**values)
        return cls(**sections)

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """Read a YAML or JSON file (nested or flat keys)."""
        return cls.from_dict(load_mapping(path, "config file"))

    def with_overrides(self, dotlist: list[str]) -> "Config":
        """Apply ``key=value`` command-line overrides (OmegaConf's dotlist syntax)."""
        for item in dotlist:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form key=value (e.g. lr=3e-4)")
        # A section's flat switch (`curiosity=true`) goes in as `curiosity.curiosity=true` (read as
        # `curiosity.enabled`): OmegaConf would otherwise drop it when `curiosity.<key>=...` is in the same list.
        owner = _leaf_owner()
        dotlist = [f"{key}.{item}" if key in SECTIONS and ALIASES.get(key) in owner else item
                   for item, key in ((item, item.split("=", 1)[0]) for item in dotlist)]
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist(list(dotlist)), resolve=True)
        return Config.from_dict(parsed, base=self)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def upgrade_dict(cls, saved: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """A saved config (a checkpoint's, a job folder's) in today's key names (``train.batch_size`` ->
        ``train.minibatch_size``, ``curiosity.curiosity`` -> ``curiosity.enabled``), read without the deprecation
        warnings: compare saved configs in this form."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return cls.from_dict(saved).to_dict()

    def changed_keys(self, other: "Config") -> list[str]:
        """The leaf names whose values differ between this config and ``other``, sorted."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for sec in mine for k in mine[sec] if mine[sec][k] != theirs[sec][k])

    @classmethod
    def for_run(cls, overrides: list[str], config_file: str | Path | None = None,
                preset: bool = True) -> tuple["Config", Path | None]:
        """A run's config as every command builds it (``aeon-train``, ``aeon-submit``, the SLURM/torchrun job):
        ``config_file`` if given, else the defaults and then the env's shipped preset (unless ``preset`` is
        false), then the ``key=value`` overrides. Also returns the preset it applied, if any."""
        if config_file:
            return cls.load(config_file).with_overrides(overrides), None
        path = preset_path(cls().with_overrides(overrides).env.env_id) if preset else None
        return (cls.load(path) if path else cls()).with_overrides(overrides), path

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(OmegaConf.to_yaml(OmegaConf.create(self.to_dict())))

    # ---- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        e, m, p, o, t = self.env, self.model, self.ppo, self.optim, self.train
        c, r, d, s = self.curiosity, self.replay, self.demo, self.shaping
        _check(e.num_envs >= 1, "num_envs", e.num_envs, "must be >= 1")
        _check(e.env_threads >= 0, "env_threads", e.env_threads, "must be >= 0 (0 = all cores)")
        _check(e.obs_clip > 0, "obs_clip", e.obs_clip, "must be > 0")
        _check(e.max_episode_steps >= 0, "max_episode_steps", e.max_episode_steps, "must be >= 0")
        _check(len(m.hidden_sizes) >= 1 and all(int(h) > 0 for h in m.hidden_sizes),
               "hidden_sizes", m.hidden_sizes, "must be a non-empty list of positive widths, e.g. [64, 64]")
        _check(m.num_critics >= 1, "num_critics", m.num_critics, "must be >= 1 (1 = no ensemble)")
        _check(m.log_std_min < m.log_std_max, "log_std_min", m.log_std_min, "must be < log_std_max")
        _check(m.log_std_min <= m.log_std_init <= m.log_std_max, "log_std_init", m.log_std_init,
               f"must lie in [log_std_min, log_std_max] = [{m.log_std_min}, {m.log_std_max}]")
        _check(0 < p.clip_epsilon < 1, "clip_epsilon", p.clip_epsilon, "must be in (0, 1); 0.1-0.3 is usual")
        _check(p.clip_value >= 0, "clip_value", p.clip_value, "must be >= 0 (0 disables value clipping)")
        _check(p.entropy_coef >= 0, "entropy_coef", p.entropy_coef, "must be >= 0")
        _check(p.critic_coef > 0, "critic_coef", p.critic_coef, "must be > 0")
        _check(p.kl_coef >= 0, "kl_coef", p.kl_coef, "must be >= 0 (0 disables the KL penalty)")
        _check(p.kl_target > 0, "kl_target", p.kl_target, "must be > 0; 0.01-0.05 is usual")
        _check(p.critic_warmup >= 0, "critic_warmup", p.critic_warmup, "must be >= 0 (0 = none)")
        _check(0 < p.gamma <= 1, "gamma", p.gamma, "must be in (0, 1]")
        _check(0 <= p.gae_lambda <= 1, "gae_lambda", p.gae_lambda, "must be in [0, 1]")
        for section in SECTIONS:  # one rule for every float: inf/nan would only surface as a NaN loss later
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                values = value if isinstance(value, list) else [value]
                _check(not any(isinstance(v, float) and not math.isfinite(v) for v in values), key, value,
                       "must be a finite number")
        _check(0 <= t.seed < 2 ** 63, "seed", t.seed, "must be in [0, 2**63) (torch's seed range)")
        _check(o.lr > 0, "lr", o.lr, "must be > 0")
        _check(o.wd >= 0, "wd", o.wd, "must be >= 0")
        _check(o.adam_eps > 0, "adam_eps", o.adam_eps, "must be > 0")
        _check(o.lookahead_k >= 1, "lookahead_k", o.lookahead_k, "must be >= 1")
        _check(0 < o.lookahead_alpha <= 1, "lookahead_alpha", o.lookahead_alpha, "must be in (0, 1]")
        _check(o.max_grad_norm >= 0, "max_grad_norm", o.max_grad_norm, "must be >= 0 (0 disables clipping)")
        _check(0 < o.min_lr <= o.max_lr, "min_lr", o.min_lr, "must satisfy 0 < min_lr <= max_lr")
        # the KL-adaptive lr is clamped to [min_lr, max_lr]: a start outside would be silently moved into it
        _check(not o.adaptive_lr or o.min_lr <= o.lr <= o.max_lr, "lr", o.lr,
               f"must lie in [min_lr, max_lr] = [{o.min_lr}, {o.max_lr}] with adaptive_lr=true (the adaptive lr is "
               "clamped to it): raise max_lr / lower min_lr, or set adaptive_lr=false")
        _check(t.total_timesteps >= 1, "total_timesteps", t.total_timesteps, "must be >= 1")
        _check(t.steps_per_env >= 1, "steps_per_env", t.steps_per_env, "must be >= 1")
        _check(t.minibatch_size >= 1, "minibatch_size", t.minibatch_size, "must be >= 1")
        _check(t.minibatch_size <= self.frames_per_batch, "minibatch_size", t.minibatch_size,
               f"must be <= num_envs * steps_per_env = {self.frames_per_batch} (the on-policy batch)")
        _check(t.epochs >= 1, "epochs", t.epochs, "must be >= 1")
        _check(t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"), "device", t.device,
               "must be 'auto', 'cpu' or 'cuda[:N]'")
        _check(t.torch_threads >= 0, "torch_threads", t.torch_threads, "must be >= 0 (0 = torch's default)")
        _check(t.update_threads >= 0, "update_threads", t.update_threads, "must be >= 0 (0 = torch_threads)")
        _check(t.eval_episodes >= 0, "eval_episodes", t.eval_episodes, "must be >= 0")
        _check(t.eval_every >= -1, "eval_every", t.eval_every, "must be >= -1")
        _check(t.eval_every_episodes >= 1, "eval_every_episodes", t.eval_every_episodes, "must be >= 1")
        _check(t.checkpoint_every >= 0, "checkpoint_every", t.checkpoint_every, "must be >= 0")
        _check(c.curiosity_coef >= 0, "curiosity_coef", c.curiosity_coef, "must be >= 0; 0.01-1 is usual")
        _check(c.curiosity_eta > 0, "curiosity_eta", c.curiosity_eta, "must be > 0")
        _check(0 <= c.curiosity_beta <= 1, "curiosity_beta", c.curiosity_beta,
               "must be in [0, 1] (weight of the forward loss; the paper uses 0.2)")
        _check(c.curiosity_lr > 0, "curiosity_lr", c.curiosity_lr, "must be > 0")
        _check(c.curiosity_feature_dim >= 1, "curiosity_feature_dim", c.curiosity_feature_dim, "must be >= 1")
        _check(r.priority_alpha >= 0, "priority_alpha", r.priority_alpha, "must be >= 0 (0 = uniform sampling)")
        _check(0 <= r.priority_beta <= 1, "priority_beta", r.priority_beta, "must be in [0, 1]")
        _check(r.priority_beta <= r.priority_beta_end <= 1, "priority_beta_end", r.priority_beta_end,
               f"must be in [priority_beta, 1] = [{r.priority_beta}, 1] (beta is annealed toward 1)")
        _check(0 < d.demo_ratio < 1, "demo_ratio", d.demo_ratio, "must be in (0, 1); 0.1-0.5 is usual")
        _check(d.demo_coef >= 0, "demo_coef", d.demo_coef, "must be >= 0")
        _check(d.demo_pretrain_steps >= 0, "demo_pretrain_steps", d.demo_pretrain_steps, "must be >= 0")
        _check(0 < d.demo_coef_decay <= 1, "demo_coef_decay", d.demo_coef_decay,
               "must be in (0, 1] (1 = no decay)")
        if d.demos:
            demo_rows = round(t.minibatch_size * d.demo_ratio)
            _check(1 <= demo_rows < t.minibatch_size, "demo_ratio", d.demo_ratio,
                   f"gives {demo_rows} demo rows in a minibatch of minibatch_size={t.minibatch_size}: it must leave "
                   "at least one demo and one agent row; raise minibatch_size or change demo_ratio")
        levels = s.curriculum_levels
        _check(len(levels) >= 1 and all(b > a for a, b in zip(levels, levels[1:])), "curriculum_levels", levels,
               "must be a non-empty list of increasing difficulties (target speeds), e.g. [1.0, 2.0, 3.0]")
        _check(-len(levels) <= s.curriculum_start < len(levels), "curriculum_start", s.curriculum_start,
               f"must index curriculum_levels (0..{len(levels) - 1}, or -1 for the hardest)")
        _check(0 < s.curriculum_threshold <= 1, "curriculum_threshold", s.curriculum_threshold, "must be in (0, 1]")
        _check(0 <= s.curriculum_demote < s.curriculum_threshold, "curriculum_demote", s.curriculum_demote,
               "must be in [0, curriculum_threshold) (0 never demotes)")
        _check(s.curriculum_window >= 1, "curriculum_window", s.curriculum_window, "must be >= 1 episode")
        _check(s.curriculum_margin > 0, "curriculum_margin", s.curriculum_margin, "must be > 0")
        _check(s.dynamic_batch_growth > 1, "dynamic_batch_growth", s.dynamic_batch_growth, "must be > 1")
        _check(s.dynamic_batch_cv > 0, "dynamic_batch_cv", s.dynamic_batch_cv, "must be > 0, e.g. 0.1")
        _check(not s.dynamic_batch or s.dynamic_batch_cap >= self.frames_per_batch, "dynamic_batch_cap",
               s.dynamic_batch_cap, f"must be >= num_envs * steps_per_env = {self.frames_per_batch} (it only grows)")
        for key, allowed in CHOICES.items():
            value = getattr(self._section_of(key), key)
            _check(value in allowed, key, value, f"must be one of {list(allowed)}")

    def _section_of(self, leaf: str):
        return getattr(self, _leaf_owner()[leaf])

    @property
    def frames_per_batch(self) -> int:
        return self.env.num_envs * self.train.steps_per_env


def load_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping in a YAML (or JSON) file: config files, cluster profiles, tuning files. Whatever is wrong
    with the file is a ``ConfigError`` naming it (and the line, for a syntax error), never a parser traceback."""
    import yaml
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory, not a YAML file")
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{what} {path}: {where}{getattr(exc, 'problem', None) or exc} (not valid YAML)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from None
    except Exception as exc:  # OmegaConf's own errors (interpolation, unsupported value types)
        raise ConfigError(f"{what} {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of keys (key: value lines), got a "
                          f"{'list' if isinstance(data, list) else type(data).__name__}")
    return data


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"config value {key}={value!r} is out of range: {key} {rule}")


def _canonical(key: str, owner: Mapping[str, str], prefix: str = "") -> str:
    if key in DEPRECATED:
        new, why = DEPRECATED[key]
        warnings.warn(f"config key '{prefix}{key}' is deprecated: use '{new}' ({why})", DeprecationWarning,
                      stacklevel=4)
        return new
    key = ALIASES.get(key, key)
    if key in owner:
        return key
    known = sorted(set(owner) | set(ALIASES) | set(SECTIONS) | set(DEPRECATED))
    shown = {**ALIASES, **{old: new for old, (new, _) in DEPRECATED.items()}}  # suggest today's name
    raise ConfigError(f"unknown config key '{prefix}{key}'.{did_you_mean(key, known, shown)} "
                      f"Known keys: {', '.join(sorted(owner))}")


def _set_leaf(tree, owner, key, value, expect: str | None = None) -> None:
    section = owner[key]
    if expect is not None and expect != section:
        raise ConfigError(f"config key '{key}' belongs to section '{section}', not '{expect}'")
    tree[section][key] = value


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Convert YAML/CLI values to the field's type, refusing what does not fit."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise TypeError
        if isinstance(value, bool):  # a bool is an int to Python, never a number here
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, dict):  # env_kwargs: any values, given to the env's constructor
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if isinstance(default, list):  # the element type of the default: int widths, float levels, str modules
            item = type(default[0]) if default else str
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) or (item is int and isinstance(v, float) and not v.is_integer()) for v in values):
                raise TypeError
            return [item(v) for v in values]
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(
            f"config value {name}={value!r} has the wrong type: expected {type(default).__name__}"
        ) from None
    return value
