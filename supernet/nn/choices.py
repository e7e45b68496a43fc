"""Choice primitives: plain ``nn.Module``s whose decision is set from outside.

A choice never decides by itself. A strategy (or ``SearchSpace.activate``) writes one of two
attributes, and ``forward`` reads them:

- ``active``: the chosen index (SPOS, ENAS), or for ``InputChoice`` a list of indices; for
  ``LayerChoice`` a list of indices restricts a weighted sum to those candidates (Proxyless
  computes only the sampled pair).
- ``weights``: a 1-D tensor over the options (DARTS softmax, FBNet Gumbel-softmax, Proxyless
  binary gates). When set, the output is the weighted sum of the candidates' outputs.

This follows OFA's dynamic layers (``active_*`` attributes) rather than NNI v3's metaclasses:
reading a model top-down tells you exactly what runs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence

import torch
from torch import nn


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

    def _no_decision(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__} '{self.label}' has no active option: activate an architecture "
            f"first (SearchSpace(model).activate(arch)) or set .active / .weights")

    def extra_repr(self) -> str:
        return f"label={self.label!r}, values={self.values}"


class LayerChoice(Choice):
    """Runs one of several candidate modules.

    Args:
        candidates: a list of modules (values are their indices' names ``"0"``, ``"1"``, ...) or a
            dict from name to module.
        label: the decision's name in an architecture dict. Two choices with the same label are
            one decision.
    """

    def __init__(self, candidates: Sequence[nn.Module] | dict[str, nn.Module], label: str):
        if isinstance(candidates, dict):
            items = list(candidates.items())
        else:
            items = [(str(i), m) for i, m in enumerate(candidates)]
        if len(items) < 1:
            raise ValueError(f"LayerChoice '{label}' needs at least one candidate")
        super().__init__(label, [name for name, _ in items])
        self.candidates = nn.ModuleDict(OrderedDict(items))
        self._list = list(self.candidates.values())  # O(1) index access on the hot path

    def __getitem__(self, index: int) -> nn.Module:
        return self._list[index]

    def __len__(self) -> int:
        return len(self._list)

    def forward(self, *args, **kwargs):
        if self.weights is None:
            if isinstance(self.active, int):
                return self._list[self.active](*args, **kwargs)
            raise self._no_decision()
        indices = range(len(self._list)) if self.active is None else self.active
        out = None
        for i in indices:
            y = self.weights[i] * self._list[i](*args, **kwargs)
            out = y if out is None else out + y
        return out


class InputChoice(Choice):
    """Chooses ``n_chosen`` of ``n_candidates`` input tensors and reduces them.

    ``forward`` takes a list of tensors. ``active`` is a list of ``n_chosen`` distinct indices; with
    ``weights`` set, the output is the weighted sum over all inputs (DARTS edges).

    Args:
        n_candidates: how many inputs ``forward`` receives.
        n_chosen: how many are kept.
        label: the decision's name.
        reduction: ``"sum"``, ``"mean"`` or ``"concat"`` (along dim 1) of the chosen inputs.
    """

    REDUCTIONS = ("sum", "mean", "concat")

    def __init__(self, n_candidates: int, n_chosen: int, label: str, reduction: str = "sum"):
        if not 1 <= n_chosen <= n_candidates:
            raise ValueError(f"InputChoice '{label}': n_chosen must be in 1..{n_candidates}, got {n_chosen}")
        if reduction not in self.REDUCTIONS:
            raise ValueError(f"InputChoice '{label}': reduction {reduction!r} is not one of {self.REDUCTIONS}")
        super().__init__(label, list(range(n_candidates)))
        self.n_candidates = n_candidates
        self.n_chosen = n_chosen
        self.reduction = reduction

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != self.n_candidates:
            raise ValueError(f"InputChoice '{self.label}' expects {self.n_candidates} inputs, got {len(inputs)}")
        if self.weights is not None:
            return sum(w * x for w, x in zip(self.weights, inputs))
        if self.active is None:
            raise self._no_decision()
        return reduce_inputs([inputs[i] for i in self.active], self.reduction)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, reduction={self.reduction!r}"


def reduce_inputs(chosen: Iterable[torch.Tensor], reduction: str) -> torch.Tensor:
    chosen = list(chosen)
    if reduction == "concat":
        return torch.cat(chosen, dim=1)
    out = chosen[0]
    for x in chosen[1:]:
        out = out + x
    return out / len(chosen) if reduction == "mean" else out


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
            raise self._no_decision()
        return self.values[self.active]

    def mask(self) -> torch.Tensor:
        """(max_width,) soft mask: sum over options of weight_i * [channel < width_i]."""
        steps = torch.zeros(self.n_options, self.max_width, device=self.weights.device, dtype=self.weights.dtype)
        for i, w in enumerate(self.values):
            steps[i, :w] = 1
        return self.weights @ steps

    def forward(self, x):  # the choice itself is never on the data path
        raise RuntimeError(f"ChannelChoice '{self.label}' is read by sliced layers; it is not called")
