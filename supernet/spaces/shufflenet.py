"""The SPOS search space: ShuffleNetV2 blocks, 4 choices per layer, optional channel search.

Paper: Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling",
ECCV 2020, https://arxiv.org/abs/1904.00420. The maths follows the official Megvii code
(https://github.com/megvii-model/SinglePathOneShot, ``src/Supernet/blocks.py``): even/odd channel
split, a projection branch of C_in channels in every down-sampling block, no max-pool, a bias-free
classifier, and non-affine BN in the supernet.

``shufflenet`` is the ImageNet space (224², stride-2 stem, every stage starts with stride 2);
``shufflenet-cifar`` is the CIFAR-10 variant of ShunLu91/Single-Path-One-Shot-NAS (stride-1
stem, stride 2 at layers 4 and 8 only). Both come from the one ``ShuffleNet`` class and its options.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import ChannelChoice, DepthwiseConv2d, LayerChoice, SlicedBatchNorm2d, SlicedConv2d

BLOCKS = ("k3", "k5", "k7", "xception")  # choice index 0..3, the official order
CHANNEL_SCALES = tuple(k / 5 for k in range(1, 9))  # 0.2x .. 1.6x of the block's mid width


@dataclass
class ShuffleNetOptions:
    input_size: int = 224            # images are input_size x input_size; a multiple of the total stride
    num_classes: int = 1000
    in_channels: int = 3
    stage_repeats: tuple[int, ...] = (4, 4, 8, 4)   # 20 searchable layers
    stage_widths: tuple[int, ...] = (64, 160, 320, 640)
    stage_strides: tuple[int, ...] = (2, 2, 2, 2)   # stride of each stage's first layer
    stem_width: int = 16
    stem_stride: int = 2
    head_width: int = 1024           # the last 1x1 conv
    width_mult: float = 1.0          # scales stem, stage and head widths (multiples of 4, at least 8)
    channel_search: bool = False     # also search each layer's mid width: 8 scales, 0.2x..1.6x
    affine: bool = False             # the official supernet has non-affine BN; fixed subnets are affine
    dropout: float = 0.1             # before the classifier, as in the official model

    def __post_init__(self):
        n = len(self.stage_repeats)
        if not (len(self.stage_widths) == n == len(self.stage_strides)):
            raise ValueError(f"stage_repeats, stage_widths and stage_strides need one entry per stage; got "
                             f"{len(self.stage_repeats)}, {len(self.stage_widths)}, {len(self.stage_strides)}")
        for name in ("input_size", "num_classes", "in_channels", "stem_width", "head_width"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if any(r <= 0 for r in self.stage_repeats) or any(w <= 0 for w in self.stage_widths):
            raise ValueError(f"stage_repeats and stage_widths must be positive, got {self.stage_repeats}, {self.stage_widths}")
        if any(s not in (1, 2) for s in (*self.stage_strides, self.stem_stride)):
            raise ValueError(f"strides must be 1 or 2, got stem {self.stem_stride}, stages {self.stage_strides}")
        if not self.width_mult > 0:
            raise ValueError(f"width_mult must be positive, got {self.width_mult}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        stride = self.stem_stride * 2 ** sum(s == 2 for s in self.stage_strides)
        if self.input_size % stride:
            raise ValueError(f"input_size must be a multiple of the network's total stride {stride}, got {self.input_size}")

    def width(self, c: int) -> int:
        return max(8, int(c * self.width_mult + 2) // 4 * 4)


def conv(c_in, c_out, k, stride=1, depthwise=False, width_in=None, width_out=None):
    """A bias-free conv with 'same' padding; sliced only when a width choice governs it."""
    if width_in is None and width_out is None:
        if depthwise:
            return DepthwiseConv2d(c_in, k, stride, k // 2)
        return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
    return SlicedConv2d(c_in, c_out, k, stride, k // 2, depthwise=depthwise, in_width=width_in, out_width=width_out)


def bn(c, affine, width=None):
    return nn.BatchNorm2d(c, affine=affine) if width is None else SlicedBatchNorm2d(c, width, affine=affine)


class ShuffleBlock(nn.Module):
    """One candidate: a ShuffleNetV2 unit with a k x k (or Xception) main branch.

    A block keeps its input size when stride is 1 and ``c_in == c_out``: the even channels pass
    through and the odd ones go through the main branch. Otherwise a projection branch
    (dw k x k with the stride, then pw) maps the input to ``c_in`` channels and the main branch
    adds ``c_out - c_in``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, kernel: str, mid: int,
                 affine: bool, mid_choice: ChannelChoice | None = None):
        super().__init__()
        self.split = stride == 1 and c_in == c_out
        main_in = c_in // 2 if self.split else c_in
        main_out = c_out // 2 if self.split else c_out - c_in
        k = 3 if kernel == "xception" else int(kernel[1])
        w = mid_choice  # every mid-width layer reads this choice
        if mid_choice is not None:
            self.mid_choice = mid_choice  # declared here so fix() and SearchSpace find it
        if kernel == "xception":
            layers = [conv(main_in, main_in, 3, stride, depthwise=True), bn(main_in, affine),
                      conv(main_in, mid, 1, width_out=w), bn(mid, affine, w), nn.ReLU(inplace=True),
                      conv(mid, mid, 3, depthwise=True, width_in=w), bn(mid, affine, w),
                      conv(mid, mid, 1, width_in=w, width_out=w), bn(mid, affine, w), nn.ReLU(inplace=True),
                      conv(mid, mid, 3, depthwise=True, width_in=w), bn(mid, affine, w),
                      conv(mid, main_out, 1, width_in=w), bn(main_out, affine), nn.ReLU(inplace=True)]
        else:  # no ReLU after the depthwise conv
            layers = [conv(main_in, mid, 1, width_out=w), bn(mid, affine, w), nn.ReLU(inplace=True),
                      conv(mid, mid, k, stride, depthwise=True, width_in=w), bn(mid, affine, w),
                      conv(mid, main_out, 1, width_in=w), bn(main_out, affine), nn.ReLU(inplace=True)]
        self.main = nn.Sequential(*layers)
        self.proj = None if self.split else nn.Sequential(
            conv(c_in, c_in, k, stride, depthwise=True), bn(c_in, affine),
            conv(c_in, c_in, 1), bn(c_in, affine), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:  # (B, C, H, W) -> even (B, C/2, H, W) passes, odd goes through main
            return torch.cat((x[:, 0::2], self.main(x[:, 1::2])), 1)
        return torch.cat((self.proj(x), self.main(x)), 1)  # (B, c_in + main_out, H/s, W/s)


class ShuffleNet(nn.Module):
    """The SPOS supernet; after ``fix()`` the same class holds one plain subnet."""

    def __init__(self, options: ShuffleNetOptions | None = None):
        super().__init__()
        o = self.options = options or ShuffleNetOptions()
        stem = o.width(o.stem_width)
        self.stem = nn.Sequential(nn.Conv2d(o.in_channels, stem, 3, o.stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(stem, affine=o.affine), nn.ReLU(inplace=True))
        layers, c_in = [], stem
        for stage, (repeats, width, stride) in enumerate(zip(o.stage_repeats, o.stage_widths, o.stage_strides)):
            c_out = o.width(width)
            for r in range(repeats):
                i = len(layers)
                base = c_out // 2
                mid_choice = None
                if o.channel_search:
                    mid_choice = ChannelChoice([max(1, base * k // 5) for k in range(1, 9)], label=f"channel_{i}")
                mid = base if mid_choice is None else mid_choice.max_width
                blocks = {kind: ShuffleBlock(c_in, c_out, stride if r == 0 else 1, kind, mid, o.affine, mid_choice)
                          for kind in BLOCKS}
                layers.append(LayerChoice(blocks, label=f"layer_{i}"))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        head = o.width(o.head_width)
        self.head = nn.Sequential(nn.Conv2d(c_in, head, 1, bias=False), nn.BatchNorm2d(head, affine=o.affine),
                                  nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(o.dropout))
        self.classifier = nn.Linear(head, o.num_classes, bias=False)
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
        """The official initialisation (``src/Supernet/network.py`` of the SPOS code)."""
        stem_conv = self.stem[0]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01 if m is stem_conv else 1.0 / m.weight.shape[1])
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                if m.affine:
                    nn.init.ones_(m.weight)
                    nn.init.constant_(m.bias, 1e-4)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def shufflenet(options: ShuffleNetOptions) -> ShuffleNet:
    return ShuffleNet(options)
