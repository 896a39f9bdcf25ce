"""Small helpers more than one module needs: seeding, the evaluation seed, "did you mean" hints, walking a state."""
from __future__ import annotations

import contextlib
import difflib
import random
from typing import Iterable, Mapping

import numpy as np
import torch

# Evaluation episodes start from seeds no training env uses (a large prime away from the training seed), so
# the teacher's final evaluation, a student's and a resumed run's all face the same starts.
EVAL_SEED_OFFSET = 1_000_003


def eval_seed(train_seed: int) -> int:
    """The seed of a run's evaluation envs."""
    return train_seed + EVAL_SEED_OFFSET


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's generators (torchrl's samplers draw from NumPy's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (difflib's ratio >= 0.6), or None."""
    hint = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return hint[0] if hint else None


def did_you_mean(word: str, candidates: Iterable[str], rename: Mapping[str, str] | None = None) -> str:
    """``" Did you mean 'x'?"`` for the closest candidate (shown through ``rename``, e.g. an alias table), or ``""``."""
    hint = close_match(word, candidates)
    if hint is None:
        return ""
    return f" Did you mean '{rename.get(hint, hint) if rename else hint}'?"


def float_tensors(tree, prefix: str = ""):
    """``(path, tensor)`` of every floating-point tensor in nested dicts/lists/tuples (a state dict); paths are
    the keys joined by "/"."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            yield prefix.lstrip("/"), tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from float_tensors(value, f"{prefix}/{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from float_tensors(value, f"{prefix}/{i}")


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for the block (0: unchanged), then put back."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(previous)
