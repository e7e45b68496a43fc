"""FBNet: Gumbel-softmax over θ per layer and a multiplicative latency loss.

Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
Search", CVPR 2019, https://arxiv.org/abs/1812.03443. Every label has θ (initialised equal: a
uniform distribution). Each forward mixes every candidate with a Gumbel-softmax sample

    m = softmax((θ + g) / τ),  g = −log(−log u),  u ~ U(0, 1)

and the output of a choice is Σ_i m_i·op_i(x). A step:

1. **θ step** (after ``warmup_steps``) on a held-out batch: one Gumbel sample m serves both the
   output and the latency of the step (NNI 2.8 drew a second one for the latency), and

       loss = CE · α · (log LAT(m))^β,   LAT(m) = Σ_i m_i·LAT_i (the table)     (paper eq. 5; α 0.2, β 0.6)

   with LAT in µs (FBN-A's and NNI's tables are in µs; ``latency_unit``); Adam lr 0.01, wd 5e-4.
2. **Weight step** on the training batch with a fresh sample and θ fixed: cross-entropy (the
   latency factor does not depend on the weights; it would only rescale their learning rate).

The temperature starts at 5.0 and is multiplied by 0.956 (= e^−0.045) after every ``anneal_every``
steps of θ training (an epoch in FBN-A), so it is a function of the step, saved with θ in every
checkpoint. Export: argmax θ per layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..nn.choices import ChannelChoice, InputChoice
from ..runtime import dist
from ..runtime.seeding import mix_seed
from .base import (StepContext, Strategy, argmax_arch, frozen, load_weights_state_, weights_history,
                   weights_state, weights_template)
from .state import Check, positive
from .latency_loss import UNITS, ExpectedLatency, check_log_unit, check_loss_settings, latency_table, log_latency


class FBNet(Strategy):
    """Gumbel-softmax mixing of every candidate; θ by Adam on held-out batches."""

    name = "fbnet"
    path_only = False  # every candidate of every layer is in the graph

    @dataclass
    class Config:
        warmup_steps: int = 0              # weights only before θ training (FBN-A: 10 of 180 epochs)
        arch_lr: float = 0.01              # Adam on θ
        arch_weight_decay: float = 5e-4
        held_out: float = 0.2              # FBN-A trains θ on 20% of the training split
        temperature: float = 5.0           # initial Gumbel-softmax temperature
        temperature_decay: float = 0.956   # e^−0.045, applied after every anneal_every θ steps
        anneal_every: int = 100            # steps per θ "epoch"
        latency_loss: Optional[str] = "mul#log"   # CE · α · (log LAT)^β; null: cross-entropy only
        latency_alpha: float = 0.2
        latency_beta: float = 0.6
        latency_unit: str = "us"           # the log is taken of LAT in this unit (FBN-A: µs)
        snapshot_every: int = 10           # steps between the softmax(θ) snapshots in search/search.png

        def __post_init__(self):
            if self.latency_loss not in (None, "mul#log"):
                raise ValueError(f"latency_loss must be 'mul#log' (the paper's CE·α·log(LAT)^β) or null, "
                                 f"got {self.latency_loss!r}")
            if self.latency_unit not in UNITS:
                raise ValueError(f"latency_unit must be one of {', '.join(UNITS)}, got {self.latency_unit!r}")
            if self.warmup_steps < 0 or self.anneal_every < 1 or self.snapshot_every < 1:
                raise ValueError("warmup_steps must be >= 0, anneal_every and snapshot_every >= 1")
            if not 0 < self.held_out < 1:
                raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
            if self.arch_lr <= 0 or self.arch_weight_decay < 0:
                raise ValueError("arch_lr must be > 0 and arch_weight_decay >= 0")
            if not self.temperature > 0 or not 0 < self.temperature_decay <= 1:
                raise ValueError(f"temperature must be > 0 and temperature_decay in (0, 1], got "
                                 f"{self.temperature}, {self.temperature_decay}")
            check_loss_settings(self, {"mul#log": ("latency_alpha", "latency_beta", "latency_unit")})

    def __init__(self, space: SearchSpace, config: Optional[Config] = None, seed: int = 0, cost=None):
        super().__init__(space, config, seed)
        for label in space.labels:
            if isinstance(space.choice(label), (ChannelChoice, InputChoice)):
                raise ValueError(f"fbnet mixes LayerChoice candidates; '{label}' is a "
                                 f"{type(space.choice(label)).__name__} (use strategy.name=darts or proxyless)")
        self.labels = list(space.labels)
        self.table = latency_table(cost, "strategy.latency_loss") if self.config.latency_loss else None
        if self.table is not None:  # refused before training, not mid-run
            check_log_unit(ExpectedLatency(self.table, space, torch.device("cpu")), self.config.latency_unit,
                           "fbnet's CE·α·(log LAT)^β")
        self.theta: list[nn.Parameter] = []
        self.optimizer: Optional[torch.optim.Adam] = None
        self.latency: Optional[ExpectedLatency] = None
        self.history: list[dict] = []
        self.tau = self.config.temperature

    @property
    def held_out_fraction(self) -> float:
        return self.config.held_out

    def setup(self, device: torch.device) -> None:
        self.theta = [nn.Parameter(torch.full((self.space.n_options(l),), 1.0 / self.space.n_options(l), device=device))
                      for l in self.labels]
        self.optimizer = torch.optim.Adam(self.theta, lr=self.config.arch_lr, weight_decay=self.config.arch_weight_decay)
        if self.table is not None:
            self.latency = ExpectedLatency(self.table, self.space, device)

    def temperature(self, step: int) -> float:
        """τ at ``step``: τ0 · decay^(θ epochs completed), counted in steps after the warm-up."""
        c = self.config
        epochs = max(0, step - c.warmup_steps) // c.anneal_every
        return c.temperature * c.temperature_decay ** epochs

    def gumbel(self, step: int, tag: int, detach: bool) -> dict[str, torch.Tensor]:
        """One Gumbel-softmax sample per label, a function of (seed, step, tag)."""
        gen = torch.Generator().manual_seed(mix_seed(self.seed, step, tag))
        tau = self.temperature(step)
        out = {}
        for label, t in zip(self.labels, self.theta):
            u = torch.rand(t.numel(), generator=gen, dtype=torch.float64).clamp_min(1e-20)
            g = (-(-u.log()).log()).to(device=t.device, dtype=t.dtype)  # Gumbel(0, 1)
            out[label] = (((t.detach() if detach else t) + g) / tau).softmax(-1)  # m = softmax((θ + g) / τ)
        return out

    def probabilities(self) -> dict[str, list[float]]:
        return {l: t.detach().softmax(-1).tolist() for l, t in zip(self.labels, self.theta)}

    # --- one step --------------------------------------------------------------------------------
    def train_step(self, step: int, x, y, ctx: StepContext):
        c = self.config
        if step % c.snapshot_every == 0:
            self.history.append({"step": step, "weights": self.probabilities()})
        self.tau = self.temperature(step)  # the τ of this step (kept in the checkpoint)
        ctx.log("temperature", self.tau)
        if step >= c.warmup_steps:
            grads = self.arch_grads(step, ctx)
            dist.average(grads)
            for t, g in zip(self.theta, grads):
                t.grad = g
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

        self.space.set_weights(self.gumbel(step, 1, detach=True))  # θ fixed for the weights
        loss, logits = ctx.loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach(), y

    def arch_grads(self, step: int, ctx: StepContext) -> list[torch.Tensor]:
        """∂loss/∂θ on held-out batch ``step``, the output and the latency from one Gumbel sample."""
        c = self.config
        m = self.gumbel(step, 2, detach=False)
        self.space.set_weights(m)
        xv, yv = ctx.held_out(step)
        with frozen(ctx.model):  # only θ needs a gradient
            ce, _ = ctx.loss(xv, yv, net=ctx.model)
            loss = ce
            if self.latency is not None:
                lat = self.latency(m)  # the same sample m as the output
                loss = c.latency_alpha * ce * log_latency(lat, c.latency_unit, "fbnet") ** c.latency_beta  # CE·α·(log LAT)^β
                ctx.log("sample_latency_ms", lat.item())
            grads = list(torch.autograd.grad(loss, self.theta))
        ctx.log("arch_loss", loss.item())
        ctx.log("val_ce", ce.item())
        return grads

    # --- what it found ---------------------------------------------------------------------------
    def final_arch(self) -> Arch:
        return argmax_arch(self.space, self.labels, self.theta)

    def arch_history(self) -> dict:
        return weights_history(self, self.labels)

    def state_dict(self) -> dict:
        return {**weights_state("theta", self.theta, self.optimizer, self.history), "temperature": self.tau}

    def state_template(self) -> dict:
        return {**weights_template(self, "theta", self.theta, self.labels),
                "temperature": Check("a temperature > 0", positive)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = load_weights_state_(state, "theta", self.theta, self.optimizer)
        self.tau = float(state["temperature"])
