"""Optional features of a run as ``Plugin``s the trainer composes: curiosity, curriculum, dynamic batch size,
prioritized minibatches, demonstrations. ``build_plugins(cfg, env, ...)`` is the one place that reads their
switches."""
from __future__ import annotations

import torch
from torchrl.envs import EnvBase

from aeon_trl.config import Config
from aeon_trl.plugins.base import Plugin
from aeon_trl.plugins.curiosity import CuriosityPlugin
from aeon_trl.plugins.curriculum import CurriculumPlugin
from aeon_trl.plugins.demonstrations import Demonstrations
from aeon_trl.plugins.dynamic_batch import DynamicBatch
from aeon_trl.plugins.prioritized import PrioritizedMinibatches
from aeon_trl.transforms.curriculum import find_curriculum


def build_plugins(cfg: Config, env: EnvBase, obs_dim: int, act_dim: int, device: torch.device) -> list[Plugin]:
    """The plugins ``cfg`` switches on, in the order their hooks run. The order is that of their construction,
    which draws from torch's RNG (the ICM's initialization), so it is part of a run's reproducibility."""
    plugins: list[Plugin] = []
    if cfg.curiosity.enabled:
        plugins.append(CuriosityPlugin.from_config(obs_dim, act_dim, cfg.curiosity, device))
    curriculum = find_curriculum(env)  # the env's SpeedCurriculum transform, if it has one
    if curriculum is not None:
        plugins.append(CurriculumPlugin(curriculum))
    if cfg.shaping.dynamic_batch:
        plugins.append(DynamicBatch.from_config(cfg))
    if cfg.replay.prioritized:
        plugins.append(PrioritizedMinibatches.from_config(cfg))
    if cfg.demo.demos:
        plugins.append(Demonstrations.from_config(cfg, env))
    return plugins


# The checkpoint keys of the plugins before they were plugins: "curiosity" and "shaping" at the top level.
def legacy_plugin_states(state: dict) -> dict[str, dict]:
    """The ``"plugins"`` entry of a checkpoint written before plugins had one."""
    shaping = state.get("shaping", {})  # absent in checkpoints older than curriculum/dynamic batch
    return {"curiosity": state.get("curiosity") or {}, "curriculum": shaping.get("curriculum") or {},
            "dynamic_batch": {"frames_per_batch": shaping.get("frames_per_batch"),
                              "batch_sizer": shaping.get("batch_sizer") or {}}}


__all__ = ["CuriosityPlugin", "CurriculumPlugin", "Demonstrations", "DynamicBatch", "Plugin",
           "PrioritizedMinibatches", "build_plugins", "legacy_plugin_states"]
