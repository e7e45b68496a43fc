"""The SPOS optimiser: SGD with momentum, decay on >=2-D weights only, a stateless LR schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, cfg) -> torch.optim.SGD:
    """SGD whose weight decay skips BN parameters and biases (ndim < 2), as the official code does."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_at(step: int, total: int, cfg) -> float:
    """LR for 0-based ``step`` of ``total``: a pure function, so resuming needs no scheduler state."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    if cfg.schedule == "linear":  # official: lr * (1 - step / total), per step
        return cfg.lr * max(0.0, 1.0 - t)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return cfg.lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def step_on_path(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` over only the parameters that have a gradient, then their grads set to
    None (in place of ``zero_grad`` before the next backward).

    The update is the same as ``optimizer.step()`` (SGD skips parameters whose grad is None), but
    the optimizer's Python work follows the sampled path, not the whole supernet (1,003 parameter
    tensors in the ImageNet space, of which a path uses about 250).
    """
    saved = [group["params"] for group in optimizer.param_groups]
    used = []
    try:
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if p.grad is not None]
            used += group["params"]
        optimizer.step()
    finally:
        for group, params in zip(optimizer.param_groups, saved):
            group["params"] = params
    for p in used:
        p.grad = None
