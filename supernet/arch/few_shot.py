"""Few-shot supernets: one copy of the supernet per option of the split decisions.

Zhao et al., "Few-shot Neural Architecture Search", ICML 2021, https://arxiv.org/abs/2006.06863.
The one-shot supernet is trained first; then it is split on the options of one or more decisions
into sub-supernets, one per option (or per combination of options), each starting from the
one-shot weights and trained further only on the architectures of its own part of the space. An
architecture is scored by its own sub-supernet.

``FewShotSupernet`` is a plain ``nn.Module`` holding K copies of the supernet (``parts``; K is
the product of the split decisions' option counts). Its forward runs the copy that the current
decisions of the split labels name, so everything that activates an architecture and calls the
model (a strategy's step, the candidate evaluator, ``fix``) gets that architecture's own
sub-supernet without knowing of the split. Before ``split()`` every architecture runs in part 0
(the one-shot supernet); ``split()`` copies part 0's weights, BN statistics and optimizer state
into every other part. Whether it has split is a buffer, so a checkpoint (the model's
``state_dict``) says it, and the search and ``supernet rank`` load it as any supernet.
"""
from __future__ import annotations

import copy
import math
from typing import Optional, Sequence

import torch
from torch import nn

from ..nn.choices import Choice, InputChoice
from .fix import fix_module
from .space import SearchSpace


def split_labels(space: SearchSpace, labels: Optional[Sequence[str]]) -> list[str]:
    """The decisions to split on, checked: ``labels``, or the space's first decision when None.

    Raises:
        ValueError: an unknown or repeated label, an InputChoice (its values are subsets of
            inputs, not one option), or a space with no decisions; the message lists the valid labels.
    """
    valid = [label for label in space.labels if not isinstance(space.choice(label), InputChoice)]
    if not valid:
        raise ValueError("this space has no decision to split on (a few-shot split needs a LayerChoice, "
                         "channel or bit-width choice)")
    if labels is None:
        return [valid[0]]
    labels = list(labels)
    if not labels:
        raise ValueError(f"no label given; name one or more of {', '.join(valid)} (or leave it unset for the "
                         f"first, {valid[0]})")
    for label in labels:
        if label not in space.labels:
            raise ValueError(f"unknown label {label!r}; valid labels: {', '.join(valid)}")
        if label not in valid:
            raise ValueError(f"label {label!r} is an InputChoice, whose values are sets of inputs; split on one of "
                             f"{', '.join(valid)}")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"label {repeated[0]!r} is given twice; give each label once")
    return labels


def parts_of(space: SearchSpace, labels: Sequence[str]) -> int:
    """K: the number of sub-supernets a split on ``labels`` makes (the product of their option counts)."""
    return math.prod(space.n_options(label) for label in labels)


