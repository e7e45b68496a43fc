"""ResNet-18 (any BasicBlock ResNet) as a search space: optional per-block channel search.

Paper: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385. The layout is torchvision's ``resnet18``: BasicBlocks with the
stride in the first 3x3 conv, a 1x1 conv + BN projection shortcut where the shape changes, global
average pooling and a Linear classifier with bias (11,689,512 parameters, 1.814G MACs at 224²).

SPOS (Guo et al., ECCV 2020, https://arxiv.org/abs/1904.00420) searches ResNet-18 for mixed
precision: each block's channels and each layer's weight and activation bit widths. This space
holds the network and the channel search; ``supernet.quant.mixed_precision`` adds the bit widths
to it, as to any space. With ``channel_search`` off the network has no choices at all: a plain
ResNet, which becomes a pure bit-width space under ``mixed_precision``.

``resnet18`` is the ImageNet network (7x7 stride-2 stem and max-pool, 224², 1000 classes);
``resnet18-cifar`` the CIFAR form (3x3 stride-1 stem, no max-pool, 32², 10 classes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..nn import ChannelChoice, SlicedBatchNorm2d, SlicedConv2d


@dataclass
class ResNetOptions:
    input_size: int = 224            # images are input_size x input_size
    num_classes: int = 1000
    in_channels: int = 3
    depths: tuple[int, ...] = (2, 2, 2, 2)          # BasicBlocks per stage: ResNet-18
    widths: tuple[int, ...] = (64, 128, 256, 512)   # output channels per stage; the stem has widths[0]
    width_mult: float = 1.0          # scales every width (rounded, at least 1)
    stem: Literal["cifar", "imagenet"] = "imagenet"  # cifar: 3x3 stride 1; imagenet: 7x7 stride 2 + max-pool
    channel_search: bool = False     # search each block's inner width (conv1's output channels)
    channel_ratios: tuple[float, ...] = (0.5, 0.75, 1.0)  # the inner widths, as fractions of the block's width
    zero_init_residual: bool = False  # start each block's last BN at gamma 0 (Goyal et al.); off as in torchvision

    def __post_init__(self):
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ValueError(f"depths and widths need one entry per stage; got {list(self.depths)} and "
                             f"{list(self.widths)}")
        for name in ("input_size", "num_classes", "in_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if any(d <= 0 for d in self.depths) or any(w <= 0 for w in self.widths):
            raise ValueError(f"depths and widths must be positive, got {list(self.depths)}, {list(self.widths)}")
        if not self.width_mult > 0:
            raise ValueError(f"width_mult must be positive, got {self.width_mult}")
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        ratios = list(self.channel_ratios)
        if not ratios or any(not r > 0 for r in ratios) or ratios != sorted(set(ratios)):
            raise ValueError(f"channel_ratios must be positive and increasing, e.g. [0.5, 0.75, 1.0]; got {ratios}")
        if self.channel_search:
            for c in map(self.width, self.widths):
                if len(set(self.inner_widths(c))) < len(ratios):
                    raise ValueError(f"channel_ratios {ratios} give repeated inner widths {self.inner_widths(c)} "
                                     f"for a {c}-channel block; use fewer ratios or larger widths")

    def width(self, c: int) -> int:
        return max(1, round(c * self.width_mult))

    def inner_widths(self, c: int) -> list[int]:
        """The inner widths a block of ``c`` output channels may take."""
        return [max(1, round(c * r)) for r in self.channel_ratios]


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut; conv1's output width follows ``width`` when one is given.

    Every conv is a direct child, so ``mixed_precision(..., share="block")`` gives a block one
    weight-bit and one activation-bit decision, projection shortcut included.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, mid: int, width: ChannelChoice | None = None):
        super().__init__()
        if width is not None:
            self.width = width  # declared here so fix() and SearchSpace find it
            self.conv1 = SlicedConv2d(c_in, mid, 3, stride, 1, out_width=width)
            self.bn1 = SlicedBatchNorm2d(mid, width)
            self.conv2 = SlicedConv2d(mid, c_out, 3, 1, 1, in_width=width)
        else:
            self.conv1 = nn.Conv2d(c_in, mid, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid)
            self.conv2 = nn.Conv2d(mid, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = self.shortcut_bn = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, mid, H/s, W/s)
        out = self.bn2(self.conv2(out))           # (B, c_out, H/s, W/s)
        identity = x if self.shortcut is None else self.shortcut_bn(self.shortcut(x))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """The ResNet supernet (a plain ResNet without channel search); after ``fix()`` the same class
    holds one plain subnet."""

    def __init__(self, options: ResNetOptions | None = None):
        super().__init__()
        o = self.options = options or ResNetOptions()
        c_in = o.width(o.widths[0])
        if o.stem == "imagenet":  # (B, C, H/4, W/4)
            self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c_in, 7, 2, 3, bias=False), nn.BatchNorm2d(c_in),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:  # small images keep their resolution: (B, C, H, W)
            self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c_in, 3, 1, 1, bias=False), nn.BatchNorm2d(c_in),
                                      nn.ReLU(inplace=True))
        blocks = []
        for stage, (depth, width) in enumerate(zip(o.depths, o.widths)):
            c_out = o.width(width)
            for d in range(depth):
                stride = 2 if stage > 0 and d == 0 else 1
                width_choice = None
                if o.channel_search:
                    width_choice = ChannelChoice(o.inner_widths(c_out), label=f"channel_{len(blocks)}")
                mid = c_out if width_choice is None else width_choice.max_width
                blocks.append(BasicBlock(c_in, c_out, stride, mid, width_choice))
                c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, C)
        self.classifier = nn.Linear(c_in, o.num_classes)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(self.stem(x))))  # (B, num_classes)

    def segments(self) -> list[nn.Module]:
        """``forward`` as a sequence; each segment reads only the choices declared inside it.

        The candidate evaluator shares the outputs of equal leading segments between candidates.
        """
        return [self.stem, *self.features, self.head, self.classifier]

    @torch.no_grad()
    def init_weights(self) -> None:
        """torchvision's initialisation: He (fan-out) normal convs, unit BN, the default Linear."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                m.reset_parameters()
        if self.options.zero_init_residual:  # each block starts as its shortcut
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
