"""ProxylessNAS: binary gates over softmax(α), one or two paths per step, a latency loss.

Cai, Zhu, Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware",
ICLR 2019, https://arxiv.org/abs/1812.00332; the released ``search/modules/mix_op.py`` and
``nas_manager.py``. Every label has α; p = softmax(α). A step:

1. **Weight step** on the training batch: one path, each label's op drawn from p (uniformly during
   the warm-up), only that path's weights get gradients: the fixed subnet's step.
2. **Architecture step**, every ``arch_every`` weight steps after the warm-up (before that step's
   weight step), on a held-out batch. The released code also skips α steps in the first epoch
   after its warm-up, which samples from an α still at its ~uniform init: one more warm-up epoch,
   so here ``warmup_steps`` covers both. Binary gates g (one-hot on the drawn op) multiply the op's
   output, so ∂L/∂g_k = Σ(o_k(x) ⊙ ∂L/∂y), and

       ∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i)                         (mix_op.py, eq. 4 of the paper)

   - ``full_v2`` (the released default): the forward runs the drawn op only; in the backward the
     other candidates run once each, without autograd, on the saved input, for their ∂L/∂g_k.
   - ``two`` (the paper's): two ops drawn from p without replacement, one of them active by the
     pair's renormalised softmax; i, j and p range over the pair only. After Adam's step the
     pair's α are shifted by log(Σ e^α_new / Σ e^α_old) so that every other op keeps its
     probability (the latency gradient, which reaches every α, still moves them).

   The weights are frozen in this step (only activations' gradients are computed), so a step holds
   one path's activations plus one candidate output at a time. A label whose drawn op is ``zero``
   gets no α update in that step (its gate sees no op output), as in the released code.

The latency loss needs the run's latency table (``latency.table``); E[LAT] = Σ p·LAT is
differentiable in α (``hardware.ExpectedLatency``):

    mul#log:     loss = α_r · CE · (log E[LAT] / log LAT_ref)^β      (imagenet_arch_search.py's α_r 0.2, β 0.3)
    add#linear:  loss = CE + λ · (E[LAT] − LAT_ref) / LAT_ref          (λ 0.1)

``InputChoice`` labels get gates too (an input's ∂L/∂g_k is free: the inputs are computed anyway);
the final architecture takes argmax α per LayerChoice and the top ``n_chosen`` inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..nn.choices import ChannelChoice, InputChoice, LayerChoice
from ..nn.layers import Zero
from ..runtime import dist
from ..runtime.seeding import mix_seed
from .base import (StepContext, Strategy, argmax_arch, frozen, load_weights_state_, weights_history,
                   weights_state, weights_template)
from .latency_loss import (LOSSES, UNITS, ExpectedLatency, check_log_unit, check_loss_settings, latency_table,
                           log_latency)

MODES = ("full_v2", "two")


class Proxyless(Strategy):
    """Binary-gate path sampling; α by Adam on held-out batches every ``arch_every`` steps."""

    name = "proxyless"
    path_only = True  # both steps hold one path (the arch step adds transient candidate outputs)

    @classmethod
    def single_path(cls) -> bool:
        return False  # the α step gates two candidates of a choice in one forward

    @dataclass
    class Config:
        mode: str = "full_v2"              # released default; 'two' is the paper's two-path estimate
        warmup_steps: int = 0              # weights only, uniform paths (the paper: 40 of 160 epochs)
        arch_every: int = 5                # grad_update_arch_param_every: one α step per 5 weight steps
        arch_lr: float = 1e-3              # Adam on α (imagenet_arch_search.py)
        arch_betas: list[float] = field(default_factory=lambda: [0.0, 0.999])  # β1 = 0: an op not in the
        arch_eps: float = 1e-8                                                 # step does not move
        arch_weight_decay: float = 0.0
        init_scale: float = 1e-3           # α = init_scale * N(0, 1)
        held_out: float = 0.2              # share of the training split for α (the paper: 50k ImageNet images)
        latency_loss: Optional[str] = "mul#log"   # the released script's; null: cross-entropy only
        ref_latency: float = 80.0          # LAT_ref in ms (the paper's mobile target)
        latency_alpha: float = 0.2         # mul#log: α_r
        latency_beta: float = 0.3          # mul#log: β
        latency_lambda: float = 0.1        # add#linear: λ
        latency_unit: str = "ms"           # mul#log takes logs in this unit (both latencies must be > 1 in it)
        snapshot_every: int = 10           # steps between the p snapshots plotted in search/search.png

        def __post_init__(self):
            if self.mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
            if self.latency_loss is not None and self.latency_loss not in LOSSES:
                raise ValueError(f"latency_loss must be one of {', '.join(LOSSES)} or null, got {self.latency_loss!r}")
            if self.latency_unit not in UNITS:
                raise ValueError(f"latency_unit must be one of {', '.join(UNITS)}, got {self.latency_unit!r}")
            if self.warmup_steps < 0 or self.arch_every < 1 or self.snapshot_every < 1:
                raise ValueError("warmup_steps must be >= 0, arch_every and snapshot_every >= 1")
            if not 0 < self.held_out < 1:
                raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
            if self.arch_lr <= 0 or self.arch_weight_decay < 0 or self.init_scale < 0 or self.arch_eps <= 0:
                raise ValueError("arch_lr and arch_eps must be > 0, arch_weight_decay and init_scale >= 0")
            if len(self.arch_betas) != 2 or not all(0 <= b < 1 for b in self.arch_betas):
                raise ValueError(f"arch_betas must be two numbers in [0, 1), got {self.arch_betas}")
            if not self.ref_latency > 0:
                raise ValueError(f"ref_latency must be > 0 ms, got {self.ref_latency}")
            check_loss_settings(self, {"mul#log": ("ref_latency", "latency_alpha", "latency_beta", "latency_unit"),
                                       "add#linear": ("ref_latency", "latency_lambda")})

    def __init__(self, space: SearchSpace, config: Optional[Config] = None, seed: int = 0, cost=None):
        super().__init__(space, config, seed)
        for label in space.labels:
            c = space.choice(label)
            if isinstance(c, ChannelChoice):
                raise ValueError(f"proxyless gates LayerChoice and InputChoice labels; ChannelChoice '{label}' "
                                 f"cannot be binarized (use strategy.name=spos for channel search)")
            if isinstance(c, InputChoice) and (c.n_chosen is None or c.reduction not in ("sum", "mean")):
                raise ValueError(f"proxyless gates an InputChoice with a fixed n_chosen and reduction 'sum' or "
                                 f"'mean'; '{label}' has n_chosen={c.n_chosen}, reduction={c.reduction!r}")
        self.labels = list(space.labels)
        self.table = latency_table(cost, "strategy.latency_loss") if self.config.latency_loss else None
        if self.table is not None and self.config.latency_loss == "mul#log":  # refused before training, not mid-run
            check_log_unit(ExpectedLatency(self.table, space, torch.device("cpu")), self.config.latency_unit, "mul#log",
                           self.config.ref_latency)
        self.zero = {l: [i for i, m in enumerate(self._layer(l).candidates.values() if self._layer(l) else [])
                         if isinstance(m, Zero)] for l in self.labels}
        self.alpha: list[nn.Parameter] = []
        self.optimizer: Optional[torch.optim.Adam] = None
        self.latency: Optional[ExpectedLatency] = None
        self.history: list[dict] = []

    def _layer(self, label) -> Optional[LayerChoice]:
        c = self.space.choice(label)
        return c if isinstance(c, LayerChoice) else None

    @property
    def held_out_fraction(self) -> float:
        return self.config.held_out

    def setup(self, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, 7))
        c = self.config
        self.alpha = [nn.Parameter((c.init_scale * torch.randn(self.space.n_options(l), generator=gen)).to(device))
                      for l in self.labels]
        self.optimizer = torch.optim.Adam(self.alpha, lr=c.arch_lr, betas=tuple(c.arch_betas), eps=c.arch_eps,
                                          weight_decay=c.arch_weight_decay)
        if self.table is not None:
            self.latency = ExpectedLatency(self.table, self.space, device)

    def probabilities(self) -> dict[str, list[float]]:
        return {l: a.detach().softmax(-1).tolist() for l, a in zip(self.labels, self.alpha)}

    # --- one step --------------------------------------------------------------------------------
    def train_step(self, step: int, x, y, ctx: StepContext):
        if step % self.config.snapshot_every == 0:
            self.history.append({"step": step, "weights": self.probabilities()})
        c = self.config
        if step >= c.warmup_steps and (step - c.warmup_steps) % c.arch_every == 0:
            self.arch_step(step, ctx)
        self.space.activate(self.sample_path(step), check=False)
        loss, logits = ctx.loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach(), y

    def sample_path(self, step: int) -> Arch:
        """The weight step's path: each label's op from p, uniformly during the warm-up."""
        gen = torch.Generator().manual_seed(mix_seed(self.seed, step, 1))
        warm = step < self.config.warmup_steps
        arch = {}
        for label, a in zip(self.labels, self.alpha):
            p = torch.ones(a.numel()) if warm else a.detach().softmax(-1).cpu()
            c = self.space.choice(label)
            k = c.n_chosen if isinstance(c, InputChoice) else 1
            drawn = torch.multinomial(p, k, replacement=False, generator=gen).tolist()
            arch[label] = sorted(drawn) if isinstance(c, InputChoice) else drawn[0]
        return arch

    def draw(self, step: int) -> tuple[dict, dict]:
        """The arch step's gates: per label the ops involved (full_v2: all; two: the drawn pair) and
        the active one(s), a function of (seed, step)."""
        gen = torch.Generator().manual_seed(mix_seed(self.seed, step, 2))
        involved, active = {}, {}
        for label, a in zip(self.labels, self.alpha):
            p = a.detach().softmax(-1).cpu()
            c = self.space.choice(label)
            k = c.n_chosen if isinstance(c, InputChoice) else 1
            if self.config.mode == "two":  # two drawn from p; the active one(s) by the pair's renormalised softmax
                pair = torch.multinomial(p, k + 1, replacement=False, generator=gen).tolist()
                on = torch.multinomial(p[pair], k, replacement=False, generator=gen).tolist()
                involved[label], active[label] = pair, [pair[i] for i in on]
            else:
                involved[label] = list(range(len(p)))
                active[label] = torch.multinomial(p, k, replacement=False, generator=gen).tolist()
        return involved, active

    def arch_step(self, step: int, ctx: StepContext) -> None:
        grads, involved, skipped = self.arch_grads(step, ctx)
        dist.average(grads)
        old = [a.detach().clone() for a in self.alpha]
        for label, a, g in zip(self.labels, self.alpha, grads):
            a.grad = None if label in skipped else g  # a drawn zero op: no update (mix_op.py)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.mode == "two":
            with torch.no_grad():
                for label, a, a_old in zip(self.labels, self.alpha, old):
                    idx = involved[label]
                    # α_pair -= log(Σ e^α_new / Σ e^α_old): the pair's total mass is what it was
                    a[idx] -= a[idx].logsumexp(-1) - a_old[idx].logsumexp(-1)

    def arch_grads(self, step: int, ctx: StepContext) -> tuple[list[torch.Tensor], dict, set]:
        """∂loss/∂α on held-out batch ``step`` through the binary gates (and the latency term);
        returns the gradients, the involved ops per label and the labels that get no update."""
        model = ctx.model
        involved, active = self.draw(step)
        probs = [a.softmax(-1) for a in self.alpha]  # p, differentiable (the latency term)
        gates, restrict = {}, {}
        for label, p in zip(self.labels, probs):
            g = torch.zeros(len(p), device=p.device)
            g[active[label]] = 1.0
            gates[label] = g.requires_grad_()
            # A LayerChoice computes its active op only; an InputChoice weighs all its inputs (by 0 or
            # 1), which costs nothing and gives autograd every input's ∂L/∂g.
            if isinstance(self.space.choice(label), LayerChoice):
                restrict[label] = active[label]
        self.space.set_weights(gates, active=restrict)
        extra = {l: torch.zeros(len(g), device=g.device) for l, g in gates.items()}  # ∂L/∂g_k of ops not run
        skipped = {l for l in self.labels if set(active[l]) & set(self.zero[l])}
        handles = [m.register_forward_hook(self._gate_hook([k for k in involved[label] if k not in active[label]],
                                                           extra[label]))
                   for label in restrict if label not in skipped for m in self.space.choices(label)]
        xv, yv = ctx.held_out(step)
        try:
            with frozen(model):
                ce, _ = ctx.loss(xv, yv, net=model)
                lat = self.latency(dict(zip(self.labels, probs))) if self.latency is not None else None
                loss = self.regularized(ce, lat)
                auto = torch.autograd.grad(loss, [gates[l] for l in self.labels] + list(self.alpha), allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        n = len(self.labels)
        grads, self.gate_grads = [], {}
        for i, (label, a, p) in enumerate(zip(self.labels, self.alpha, probs)):
            lat_grad = auto[n + i] if auto[n + i] is not None else torch.zeros_like(a)  # ∂(latency term)/∂α
            G = (auto[i] if auto[i] is not None else torch.zeros_like(a)) + extra[label]  # ∂L/∂g
            self.gate_grads[label] = G  # the last arch step's, for inspection
            idx = involved[label]
            q = a.detach()[idx].softmax(-1) if self.config.mode == "two" else p.detach()  # two: p over the pair
            d_alpha = torch.zeros_like(a)
            d_alpha[idx] = q * (G[idx] - (G[idx] * q).sum())  # Σ_j G_j q_j (δ_ij − q_i)
            grads.append(d_alpha + lat_grad)
        ctx.log("arch_loss", loss.item())
        ctx.log("val_ce", ce.item())
        if lat is not None:
            ctx.log("expected_latency_ms", lat.item())
        return grads, involved, skipped

    @staticmethod
    def _gate_hook(others: list[int], out: torch.Tensor):
        """A forward hook that, in the backward, runs the candidates ``others`` on the saved input and
        adds Σ(o_k(x) ⊙ ∂L/∂y) into ``out[k]`` (full_v2: every other op; two: the pair's other one)."""
        def forward_hook(module, args, y):
            if not others or not y.requires_grad:
                return

            def backward_hook(grad):
                with torch.no_grad():
                    for k in others:
                        if not isinstance(module[k], Zero):
                            out[k] += (module[k](*args) * grad).sum()  # ∂L/∂g_k = Σ(o_k ⊙ ∂L/∂y)
            y.register_hook(backward_hook)
        return forward_hook

    def regularized(self, ce: torch.Tensor, lat: Optional[torch.Tensor]) -> torch.Tensor:
        c = self.config
        if lat is None:
            return ce
        if c.latency_loss == "mul#log":  # α_r · CE · (log E[LAT] / log LAT_ref)^β
            ref = math.log(c.ref_latency * UNITS[c.latency_unit])
            return c.latency_alpha * ce * (log_latency(lat, c.latency_unit, "proxyless") / ref) ** c.latency_beta
        return ce + c.latency_lambda * (lat - c.ref_latency) / c.ref_latency  # CE + λ (E[LAT] − ref) / ref

    # --- what it found ---------------------------------------------------------------------------
    def final_arch(self) -> Arch:
        return argmax_arch(self.space, self.labels, self.alpha)

    def arch_history(self) -> dict:
        return weights_history(self, self.labels)

    def state_dict(self) -> dict:
        return weights_state("alpha", self.alpha, self.optimizer, self.history)

    def state_template(self) -> dict:
        return weights_template(self, "alpha", self.alpha, self.labels)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = load_weights_state_(state, "alpha", self.alpha, self.optimizer)
