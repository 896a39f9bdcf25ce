"""Builds the optimizer the config asks for: Adam/AdamW/SGD/LAMB/LARS, optionally wrapped in Lookahead.

``foreach=True``: one multi-tensor kernel per op instead of a Python loop over parameters (torch
only picks it by default on CUDA); it is most of the optimizer's cost for small PPO networks on CPU.
``fused=True`` (Adam/AdamW): torch's single fused kernel, ~3x faster again on CPU, but its rounding differs from
foreach in the last bits, so only the fast path (``compile=true``, already not bit-identical to eager) takes it.
"""
from __future__ import annotations

from typing import Iterable

import torch

from aeon_trl.config import OptimConfig
from aeon_trl.optim.layerwise import Lamb, Lars
from aeon_trl.optim.lookahead import Lookahead


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig,
                    fused: bool = False) -> torch.optim.Optimizer:
    params = list(params)
    kernel = {"fused": True} if fused else {"foreach": True}
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.wd, **kernel)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.wd, **kernel)
    elif cfg.optimizer == "lamb":
        opt = Lamb(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.wd)
    elif cfg.optimizer == "lars":
        opt = Lars(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.wd)
    else:  # sgd
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.wd)
    if cfg.lookahead:
        opt = Lookahead(opt, k=cfg.lookahead_k, alpha=cfg.lookahead_alpha)
    return opt


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``load_state_dict``, keeping this optimizer's kernel: torch takes the checkpoint's foreach/fused flags,
    so an eager run resumed with ``compile=true`` would step with foreach, and the reverse with fused."""
    kernels = [{k: group.get(k) for k in ("foreach", "fused")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kernel in zip(optimizer.param_groups, kernels, strict=True):
        group.update(kernel)
