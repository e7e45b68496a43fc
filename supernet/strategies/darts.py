"""DARTS: differentiable architecture search, first and second order.

Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019,
https://arxiv.org/abs/1806.09055. Every label has an α (shared by all the choices with that
label, so by all cells of a kind); a choice computes the softmax(α)-weighted sum of its options.
One step:

1. **Architecture step** on a held-out batch (the seam's split of the training data), Adam on α.
   First order: ∇α L_val(w, α). Second order (``unrolled``): with the virtual step
   w' = w − ξ(μ·m + ∇w L_train(w, α) + λw), the gradient ∇α L_val(w', α) − ξ·H·v, where
   v = ∇w' L_val(w', α) and H·v is the central finite difference
   [∇α L_train(w + εv, α) − ∇α L_train(w − εv, α)] / 2ε with ε = 0.01/‖v‖ (architect.py).
2. **Weight step** on the training batch with α fixed; the loop updates the weights (and clips
   the gradient norm: ``grad_clip``).

An ``InputChoice`` whose every input comes from a gated edge (``LayerChoice.gate``: the DARTS
space's nodes) gets weight 1 per input, as the paper's node is the sum of its mixed edges; the
final architecture keeps the inputs whose edges are strongest. Any other ``InputChoice`` (an NNI
model's ``input_switch``) gets its own α and keeps its top ``n_chosen``, as NNI's DartsInputChoice
does.

The final architecture (``final_arch``) follows the paper's genotype rule: on each kept edge the argmax op other than ``none``;
``max_skips`` caps skip-connects per normal cell (P-DARTS' remedy for skip collapse).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ..arch import Arch, SearchSpace
from ..nn.choices import InputChoice, LayerChoice, gate_of, shared_relus
from ..runtime import dist
from ..runtime.seeding import mix_seed
from .base import (StepContext, Strategy, frozen, load_weights_state_, weights_history, weights_state,
                   weights_template)

NONE = "none"  # an op that is never exported (DARTS' zero op)
SKIP = "skip_connect"


class DARTS(Strategy):
    """Softmax relaxation of every choice; α by Adam on held-out batches, weights by the loop."""

    name = "darts"
    path_only = False  # every op of every edge is in the graph

    @dataclass
    class Config:
        unrolled: bool = False             # second order (the paper's default in its README is first order)
        arch_lr: float = 3e-4              # Adam on α (train_search.py), for its 19,500 steps: α travels about
                                           # arch_lr x steps, so a run of N steps wants about 6 / N
        arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
        arch_weight_decay: float = 1e-3
        held_out: float = 0.5              # share of the training split that trains α (train_portion 0.5)
        init_scale: float = 1e-3           # α = init_scale * N(0, 1)
        max_skips: Optional[int] = None    # P-DARTS: at most this many skip_connects per normal cell (2 is usual)
        snapshot_every: int = 10           # steps between the α snapshots plotted in search/search.png
        recompute: float = 0.0             # share of the mixed LayerChoices, the first the model declares (in a CNN
                                           # the largest maps: 0.125 is the darts space's first cell), that keep only
                                           # their input and run their options again in backward: the same gradients,
                                           # less memory, more time (docs/performance.md#darts); 0 keeps them all
        lean_saves: bool = True            # keep narrower max pool indices, and no inputs of frozen pointwise convs
                                           # (α step), for backward: the same bits, less memory, about the same step
                                           # time (docs/performance.md#darts); false keeps what autograd keeps

        def __post_init__(self):
            if not 0 < self.held_out < 1:
                raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
            if self.arch_lr <= 0 or self.arch_weight_decay < 0 or self.init_scale < 0:
                raise ValueError("arch_lr must be > 0, arch_weight_decay and init_scale >= 0")
            if len(self.arch_betas) != 2 or not all(0 <= b < 1 for b in self.arch_betas):
                raise ValueError(f"arch_betas must be two numbers in [0, 1), got {self.arch_betas}")
            if self.max_skips is not None and self.max_skips < 0:
                raise ValueError(f"max_skips must be >= 0 (or null for no cap), got {self.max_skips}")
            if self.snapshot_every < 1:
                raise ValueError(f"snapshot_every must be >= 1, got {self.snapshot_every}")
            if isinstance(self.recompute, bool) or not 0 <= self.recompute <= 1:
                raise ValueError(f"recompute is a share of the mixed choices in [0, 1], got {self.recompute}")

    def __init__(self, space: SearchSpace, config: Optional[Config] = None, seed: int = 0):
        super().__init__(space, config, seed)
        self.edges = edge_map(space)  # InputChoice label -> the LayerChoice label of each input
        for label in space.labels:
            c = space.choice(label)
            if isinstance(c, InputChoice) and label not in self.edges and c.n_chosen is None:
                raise ValueError(f"DARTS cannot export InputChoice '{label}' with n_chosen=None (any subset); "
                                 f"give it an n_chosen or use strategy.name=spos / enas")
        self.learned = [l for l in space.labels if l not in self.edges]  # labels with an α
        if self.config.max_skips is not None and not any(
                l.startswith("normal/") and SKIP in space.choice(l).values for l in self.learned):
            raise ValueError(f"max_skips caps '{SKIP}' ops in labels 'normal/...' (the darts space); "
                             f"this space has none")
        self.alpha: list[nn.Parameter] = []
        self.optimizer: Optional[torch.optim.Adam] = None
        mixed = [m for m in space.model.modules() if isinstance(m, LayerChoice) and m.label in self.learned]
        for i, m in enumerate(mixed):
            m.recompute = i < round(self.config.recompute * len(mixed))
        self.lean = LeanSaves(space.model)  # used with lean_saves
        self.history: list[dict] = []

    @property
    def held_out_fraction(self) -> float:
        return self.config.held_out

    def setup(self, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, 7))
        self.alpha = [nn.Parameter((self.config.init_scale * torch.randn(self.space.n_options(l), generator=gen))
                                   .to(device)) for l in self.learned]
        c = self.config
        self.optimizer = torch.optim.Adam(self.alpha, lr=c.arch_lr, betas=tuple(c.arch_betas),
                                          weight_decay=c.arch_weight_decay)

    def weights(self, detach: bool = False) -> dict[str, torch.Tensor]:
        """label -> softmax(α), the weights the learned choices compute with."""
        return {l: (a.detach() if detach else a).softmax(-1) for l, a in zip(self.learned, self.alpha)}

    def mix(self, detach: bool = False) -> None:
        """Every learned choice weighted by softmax(α), every gated node the sum of all its edges."""
        self.space.set_weights(self.weights(detach))
        self.space.sum_inputs(list(self.edges))

    def probabilities(self) -> dict[str, list[float]]:
        return {l: a.detach().softmax(-1).tolist() for l, a in zip(self.learned, self.alpha)}

    # --- one step --------------------------------------------------------------------------------
    def train_step(self, step: int, x, y, ctx: StepContext):
        if step % self.config.snapshot_every == 0:
            self.history.append({"step": step, "weights": self.probabilities()})
        model = ctx.model
        xv, yv = ctx.held_out(step)
        if self.config.unrolled:
            grads, val_loss = self.unrolled_grads(model, x, y, xv, yv, ctx)
        else:
            self.mix()
            with frozen(model):  # only α needs a gradient: autograd then keeps no conv inputs for weight grads
                with self.saving():
                    val_loss, _ = ctx.loss(xv, yv, net=model)
                grads = list(torch.autograd.grad(val_loss, self.alpha))
            dist.average(grads)
        for a, g in zip(self.alpha, grads):
            a.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ctx.log("val_loss", val_loss.item())

        self.mix(detach=True)  # the weight step sees α as constants
        with self.saving():
            loss, logits = ctx.loss(x, y)
        loss.backward()
        return loss.detach(), logits.detach(), y

    @contextlib.contextmanager
    def saving(self):
        """Around each forward: one relu(x) per input for every mixed choice (``shared_relus``),
        and ``lean_saves`` unless the config turns it off."""
        with shared_relus(), self.lean.saving() if self.config.lean_saves else contextlib.nullcontext():
            yield

    def unrolled_grads(self, model: nn.Module, x, y, xv, yv, ctx: StepContext):
        """The second-order α gradient (architect.py ``_backward_step_unrolled``), and L_val(w')."""
        params = [p for p in model.parameters() if p.requires_grad]
        lr = ctx.optimizer.param_groups[0]["lr"]  # ξ: the loop set this step's LR in every group
        saved = [p.detach().clone() for p in params]
        self.mix(detach=True)
        with self.saving():
            train_loss, _ = ctx.loss(x, y, net=model)
        g = _grads(train_loss, params)
        dist.average(g)
        with torch.no_grad():  # the virtual step w' = w - ξ(μ m + g + λ w), per parameter group
            by_param = {p: (group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0))
                        for group in ctx.optimizer.param_groups for p in group["params"]}
            for p, gp in zip(params, g):
                xi, mu, wd = by_param[p]
                d = gp + wd * p
                buf = ctx.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None and mu:
                    d = d + mu * buf
                p.sub_(xi * d)
        self.mix()
        with self.saving():
            val_loss, _ = ctx.loss(xv, yv, net=model)
        both = _grads(val_loss, self.alpha + params)
        d_alpha, v = both[:len(self.alpha)], both[len(self.alpha):]
        dist.average(d_alpha + v)
        eps = 0.01 / torch.cat([t.reshape(-1) for t in v]).norm()
        hessian = []
        for sign in (1, -1):  # ∇α L_train(w ± εv, α)
            with torch.no_grad():
                for p, w, vp in zip(params, saved, v):
                    p.copy_(w + sign * eps * vp)
            self.mix()  # a fresh softmax: each backward frees its graph
            with self.saving():
                loss, _ = ctx.loss(x, y, net=model)
            hessian.append(_grads(loss, self.alpha))
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)
        hvp = [(gp - gm) / (2 * eps) for gp, gm in zip(*hessian)]
        dist.average(hvp)
        return [da - lr * h for da, h in zip(d_alpha, hvp)], val_loss

    # --- what it found ---------------------------------------------------------------------------
    def final_arch(self) -> Arch:
        return derive(self.space, self.probabilities(), self.edges, self.config.max_skips)

    def arch_history(self) -> dict:
        return weights_history(self, self.learned, self.edges)

    def state_dict(self) -> dict:
        return weights_state("alpha", self.alpha, self.optimizer, self.history)

    def state_template(self) -> dict:
        return weights_template(self, "alpha", self.alpha, self.learned)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = load_weights_state_(state, "alpha", self.alpha, self.optimizer)


