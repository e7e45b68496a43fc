"""Layers whose width follows a ``ChannelChoice``: weights are shared by slicing the largest kernel.

This is the Slimmable / once-for-all form of weight sharing
(https://github.com/mit-han-lab/once-for-all): a layer built for the largest width keeps one
weight tensor, and a narrower option uses its leading channels, ``weight[:out, :in]``. The BatchNorm after a sliced conv slices its statistics the same way.

Each layer is told which choice governs its input and output widths (``None`` = fixed), so that
``fixed()`` can emit a plain layer of exactly the chosen size.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .choices import ChannelChoice


def _bind(module: nn.Module, name: str, choice: ChannelChoice | None) -> None:
    # A plain reference, not a submodule: the choice is registered once, where it is declared,
    # and many layers read it. nn.Module.__setattr__ would register it again under every layer.
    object.__setattr__(module, name, choice)


@contextlib.contextmanager
def full_kernels(model: nn.Module):
    """Run ``model``'s depthwise convs with their whole kernels for a while (for FLOP counters and
    exporters that should see the nominal layer): each one's ``crop`` is off until the block ends.
    Convs built inside the block (``fix``, ``.fixed()``) start with ``crop`` on, and a copy made
    inside it keeps the value it was copied with."""
    convs = [m for m in model.modules() if isinstance(m, (DepthwiseConv2d, SlicedConv2d))]
    saved = [m.crop for m in convs]
    try:
        for m in convs:
            m.crop = False
        yield model
    finally:
        for m, crop in zip(convs, saved):
            m.crop = crop


def live_taps(weight: torch.Tensor, x: torch.Tensor, stride, padding, dilation) -> tuple[torch.Tensor, tuple]:
    """``weight`` without the outer kernel rows/columns that only ever meet zero padding.

    On a feature map smaller than the kernel (a 7x7 depthwise conv on the 1x1 maps of the
    ImageNet space at 32 px) those taps add exact zeros, yet oneDNN's depthwise kernels become up
    to 100x slower there (20 ms instead of 0.2 ms). Cropping the same number of taps from both sides
    and the same amount of padding gives the same output size and values.
    """
    if dilation != (1, 1):
        return weight, padding
    crop = []
    for size, k, s, p in zip(x.shape[-2:], weight.shape[-2:], stride, padding):
        out = (size + 2 * p - k) // s + 1
        first = max(0, p - (out - 1) * s)           # taps before this one only see left padding
        last = min(k - 1, size - 1 + p)             # taps after this one only see right padding
        crop.append(max(0, min(first, k - 1 - last, p)))
    if crop == [0, 0]:
        return weight, padding
    (ch, cw), (kh, kw) = crop, weight.shape[-2:]
    return weight[..., ch:kh - ch, cw:kw - cw], (padding[0] - ch, padding[1] - cw)


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (groups = channels) that skips the taps that only meet padding
    (while ``crop`` is on: always, but inside ``full_kernels``)."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = False):
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels, bias=bias)
        self.crop = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, padding = live_taps(self.weight, x, self.stride, self.padding, self.dilation) if self.crop else \
            (self.weight, self.padding)
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


class SlicedConv2d(nn.Conv2d):
    """``nn.Conv2d`` at its largest size, run at the widths its choices select.

    Args:
        in_width: the ``ChannelChoice`` that sets the input channels, or None for a fixed size.
        out_width: the one that sets the output channels. A depthwise conv (``depthwise=True``)
            has one choice for both.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = False, depthwise: bool = False,
                 in_width: ChannelChoice | None = None, out_width: ChannelChoice | None = None):
        if depthwise and in_channels != out_channels:
            raise ValueError("a depthwise SlicedConv2d needs in_channels == out_channels")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         groups=in_channels if depthwise else 1, bias=bias)
        self.depthwise = depthwise
        if depthwise:
            in_width = out_width = in_width or out_width
        for choice, size in ((in_width, in_channels), (out_width, out_channels)):
            if choice is not None and choice.max_width != size:
                raise ValueError(f"ChannelChoice '{choice.label}' tops out at {choice.max_width} "
                                 f"channels but the layer has {size}")
        _bind(self, "in_width", in_width)
        _bind(self, "out_width", out_width)
        self.crop = True  # a depthwise conv skips the taps that only meet padding (see live_taps)

    def active_shape(self) -> tuple[int, int]:
        """(in, out) channels at the current decision."""
        c_in = self.in_channels if self.in_width is None else self.in_width.current()
        c_out = self.out_channels if self.out_width is None else self.out_width.current()
        return c_in, c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in, c_out = self.active_shape()
        if self.depthwise:
            weight, groups = self.weight[:c_out], c_out
        else:
            weight, groups = self.weight[:c_out, :c_in], 1
        bias = None if self.bias is None else self.bias[:c_out]
        padding = self.padding
        if self.depthwise and self.crop:
            weight, padding = live_taps(weight, x, self.stride, self.padding, self.dilation)
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)

    def fixed(self) -> nn.Conv2d:
        c_in, c_out = self.active_shape()
        if self.depthwise:
            conv = DepthwiseConv2d(c_out, self.kernel_size, self.stride, self.padding, bias=self.bias is not None)
        else:
            conv = nn.Conv2d(c_in, c_out, self.kernel_size, self.stride, self.padding, bias=self.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in])
            if self.bias is not None:
                conv.bias.copy_(self.bias[:c_out])
        return conv.to(self.weight.device)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose leading ``width.current()`` channels are used.

    Under mixing (``width.weights`` set) it runs at full width and multiplies its output by the
    choice's soft mask, so channels beyond a width contribute in proportion to its weight.
    """

    def __init__(self, num_features: int, width: ChannelChoice | None, affine: bool = True,
                 momentum: float | None = 0.1, eps: float = 1e-5):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        if width is not None and width.max_width != num_features:
            raise ValueError(f"ChannelChoice '{width.label}' tops out at {width.max_width} "
                             f"channels but the BatchNorm has {num_features}")
        _bind(self, "width", width)

    def active_features(self) -> int:
        return self.num_features if self.width is None else self.width.current()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_features()
        # Same running-average rule as nn.BatchNorm2d; momentum=None is the cumulative average.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or not self.track_running_stats
        # Prefix slices of 1-D buffers are contiguous views, so F.batch_norm's in-place update of
        # the running statistics lands in the shared buffers.
        out = F.batch_norm(
            x,
            self.running_mean[:c] if self.track_running_stats else None,
            self.running_var[:c] if self.track_running_stats else None,
            None if self.weight is None else self.weight[:c],
            None if self.bias is None else self.bias[:c],
            use_batch_stats, factor, self.eps)
        if self.width is not None and self.width.weights is not None:
            out = out * self.width.mask().view(1, -1, 1, 1)
        return out

    def fixed(self) -> nn.BatchNorm2d:
        """A plain, always-affine BatchNorm of the active width (identity affine if this had none)."""
        return fixed_batchnorm(self, self.active_features())


def fixed_batchnorm(bn: nn.BatchNorm2d, c: int) -> nn.BatchNorm2d:
    """Plain affine BatchNorm2d of ``c`` channels with ``bn``'s leading statistics and affine terms.

    The stand-alone subnet always has affine BN, as the official SPOS code retrains it
    (https://github.com/megvii-model/SinglePathOneShot, ``src/Evaluation``; NNI PR #2902 lost 0.7% top-1 by
    keeping it non-affine). weight=1, bias=0 computes exactly what a non-affine BN computes.
    """
    out = nn.BatchNorm2d(c, eps=bn.eps, momentum=bn.momentum, affine=True,
                         track_running_stats=bn.track_running_stats)
    with torch.no_grad():
        if bn.affine:
            out.weight.copy_(bn.weight[:c])
            out.bias.copy_(bn.bias[:c])
        if bn.track_running_stats:
            out.running_mean.copy_(bn.running_mean[:c])
            out.running_var.copy_(bn.running_var[:c])
            out.num_batches_tracked.copy_(bn.num_batches_tracked)
    device = bn.running_mean.device if bn.running_mean is not None else bn.weight.device
    return out.to(device)
