"""aeon_trl: advanced PPO for continuous control, composed from TorchRL / TensorDict components."""
from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import Config, ConfigError
from aeon_trl.distill import DistillConfig, Distiller
from aeon_trl.envs import make_env
from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.normalize import adaptive_normalize
from aeon_trl.objectives.distill import DistillationLoss
from aeon_trl.objectives.gae import compute_gae
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.optim.lookahead import Lookahead
from aeon_trl.optim.schedules import AdaptiveClipper
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.trainer import NonFiniteError, Trainer

__all__ = [
    "AdaptiveActorCritic", "AdaptiveClipper", "AdvancedClipPPOLoss", "AdvancedPPO", "CheckpointError", "Config",
    "ConfigError", "DistillConfig", "DistillationLoss", "Distiller", "Lookahead", "NonFiniteError", "Trainer",
    "adaptive_normalize", "compute_gae", "make_env", "make_ppo_operators",
]