def _grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """∂loss/∂t for each t, zeros for the ones the loss does not reach."""
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


# --- what a forward keeps for backward --------------------------------------------------------------
# A mixed choice runs every option on one input, and autograd keeps every option's activations: a
# search step's tensors peak at 8x the fixed network's. (The options that start with a ReLU of the
# same input share one relu(x) in every mixed choice: ``LayerChoice``.) Some of what the rest keeps
# is wider than it needs, or not needed at all, and ``lean_saves`` keeps that part smaller, bit for bit:
# - a max pool's indices (int64) are positions in the input's plane: int16 holds them when the
#   plane has at most 32,768 pixels, int32 up to 2^31;
# - a conv with frozen weights (the first-order α step) computes no weight gradient, and its input
#   gradient reads only the input's shape: an empty tensor of that shape stands in (where it is the
#   conv before's output, which nothing else keeps: a separable conv's pointwise half).
# (Running the pools again in backward instead of keeping their outputs and indices would free
# more, but a pool costs as much as a conv on the CPU: the step took 1.15x as long.)
# Saved-tensor hooks lose autograd's check for tensors changed in place after they were saved, so
# the hooks below do that check themselves.
def _unpack(saved):
    """A saved tensor back: kept as ``(tensor, its version when saved)``, or made by ``saved()``."""
    if type(saved) is tuple:
        t, version = saved
        if t._version != version:
            raise RuntimeError(f"one of the variables needed for gradient computation has been modified by an "
                               f"inplace operation: a tensor of shape {list(t.shape)} is at version {t._version}, "
                               f"expected version {version}")
        return t
    return saved()


