"""SPOS: uniform single-path sampling, optionally under FLOPs/params/latency constraints.

Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020,
https://arxiv.org/abs/1904.00420. One step: draw a path, train it, update only its weights.

The path of step ``t`` is drawn from ``random.Random(f"{seed}:{t}")``: a pure function of
(seed, step). Resumed runs repeat it, and every DDP rank draws the same path with no broadcast.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

from ..arch import Arch, SearchSpace
from ..cost import Constraints, CostModel
from ..runtime.units import fmt_count
from .base import Strategy


class SPOS(Strategy):
    """Uniform single-path sampling; the path's weights alone are updated (``path_only``)."""

    name = "spos"

    @dataclass
    class Config:
        constraints: list[str] = field(default_factory=list)  # hard limits on every sampled path, e.g. ["flops<=330M"], ["latency<=2ms"]
        flops_bins: Optional[list[float]] = None  # official: [290e6, 300e6, ..., 360e6] = 7 bins, one drawn uniformly per step
        max_tries: int = 500                      # official: 500 tries per step, then a plain uniform path

        def __post_init__(self):
            if self.max_tries < 1:
                raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")
            if self.flops_bins is not None and (len(self.flops_bins) < 2 or sorted(self.flops_bins) != list(self.flops_bins)):
                raise ValueError(f"flops_bins must be >= 2 increasing bin edges, got {self.flops_bins}")

    def __init__(self, space: SearchSpace, config: Optional[Config] = None, seed: int = 0,
                 cost: Optional[CostModel] = None):
        super().__init__(space, config, seed)
        c = self.config
        if cost is None and (c.constraints or c.flops_bins):
            cost = CostModel(space.model)  # FLOPs and params; latency constraints need the run's table (cost=)
        self.sampler = PathSampler(space, seed, cost, Constraints(cost, c.constraints) if cost else None,
                                   c.flops_bins, c.max_tries)

    def train_step(self, step, x, y, ctx):
        self.space.activate(self.sampler(step), check=False)  # a ~ U(A) (under the constraints)
        loss, logits = ctx.loss(x, y)
        loss.backward()  # grads on the path only; the others stay None and are not updated
        return loss.detach(), logits.detach(), y

    def summary(self) -> dict:
        return {"bin_fallbacks": self.sampler.fallbacks}


class PathSampler:
    """Draws the architecture of each training step.

    Args:
        space: the supernet's search space.
        seed: with the step, fixes the path.
        constraints: hard limits every path must meet (e.g. ``flops<=330M``); tries are bounded
            by ``max_tries`` and an impossible constraint fails at construction.
        flops_bins: the official scheme: bin edges (e.g. 290M, 300M, ..., 360M); each step picks
            one bin uniformly and tries up to ``max_tries`` uniform paths to land in it, then falls
            back to a plain uniform path (as the official code does) and counts it.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, cost: Optional[CostModel] = None,
                 constraints: Optional[Constraints] = None, flops_bins: Optional[list[float]] = None,
                 max_tries: int = 500):
        self.space, self.seed, self.cost, self.max_tries = space, seed, cost, max_tries
        self.constraints = constraints if constraints else None
        self.bins = None
        self.fallbacks = 0  # steps whose bin was missed max_tries times
        if (self.constraints or flops_bins) and cost is None:
            raise ValueError("constrained sampling needs a CostModel")
        if self.constraints:
            self.constraints.check_feasible()
        if flops_bins:
            r = cost.range()
            self.bins = list(zip(flops_bins[:-1], flops_bins[1:]))
            for lo, hi in self.bins:
                if hi < r["flops_min"] or lo > r["flops_max"]:
                    raise ValueError(f"FLOPs bin [{fmt_count(lo)}, {fmt_count(hi)}] is outside this space's FLOPs range "
                                     f"{fmt_count(r['flops_min'])} .. {fmt_count(r['flops_max'])}")

    def rng(self, step: int) -> random.Random:
        return random.Random(f"{self.seed}:{step}")

    def __call__(self, step: int) -> Arch:
        rng = self.rng(step)
        if self.bins is None and self.constraints is None:
            return self.space.sample(rng)
        if self.bins is not None:
            lo, hi = self.bins[rng.randrange(len(self.bins))]
            for _ in range(self.max_tries):
                arch = self.space.sample(rng)
                if lo <= self.cost.flops(arch) <= hi and (self.constraints is None or self.constraints.ok(arch)):
                    return arch
            self.fallbacks += 1
        for _ in range(self.max_tries):
            arch = self.space.sample(rng)
            if self.constraints is None or self.constraints.ok(arch):
                return arch
        r = self.cost.range()
        timed = f", predicted latency {r['latency_min']:.4g} .. {r['latency_max']:.4g} ms" if "latency_min" in r else ""
        raise ValueError(f"no path met {self.constraints} in {self.max_tries} tries at step {step}; the space's "
                         f"FLOPs range is {fmt_count(r['flops_min'])} .. {fmt_count(r['flops_max'])}{timed}: loosen the "
                         f"constraint or raise strategy.max_tries")
