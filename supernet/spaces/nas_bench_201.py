"""The NAS-Bench-201 space (Dong & Yang, ICLR 2020, https://arxiv.org/abs/2001.00326; the network of
``xautodl/models/cell_infers/tiny_network.py`` and the ops of ``xautodl/models/cell_operations.py``
in https://github.com/D-X-Y/AutoDL-Projects).

A network is a 3x3 stem conv to C channels with BN, three stages of N cells at C, 2C and 4C
channels with a residual reduction block (a ResNet basic block of stride 2) between stages, then
BN-ReLU, global average pooling and a linear classifier. A cell has 4 nodes: node 0 is the cell's
input, and node j (1..3) is the sum of one edge from every earlier node i, each edge one of 5 ops
(``OPS``): 6 edges, 5^6 = 15,625 architectures.

One cell topology is shared by all 3N cells, as in the benchmark: edge i->j of every cell is one
``LayerChoice`` label ``"{i}_{j}"`` (NNI's NAS-Bench-201 query keys), so an architecture is 6
labels and every cell computes it with its own weights. The labels in order (``EDGES``) are those
of NAS-Bench-201's architecture string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, which
``supernet.arch.formats`` reads and writes.

Convs have no bias. In the supernet the candidate ops' BN is non-affine (``affine=False``, as in
the benchmark's search networks); ``fix`` makes it affine, so a fixed subnet is the benchmark's
evaluation network, parameter for parameter. Published costs: ``docs/nas-bench-201.md``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..nn.choices import LayerChoice
from ..nn.layers import Zero

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # the benchmark's order
NODES = 4
EDGES = tuple(f"{i}_{j}" for j in range(1, NODES) for i in range(j))  # 0_1, 0_2, 1_2, 0_3, 1_3, 2_3


@dataclass
class NasBench201Options:
    input_size: int = 32        # CIFAR: 32; ImageNet16-120: 16
    in_channels: int = 3
    num_classes: int = 10       # CIFAR-10: 10, CIFAR-100: 100, ImageNet16-120: 120
    channels: int = 16          # C of the first stage (the benchmark: 16; then 32 and 64)
    cells: int = 5              # N cells per stage (the benchmark: 5, 17 layers with the two reductions)
    affine: bool = False        # BN of the candidate ops: non-affine in the search network

    def __post_init__(self):
        for k in ("input_size", "in_channels", "num_classes", "channels", "cells"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.input_size < 4:
            raise ValueError(f"input_size must be >= 4 (two stride-2 reductions), got {self.input_size}")


class ReLUConvBN(nn.Sequential):
    """ReLU, k x k conv (no bias), BN: the benchmark's ``nor_conv`` ops and its reduction block's convs."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


def make_op(name: str, c: int, affine: bool) -> nn.Module:
    """One of ``OPS`` at ``c`` channels, stride 1 (a cell never changes the shape)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return ReLUConvBN(c, c, 1 if name == "nor_conv_1x1" else 3, affine=affine)


class Cell(nn.Module):
    """Node j = sum over i < j of edge i->j (node i); the cell's output is node 3."""

    def __init__(self, c: int, affine: bool):
        super().__init__()
        self.edges = nn.ModuleDict(
            (label, LayerChoice(OrderedDict((op, make_op(op, c, affine)) for op in OPS), label=label))
            for label in EDGES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NODES):
            out = None
            for i in range(j):
                y = self.edges[f"{i}_{j}"](nodes[i])
                out = y if out is None else out + y
            nodes.append(out)
        return nodes[-1]


class ResNetBlock(nn.Module):
    """The reduction between stages (``ResNetBasicblock``, stride 2): ReLU-conv3x3-BN twice, plus a
    shortcut of 2x2 average pooling and a 1x1 conv; the sum is not followed by a ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))  # (B, c_out, H/2, W/2)


class NasBench201Network(nn.Module):
    """Stem, N cells, reduction, N cells, reduction, N cells, BN-ReLU, pooling and a linear classifier."""

    def __init__(self, options: Optional[NasBench201Options] = None):
        super().__init__()
        o = self.options = options or NasBench201Options()
        c = o.channels
        self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage:
                layers.append(ResNetBlock(c, 2 * c))
                c *= 2
            layers += [Cell(c, o.affine) for _ in range(o.cells)]
        self.cells = nn.Sequential(*layers)  # (B, 4C, H/4, W/4)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, o.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))
