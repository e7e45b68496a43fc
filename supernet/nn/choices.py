"""Choice primitives: plain ``nn.Module``s whose decision is set from outside.

A choice never decides by itself. A strategy (or ``SearchSpace.activate`` / ``set_weights``)
writes one of two attributes, and ``forward`` reads them:

- ``active``: the chosen index (SPOS, ENAS), or for ``InputChoice`` a list of indices. Under
  ``weights`` an index or a list of indices restricts the weighted sum to those options
  (Proxyless computes only the sampled pair).
- ``weights``: a 1-D tensor over the options (DARTS softmax, FBNet Gumbel-softmax, Proxyless
  binary gates). When set, the output is the weighted sum of the candidates' outputs.

This follows OFA's dynamic layers (``active_*`` attributes) rather than NNI v3's metaclasses:
reading a model top-down tells you exactly what runs. The constructors take NNI 2.x's arguments
(``LayerChoice(candidates, label=None)``, ``InputChoice(n_candidates, n_chosen=1, reduction="sum",
label=None)``), so NNI one-shot model code runs after changing its imports.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import Zero

# One process-wide counter per kind, as NNI numbers its automatic labels. The labels then depend
# on construction order: give explicit labels to choices whose architectures you save.
_counters: dict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))


def auto_label(kind: str) -> str:
    """A new label ``"{kind}_{k}"``, unique in this process (``layerchoice_1``, ``layerchoice_2``...)."""
    return f"{kind}_{next(_counters[kind])}"


class Choice(nn.Module):
    """Base of every choice: a label, a list of option values and the two decision attributes."""

    def __init__(self, label: str, values: Sequence):
        super().__init__()
        if not isinstance(label, str) or not label:
            raise ValueError(f"a choice label must be a non-empty string, got {label!r}")
        self.label = label
        self.values = list(values)  # what each option means, for people and for NNI-3 import
        self.active: int | list[int] | None = None
        self.weights: torch.Tensor | None = None

    @property
    def n_options(self) -> int:
        return len(self.values)

    def no_decision(self) -> RuntimeError:
        """The error a choice without a decision raises (naming its label)."""
        return RuntimeError(
            f"{type(self).__name__} '{self.label}' has no active option: activate an architecture "
            f"first (SearchSpace(model).activate(arch)) or set .active / .weights")

    def extra_repr(self) -> str:
        return f"label={self.label!r}, values={self.values}"


class LayerChoice(Choice):
    """Runs one of several candidate modules.

    Args:
        candidates: a list of modules (values are their indices' names ``"0"``, ``"1"``, ...) or a
            dict (e.g. an ``OrderedDict``) from name to module.
        label: the decision's name in an architecture dict. Two choices with the same label are
            one decision. None gives a new automatic label (``layerchoice_1``, ...), as in NNI.
    """

    def __init__(self, candidates: Sequence[nn.Module] | dict[str, nn.Module], label: str | None = None):
        label = auto_label("layerchoice") if label is None else label
        if isinstance(candidates, dict):
            items = list(candidates.items())
        else:
            items = [(str(i), m) for i, m in enumerate(candidates)]
        if len(items) < 1:
            raise ValueError(f"LayerChoice '{label}' needs at least one candidate")
        super().__init__(label, [name for name, _ in items])
        self.candidates = nn.ModuleDict(OrderedDict(items))
        self._list = list(self.candidates.values())  # O(1) index access on the hot path
        self.recompute = False  # under weights: keep only the inputs, recompute the options in backward

    def __getitem__(self, index: int) -> nn.Module:
        return self._list[index]

    def __len__(self) -> int:
        return len(self._list)

    def forward(self, *args, **kwargs):
        if self.weights is None:
            if isinstance(self.active, int):
                return self._list[self.active](*args, **kwargs)
            raise self.no_decision()
        indices = _selection(self.active, len(self._list))
        if not indices:
            raise ValueError(f"LayerChoice '{self.label}': .active restricts the weighted sum to no candidate")
        # An op that outputs zeros (DARTS' 'none') adds nothing to the sum and nothing to any
        # gradient: it is skipped, unless it is all there is.
        computed = [i for i in indices if not isinstance(self._list[i], Zero)] or indices
        # Options that start with a ReLU of the same input (DARTS' four convs, NAS-Bench-201's two)
        # share one relu(x): computed, kept for backward and differentiated once, not per option
        # (and once per input for every choice in a ``shared_relus()`` block). It is computed outside
        # a recomputed region, so recomputing changes nothing in the graph. Only where autograd
        # records: it would raise if an option changed the shared relu(x) in place.
        one = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) and torch.is_grad_enabled()
        x = args[0] if one else None
        relus = [leading_relu(self._list[i]) if x is not None else None for i in computed]
        first = next((r for r in relus if r is not None), None)
        h = None if first is None else relu_of(x, first)
        starts = [r is not None for r in relus]
        if self.recompute and torch.is_grad_enabled():
            return recomputed(self, self._weighted_sum, computed, starts, h, self.weights, *args, **kwargs)
        return self._weighted_sum(computed, starts, h, self.weights, *args, **kwargs)

    def _weighted_sum(self, computed: list[int], starts: list[bool], h, weights: torch.Tensor, *args, **kwargs):
        out = None
        for i, after_relu in zip(computed, starts):
            y = weights[i] * (after_leading_relu(self._list[i], h) if after_relu else self._list[i](*args, **kwargs))
            out = y if out is None else out + y
        return out


_shared = threading.local()  # .relus: id(x) -> (x, relu(x), their versions) inside a shared_relus() block


@contextlib.contextmanager
def shared_relus(on: bool = True):
    """Inside the block, the mixed ``LayerChoice``s share one relu(x) per input x (a DARTS cell's
    state feeds up to four edges, each with four options that start with its ReLU); ``on=False``
    turns that off within an outer block."""
    outer = getattr(_shared, "relus", None)
    _shared.relus = ((outer if outer is not None else {}) if on else None)
    try:
        yield
    finally:
        _shared.relus = outer


def relu_of(x: torch.Tensor, relu: nn.ReLU) -> torch.Tensor:
    """``relu(x)``, computed once per input inside a ``shared_relus()`` block."""
    relus = getattr(_shared, "relus", None)
    if relus is None:
        return relu(x)
    hit = relus.get(id(x))
    if hit is not None and hit[0] is x and hit[2] == (x._version, hit[1]._version):
        return hit[1]
    y = relu(x)
    relus[id(x)] = (x, y, (x._version, y._version))
    return y


def leading_relu(op: nn.Module) -> nn.ReLU | None:
    """The ``nn.ReLU`` (not in place, no hooks) that ``op`` applies first, through nested
    ``nn.Sequential``s without hooks, or None."""
    while isinstance(op, nn.Sequential) and type(op).forward is nn.Sequential.forward:
        if not len(op) or op._forward_hooks or op._forward_pre_hooks:
            return None
        op = op[0]
    hooked = op._forward_hooks or op._forward_pre_hooks
    return op if type(op) is nn.ReLU and not op.inplace and not hooked else None


def after_leading_relu(op: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
    """``op(x)`` from ``h = relu(x)``, its leading ReLU's output (``leading_relu(op)`` is not None),
    through the nested ``nn.Sequential``s that lead to it."""
    first, *rest = op
    if not isinstance(first, nn.ReLU):
        h = after_leading_relu(first, h)
    for m in rest:
        h = m(h)
    return h


def recomputed(module: nn.Module, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` keeping only its inputs for backward, which runs it again to get the
    rest (``torch.utils.checkpoint``, non-reentrant: the backward is the first forward's graph, so
    the gradients are bitwise those without recomputation). The second run must not move
    ``module``'s buffers a second time (BatchNorm's running statistics): they are put back."""
    calls = 0

    def run(*a, **kw):  # its own relu(x)s in both runs: the backward runs after any shared_relus() block
        nonlocal calls
        calls += 1
        with shared_relus(on=False), buffers_kept(module) if calls > 1 else contextlib.nullcontext():
            return fn(*a, **kw)
    return checkpoint(run, *args, use_reentrant=False, **kwargs)


@contextlib.contextmanager
def buffers_kept(module: nn.Module):
    """``module``'s buffers as they were before the block."""
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def _selection(active: int | list[int] | None, n: int) -> list[int]:
    """The options a weighted forward runs: all of them, or those ``active`` names."""
    if active is None:
        return list(range(n))
    return [active] if isinstance(active, int) else list(active)


class InputChoice(Choice):
    """Chooses ``n_chosen`` of ``n_candidates`` input tensors and reduces them.

    ``forward`` takes a list of ``n_candidates`` tensors. ``active`` is a sorted list of distinct
    indices: exactly ``n_chosen`` of them, or any number (none included) when ``n_chosen`` is None,
    as for ENAS macro skip connections. An empty selection contributes nothing: ``"sum"`` and
    ``"mean"`` give zeros shaped like the first input, ``"concat"`` gives it with zero channels,
    and ``"none"`` an empty list; so both ``out + skip(xs)`` and NNI's ``if c is not None`` work.

    With ``weights`` set (DARTS edges) each input i is scaled by ``weights[i]`` before the
    reduction, over all inputs or over those ``active`` names: ``"sum"`` is the weighted sum,
    ``"mean"`` the weighted average ``sum(w_i x_i) / sum(w_i)`` (equal to the sum under softmax
    weights, and to the plain mean under 0/1 gates), ``"concat"`` concatenates the ``w_i x_i``
    (it must then cover ``n_chosen`` inputs, or the width would differ from every architecture's)
    and ``"none"`` returns the ``w_i x_i`` as a list.

    Args:
        n_candidates: how many inputs ``forward`` receives.
        n_chosen: how many are kept; None for any subset.
        reduction: ``"sum"``, ``"mean"``, ``"concat"`` (along dim 1) or ``"none"`` (the list of
            chosen tensors) of the chosen inputs.
        label: the decision's name; None gives a new automatic one (``inputchoice_1``, ...). The
            order of these arguments is NNI's, so pass ``label`` by keyword.

    Attributes:
        anchors: for each input, the label of the decision that produces it (the ENAS controller
            attends over those decisions' states), or None where no decision does; set by the
            space, None when it names none.
    """

    REDUCTIONS = ("sum", "mean", "concat", "none")

    def __init__(self, n_candidates: int, n_chosen: int | None = 1, reduction: str = "sum",
                 label: str | None = None):
        who = "InputChoice" if label is None else f"InputChoice '{label}'"
        if reduction not in self.REDUCTIONS:
            hint = (f" (the order is n_candidates, n_chosen, reduction, label as in NNI: pass label={reduction!r})"
                    if isinstance(reduction, str) else "")
            raise ValueError(f"{who}: reduction {reduction!r} is not one of {self.REDUCTIONS}{hint}")
        if n_candidates < 1:
            raise ValueError(f"{who}: n_candidates must be at least 1, got {n_candidates}")
        if n_chosen is not None and not 1 <= n_chosen <= n_candidates:
            raise ValueError(f"{who}: n_chosen must be in 1..{n_candidates} (or None for any subset), got {n_chosen}")
        super().__init__(auto_label("inputchoice") if label is None else label, list(range(n_candidates)))
        self.n_candidates = n_candidates
        self.n_chosen = n_chosen
        self.reduction = reduction
        self.anchors: list[str | None] | None = None

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if len(inputs) != self.n_candidates:
            raise ValueError(f"InputChoice '{self.label}' expects {self.n_candidates} inputs, got {len(inputs)}")
        if self.weights is None:
            if self.active is None:
                raise self.no_decision()
            return reduce_inputs(inputs, self.active, self.reduction)
        indices = _selection(self.active, self.n_candidates)
        if self.reduction == "concat" and self.n_chosen is not None and len(indices) != self.n_chosen:
            raise ValueError(f"InputChoice '{self.label}': a weighted concat of {len(indices)} inputs would not have "
                             f"the width of {self.n_chosen} chosen ones; set .active to {self.n_chosen} indices "
                             f"or use reduction 'sum' or 'mean'")
        return reduce_inputs(inputs, indices, self.reduction, self.weights)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, reduction={self.reduction!r}"


def reduce_inputs(inputs: Sequence[torch.Tensor], indices: Sequence[int], reduction: str,
                  weights: torch.Tensor | None = None) -> torch.Tensor | list[torch.Tensor]:
    """Reduce ``inputs[i]`` for i in ``indices``, each scaled by ``weights[i]`` if given (see InputChoice)."""
    chosen = [inputs[i] if weights is None else weights[i] * inputs[i] for i in indices]
    if reduction == "none":
        return chosen
    if not chosen:  # nothing chosen contributes nothing
        return inputs[0][:, :0] if reduction == "concat" else torch.zeros_like(inputs[0])
    if reduction == "concat":
        return torch.cat(chosen, dim=1)
    out = chosen[0]
    for x in chosen[1:]:
        out = out + x
    if reduction == "mean":
        out = out / (len(chosen) if weights is None else sum(weights[i] for i in indices))
    return out


class ChannelChoice(Choice):
    """A width decision: how many channels a group of sliced layers uses (channel search).

    The choice holds no weights. ``SlicedConv2d`` / ``SlicedBatchNorm2d`` layers that were built
    with ``width=this_choice`` read ``current()`` at every forward and slice their largest kernel.
    With ``weights`` set, the layers run at full width and ``SlicedBatchNorm2d`` multiplies its
    output by ``mask()`` (the FBNetV2 channel-masking form of mixing).

    Args:
        widths: the channel counts, one per option, in increasing order.
        label: the decision's name.
    """

    def __init__(self, widths: Sequence[int], label: str):
        widths = [int(w) for w in widths]
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"ChannelChoice '{label}': widths must be positive integers, got {widths}")
        super().__init__(label, widths)
        self.max_width = max(widths)

    def current(self) -> int:
        """The width the sliced layers compute at now (the largest one under mixing)."""
        if self.weights is not None:
            return self.max_width
        if self.active is None:
            raise self.no_decision()
        return self.values[self.active]

    def mask(self) -> torch.Tensor:
        """(max_width,) soft mask: sum over options of weight_i * [channel < width_i]."""
        steps = torch.zeros(self.n_options, self.max_width, device=self.weights.device, dtype=self.weights.dtype)
        for i, w in enumerate(self.values):
            steps[i, :w] = 1
        return self.weights @ steps

    def forward(self, x):  # the choice itself is never on the data path
        raise RuntimeError(f"ChannelChoice '{self.label}' is read by sliced layers; it is not called")


