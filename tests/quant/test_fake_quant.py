"""The LSQ fake quantizer against an independent computation: round, clamp and rescale by hand, and
the step's gradient from autograd on the hand formula with a straight-through round."""
import math

import pytest
import torch

from supernet.nn.fake_quant import bit_range, fake_quantize, lsq_init


def by_hand(x, step, qmin, qmax):
    """LSQ's forward written out; ``round`` passes the gradient straight through (LSQ eq. 3-5)."""
    q = torch.clamp(x / step, qmin, qmax)
    rounded = q + (torch.round(q) - q).detach()
    return rounded * step


@pytest.mark.parametrize("bits,signed", [(2, True), (3, True), (4, False), (8, True), (8, False), (5, False)])
def test_per_tensor_matches_the_hand_computation_values_and_gradients(bits, signed):
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(64, 10, generator=g) * 1.5
    if not signed:
        x = x.relu()
    qmin, qmax = bit_range(bits, signed)
    step = lsq_init(x, qmax).clone().requires_grad_()
    out = fake_quantize(x.clone().requires_grad_(), step, qmin, qmax)
    assert torch.allclose(out, by_hand(x, step.detach(), qmin, qmax), atol=1e-6)
    levels = torch.unique(torch.round(out / step.detach()))
    assert levels.min() >= qmin and levels.max() <= qmax and len(levels) <= 2 ** bits

    xa = x.clone().requires_grad_()
    sa = step.detach().clone().requires_grad_()
    w = torch.randn(out.shape, generator=g)
    (fake_quantize(xa, sa, qmin, qmax) * w).sum().backward()
    xb = x.clone().requires_grad_()
    sb = step.detach().clone().requires_grad_()
    (by_hand(xb, sb, qmin, qmax) * w).sum().backward()
    scale = 1 / math.sqrt(x.numel() * qmax)  # LSQ's gradient scale
    assert torch.allclose(xa.grad, xb.grad)
    assert torch.allclose(sa.grad, sb.grad * scale, rtol=1e-4, atol=1e-7)


def test_per_channel_steps_get_their_own_gradients():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 3, 3, generator=g) * torch.linspace(0.1, 2, 6).view(6, 1, 1, 1)
    qmin, qmax = bit_range(3, True)
    step = lsq_init(w, qmax, dim=0)
    assert step.shape == (6,)
    assert torch.allclose(step, 2 * w.abs().flatten(1).mean(1) / math.sqrt(qmax))
    sa = step.clone().requires_grad_()
    out = fake_quantize(w, sa, qmin, qmax, axis=0)
    assert torch.allclose(out, by_hand(w, step.view(6, 1, 1, 1), qmin, qmax), atol=1e-6)
    up = torch.randn(w.shape, generator=g)
    (out * up).sum().backward()
    sb = step.clone().requires_grad_()
    (by_hand(w, sb.view(6, 1, 1, 1), qmin, qmax) * up).sum().backward()
    assert torch.allclose(sa.grad, sb.grad / math.sqrt(27 * qmax), rtol=1e-4, atol=1e-7)


def test_values_outside_the_range_clip_and_pass_no_gradient_to_x():
    x = torch.tensor([-10.0, -0.26, 0.0, 0.24, 10.0], requires_grad=True)
    step = torch.tensor(0.5, requires_grad=True)
    out = fake_quantize(x, step, -2, 1)
    assert out.tolist() == [-1.0, -0.5, 0.0, 0.0, 0.5]
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # step: qmin below, qmax above, round(q) - q inside; times 1 / sqrt(5 * 1)
    inside = [round(-0.52) + 0.52, 0.0, round(0.48) - 0.48]
    assert step.grad.item() == pytest.approx((-2 + 1 + sum(inside)) / math.sqrt(5), abs=1e-6)


def test_bf16_inputs_come_back_in_bf16():
    x = torch.randn(8, 4).bfloat16()
    out = fake_quantize(x, torch.tensor(0.1), *bit_range(4, True))
    assert out.dtype == torch.bfloat16
