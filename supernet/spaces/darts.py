"""The DARTS cell space (Liu, Simonyan, Yang, ICLR 2019, https://arxiv.org/abs/1806.09055; the official
``cnn/operations.py`` and ``cnn/model_search.py`` of https://github.com/quark0/darts).

A network is a stem, ``layers`` cells and a classifier; the cells at 1/3 and 2/3 of the depth are
reduction cells (stride 2, twice the channels). A cell has two inputs (the outputs of the two
previous cells, preprocessed to C channels), ``nodes`` intermediate nodes and an output that
concatenates the intermediate nodes. Node i (numbered from 2) has one mixed edge from every earlier
node, a ``LayerChoice`` over the 8 ops below, and an ``InputChoice(n_chosen=2)`` that keeps two of
its i incoming edges: 2+3+4+5 = 14 edges for 4 nodes.

Normal cells share one set of labels (``normal/op_3_1``, ``normal/input_3``) and reduction cells
another (``reduce/...``), so an architecture is one normal genotype plus one reduction genotype,
and every cell of a kind computes it with its own weights.

Each edge declares its gate (``LayerChoice.gate``): the input of its node's ``InputChoice`` it
feeds. An edge whose input is not chosen is not computed, ``fix`` does not build it, and the cost
model does not count it. Under DARTS' weights every edge runs (the input weights are 1: the
paper's node is the plain sum of its mixed edges).

``affine=False`` builds the search network of ``model_search.py`` (BN without affine parameters,
BN after pooling); ``affine=True`` the evaluation network of ``model.py``, which can also have the
auxiliary head at 2/3 of the depth and drop-path on the fixed network's ops.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..arch.fix import fix_module
from ..nn.choices import InputChoice, LayerChoice
from ..nn.layers import DropPath, Zero

OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
       "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")  # the paper's order (genotypes.py)


@dataclass
class DartsOptions:
    input_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    channels: int = 16          # C of the first cells (search: 16, evaluation: 36)
    layers: int = 8             # cells (search: 8, evaluation: 20); reductions at layers//3 and 2*layers//3
    nodes: int = 4              # intermediate nodes per cell
    stem_multiplier: int = 3    # the stem has stem_multiplier * C channels
    affine: bool = False        # False: the search network; True: the evaluation network
    auxiliary: bool = False     # evaluation: auxiliary head after cell 2*layers//3 (weight: retrain.aux_weight)
    ops: tuple = OPS            # a subset of OPS, in any order

    def __post_init__(self):
        for k in ("channels", "layers", "nodes", "stem_multiplier", "input_size", "in_channels", "num_classes"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        self.ops = tuple(self.ops)
        unknown = [o for o in self.ops if o not in OPS]
        if unknown or not self.ops or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be distinct names from {OPS}, got {list(self.ops)}")
        if self.auxiliary and not self.affine:
            raise ValueError("auxiliary=true is for the evaluation network: set affine=true too")
        if self.auxiliary and self.input_size // 4 < 8:  # AvgPool(5, stride 3) to 2x2, then a 2x2 conv
            raise ValueError(f"the auxiliary head needs maps of at least 8x8 after the second reduction, "
                             f"got {self.input_size // 4}x{self.input_size // 4}: use input_size >= 32 or auxiliary=false")


# --- the ops (operations.py) ---------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k with dilation, pointwise 1x1, BN."""

    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """Two dilation-1 ``DilConv``s; only the first has the stride."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine):
        super().__init__(DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
                         DilConv(c_in, c_out, kernel, 1, padding, 1, affine))


class FactorizedReduce(nn.Module):
    """Stride-2 'identity': two 1x1 stride-2 convs on inputs offset by one pixel, concatenated, BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # x[1:, 1:], zero-padded back to size
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def make_op(name: str, c: int, stride: int, affine: bool, search: bool) -> nn.Module:
    """One of ``OPS`` at ``c`` channels. In the search network pooling is followed by a non-affine BN."""
    if name == "none":
        return Zero(stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        pool = (nn.MaxPool2d(3, stride, 1) if name == "max_pool_3x3"
                else nn.AvgPool2d(3, stride, 1, count_include_pad=False))
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False)) if search else pool
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    kind, size = name.rsplit("_", 1)
    k = int(size[0])
    if kind == "sep_conv":
        return SepConv(c, c, k, stride, k // 2, affine)
    return DilConv(c, c, k, stride, k - 1, 2, affine)  # dil_conv: dilation 2, padding 2 (3x3) / 4 (5x5)


# --- cells -------------------------------------------------------------------------------------------
class Node(nn.Module):
    """Intermediate node ``index``: a mixed edge from each earlier state, two of them kept."""

    def __init__(self, kind: str, index: int, c: int, reduction: bool, options: DartsOptions):
        super().__init__()
        self.edges = nn.ModuleList(
            LayerChoice(OrderedDict((op, make_op(op, c, 2 if reduction and j < 2 else 1, options.affine,
                                                 search=not options.affine)) for op in options.ops),
                        label=f"{kind}/op_{index}_{j}")
            for j in range(index))
        self.inputs = InputChoice(index, 2, "sum", label=f"{kind}/input_{index}")
        for j, edge in enumerate(self.edges):
            edge.gate = (self.inputs.label, j)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        run = self.inputs.active if isinstance(self.inputs.active, list) else range(len(states))
        outs: list[Optional[torch.Tensor]] = [None] * len(states)
        for j in run:  # an input that is not chosen is not computed
            outs[j] = self.edges[j](states[j])
        return self.inputs(outs)

    def fixed(self) -> nn.Module:
        """The chosen edges only (``fix``): the others are neither built nor computed."""
        chosen = self.inputs.active
        ops = []
        for j in chosen:
            op = fix_module(self.edges[j])
            ops.append(op if isinstance(op, (nn.Identity, Zero)) else nn.Sequential(op, DropPath()))
        return FixedNode(chosen, ops)


class FixedNode(nn.Module):
    """A node of a fixed cell: the sum of its chosen ops, drop-path on those that compute."""

    def __init__(self, inputs: list[int], ops: list[nn.Module]):
        super().__init__()
        self.inputs = list(inputs)
        self.ops = nn.ModuleList(ops)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        out = None
        for j, op in zip(self.inputs, self.ops):
            y = op(states[j])
            out = y if out is None else out + y
        return out


class Cell(nn.Module):
    def __init__(self, kind: str, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 options: DartsOptions):
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c, options.affine) if reduction_prev else \
            ReLUConvBN(c_pp, c, 1, 1, 0, options.affine)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0, options.affine)
        self.nodes = nn.ModuleList(Node(kind, i, c, reduction, options) for i in range(2, 2 + options.nodes))

    def forward(self, s0, s1):
        states = [self.pre0(s0), self.pre1(s1)]
        for node in self.nodes:
            states.append(node(states))
        return torch.cat(states[2:], dim=1)


