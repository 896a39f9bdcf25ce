"""``CurriculumPlugin``: reports and checkpoints the env's ``SpeedCurriculum`` (``transforms/curriculum.py``)."""
from __future__ import annotations

from tensordict import TensorDictBase

from aeon_trl.plugins.base import Plugin
from aeon_trl.transforms.curriculum import SpeedCurriculum


class CurriculumPlugin(Plugin):
    """The curriculum transform levels itself up inside the env; this logs its level and resumes it."""

    name = "curriculum"

    def __init__(self, transform: SpeedCurriculum):
        self.transform = transform

    def after_update(self, batch: TensorDictBase) -> dict[str, float]:
        c = self.transform.curriculum
        return dict(curriculum_level=c.level, curriculum_target=self.transform.target,
                    curriculum_success_rate=c.success_rate, curriculum_solved=float(c.solved))

    def state_dict(self) -> dict:
        return self.transform.curriculum.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.transform.curriculum.load_state_dict(state)