class FewShotSupernet(nn.Module):
    """K copies of ``supernet``; each forward runs the copy of the split labels' current options.

    Args:
        supernet: the one-shot supernet; it becomes part 0 (the others are deep copies of it).
        labels: the decisions to split on (None: the first decision of the space).

    Attributes:
        parts: the K sub-supernets; part k serves the architectures whose split labels, read as
            the digits of k in mixed radix (first label most significant), are k.
        labels: the split labels; counts: their option counts.
        is_split: False until ``split()``: every architecture then runs in part 0.
        part_steps: (K,) training steps in which each sub-supernet got gradients since the split
            (counted by ``FewShot``; FairNAS trains several in one step).
    """

    def __init__(self, supernet: nn.Module, labels: Optional[Sequence[str]] = None):
        super().__init__()
        space = SearchSpace(supernet)
        self.labels = split_labels(space, labels)
        self.counts = [space.n_options(label) for label in self.labels]
        k = parts_of(space, self.labels)
        self.parts = nn.ModuleList([supernet] + [copy.deepcopy(supernet) for _ in range(k - 1)])
        self.register_buffer("split_flag", torch.zeros((), dtype=torch.bool))
        self.register_buffer("part_steps", torch.zeros(k, dtype=torch.long))
        self.is_split = False  # a Python copy of split_flag: reading a CUDA tensor every forward would sync
        self.register_load_state_dict_post_hook(_read_flag)
        # Plain lists (not submodules): every part's choices in one order, and part 0's split choices.
        self._choices = [[m for m in part.modules() if isinstance(m, Choice)] for part in self.parts]
        self._split_choices = [space.choice(label) for label in self.labels]
        self._segments = [list(part.segments()) for part in self.parts] if hasattr(supernet, "segments") else None

    @property
    def options(self):
        """The supernet's options (a registered space's input size and channels, for the cost model)."""
        return self.parts[0].options

    def extra_repr(self) -> str:
        return f"labels={self.labels}, parts={len(self.parts)}, split={self.is_split}"

    # --- routing --------------------------------------------------------------------------------
    def part_index(self) -> int:
        """The part the current decisions run in: 0 before the split."""
        k = 0
        for c, n in zip(self._split_choices, self.counts):
            if c.weights is not None or not isinstance(c.active, int):
                if c.active is None and c.weights is None:
                    raise c.no_decision()
                how = "weights" if c.weights is not None else f"active={c.active!r}"
                raise RuntimeError(f"{type(c).__name__} '{c.label}' has {how}, but a few-shot supernet runs each "
                                   f"forward in the sub-supernet of one chosen option of {', '.join(self.labels)}: "
                                   f"only single-path strategies train it")
            k = k * n + c.active
        return k if self.is_split else 0

    def active_part(self) -> nn.Module:
        """The sub-supernet of the current decisions, its choices set as part 0's."""
        k = self.part_index()
        if k:
            for a, b in zip(self._choices[0], self._choices[k]):
                b.active, b.weights = a.active, a.weights
        return self.parts[k]

    def forward(self, *args, **kwargs):
        return self.active_part()(*args, **kwargs)

    def fixed(self) -> nn.Module:
        """``fix``'s hook: the current architecture cut from its own sub-supernet."""
        return fix_module(self.active_part())

    @property
    def segments(self):
        """The supernet's segments, each run in the part of the current decisions (the candidate
        evaluator's prefix tree); absent, as ``hasattr`` sees it, when the supernet lists none."""
        if self._segments is None:
            raise AttributeError("segments")
        return lambda: [PartSegment(self, s) for s in range(len(self._segments[0]))]

    # --- the split ------------------------------------------------------------------------------
    @torch.no_grad()
    def split(self, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
        """Start the sub-supernets: part 0's weights, buffers (BN statistics) and, given the
        weight ``optimizer``, each weight's state (SGD's momentum) copied into every other part,
        bitwise, so each sub-supernet continues the one-shot trajectory."""
        if self.is_split:
            raise RuntimeError("this few-shot supernet has already split")
        params, buffers = list(self.parts[0].parameters()), list(self.parts[0].buffers())
        for part in self.parts[1:]:
            for p, q in zip(params, part.parameters()):
                q.copy_(p)  # W_k <- W (in place: the optimizer keeps its references)
                if optimizer is not None:
                    state = optimizer.state.get(p)
                    optimizer.state.pop(q, None)
                    if state:
                        optimizer.state[q] = {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                                              for k, v in state.items()}
            for b, c in zip(buffers, part.buffers()):
                c.copy_(b)
        self.split_flag.fill_(True)
        self.is_split = True

    @torch.no_grad()
    def count_trained(self) -> None:
        """Add one to ``part_steps`` of each part that holds a gradient now (after a step's backward)."""
        for k, part in enumerate(self.parts):
            if any(p.grad is not None for p in part.parameters()):
                self.part_steps[k] += 1


def _read_flag(module: FewShotSupernet, incompatible_keys) -> None:
    """After ``load_state_dict``: the Python copy of the loaded ``split_flag``."""
    module.is_split = bool(module.split_flag)


class PartSegment(nn.Module):
    """Segment ``s`` of every part; runs that of the part of the current decisions. It also holds
    part 0's split choices, so the evaluator keys every segment by the split labels too: two
    candidates in different parts share no segment output, and each resets its own part's BNs."""

    def __init__(self, supernet: FewShotSupernet, s: int):
        super().__init__()
        self.segments = nn.ModuleList([segments[s] for segments in supernet._segments])
        self.split_choices = nn.ModuleList(supernet._split_choices)
        self._supernet = [supernet]  # a list: not a submodule (it holds this segment's modules)

    def active_part(self) -> nn.Module:
        supernet = self._supernet[0]
        supernet.active_part()  # sets that part's choices
        return self.segments[supernet.part_index()]

    def forward(self, *args, **kwargs):
        return self.active_part()(*args, **kwargs)


def routed(module: nn.Module) -> Optional[nn.Module]:
    """The module that ``module`` runs under the current decisions when it routes (a few-shot
    supernet or one of its segments), else None."""
    return module.active_part() if isinstance(module, (FewShotSupernet, PartSegment)) else None


def one_shot(model: nn.Module) -> nn.Module:
    """Part 0 of a few-shot supernet (every part has its shapes and costs), else ``model`` itself."""
    return model.parts[0] if isinstance(model, FewShotSupernet) else model
