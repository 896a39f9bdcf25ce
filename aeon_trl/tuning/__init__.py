"""Hyperparameter tuning: population-based training over the trainer (``AutoTuner``) and its search space."""
from aeon_trl.tuning.autotuner import AutoTuner, reapply_hyperparameters, run_trial
from aeon_trl.tuning.space import METRICS, TUNABLE, ParamSpec, TuningConfig, TuningError

__all__ = ["AutoTuner", "METRICS", "ParamSpec", "TUNABLE", "TuningConfig", "TuningError", "reapply_hyperparameters",
           "run_trial"]