class _Narrowed:
    """Max pool indices kept in a narrower integer type."""
    __slots__ = ("kept",)

    def __init__(self, indices: torch.Tensor, dtype: torch.dtype):
        narrow = indices.to(dtype)
        self.kept = (narrow, narrow._version)

    def __call__(self) -> torch.Tensor:
        return _unpack(self.kept).to(torch.int64)


class _ShapeOnly:
    """A frozen conv's saved input: backward reads only its shape and strides."""
    __slots__ = ("size", "stride", "dtype", "device")

    def __init__(self, t: torch.Tensor):
        self.size, self.stride, self.dtype, self.device = t.size(), t.stride(), t.dtype, t.device

    def __call__(self) -> torch.Tensor:
        return torch.empty_strided(self.size, self.stride, dtype=self.dtype, device=self.device)


def _alike(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype and a.device == b.device


def _index_type(x: torch.Tensor) -> Optional[torch.dtype]:
    """The narrowest integer type for positions in ``x``'s last two dimensions (None: int64)."""
    plane = x.shape[-1] * x.shape[-2]
    return torch.int16 if plane <= 2**15 else torch.int32 if plane <= 2**31 else None


def convs_after_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The convs (zero padding) that follow a conv in an ``nn.Sequential`` (a separable conv's
    pointwise half): their input is the conv before's output, which nothing else keeps."""
    out = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq)
            out += [b for a, b in zip(kids, kids[1:])
                    if type(a) is nn.Conv2d and type(b) is nn.Conv2d and b.padding_mode == "zeros"]
    return out


_push_hooks = torch._C._autograd._push_saved_tensors_default_hooks
_pop_hooks = torch._C._autograd._pop_saved_tensors_default_hooks
_top_hooks = torch._C._autograd._top_saved_tensors_default_hooks


