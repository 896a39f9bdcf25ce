"""``DistillationLoss``: match a student's Gaussian policy to a teacher's on labelled states.

Policy distillation (Rusu et al. 2016, "Policy Distillation") regresses the student onto the teacher's
action distribution at states from a dataset; the teacher's ``loc``/``scale`` were written into the data
when the states were collected (``teacher_loc``, ``teacher_scale``), so the teacher is not run here.
- ``"kl"``: KL(teacher || student) of the diagonal Gaussians, summed over action dimensions. The mean error
  is weighted by 1/student_std^2, and the student's std is matched too.
- ``"mse"``: squared error between the means, averaged over action dimensions (the deployed action is the mean).
"""
from __future__ import annotations

from dataclasses import dataclass

from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch.distributions import kl_divergence
from torchrl.modules import IndependentNormal
from torchrl.objectives import LossModule

from aeon_trl import _compat

LOSS_TYPES = ("kl", "mse")


class DistillationLoss(LossModule):
    """Student-vs-teacher loss over a batch of states with teacher labels; writes ``loss_distill`` and the
    diagnostics ``kl`` (always computed) and ``mean_abs_error`` (|student mean - teacher mean|)."""

    @dataclass
    class _AcceptedKeys:
        """Keys a user can remap with ``set_keys``: the student's outputs and the teacher's labels."""

        loc: NestedKey = "loc"
        scale: NestedKey = "scale"
        teacher_loc: NestedKey = "teacher_loc"
        teacher_scale: NestedKey = "teacher_scale"

    default_keys = _AcceptedKeys

    def __init__(self, student: TensorDictModule, loss_type: str = "kl"):
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"distillation loss '{loss_type}' is unknown: use one of {list(LOSS_TYPES)}")
        super().__init__()
        self.student_network = student
        self.loss_type = loss_type
        self.reduction = "mean"

    @property
    def functional(self) -> bool:
        return False

    @property
    def in_keys(self):
        keys = self.tensor_keys
        return [*self.student_network.in_keys, keys.teacher_loc, keys.teacher_scale]

    @property
    def out_keys(self):
        return ["loss_distill", "kl", "mean_abs_error"]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        out = self.student_network(tensordict.select(*self.student_network.in_keys).copy())
        loc, scale = out.get(keys.loc), out.get(keys.scale)
        t_loc, t_scale = tensordict.get(keys.teacher_loc), tensordict.get(keys.teacher_scale)
        kl = kl_divergence(IndependentNormal(t_loc, t_scale), IndependentNormal(loc, scale))
        if self.loss_type == "kl":
            per_sample = kl
        else:
            per_sample = (loc - t_loc).pow(2).mean(-1)
        return TensorDict({
            "loss_distill": _compat.reduce_loss(self, per_sample, tensordict),
            "kl": kl.detach().mean(),
            "mean_abs_error": (loc - t_loc).detach().abs().mean(),
        }, batch_size=[])