class AuxiliaryHead(nn.Module):
    """The evaluation network's auxiliary classifier (CIFAR form: 8x8 maps pooled to 2x2)."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """Stem, ``layers`` cells, global pooling and a linear classifier.

    In training with ``auxiliary``, ``forward`` returns the main logits and leaves the auxiliary
    head's in ``self.aux_logits`` (the retrain step adds ``aux_weight`` times their loss).
    """

    def __init__(self, options: Optional[DartsOptions] = None):
        super().__init__()
        o = self.options = options or DartsOptions()
        c_curr = o.stem_multiplier * o.channels
        self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c = c_curr, c_curr, o.channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_after = 2 * o.layers // 3 if o.auxiliary else None
        for i in range(o.layers):
            reduction = i in (o.layers // 3, 2 * o.layers // 3)
            if reduction:
                c *= 2
            self.cells.append(Cell("reduce" if reduction else "normal", c_pp, c_p, c, reduction, reduction_prev, o))
            reduction_prev = reduction
            c_pp, c_p = c_p, o.nodes * c
            if i == self.aux_after:
                self.auxiliary_head = AuxiliaryHead(c_p, o.num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, o.num_classes)
        self.aux_logits: Optional[torch.Tensor] = None

    def forward(self, x):
        s0 = s1 = self.stem(x)
        self.aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_after and self.training:
                self.aux_logits = self.auxiliary_head(s1)
        return self.classifier(self.pool(s1).flatten(1))