class LeanSaves:
    """A forward inside ``saving()`` keeps less for its backward (see above): the same gradients,
    bit for bit. The saved-tensor hooks are pushed only while a watched module runs: a max pool, or
    a conv after a conv whose weights were frozen when the block began. What the rest of the
    forward saves stays with autograd and its in-place check, as does everything under other
    saved-tensor hooks (``torch.utils.checkpoint``, for ``recompute``). The backward may run after
    the block."""

    def __init__(self, model: nn.Module):
        self.pools = [m for m in model.modules() if type(m) is nn.MaxPool2d]
        self.convs = convs_after_convs(model)
        self.running = None  # (module, its input) while a watched module runs with the hooks pushed

    @contextlib.contextmanager
    def saving(self):
        frozen = [m for m in self.convs if not (m.weight.requires_grad or (m.bias is not None and m.bias.requires_grad))]
        handles = []
        try:
            for m in self.pools + frozen:
                handles += [m.register_forward_pre_hook(self._enter),
                            m.register_forward_hook(self._leave, always_call=True)]
            yield
        finally:
            for h in handles:
                h.remove()
            self._leave()

    def _enter(self, m: nn.Module, args) -> None:
        if args and isinstance(args[0], torch.Tensor) and _top_hooks(False) is None:
            self.running = (m, args[0])
            _push_hooks(self._pack, _unpack)

    def _leave(self, *_) -> None:
        if self.running is not None:
            self.running = None
            _pop_hooks()

    def _pack(self, t: torch.Tensor):
        m, x = self.running
        if type(m) is nn.MaxPool2d:
            if t.dtype == torch.int64 and _index_type(x) is not None:  # the indices
                return _Narrowed(t, _index_type(x))
        elif t.data_ptr() == x.data_ptr() and _alike(t, x):  # a frozen conv's input
            return _ShapeOnly(t)
        return t, t._version


@contextlib.contextmanager
def lean_saves(model: nn.Module):
    """``LeanSaves`` for one block: a forward in it keeps less for its backward."""
    with LeanSaves(model).saving():
        yield


def edge_map(space: SearchSpace) -> dict[str, list[str]]:
    """InputChoice label -> the label of the LayerChoice feeding each of its inputs, for the
    InputChoices whose every input is a gated edge (``LayerChoice.gate``) with one label."""
    feeds: dict[str, dict[int, set]] = {}
    for label in space.labels:
        for m in space.choices(label):
            gate = gate_of(m)
            if isinstance(m, LayerChoice) and gate is not None:
                feeds.setdefault(gate[0], {}).setdefault(gate[1], set()).add(label)
    out = {}
    for label, by_input in feeds.items():
        n = space.n_options(label) if label in space.labels else -1
        if sorted(by_input) == list(range(n)) and all(len(s) == 1 for s in by_input.values()):
            out[label] = [next(iter(by_input[k])) for k in range(n)]
    return out


def derive(space: SearchSpace, probs: dict[str, list[float]], edges: dict[str, list[str]],
           max_skips: Optional[int] = None) -> Arch:
    """The genotype rule (model_search.py ``genotype``) over the softmax weights ``probs``.

    Each choice takes its argmax option other than ``none``. A node's ``InputChoice`` keeps its
    ``n_chosen`` strongest inputs, an input's strength being its edge's largest weight over the
    ops other than ``none``; an InputChoice with its own α keeps its largest ``n_chosen``. With
    ``max_skips``, while a normal cell keeps more skip_connects, the kept skip with the smallest
    weight is ruled out on its edge and the cell is derived again.
    """
    banned: set[str] = set()  # op labels whose skip_connect is ruled out

    def best(label: str) -> tuple[float, int]:
        names = space.choice(label).values
        allowed = [i for i, n in enumerate(names) if n != NONE and not (label in banned and n == SKIP)]
        if not allowed:
            raise ValueError(f"label '{label}' has no option other than '{NONE}' to export")
        i = max(allowed, key=lambda i: probs[label][i])
        return probs[label][i], i

    while True:
        arch: Arch = {}
        for label in space.labels:
            c = space.choice(label)
            if label in edges:
                strength = [best(op)[0] for op in edges[label]]
                arch[label] = sorted(sorted(range(c.n_options), key=lambda k: -strength[k])[:c.n_chosen])
            elif isinstance(c, InputChoice):
                arch[label] = sorted(sorted(range(c.n_options), key=lambda k: -probs[label][k])[:c.n_chosen])
            else:
                arch[label] = best(label)[1]
        if max_skips is None:
            return arch
        kept = [op for label, ops in edges.items() if label.startswith("normal/")
                for k in arch[label] for op in [ops[k]]
                if space.choice(op).values[arch[op]] == SKIP]
        if len(kept) <= max_skips:
            return arch
        weakest = min(kept, key=lambda op: probs[op][arch[op]])
        banned.add(weakest)