FULL_PRECISION = 32  # the bit width that means "not quantized" (float32)


class BitChoice(Choice):
    """A bit-width decision of quantized layers (mixed-precision search).

    Like ``ChannelChoice`` it holds no weights: the ``Quantized`` layers that share it read
    ``current()`` at every forward. With ``weights`` set they mix their quantized tensors over the
    options (EdMIPS' composite weights and activations), restricted to ``active`` when it is set.

    Args:
        bits: the bit widths, one per option, each in 2..8 or 32 (full precision, not quantized).
        label: the decision's name (``<module path>.weight_bits`` / ``.act_bits``).
    """

    def __init__(self, bits: Sequence[int], label: str):
        super().__init__(label, check_bits(bits, label))

    def current(self) -> int:
        if self.active is None:
            raise self.no_decision()
        return self.values[self.active]

    def forward(self, x):  # the choice itself is never on the data path
        raise RuntimeError(f"BitChoice '{self.label}' is read by quantized layers; it is not called")


def check_bits(bits, what: str) -> list[int]:
    """``bits`` as a list of distinct bit widths in 2..8 or 32; anything else is one clear error."""
    if isinstance(bits, (str, bytes)) or not isinstance(bits, Sequence) or not bits:
        raise ValueError(f"{what}: bit widths are a non-empty list such as [2, 3, 4, 8] (32 for full precision), "
                         f"got {bits!r}")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or not (2 <= b <= 8 or b == FULL_PRECISION):
            raise ValueError(f"{what}: bit width {b!r} is not supported; use integers in 2..8, or 32 for full "
                             f"precision (1-bit layers need a binary quantizer, which is not implemented)")
    if len(set(bits)) != len(bits):
        raise ValueError(f"{what}: bit widths {list(bits)} repeat a value; give each once")
    return [int(b) for b in bits]


