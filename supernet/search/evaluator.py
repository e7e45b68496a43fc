"""Scoring a candidate: BN recalibration on training batches, then top-1/top-5 error on held-out data.

The batches are materialised once per search, so every candidate is scored on exactly the same
images (the official code gave each candidate a different validation slice, OFF issue #4).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..train.device import autocast
from ..train.metrics import accuracy

Batch = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Sequence[Batch], device: torch.device | None = None) -> None:
    """Reset every BatchNorm's statistics and re-estimate them on ``batches``.

    BN layers run in train mode with a cumulative average (momentum=None), everything else in
    eval mode (dropout off), with no gradients. Modes and momenta are restored in ``finally``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in bns]
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for x, _ in batches:
            model(x if device is None else x.to(device, non_blocking=True))
    finally:
        for m, training in modes:
            m.training = training
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


class CandidateEvaluator:
    """``evaluator(arch) -> {"top1_err", "top5_err"}`` on a supernet with inherited weights.

    Args:
        model: the trained supernet (its BN statistics are overwritten per candidate).
        recal_batches: training batches for BN recalibration (same for every candidate).
        val_batches: held-out batches the candidate is scored on (same for every candidate).
    """

    def __init__(self, model: nn.Module, recal_batches: Sequence[Batch], val_batches: Sequence[Batch],
                 device: torch.device | str = "cpu", amp: bool = True):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.space = SearchSpace(model)
        self.amp = amp
        move = lambda bs: [(x.to(self.device), y.to(self.device)) for x, y in bs]  # noqa: E731
        self.recal_batches, self.val_batches = move(recal_batches), move(val_batches)
        self.n_val = sum(len(y) for _, y in self.val_batches)
        if self.n_val == 0:
            raise ValueError("the search needs at least one held-out validation image")

    @torch.no_grad()
    def __call__(self, arch: Arch) -> dict:
        self.space.activate(arch)
        if self.recal_batches:
            recalibrate_bn(self.model, self.recal_batches)
        was_training = self.model.training
        self.model.eval()
        top1 = top5 = 0
        try:
            for x, y in self.val_batches:
                with autocast(self.device, self.amp):
                    logits = self.model(x).float()
                c1, c5 = accuracy(logits, y)
                top1, top5 = top1 + c1, top5 + c5
        finally:
            self.model.train(was_training)
        return {"top1_err": 1 - top1 / self.n_val, "top5_err": 1 - top5 / self.n_val}
