from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from supernet.nn import ChannelChoice, InputChoice, LayerChoice, SlicedBatchNorm2d, SlicedConv2d
from supernet.nn.choices import shared_relus


def test_layer_choice_runs_the_active_candidate_and_names_its_label_when_none():
    lc = LayerChoice([nn.Linear(4, 3), nn.Linear(4, 3)], label="op")
    x = torch.randn(2, 4)
    with pytest.raises(RuntimeError, match="'op' has no active option"):
        lc(x)
    lc.active = 1
    assert torch.equal(lc(x), lc[1](x))
    lc.active = 0
    assert torch.equal(lc(x), lc[0](x))


def test_layer_choice_dict_candidates_keep_names_and_order():
    lc = LayerChoice({"a": nn.Identity(), "b": nn.ReLU()}, label="act")
    assert lc.values == ["a", "b"] and len(lc) == 2
    lc.active = 1
    assert torch.equal(lc(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 2.0]))


def test_layer_choice_weights_mix_candidates_and_active_restricts_them():
    lc = LayerChoice([nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)], label="op")
    x = torch.randn(2, 4)
    w = torch.softmax(torch.randn(3), 0)
    lc.weights = w  # DARTS: every candidate, weighted
    expected = sum(w[i] * lc[i](x) for i in range(3))
    assert torch.allclose(lc(x), expected)
    lc.active = [0, 2]  # Proxyless: only the sampled pair
    assert torch.allclose(lc(x), w[0] * lc[0](x) + w[2] * lc[2](x))
    lc.active = 1  # one sampled path, still scaled by its weight (Proxyless' single-path mode)
    assert torch.allclose(lc(x), w[1] * lc[1](x))


