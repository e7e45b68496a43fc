"""The weight optimiser: SGD with momentum, decay on >=2-D weights only (as the official SPOS code
does), and a stateless LR schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, cfg) -> SGD:
    """SGD whose weight decay skips BN parameters and biases (ndim < 2), as the official code does."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


class SGD(torch.optim.SGD):
    """``torch.optim.SGD``, fused into one kernel per step where this torch and device support it.

    The for-loop SGD issues about four small ops per parameter tensor: 8.8 ms a step for the 256
    tensors of a ShuffleNet path on our 2-core CPU, against 3.0 ms fused. The updates are the same
    up to rounding: on tensors whose size is not a multiple of the vector width, some elements
    differ in the last bit (50 steps of random gradients: at most 1 ulp). Fused SGD is as
    deterministic as the for-loop, so resumed runs stay bitwise exact. Older torch (no ``fused``)
    and devices without the fused kernel get the for-loop.

    The fused kernel needs a momentum buffer for every parameter it updates or for none, while a
    supernet choice sampled for the first time has none. ``step`` gives such a parameter a zero
    buffer, which yields the for-loop's first update (buffer = d_p)."""

    def __init__(self, params, **options):
        params = list(params)
        if params and isinstance(params[0], dict):
            groups = [dict(g) for g in params]  # copies: an optimizer writes its defaults into them
        else:
            groups = [{"params": params}] if params else []  # torch names the empty list
        for g in groups:
            g["params"] = [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])
        if "fused" not in options and _fused_supported([p for g in groups for p in g["params"]]):
            options["fused"] = True
        super().__init__(groups, **options)

    def step(self, closure=None):
        for group in self.param_groups:
            if group.get("fused") and group["momentum"]:
                for p in group["params"]:
                    if p.grad is not None and "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return super().step(closure)


def _fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether this torch has fused SGD for these parameters' devices and dtypes (it checks them
    when the optimizer is built)."""
    try:
        torch.optim.SGD(params, lr=0.0, fused=True)
        return True
    except (TypeError, RuntimeError, ValueError):
        return False


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
