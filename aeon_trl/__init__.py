"""aeon_trl: advanced PPO for continuous control, composed from TorchRL / TensorDict components."""
from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import Config, ConfigError
from aeon_trl.data.dataset import ExperienceDataset
from aeon_trl.data.demonstrations import DemonstrationBuffer, DemonstrationError
from aeon_trl.distill import DistillConfig, Distiller
from aeon_trl.envs import ObsNorm, make_env
from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.normalize import adaptive_normalize
from aeon_trl.objectives.distill import DistillationLoss
from aeon_trl.objectives.gae import compute_gae
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.optim.layerwise import Lamb, Lars
from aeon_trl.optim.lookahead import Lookahead
from aeon_trl.optim.schedules import AdaptiveClipper, DynamicBatchSize
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.sparse_envs import register_sparse_envs
from aeon_trl.trainer import NonFiniteError, Trainer
from aeon_trl.transforms.curiosity import CuriosityModule, CuriosityTransform
from aeon_trl.transforms.curriculum import Curriculum, SpeedCurriculum
from aeon_trl.tuning import AutoTuner, TuningError

register_sparse_envs()  # aeon/SparseHalfCheetah-v5 for env_id=...

__all__ = [
    "AdaptiveActorCritic", "AdaptiveClipper", "AdvancedClipPPOLoss", "AdvancedPPO", "AutoTuner", "CheckpointError",
    "Config", "ConfigError", "CuriosityModule", "CuriosityTransform", "Curriculum", "DemonstrationBuffer",
    "DemonstrationError", "DistillConfig", "DistillationLoss", "Distiller", "DynamicBatchSize", "ExperienceDataset",
    "Lamb", "Lars", "Lookahead", "NonFiniteError", "ObsNorm", "SpeedCurriculum", "Trainer", "TuningError",
    "adaptive_normalize", "compute_gae", "make_env", "make_ppo_operators",
]
