"""Policy distillation: a trained aeon_trl policy (the teacher) into a smaller student for deployment.

    distiller = Distiller("runs/x/checkpoint.pt", DistillConfig(hidden_sizes=[32, 32]))
    distiller.train()                         # teacher rollouts, then DAgger rounds on the student's states
    distiller.export("runs/x/student")        # student.pt2 (torch.export), student.onnx, student.json
    distiller.evaluate(distiller.student)     # returns on the real env, deterministic

The data are states from rollouts on the env *without* observation normalization (raw observations), each
labelled by the teacher with its Gaussian's ``loc``/``scale``; both policies carry the teacher's frozen
normalization statistics inside (``RawObsPolicy``), so the exported student maps raw observations to actions.
Round 0 collects with the teacher; each DAgger round (Ross et al. 2011) collects with the student and the
teacher labels the states the student visits, which are added to the same replay buffer.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.data import LazyTensorStorage, RandomSampler, ReplayBuffer
from torchrl.envs import ExplorationType, set_exploration_type

from aeon_trl.config import Config, ConfigError
from aeon_trl._util import eval_seed, seed_everything
from aeon_trl.envs import env_dims, episode_limit, make_base_env, make_env
from aeon_trl.modules.actor_critic import ACTIVATIONS, gaussian_actor
from aeon_trl.modules.student import DeterministicAction, FrozenObsNorm, RawObsPolicy, count_parameters, make_student
from aeon_trl.objectives.distill import LOSS_TYPES, DistillationLoss
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.trainer import rollout_returns

TEACHER_LABELS = ("teacher_loc", "teacher_scale")


@dataclass
class DistillConfig:
    """Student size and the distillation schedule; validated on construction (``ConfigError``)."""

    hidden_sizes: list = field(default_factory=lambda: [32, 32])
    activation: str = "tanh"
    loss: str = "kl"  # "kl": KL(teacher || student) of the Gaussians; "mse": on the means
    teacher_frames: int = 50_000  # states from the teacher's own rollouts (round 0)
    dagger_rounds: int = 3  # rounds on the student's states, labelled by the teacher; 0 = behaviour cloning only
    dagger_frames: int = 20_000  # states per DAgger round
    explore: bool = False  # collect with the acting policy's Gaussian noise instead of its mean
    num_envs: int = 32  # envs stepped together while collecting
    grad_steps: int = 3_000  # optimizer steps after each round's data are added
    batch_size: int = 256
    lr: float = 1e-3
    eval_episodes: int = 10
    seed: int = 0

    def __post_init__(self):
        h = self.hidden_sizes
        if isinstance(h, (int, str)) or not h or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                                                          for w in h):
            raise ConfigError(f"student hidden_sizes={h!r} is invalid: give a non-empty list of positive "
                              "integer widths, e.g. --hidden 32 32")
        checks = [
            (self.activation in ACTIVATIONS, "activation", f"must be one of {list(ACTIVATIONS)}"),
            (self.loss in LOSS_TYPES, "loss", f"must be one of {list(LOSS_TYPES)}"),
            (self.teacher_frames >= 1, "teacher_frames", "must be >= 1"),
            (self.dagger_rounds >= 0, "dagger_rounds", "must be >= 0 (0 = teacher states only)"),
            (self.dagger_frames >= 1, "dagger_frames", "must be >= 1"),
            (self.num_envs >= 1, "num_envs", "must be >= 1"),
            (self.grad_steps >= 1, "grad_steps", "must be >= 1"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.lr > 0, "lr", "must be > 0"),
            (self.eval_episodes >= 0, "eval_episodes", "must be >= 0"),
        ]
        for ok, key, rule in checks:
            if not ok:
                raise ConfigError(f"distill config value {key}={getattr(self, key)!r} is out of range: {key} {rule}")

    @property
    def total_frames(self) -> int:
        return self.teacher_frames + self.dagger_rounds * self.dagger_frames


def load_teacher(checkpoint: str | Path) -> AdvancedPPO:
    """The trained agent of an aeon_trl checkpoint file or run folder (``CheckpointError`` if missing/foreign)."""
    return AdvancedPPO.from_checkpoint(checkpoint)  # load_checkpoint reads a run folder's checkpoint.pt


def frozen_obs_norm(agent: AdvancedPPO) -> FrozenObsNorm:
    """The teacher's observation normalization (its env's ``VecNormV2`` statistics and clip), frozen."""
    return agent.trainer.obs_norm.export()


class Distiller:
    """Teacher, student, labelled-state replay buffer, loss and optimizer of one distillation."""

    def __init__(self, teacher: AdvancedPPO | str | Path, config: DistillConfig | None = None):
        self.config = cfg = config or DistillConfig()
        self._owns_agent = not isinstance(teacher, AdvancedPPO)
        self.agent = load_teacher(teacher) if self._owns_agent else teacher
        self.teacher_config = self.agent.config
        seed_everything(cfg.seed)
        # The env the policies act in: the teacher's env without normalization (the policies normalize).
        self.env_config = Config.from_dict({"norm_obs": False, "norm_reward": False}, base=self.teacher_config)
        norm = frozen_obs_norm(self.agent)
        teacher_policy = self.agent.trainer.policy
        self.teacher = RawObsPolicy(norm, teacher_policy).eval()
        self.obs_dim, self.act_dim = env_dims(self.agent.trainer.env)
        self.student = make_student(norm, self.act_dim, cfg.hidden_sizes, cfg.activation,
                                    log_std=self.agent.trainer.policy_log_std())
        space = self.agent.trainer.env.action_spec.space
        self.action_bounds = (space.low.min().item(), space.high.max().item())
        self.teacher_params = count_parameters(teacher_policy)
        self.student_params = count_parameters(self.student)
        self.labeler = TensorDictModule(self.teacher, in_keys=["observation"], out_keys=list(TEACHER_LABELS))
        self.loss = DistillationLoss(TensorDictModule(self.student, in_keys=["observation"], out_keys=["loc", "scale"]),
                                     loss_type=cfg.loss)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=cfg.lr)
        # Every state collected is kept (DAgger aggregates); each round rounds up to whole env steps.
        capacity = cfg.total_frames + cfg.num_envs * (cfg.dagger_rounds + 1)
        self.buffer = ReplayBuffer(storage=LazyTensorStorage(capacity), sampler=RandomSampler(),
                                   batch_size=cfg.batch_size)
        self._collect_env = None
        self.history: list[dict] = []

    # ---- data ---------------------------------------------------------------------------
    def collect(self, policy: RawObsPolicy, frames: int) -> TensorDictBase:
        """``frames`` (rounded up to whole env steps) raw observations visited by ``policy``, with teacher labels."""
        if self._collect_env is None:
            self._collect_env = make_env(self.env_config, num_envs=self.config.num_envs, seed=self.config.seed)
        steps = math.ceil(frames / self.config.num_envs)
        mode = ExplorationType.RANDOM if self.config.explore else ExplorationType.DETERMINISTIC
        with torch.no_grad(), set_exploration_type(mode):
            rollout = self._collect_env.rollout(steps, gaussian_actor(policy), break_when_any_done=False)
            data = rollout.reshape(-1).select("observation")
            self.labeler(data)
        return data

    # ---- training -----------------------------------------------------------------------
    def fit(self, steps: int) -> dict[str, float]:
        """``steps`` optimizer steps on minibatches from the whole buffer; mean loss and diagnostics."""
        sums = {"loss_distill": 0.0, "kl": 0.0, "mean_abs_error": 0.0}
        for _ in range(steps):
            out = self.loss(self.buffer.sample())
            self.optimizer.zero_grad(set_to_none=True)
            out.get("loss_distill").backward()
            self.optimizer.step()
            for k in sums:
                sums[k] += out.get(k).item()
        return {k: v / steps for k, v in sums.items()}

    @torch.no_grad()
    def score(self, data: TensorDictBase) -> dict[str, float]:
        """The loss and diagnostics of the current student on ``data`` (no update)."""
        out = self.loss(data)
        return {k: out.get(k).item() for k in ("loss_distill", "kl", "mean_abs_error")}

    def train(self, on_round: Callable[[dict], None] | None = None) -> list[dict]:
        """Round 0 on the teacher's states, then ``dagger_rounds`` rounds on the student's; each round's
        fresh data are scored before they are trained on (the student's error on states it has not seen)."""
        cfg = self.config
        for rnd in range(cfg.dagger_rounds + 1):
            t0 = time.perf_counter()
            policy, frames = (self.teacher, cfg.teacher_frames) if rnd == 0 else (self.student, cfg.dagger_frames)
            data = self.collect(policy, frames)
            fresh = self.score(data)
            self.buffer.extend(data)
            fitted = self.fit(cfg.grad_steps)
            row = {"round": rnd, "collected_by": "teacher" if rnd == 0 else "student", "frames": data.numel(),
                   "buffer": len(self.buffer), **{f"fresh_{k}": v for k, v in fresh.items()},
                   **{f"train_{k}": v for k, v in fitted.items()}, "seconds": time.perf_counter() - t0}
            self.history.append(row)
            if on_round is not None:
                on_round(row)
        return self.history

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, policy: RawObsPolicy, n_episodes: int | None = None, seed: int | None = None) -> list[float]:
        """Deterministic returns of ``n_episodes`` episodes on fresh copies of the real env (raw observations),
        with the seed the teacher's own final evaluation used, so teacher and student face the same starts."""
        n = self.config.eval_episodes if n_episodes is None else n_episodes
        if n <= 0:
            return []
        seed = eval_seed(self.teacher_config.train.seed) if seed is None else seed
        env = make_env(self.env_config, num_envs=n, base_env=make_base_env(self.env_config, n, seed, serial=True))
        try:
            return rollout_returns(env, gaussian_actor(policy), episode_limit(self.env_config), deterministic=True)
        finally:
            env.close()

    def deployable(self, policy: RawObsPolicy) -> DeterministicAction:
        return DeterministicAction(policy, *self.action_bounds).eval()

    # ---- export -------------------------------------------------------------------------
    def export(self, out_dir: str | Path) -> dict[str, str]:
        """Write the student as ``student.pt2`` (torch.export), ``student.onnx`` (when the ``onnx`` package is
        installed) and ``student.json`` (shapes, bounds, provenance). Both graphs take a raw float32
        observation batch ``[B, obs_dim]`` and return the action ``[B, act_dim]``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model = self.deployable(self.student)
        example = (torch.zeros(2, self.obs_dim),)
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        program = torch.export.export(model, example, dynamic_shapes={"obs": {0: batch}})
        files = {"pt2": str(out / "student.pt2")}
        torch.export.save(program, files["pt2"])
        if importlib.util.find_spec("onnx") is None:  # torch's ONNX exporter needs the onnx package
            files["onnx"] = None
            warnings.warn("ONNX export skipped: the 'onnx' package is not installed (pip install onnx)", stacklevel=2)
        else:
            files["onnx"] = str(out / "student.onnx")
            with warnings.catch_warnings():
                # The TorchScript-based exporter: the torch.export-based one needs onnxscript as well.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(model, example, files["onnx"], dynamo=False, input_names=["observation"],
                                  output_names=["action"], dynamic_axes={"observation": {0: "batch"},
                                                                         "action": {0: "batch"}})
        meta = {"env_id": self.teacher_config.env.env_id, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "action_low": self.action_bounds[0],
                "action_high": self.action_bounds[1], "input": "raw observation, float32 [batch, obs_dim]",
                "output": "action, float32 [batch, act_dim]", "student": dataclasses.asdict(self.config),
                "student_params": self.student_params, "teacher_params": self.teacher_params,
                "files": {k: Path(v).name if v else None for k, v in files.items()}}
        files["json"] = str(out / "student.json")
        Path(files["json"]).write_text(json.dumps(meta, indent=2))
        return files

    def close(self) -> None:
        """Close the collection env, and the teacher agent if it was loaded here (a passed agent stays open)."""
        if self._collect_env is not None and not self._collect_env.is_closed:
            self._collect_env.close()
        if self._owns_agent:
            self.agent.close()


def latency_us(fns: dict[str, Callable[[], object]], calls: int = 2000, warmup: int = 200) -> dict[str, float]:
    """Median wall time of one call of each ``fns[name]()`` in microseconds. The calls are interleaved
    (one of each per pass), so a shared machine's load changes hit every candidate alike, and the median
    resists the spikes."""
    times: dict[str, list[int]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(calls):
            for name, fn in fns.items():
                t0 = time.perf_counter_ns()
                fn()
                times[name].append(time.perf_counter_ns() - t0)
    return {name: statistics.median(t) / 1e3 for name, t in times.items()}
