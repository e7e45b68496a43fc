"""FairNAS: strict-fairness sampling, m paths per step that use every candidate exactly once.

Chu et al., "FairNAS: Rethinking Evaluation Fairness of Weight Sharing Neural Architecture
Search", ICCV 2021, https://arxiv.org/abs/1907.01845. One step: draw m
paths without replacement, so that each candidate block of every layer is trained once on the
same batch; accumulate the m gradients; update the weights once.

Labels with fewer options than m (the digits space has 4 blocks and 8 widths, so m = 8) cannot
use each option exactly once. With m = q·n + r, each option of an n-option label is used q or
q + 1 times in a step: every option q times, plus r extra uses on the options
``(t·r + j) mod n`` for j < r, so that the extra use rotates and over any n consecutive steps
every option is used exactly m times. ``InputChoice`` labels are drawn uniformly per path (they
are not candidate blocks).

Everything is drawn from ``random.Random(f"{seed}:{step}")``: a pure function of (seed, step).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..arch import Arch, SearchSpace
from ..nn.choices import InputChoice
from .base import Strategy


def fair_paths(space: SearchSpace, seed: int, step: int) -> list[Arch]:
    """The m architectures of ``step``: column k of every label's shuffled option list is path k."""
    rng = random.Random(f"{seed}:{step}")
    fair = [label for label in space.labels if not isinstance(space.choice(label), InputChoice)]
    m = max((space.n_options(label) for label in fair), default=1)
    columns = {}
    for label in fair:
        n = space.n_options(label)
        q, r = divmod(m, n)
        uses = list(range(n)) * q + [(step * r + j) % n for j in range(r)]  # the rotating extras
        rng.shuffle(uses)
        columns[label] = uses
    paths = []
    for k in range(m):
        arch = {}
        for label in space.labels:
            arch[label] = columns[label][k] if label in columns else space.sample_label(label, rng)
        paths.append(arch)
    return paths


class FairNAS(Strategy):
    """m single paths per step with strictly fair candidate use; one weight update."""

    name = "fairnas"

    @dataclass
    class Config:
        pass  # FairNAS has no knobs: m is the largest option count of the space

    def train_step(self, step, x, y, ctx):
        losses, outputs = [], []
        paths = fair_paths(self.space, self.seed, step)
        for arch in paths:  # the same batch for each of the m paths (FairNAS Algorithm 1)
            self.space.activate(arch, check=False)
            loss, logits = ctx.loss(x, y)
            loss.backward()  # ∇ accumulates: Σ_k ∇L(path_k); every candidate gets exactly one term
            losses.append(loss.detach())
            outputs.append(logits.detach())
        return torch.stack(losses).mean(), torch.cat(outputs), y.repeat(len(paths))