def test_input_choice_selects_reduces_and_mixes():
    xs = [torch.full((1, 2), float(i)) for i in range(4)]
    ic = InputChoice(4, 2, label="in")
    with pytest.raises(RuntimeError, match="'in'"):
        ic(xs)
    ic.active = [1, 3]
    assert torch.equal(ic(xs), torch.full((1, 2), 4.0))
    ic = InputChoice(4, 2, label="in", reduction="concat")
    ic.active = [0, 2]
    assert torch.equal(ic(xs), torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
    ic = InputChoice(4, 2, label="in", reduction="mean")
    ic.active = [1, 3]
    assert torch.equal(ic(xs), torch.full((1, 2), 2.0))
    with pytest.raises(ValueError, match="expects 4 inputs"):
        ic(xs[:3])
    with pytest.raises(ValueError, match="n_chosen"):
        InputChoice(2, 3, label="bad")
    ic = InputChoice(4, 2, label="in", reduction="none")
    ic.active = [0, 3]
    assert ic(xs) == [xs[0], xs[3]]


def test_layer_choice_takes_nni_arguments_and_labels_itself():
    a, b = LayerChoice([nn.Identity(), nn.ReLU()]), LayerChoice([nn.Identity()])
    assert a.label.startswith("layerchoice_") and b.label.startswith("layerchoice_") and a.label != b.label
    lc = LayerChoice(OrderedDict([("conv", nn.Linear(2, 2)), ("skip", nn.Identity())]), label="op")
    assert lc.values == ["conv", "skip"] and lc.label == "op"
    assert LayerChoice([nn.Identity()], "positional").label == "positional"


def test_input_choice_takes_nni_arguments_in_nni_order():
    ic = InputChoice(3, 2, "concat", "skip")  # NNI: (n_candidates, n_chosen, reduction, label)
    assert (ic.n_candidates, ic.n_chosen, ic.reduction, ic.label) == (3, 2, "concat", "skip")
    ic = InputChoice(n_candidates=3, n_chosen=None)
    assert ic.label.startswith("inputchoice_") and ic.reduction == "sum" and ic.n_chosen is None
    assert InputChoice(3).label != InputChoice(3).label
    with pytest.raises(ValueError, match="reduction 'skip' is not one of .*pass label='skip'"):
        InputChoice(3, 2, "skip")  # our old positional order gets a clear error, never a silent mix-up
    with pytest.raises(ValueError, match="InputChoice 'x': n_chosen must be in 1..3 \\(or None for any subset\\), got 0"):
        InputChoice(3, 0, label="x")


def test_input_choice_of_any_subset_treats_an_empty_selection_as_no_input():
    xs = [torch.full((2, 3, 1), float(i + 1)) for i in range(3)]
    for reduction, expected in [("sum", torch.zeros(2, 3, 1)), ("mean", torch.zeros(2, 3, 1)),
                                ("concat", torch.zeros(2, 0, 1)), ("none", [])]:
        ic = InputChoice(3, None, reduction, label="skip")
        ic.active = []
        out = ic(xs)
        assert out == [] if reduction == "none" else torch.equal(out, expected)
        ic.active = [0, 2]
        out = ic(xs)
        assert out == [xs[0], xs[2]] if reduction == "none" else out.sum() > 0


def test_input_choice_reductions_under_weights():
    xs = [torch.full((1, 2), float(i)) for i in range(3)]
    w = torch.tensor([0.2, 0.3, 0.5])
    ic = InputChoice(3, 2, "sum", label="in")
    ic.weights = w  # DARTS: every input, weighted
    assert torch.allclose(ic(xs), torch.full((1, 2), 0.3 + 1.0))
    ic.reduction = "mean"  # weighted average: sum(w x) / sum(w)
    ic.active = [1, 2]
    assert torch.allclose(ic(xs), torch.full((1, 2), (0.3 + 1.0) / 0.8))
    ic.reduction = "concat"  # each input scaled, then concatenated: the width of n_chosen inputs
    assert torch.allclose(ic(xs), torch.tensor([[0.3, 0.3, 1.0, 1.0]]))
    ic.active = None
    with pytest.raises(ValueError, match="'in': a weighted concat of 3 inputs would not have the width of 2"):
        ic(xs)
    all3 = InputChoice(3, 3, "concat", label="all")
    all3.weights = w
    assert torch.allclose(all3(xs), torch.tensor([[0.0, 0.0, 0.3, 0.3, 1.0, 1.0]]))
    all3.reduction = "none"
    assert torch.allclose(torch.stack(all3(xs)), torch.stack([w[i] * xs[i] for i in range(3)]))


def test_sliced_conv_uses_the_leading_channels_of_the_largest_kernel():
    w = ChannelChoice([2, 4, 6], label="w")
    pw = SlicedConv2d(5, 6, 1, out_width=w)
    dw = SlicedConv2d(6, 6, 3, padding=1, depthwise=True, in_width=w)
    x = torch.randn(2, 5, 7, 7)
    for i, c in enumerate(w.values):
        w.active = i
        y = pw(x)
        assert y.shape[1] == c
        assert torch.allclose(y, nn.functional.conv2d(x, pw.weight[:c]))
        fixed = pw.fixed()
        assert type(fixed) is nn.Conv2d and fixed.out_channels == c and torch.allclose(fixed(x), y)
        z = dw(y)
        assert torch.allclose(z, dw.fixed()(y)) and dw.fixed().groups == c


def test_sliced_bn_updates_only_the_active_slice_of_its_statistics():
    w = ChannelChoice([2, 4], label="w")
    bn = SlicedBatchNorm2d(4, w, affine=False)
    w.active = 0
    bn.train()
    bn(torch.randn(8, 2, 3, 3) + 5)
    assert (bn.running_mean[:2] > 0.1).all() and torch.equal(bn.running_mean[2:], torch.zeros(2))
    fixed = bn.fixed()
    assert fixed.affine and fixed.num_features == 2 and torch.equal(fixed.running_mean, bn.running_mean[:2])


def test_sliced_bn_cumulative_average_matches_plain_batchnorm():
    w = ChannelChoice([3], label="w")
    sliced = SlicedBatchNorm2d(3, w, momentum=None)
    plain = nn.BatchNorm2d(3, momentum=None)
    w.active = 0
    for _ in range(3):
        x = torch.randn(4, 3, 2, 2)
        sliced(x)
        plain(x)
    assert torch.allclose(sliced.running_mean, plain.running_mean)
    assert torch.allclose(sliced.running_var, plain.running_var)


def test_channel_choice_mixing_with_one_hot_weights_equals_sampling():
    from supernet.spaces.shufflenet import ShuffleBlock
    w = ChannelChoice([2, 4, 6, 8], label="w")
    block = ShuffleBlock(8, 16, 2, "k3", 8, affine=False, mid_choice=w).eval()
    x = torch.randn(2, 8, 8, 8)
    for i in range(4):
        w.active, w.weights = i, None
        sampled = block(x)
        w.active, w.weights = None, torch.nn.functional.one_hot(torch.tensor(i), 4).float()
        assert torch.allclose(block(x), sampled, atol=1e-6)


def test_sliced_layer_rejects_a_choice_of_the_wrong_size():
    with pytest.raises(ValueError, match="tops out at 4"):
        SlicedConv2d(3, 6, 1, out_width=ChannelChoice([2, 4], label="w"))


def test_depthwise_conv_skips_only_taps_that_meet_padding():
    import torch.nn.functional as F
    from supernet.nn import DepthwiseConv2d, full_kernels
    torch.manual_seed(0)
    for size in (1, 2, 3, 4, 7):
        for k in (3, 5, 7):
            for stride in (1, 2):
                conv = DepthwiseConv2d(6, k, stride, k // 2)
                x = torch.randn(2, 6, size, size + 1)
                ref = F.conv2d(x, conv.weight, None, stride, k // 2, 1, 6)
                out = conv(x)
                assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-6), (size, k, stride)
                with full_kernels(conv):
                    assert torch.equal(conv(x), ref)
                assert conv.crop  # back on after the block
    width = ChannelChoice([2, 4], label="w")
    sliced = SlicedConv2d(4, 4, 7, 1, 3, depthwise=True, in_width=width)
    width.active = 0
    x = torch.randn(3, 2, 1, 1)
    assert torch.allclose(sliced(x), F.conv2d(x, sliced.weight[:2], None, 1, 3, 1, 2), atol=1e-6)
    assert isinstance(sliced.fixed(), DepthwiseConv2d)


def _relu_first_choice(label: str) -> LayerChoice:
    """Options as DARTS builds them: two start with a ReLU (one through a nested Sequential)."""
    torch.manual_seed(0)
    return LayerChoice([nn.Sequential(nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1)),
                        nn.Sequential(nn.Sequential(nn.ReLU(), nn.Conv2d(3, 3, 1)), nn.BatchNorm2d(3)),
                        nn.AvgPool2d(3, 1, 1), nn.Identity()], label=label)


class _ReluCalls(TorchDispatchMode):
    """Counts the ReLUs computed in the block."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func is torch.ops.aten.relu.default
        return func(*args, **(kwargs or {}))


def test_mixed_options_that_start_with_a_relu_share_one_and_compute_the_same():
    a, b = _relu_first_choice("a"), _relu_first_choice("b")
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
    a.weights = b.weights = w
    x0 = torch.randn(2, 3, 5, 5, requires_grad=True)
    x = x0 * 1
    with _ReluCalls() as calls:
        out = (a(x) * b(x).sin()).sum()
    assert calls.n == 2  # once per choice, not once per option
    by_option = (sum(w[i] * a[i](x) for i in range(4)) * sum(w[i] * b[i](x) for i in range(4)).sin()).sum()
    torch.testing.assert_close(out, by_option)
    for u, v in zip(torch.autograd.grad(out, [x0, w, *a.parameters()], retain_graph=True),
                    torch.autograd.grad(by_option, [x0, w, *a.parameters()])):
        torch.testing.assert_close(u, v)
    with shared_relus(), _ReluCalls() as calls:
        a(x), b(x)  # one input, one relu(x) for both choices
        assert calls.n == 1
        with torch.no_grad():
            x.add_(1)  # changed in place: its relu is computed again
            a(x)  # and without autograd each option runs whole
            assert calls.n == 3
        a(x)
        assert calls.n == 4
    with _ReluCalls() as calls:
        a(x)
    assert calls.n == 1  # the block's memo is gone with it
    a[0][0].register_forward_hook(lambda m, args, out: out * 0)  # a hooked ReLU runs in its option
    torch.testing.assert_close(a(x), sum(w[i] * a[i](x) for i in range(4)))


def test_a_hooked_option_runs_whole_and_recomputing_keeps_the_same_bits():
    a = _relu_first_choice("a")
    seen = []
    a[0].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    a.weights = torch.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    grads = []
    for recompute in (False, True):
        a.recompute = recompute
        with shared_relus():
            out = a(x).square().sum()
        grads.append(torch.autograd.grad(out, [x, a.weights, *a.parameters()]))
    assert len(seen) == 3  # the hooked option ran through its own forward (again in the recomputing backward)
    assert all(torch.equal(u, v) for u, v in zip(*grads))


def test_a_recomputed_choice_computes_its_inner_choices_relus_itself():
    inner = _relu_first_choice("inner")
    outer = LayerChoice([inner, nn.Sequential(nn.ReLU(), nn.Conv2d(3, 3, 1))], label="outer")
    inner.weights = torch.tensor([0.1, 0.2, 0.3, 0.4])
    outer.weights = torch.tensor([0.5, 0.5], requires_grad=True)
    outer.recompute = True
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    with shared_relus():
        out = outer(x).square().sum()
    out.backward()  # the recomputation (after the block) saves what the first run saved
    assert x.grad is not None
