"""Fake quantization with a learned step size (LSQ, Esser et al., ICLR 2020, arXiv:1902.08153).

``fake_quantize(x, step, qmin, qmax)`` returns ``clamp(round(x / step), qmin, qmax) * step``: the
values an integer kernel would see, in float. The forward pass is torch's own
``torch.fake_quantize_per_tensor_affine`` / ``torch.fake_quantize_per_channel_affine`` (zero point
0: symmetric for weights and signed activations, ``[0, qmax]`` for non-negative ones); the backward
pass is LSQ's:

- to ``x``: the straight-through estimate, 1 where ``qmin <= x / step <= qmax`` and 0 outside;
- to ``step``: ``round(x / step) - x / step`` inside, ``qmin`` below and ``qmax`` above, summed
  over the elements that share the step and multiplied by the gradient scale
  ``1 / sqrt(n * qmax)`` (``n``: elements per step), which keeps the step's updates in proportion
  to the weights' (LSQ, section 2.2).

Under ONNX export (the TorchScript exporter) the op becomes ``QuantizeLinear`` to int8 (uint8 for
a non-negative range), a ``Clip`` to ``[qmin, qmax]`` when the range is narrower than the type's, and
``DequantizeLinear``: the same
numbers in ONNX Runtime, which has no kernels below 8 bits (``supernet.export`` says when it runs
them on int8 kernels).
"""
from __future__ import annotations

import math

import torch


def bit_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integer range of ``bits``: ``[-2^(b-1), 2^(b-1) - 1]`` signed, ``[0, 2^b - 1]`` unsigned."""
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def lsq_init(x: torch.Tensor, qmax: int, dim: int | None = None) -> torch.Tensor:
    """LSQ's initial step, ``2 * mean(|x|) / sqrt(qmax)``: per tensor, or per slice along ``dim``."""
    a = x.detach().float().abs()
    mean = a.mean() if dim is None else a.transpose(0, dim).flatten(1).mean(1)
    return (2 * mean / math.sqrt(qmax)).clamp_min(1e-8)


class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, step, qmin: int, qmax: int, axis: int | None, grad_scale: float):
        ctx.save_for_backward(x, step)
        ctx.qmin, ctx.qmax, ctx.axis, ctx.grad_scale = qmin, qmax, axis, grad_scale
        s = step.detach().float()
        if axis is None:
            zero = torch.zeros((), dtype=torch.int32, device=x.device)
            return torch.fake_quantize_per_tensor_affine(x, s, zero, qmin, qmax)
        zero = torch.zeros(s.shape, dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_channel_affine(x, s, zero, axis, qmin, qmax)

    @staticmethod
    def backward(ctx, grad):
        x, step = ctx.saved_tensors
        s = step if ctx.axis is None else step.view([-1 if d == ctx.axis else 1 for d in range(x.dim())])
        q = x / s
        levels = q.clamp(ctx.qmin, ctx.qmax)
        grad_x = grad * (q == levels)  # straight through inside the range, 0 outside
        levels.round_()
        # d/ds per element: round(q) - q inside, qmin or qmax outside, i.e. round(clamp(q)) - q * inside;
        # summed as two dot products (2.5x faster than forming the elementwise gradient).
        if ctx.axis is None:
            grad_step = torch.vdot(grad.flatten(), levels.flatten()) - torch.vdot(grad_x.flatten(), q.flatten())
        else:
            def per_slice(t):
                return t.transpose(0, ctx.axis).flatten(1).sum(1)
            grad_step = per_slice(grad * levels) - per_slice(grad_x * q)
        return grad_x, grad_step * ctx.grad_scale, None, None, None, None

    @staticmethod
    def symbolic(g, x, step, qmin: int, qmax: int, axis, grad_scale):
        dtype = torch.int8 if qmin < 0 else torch.uint8  # signed: int8; non-negative: uint8 (ONNX Runtime's U8S8)
        if axis is None:
            zero, kwargs = g.op("Constant", value_t=torch.tensor(0, dtype=dtype)), {}
        else:  # one zero point per channel
            channels = step.type().sizes()[0]
            zero, kwargs = g.op("Constant", value_t=torch.zeros(channels, dtype=dtype)), {"axis_i": axis}
        q = g.op("QuantizeLinear", x, step, zero, **kwargs)
        if (qmin, qmax) != ((-128, 127) if qmin < 0 else (0, 255)):
            q = g.op("Clip", q, g.op("Constant", value_t=torch.tensor(qmin, dtype=dtype)),
                     g.op("Constant", value_t=torch.tensor(qmax, dtype=dtype)))
        return g.op("DequantizeLinear", q, step, zero, **kwargs)


def fake_quantize(x: torch.Tensor, step: torch.Tensor, qmin: int, qmax: int, axis: int | None = None,
                  count: int | None = None) -> torch.Tensor:
    """``clamp(round(x / step), qmin, qmax) * step`` with LSQ's gradients (see the module's doc).

    Args:
        step: a scalar tensor, or with ``axis`` one step per slice of ``x`` along ``axis``
            (per-channel weights: ``axis=0``).
        qmin: the integer range's low end, ``bit_range(bits, signed)[0]``.
        qmax: its high end.
        count: the ``n`` of the gradient scale: by default the elements per step; for activations
            LSQ counts one sample's features, so that the scale does not depend on the batch size
            (nor on how many processes share a batch).
    """
    n = count if count is not None else x.numel() if axis is None else x.numel() // x.shape[axis]
    dtype = x.dtype
    out = _FakeQuantize.apply(x.float(), step, qmin, qmax, axis, 1.0 / math.sqrt(n * max(qmax, 1)))
    return out.to(dtype)
