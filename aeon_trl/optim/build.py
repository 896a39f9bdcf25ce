"""Builds the optimizer the config asks for: Adam/AdamW/SGD/LAMB/LARS, optionally wrapped in Lookahead.

``foreach=True``: one multi-tensor kernel per op instead of a Python loop over parameters (torch
only picks it by default on CUDA); it is most of the optimizer's cost for small PPO networks on CPU.
"""
from __future__ import annotations

from typing import Iterable

import torch

from aeon_trl.config import OptimConfig
from aeon_trl.optim.layerwise import Lamb, Lars
from aeon_trl.optim.lookahead import Lookahead


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.wd, foreach=True)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.wd, foreach=True)
    elif cfg.optimizer == "lamb":
        opt = Lamb(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.wd)
    elif cfg.optimizer == "lars":
        opt = Lars(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.wd)
    else:  # sgd
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.wd)
    if cfg.lookahead:
        opt = Lookahead(opt, k=cfg.lookahead_k, alpha=cfg.lookahead_alpha)
    return opt
