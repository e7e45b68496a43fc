"""The FBNet space: 22 layers x 9 candidates (inverted residuals, group-2 shuffle variants, skip).

Paper: Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural
Architecture Search", CVPR 2019, https://arxiv.org/abs/1812.03443 (its Table 1; the
paper's Table 1 as the FBN-A re-implementation writes it). The network: a 3x3 stride-2 stem to 16
channels, 22 searchable layers with output widths 16, 24x4, 32x4, 64x4, 112x4, 184x4, 352 (stride
2 at the first layer of the 24/32/64/184 groups), a 1x1 conv to 1504, global pooling and the FC.

The candidates of every layer, in FBN-A's order: ir_k3_e1, ir_k3_s2, ir_k3_e3, ir_k3_e6, ir_k5_e1,
ir_k5_s2, ir_k5_e3, ir_k5_e6, skip. ``ir_kK_eE`` is an inverted residual block (1x1 expansion by E,
ReLU, depthwise K x K with the stride, linear 1x1 projection; the shortcut where shapes allow);
``ir_kK_s2`` is the expansion-1 block with group-2 pointwise convs and a channel shuffle after the
first. ``skip`` is the identity, or a 1x1 conv-BN-ReLU where the shape changes.

``fbnet`` is the ImageNet space (224², 1000 classes); ``fbnet-small`` the same code with a stride-1
stem for 32² inputs or upsampled digits.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ..nn import DepthwiseConv2d, LayerChoice

# (name, kernel, expansion, groups); 'skip' last.
CANDIDATES = (("ir_k3_e1", 3, 1, 1), ("ir_k3_s2", 3, 1, 2), ("ir_k3_e3", 3, 3, 1), ("ir_k3_e6", 3, 6, 1),
              ("ir_k5_e1", 5, 1, 1), ("ir_k5_s2", 5, 1, 2), ("ir_k5_e3", 5, 3, 1), ("ir_k5_e6", 5, 6, 1))
SKIP = "skip"


@dataclass
class FBNetOptions:
    input_size: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    stem_width: int = 16
    stem_stride: int = 2
    stage_widths: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
    stage_repeats: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)   # 22 searchable layers
    stage_strides: tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
    head_width: int = 1504
    width_mult: float = 1.0         # scales stem and stage widths (even numbers: the group-2 variants)
    dropout: float = 0.0

    def __post_init__(self):
        n = len(self.stage_widths)
        if not (len(self.stage_repeats) == n == len(self.stage_strides)) or n == 0:
            raise ValueError(f"stage_widths, stage_repeats and stage_strides need one entry per stage; got "
                             f"{len(self.stage_widths)}, {len(self.stage_repeats)}, {len(self.stage_strides)}")
        for k in ("input_size", "num_classes", "in_channels", "stem_width", "head_width"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if any(r < 1 for r in self.stage_repeats) or any(w < 1 for w in self.stage_widths):
            raise ValueError(f"stage_repeats and stage_widths must be positive, got {self.stage_repeats}, {self.stage_widths}")
        if any(s not in (1, 2) for s in (*self.stage_strides, self.stem_stride)):
            raise ValueError(f"strides must be 1 or 2, got stem {self.stem_stride}, stages {self.stage_strides}")
        if not self.width_mult > 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"width_mult must be > 0 and dropout in [0, 1), got {self.width_mult}, {self.dropout}")

    def width(self, c: int) -> int:
        """An even width of at least 4: the group-2 convs split channels in halves."""
        return max(4, int(round(c * self.width_mult / 2)) * 2)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape  # (B, g, C/g, H, W) -> (B, C/g, g, H, W) -> (B, C, H, W)
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class IRBlock(nn.Module):
    """FBNet's inverted residual: 1x1 (grouped) expand, ReLU, [shuffle], depthwise k x k, 1x1 (grouped)
    project; the input is added when stride is 1 and the widths match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int, groups: int):
        super().__init__()
        mid = c_in * expansion
        self.expand = nn.Sequential(nn.Conv2d(c_in, mid, 1, groups=groups, bias=False), nn.BatchNorm2d(mid),
                                    nn.ReLU(inplace=True))
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = nn.Sequential(DepthwiseConv2d(mid, kernel, stride, kernel // 2), nn.BatchNorm2d(mid),
                                       nn.ReLU(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, groups=groups, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.shuffle(self.expand(x))))  # (B, c_out, H/s, W/s)
        return y + x if self.residual else y


def skip(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FBNet(nn.Module):
    """The FBNet supernet; after ``fix()`` the same class holds one plain subnet."""

    def __init__(self, options: FBNetOptions | None = None):
        super().__init__()
        o = self.options = options or FBNetOptions()
        c_in = o.width(o.stem_width)
        self.stem = nn.Sequential(nn.Conv2d(o.in_channels, c_in, 3, o.stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(c_in), nn.ReLU(inplace=True))
        layers = []
        for width, repeats, stride in zip(o.stage_widths, o.stage_repeats, o.stage_strides):
            c_out = o.width(width)
            for r in range(repeats):
                s = stride if r == 0 else 1
                ops = OrderedDict((name, IRBlock(c_in, c_out, k, s, e, g)) for name, k, e, g in CANDIDATES)
                ops[SKIP] = skip(c_in, c_out, s)
                layers.append(LayerChoice(ops, label=f"layer_{len(layers)}"))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c_in, o.head_width, 1, bias=False), nn.BatchNorm2d(o.head_width),
                                  nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(o.dropout))
        self.classifier = nn.Linear(o.head_width, o.num_classes)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.layers(self.stem(x))))  # (B, num_classes)

    def segments(self) -> list[nn.Module]:
        """``forward`` as a sequence (the candidate evaluator shares equal leading segments)."""
        return [self.stem, *self.layers, self.head, self.classifier]

    @torch.no_grad()
    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
