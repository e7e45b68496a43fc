"""The ProxylessNAS space: MobileNetV2 inverted-residual blocks, 6 or 7 candidates per block.

Paper: Cai, Zhu, Han, "ProxylessNAS: Direct Neural Architecture Search on Target Task and
Hardware", ICLR 2019, https://arxiv.org/abs/1812.00332 (the released
``super_proxyless.py``). The network: a 3x3 stride-2 first conv to 32 channels, a fixed MBConv1
3x3 block to 16, then 21 searchable blocks in 6 stages (widths 24/40/80/96/192/320, repeats
4/4/4/4/4/1, the first block of each stage with stride 2/2/2/1/2/1), a 1x1 feature mix to 1280,
global pooling and the classifier.

Each searchable block is a ``LayerChoice`` over MBConv k3/k5/k7 x expansion 3/6. Where an identity
shortcut exists (stride 1 and c_in == c_out) the block also offers ``zero``: the block then
reduces to its shortcut, which lets the search drop it (the network gets shallower).

``proxyless`` is the ImageNet space (224², 1000 classes); ``proxyless-small`` is the same code with
a stride-1 first conv and stride 1 in the first stage, for 32² (CIFAR) or upsampled digits.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ..nn import DepthwiseConv2d, LayerChoice
from ..nn.layers import Zero

KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)
ZERO = "zero"


@dataclass
class ProxylessOptions:
    input_size: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    stage_widths: tuple[int, ...] = (24, 40, 80, 96, 192, 320)
    stage_repeats: tuple[int, ...] = (4, 4, 4, 4, 4, 1)    # 21 searchable blocks
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2, 1)    # stride of each stage's first block
    first_width: int = 32           # the first 3x3 conv
    first_stride: int = 2
    first_block_width: int = 16     # the fixed MBConv1 3x3 block
    feature_width: int = 1280       # the 1x1 feature mix (not scaled by width_mult, as in MobileNetV2)
    width_mult: float = 1.0         # scales first conv, first block and stage widths (multiples of 8)
    kernels: tuple[int, ...] = KERNELS
    expansions: tuple[int, ...] = EXPANSIONS
    zero: bool = True               # offer 'zero' where an identity shortcut exists
    dropout: float = 0.0            # before the classifier (the search uses 0)

    def __post_init__(self):
        n = len(self.stage_widths)
        if not (len(self.stage_repeats) == n == len(self.stage_strides)) or n == 0:
            raise ValueError(f"stage_widths, stage_repeats and stage_strides need one entry per stage; got "
                             f"{len(self.stage_widths)}, {len(self.stage_repeats)}, {len(self.stage_strides)}")
        for k in ("input_size", "num_classes", "in_channels", "first_width", "first_block_width", "feature_width"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if any(r < 1 for r in self.stage_repeats) or any(w < 1 for w in self.stage_widths):
            raise ValueError(f"stage_repeats and stage_widths must be positive, got {self.stage_repeats}, {self.stage_widths}")
        if any(s not in (1, 2) for s in (*self.stage_strides, self.first_stride)):
            raise ValueError(f"strides must be 1 or 2, got first {self.first_stride}, stages {self.stage_strides}")
        self.kernels, self.expansions = tuple(self.kernels), tuple(self.expansions)
        if not self.kernels or any(k not in (1, 3, 5, 7) for k in self.kernels):
            raise ValueError(f"kernels must be odd sizes from 1, 3, 5, 7, got {list(self.kernels)}")
        if not self.expansions or any(e < 1 for e in self.expansions):
            raise ValueError(f"expansions must be integers >= 1, got {list(self.expansions)}")
        if not self.width_mult > 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"width_mult must be > 0 and dropout in [0, 1), got {self.width_mult}, {self.dropout}")

    def width(self, c: int) -> int:
        """MobileNetV2's make_divisible(c * width_mult, 8)."""
        v = max(8, int(c * self.width_mult + 4) // 8 * 8)
        return v + 8 if v < 0.9 * c * self.width_mult else v


class MBConv(nn.Sequential):
    """MobileNetV2's inverted bottleneck: 1x1 expand (skipped at expansion 1), ReLU6, depthwise k x k
    with the stride, ReLU6, then a linear 1x1 projection. No shortcut here: the block adds it."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        mid = round(c_in * expansion)
        layers = [] if expansion == 1 else [nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True)]
        layers += [DepthwiseConv2d(mid, kernel, stride, kernel // 2), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True),
                   nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        super().__init__(*layers)


class Block(nn.Module):
    """A searchable block: the choice of op, plus the identity shortcut where shapes allow."""

    def __init__(self, choice: LayerChoice, shortcut: bool):
        super().__init__()
        self.op = choice
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)  # (B, c_out, H/s, W/s)
        return y + x if self.shortcut else y


class ProxylessNet(nn.Module):
    """The ProxylessNAS supernet; after ``fix()`` the same class holds one plain subnet."""

    def __init__(self, options: ProxylessOptions | None = None):
        super().__init__()
        o = self.options = options or ProxylessOptions()
        first = o.width(o.first_width)
        self.first_conv = nn.Sequential(nn.Conv2d(o.in_channels, first, 3, o.first_stride, 1, bias=False),
                                        nn.BatchNorm2d(first), nn.ReLU6(inplace=True))
        c_in = o.width(o.first_block_width)
        self.first_block = MBConv(first, c_in, 3, 1, 1)
        blocks = []
        for width, repeats, stride in zip(o.stage_widths, o.stage_repeats, o.stage_strides):
            c_out = o.width(width)
            for r in range(repeats):
                s = stride if r == 0 else 1
                identity = s == 1 and c_in == c_out
                ops = OrderedDict((f"{k}x{k}_MBConv{e}", MBConv(c_in, c_out, k, s, e))
                                  for k in o.kernels for e in o.expansions)
                if identity and o.zero:
                    ops[ZERO] = Zero()
                blocks.append(Block(LayerChoice(ops, label=f"block_{len(blocks)}"), identity))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.feature_mix = nn.Sequential(nn.Conv2d(c_in, o.feature_width, 1, bias=False),
                                         nn.BatchNorm2d(o.feature_width), nn.ReLU6(inplace=True))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(o.dropout))
        self.classifier = nn.Linear(o.feature_width, o.num_classes)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.first_conv(x))  # (B, 16, H/2, W/2) at ImageNet
        x = self.feature_mix(self.blocks(x))       # (B, 1280, H/32, W/32)
        return self.classifier(self.pool(x))       # (B, num_classes)

    def segments(self) -> list[nn.Module]:
        """``forward`` as a sequence (the candidate evaluator shares equal leading segments)."""
        return [self.first_conv, self.first_block, *self.blocks, self.feature_mix, self.pool, self.classifier]

    @torch.no_grad()
    def init_weights(self) -> None:
        """He (fan-out) normal convs as the released search's default, unit BN, a small classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
