"""The ENAS macro and micro spaces (Pham et al., ICML 2018, https://arxiv.org/abs/1802.03268;
https://github.com/melodyguan/enas, ``src/cifar10/general_child.py`` and ``micro_child.py``).

**Macro** (``enas-macro``): a stem, ``layers`` layers of ``channels`` filters and a classifier.
Layer i picks one of 6 branches (conv 3x3, sep 3x3, conv 5x5, sep 5x5, avg pool, max pool, in the
code's order: ``op_i``) and any subset of the earlier layers as skip connections (``skip_i``, an
``InputChoice(n_chosen=None)``); its output is BN(branch(x) + the sum of the chosen layers), as in
the official shared model (general_child.py ``_enas_layer``). After layers L/3-1 and 2L/3-1 the
main path is halved by a factorized reduction. The official code also gives every earlier layer
its own factorized reduction at each pooling point; here a layer that only feeds skips is
average-pooled (no weights) to the current size, so the skip set changes neither the shapes nor
which weights exist, and the FLOPs and params depend on the branches alone.

**Micro** (``enas-micro``): a stem, then ``cells`` normal cells, a reduction cell, ``cells``
normal cells, a reduction cell, ``cells`` normal cells (the official search: 2 per stage, 20
filters). A cell has 2 inputs (the outputs of the two previous cells, brought to C channels and
the cell's size) and B=``nodes`` nodes; node k picks 2 inputs among the earlier states
(``input_k_0``, ``input_k_1``: an ``InputChoice(n_chosen=1)`` each, so both may be the same, as in
ENAS) and an op for each (``op_k_0``, ``op_k_1``: sep 3x3, sep 5x5, avg pool, max pool, identity)
and sums them. The cell's output concatenates the states no node chose (the unused nodes, and an
unused cell input) and maps them back to C channels by a 1x1 conv and BN (micro_child.py
``_enas_layer``). That conv is written as one 1x1 conv per state, summed: the same function, and
each per-state conv declares its gate (``NoneChosen``), so that ``fix`` builds and the cost model
counts exactly the convs of the unused states. A reduction cell halves its inputs first (a
factorized reduction) and doubles C; its ops then run at stride 1, as in the official code.

Normal cells share one set of labels (``normal/...``), reduction cells another (``reduce/...``).
Each ``InputChoice`` names the decisions whose controller states are its inputs' anchors
(``anchors``): the ENAS controller attends over them (``supernet.strategies.enas``).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.fix import fix_module
from ..nn.choices import InputChoice, LayerChoice, NoneChosen
from .darts import FactorizedReduce, ReLUConvBN, SepConv

MACRO_OPS = ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")
MICRO_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")


@dataclass
class MacroOptions:
    input_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    layers: int = 12            # the official search: 12 (final: 24)
    channels: int = 36          # out_filters of the search (final: 96)

    def __post_init__(self):
        for k in ("input_size", "in_channels", "num_classes", "channels"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.layers < 3:
            raise ValueError(f"layers must be >= 3 (pooling after 1/3 and 2/3 of them), got {self.layers}")
        if self.channels % 2:
            raise ValueError(f"channels must be even (the factorized reduction halves it), got {self.channels}")


@dataclass
class MicroOptions:
    input_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    cells: int = 2              # normal cells per stage (the official search: 6 layers = 2 per stage)
    channels: int = 20          # C of the first stage (search: 20, final: 36)
    nodes: int = 5              # B
    stem_multiplier: int = 3

    def __post_init__(self):
        for k in ("input_size", "in_channels", "num_classes", "cells", "channels", "nodes", "stem_multiplier"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.channels % 2:
            raise ValueError(f"channels must be even (the factorized reduction halves it), got {self.channels}")


# --- macro ---------------------------------------------------------------------------------------------
def _conv_bn_relu(c_in: int, c_out: int, k: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def macro_branch(name: str, c: int) -> nn.Module:
    """general_child.py ``_conv_branch`` / ``_pool_branch``: a 1x1 conv-BN-ReLU, then the branch."""
    head = _conv_bn_relu(c, c, 1)
    if name.startswith("conv"):
        return nn.Sequential(*head, *_conv_bn_relu(c, c, int(name[-1])))
    if name.startswith("sep_conv"):
        k = int(name[-1])
        return nn.Sequential(*head, nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
                             *_conv_bn_relu(c, c, 1))
    pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False) if name == "avg_pool_3x3" else nn.MaxPool2d(3, 1, 1)
    return nn.Sequential(*head, pool)


def _pooled(x: torch.Tensor, times: int) -> torch.Tensor:
    for _ in range(times):  # the size a stride-2 factorized reduction gives: ceil(H / 2)
        x = F.avg_pool2d(x, 2, ceil_mode=True)
    return x


class MacroLayer(nn.Module):
    """Layer ``index``: a branch, plus the chosen earlier layers (pooled to this size), then BN."""

    def __init__(self, index: int, c: int):
        super().__init__()
        self.op = LayerChoice(OrderedDict((n, macro_branch(n, c)) for n in MACRO_OPS), label=f"op_{index}")
        self.skip = InputChoice(index, None, "sum", label=f"skip_{index}") if index else None
        if self.skip is not None:  # layer j's anchor: its last decision
            self.skip.anchors = ["op_0"] + [f"skip_{j}" for j in range(1, index)]
        self.bn = nn.BatchNorm2d(c)

    def chosen(self) -> list[int]:
        s = self.skip
        if s is None:
            return []
        return s.active if isinstance(s.active, list) and s.weights is None else list(range(s.n_candidates))

    def forward(self, x, states: list[torch.Tensor], behind: list[int]) -> torch.Tensor:
        out = self.op(x)
        chosen = self.chosen()
        if chosen:  # only the chosen layers are pooled
            inputs: list[Optional[torch.Tensor]] = [None] * len(states)
            for j in chosen:
                inputs[j] = _pooled(states[j], behind[j])
            out = out + self.skip(inputs)
        return self.bn(out)  # (B, C, H, W) whatever the skip set

    def fixed(self) -> nn.Module:
        return FixedMacroLayer(fix_module(self.op), self.chosen(), fix_module(self.bn))


class FixedMacroLayer(nn.Module):
    def __init__(self, op: nn.Module, skips: list[int], bn: nn.Module):
        super().__init__()
        self.op, self.skips, self.bn = op, list(skips), bn

    def forward(self, x, states, behind):
        out = self.op(x)
        for j in self.skips:
            out = out + _pooled(states[j], behind[j])
        return self.bn(out)


class EnasMacro(nn.Module):
    def __init__(self, options: Optional[MacroOptions] = None):
        super().__init__()
        o = self.options = options or MacroOptions()
        c = o.channels
        self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.layers = nn.ModuleList(MacroLayer(i, c) for i in range(o.layers))
        d = o.layers // 3
        self.pool_after = (d - 1, 2 * d - 1)  # general_child.py: pool_distance - 1 and 2 * pool_distance - 1
        self.reduce = nn.ModuleDict({str(i): FactorizedReduce(c, c, affine=True) for i in self.pool_after})
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, o.num_classes)

    def forward(self, x):
        x = self.stem(x)
        states, levels, level = [], [], 0
        for i, layer in enumerate(self.layers):
            x = layer(x, states, [level - lv for lv in levels])
            if str(i) in self.reduce:
                x = self.reduce[str(i)](x)  # (B, C, H/2, W/2)
                level += 1
            states.append(x)
            levels.append(level)
        return self.classifier(self.pool(x).flatten(1))


# --- micro ---------------------------------------------------------------------------------------------
def micro_op(name: str, c: int) -> nn.Module:
    if name == "identity":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, 1, 1)
    k = int(name[-1])
    return SepConv(c, c, k, 1, k // 2, affine=True)  # (ReLU, depthwise, pointwise, BN) x 2


class MicroNode(nn.Module):
    """Node ``index``: two (input, op) pairs, summed."""

    def __init__(self, kind: str, index: int, c: int):
        super().__init__()
        # Registered inputs first: the controller decides index_1, index_2, op_1, op_2 (micro_controller.py).
        self.inputs = nn.ModuleList(InputChoice(index, 1, "sum", label=f"{kind}/input_{index}_{s}") for s in (0, 1))
        for choice in self.inputs:  # the cell inputs have no decision; node k's anchor: its last one
            choice.anchors = [None, None] + [f"{kind}/op_{k}_1" for k in range(2, index)]
        self.ops = nn.ModuleList(LayerChoice(OrderedDict((n, micro_op(n, c)) for n in MICRO_OPS),
                                             label=f"{kind}/op_{index}_{s}") for s in (0, 1))

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.ops[0](self.inputs[0](states)) + self.ops[1](self.inputs[1](states))


def _preprocess(c_in: int, c: int, halve: bool) -> nn.Module:
    return FactorizedReduce(c_in, c, affine=True) if halve else ReLUConvBN(c_in, c, 1, 1, 0, affine=True)


class MicroCell(nn.Module):
    """``nodes`` nodes over two preprocessed inputs; the output maps the unused states to C."""

    def __init__(self, kind: str, c_pp: int, c_p: int, c: int, halve_pp: bool, halve_p: bool, nodes: int):
        super().__init__()
        self.pre0, self.pre1 = _preprocess(c_pp, c, halve_pp), _preprocess(c_p, c, halve_p)
        self.nodes = nn.ModuleList(MicroNode(kind, k, c) for k in range(2, 2 + nodes))
        n = nodes + 2
        self.combine = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for _ in range(n))
        for k, conv in enumerate(self.combine):  # computed only while no node chose state k
            conv.gate = NoneChosen(tuple((f"{kind}/input_{m}_{s}", k) for m in range(max(k + 1, 2), n) for s in (0, 1)))
        self.bn = nn.BatchNorm2d(c)

    def unused(self) -> list[int]:
        chosen = [choice for node in self.nodes for choice in node.inputs]
        if any(ch.weights is not None or not isinstance(ch.active, list) for ch in chosen):
            return list(range(len(self.combine)))  # mixed (weights): every state
        used = {i for ch in chosen for i in ch.active}
        return [k for k in range(len(self.combine)) if k not in used]

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for node in self.nodes:
            states.append(node(states))
        out = None
        for k in self.unused():  # = conv1x1(relu(concat(unused states))) with the rows of those states
            y = self.combine[k](F.relu(states[k]))
            out = y if out is None else out + y
        return self.bn(out)

    def fixed(self) -> nn.Module:
        unused = self.unused()
        return FixedMicroCell(fix_module(self.pre0), fix_module(self.pre1), [fix_module(n) for n in self.nodes],
                              unused, [fix_module(self.combine[k]) for k in unused], fix_module(self.bn))


class FixedMicroCell(nn.Module):
    def __init__(self, pre0, pre1, nodes, unused: list[int], combine: list[nn.Module], bn):
        super().__init__()
        self.pre0, self.pre1, self.bn = pre0, pre1, bn
        self.nodes, self.combine = nn.ModuleList(nodes), nn.ModuleList(combine)
        self.unused = list(unused)

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for node in self.nodes:
            states.append(node(states))
        out = None
        for k, conv in zip(self.unused, self.combine):
            y = conv(F.relu(states[k]))
            out = y if out is None else out + y
        return self.bn(out)


class EnasMicro(nn.Module):
    """Stem, 3 stages of ``cells`` normal cells with a reduction cell between them, classifier."""

    def __init__(self, options: Optional[MicroOptions] = None):
        super().__init__()
        o = self.options = options or MicroOptions()
        c_stem = o.stem_multiplier * o.channels
        self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        kinds = (["normal"] * o.cells + ["reduce"]) * 2 + ["normal"] * o.cells
        c_pp, c_p, c = c_stem, c_stem, o.channels
        self.cells = nn.ModuleList()
        halved_p = False  # whether the previous cell halved the size (then s0 is twice this cell's size)
        for kind in kinds:
            reduce = kind == "reduce"
            if reduce:
                c *= 2
            self.cells.append(MicroCell(kind, c_pp, c_p, c, halve_pp=reduce or halved_p, halve_p=reduce, nodes=o.nodes))
            c_pp, c_p, halved_p = c_p, c, reduce
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, o.num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(F.relu(s1)).flatten(1))