# --- gates: a module that is computed only under some input selections -----------------------------
# A module (a DARTS edge, an ENAS cell's output conv) may carry ``gate``; ``fix`` keeps it and the
# cost model counts it only while the gate is open:
#   (label, i)             open while input i of InputChoice ``label`` is chosen (a DARTS edge);
#   NoneChosen(pairs)      open while none of the (label, i) pairs is chosen (an ENAS cell's
#                          output takes the states that no node chose).
@dataclass(frozen=True)
class NoneChosen:
    """A gate open while no (InputChoice label, input index) of ``pairs`` is chosen."""

    pairs: tuple

    def labels(self) -> list[str]:
        return list(dict.fromkeys(label for label, _ in self.pairs))


def gate_of(module: nn.Module):
    """The module's gate, or None: any module may carry one (see above)."""
    return getattr(module, "gate", None)


def gate_open(gate, arch: dict) -> bool:
    """Whether a module with this ``gate`` is computed under ``arch`` (label -> index lists)."""
    if isinstance(gate, NoneChosen):
        return not any(i in arch[label] for label, i in gate.pairs)
    label, i = gate
    return i in arch[label]


def gate_pairs(gate) -> list[tuple[str, int]]:
    return list(gate.pairs) if isinstance(gate, NoneChosen) else [tuple(gate)]
