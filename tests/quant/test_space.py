"""Mixed-precision spaces: labels, quantized layers, fix(), and exact BitOps and size against hand counts."""
import json
import math
import random

import pytest
import torch
from torch import nn

from supernet import LayerChoice, SearchSpace, create, fix
from supernet.cost import Constraints, CostModel
from supernet.nn import BitChoice, Quantized
from supernet.quant import mixed_precision, quantizable, with_bits

DIGITS = dict(width_mult=0.5, stage_repeats=[1, 1, 2, 1], channel_search=True, input_size=8, num_classes=10,
              in_channels=1)


class Small(nn.Module):
    """Stem, a block choice of two convs, a 1x1 conv, a classifier: every cost by hand is short."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = LayerChoice([nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU()),
                                  nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU())], label="block")
        self.mix = nn.Conv2d(6, 8, 1, bias=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.mix(self.block(torch.relu(self.stem(x))))).mean((2, 3)))


def digits_space(**kw):
    return mixed_precision(create("shufflenet-cifar", **DIGITS), **kw)


def test_every_conv_and_linear_gets_two_labelled_choices_with_the_ends_kept_in_float():
    model = mixed_precision(Small(), weight_bits=[2, 4, 8, 32], act_bits=[4, 8])
    space = SearchSpace(model)
    assert space.labels == ["block", "block.candidates.0.0.weight_bits", "block.candidates.0.0.act_bits",
                            "block.candidates.1.0.weight_bits", "block.candidates.1.0.act_bits",
                            "mix.weight_bits", "mix.act_bits"]
    assert isinstance(model.stem, nn.Conv2d) and isinstance(model.head, nn.Linear)  # the default exclude
    assert space.choice("mix.weight_bits").values == [2, 4, 8, 32]
    everything = mixed_precision(Small(), exclude=())
    assert isinstance(everything.stem, Quantized) and isinstance(everything.head, Quantized)
    by_block = SearchSpace(mixed_precision(Small(), share="block", exclude=["stem", "head"]))
    assert by_block.labels == ["block", "block.weight_bits", "block.act_bits", "mix.weight_bits", "mix.act_bits"]
    staged = SearchSpace(mixed_precision(Small(), share={"block.*": "stage1", "mix": "stage1"}))
    assert staged.labels == ["block", "stage1.weight_bits", "stage1.act_bits"]


def test_bit_labels_sample_fix_serialise_and_stay_indices():
    space = SearchSpace(digits_space(share="block"))
    arch = space.sample(random.Random(3))
    assert space.validate(json.loads(json.dumps(arch))) == arch
    assert all(isinstance(v, int) for v in arch.values())
    model = space.model
    model.train()
    space.activate(arch)
    model(torch.randn(8, 1, 8, 8))  # the first training batch starts the steps
    model.eval()
    fixed = fix(model, arch).eval()
    assert not any(isinstance(m, BitChoice) for m in fixed.modules())
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        space.activate(arch)
        assert torch.equal(fixed(x), model(x))
    bits = {q.labels[0]: q.weight_bits for q in fixed.modules() if isinstance(q, Quantized)}
    assert bits["features.0.weight_bits"] == space.choice("features.0.weight_bits").values[arch["features.0.weight_bits"]]


def test_a_weight_quantized_at_b_bits_has_at_most_2_to_the_b_levels_per_channel_and_32_bits_is_float():
    layer = Quantized(nn.Conv2d(3, 5, 3), 3, 32)
    layer.train()
    x = torch.randn(4, 3, 6, 6)
    w = layer._mix(layer.layer.weight, "weight", 3)
    for c in range(5):
        assert len(torch.unique(w[c])) <= 8
    assert torch.equal(layer._mix(x, "act", 32), x)  # full precision: untouched
    plain = nn.Conv2d(3, 5, 3)
    plain.load_state_dict(layer.layer.state_dict())
    assert torch.allclose(layer(x), nn.functional.conv2d(x, w.detach(), plain.bias), atol=1e-6)


def test_activation_steps_start_from_the_first_training_batch_and_eval_changes_nothing():
    layer = Quantized(nn.Linear(4, 2), 8, 4)
    x = torch.rand(16, 4) * 3  # non-negative: the unsigned range
    layer.eval()
    layer(x)
    assert not layer.started.any() and int(layer.signed) == -1  # costing or evaluating starts nothing
    layer.train()
    layer(x)
    assert layer.started.all() and int(layer.signed) == 0
    assert layer.act_steps["4"].item() == pytest.approx(2 * x.abs().mean().item() / math.sqrt(15), rel=1e-6)
    before = layer.act_steps["4"].item()
    layer(x * 10)
    assert layer.act_steps["4"].item() == before  # started once, then learned
    fresh = fix(nn.Sequential(layer), {}, weights="init")
    assert not fresh[0].started.any()  # retraining from scratch starts the steps again


@pytest.mark.slow
def test_bitops_and_size_equal_a_hand_count_over_random_architectures():
    model = digits_space(share="block")
    cost = CostModel(model)
    space = cost.space
    rng = random.Random(0)
    for _ in range(6):
        arch = space.sample(rng)
        fixed = fix(model, arch).eval()
        macs = {}
        hooks = [m.register_forward_hook(lambda m, i, o: macs.__setitem__(m, macs.get(m, 0) + o.numel() * (
            math.prod(m.weight.shape[1:]) if isinstance(m, nn.Conv2d) else m.in_features)))
                 for m in fixed.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            fixed(torch.zeros(1, 1, 8, 8))
        for h in hooks:
            h.remove()
        quantized = {q.layer: q for q in fixed.modules() if isinstance(q, Quantized)}
        bitops = sum(n * (quantized[m].weight_bits * quantized[m].act_bits if m in quantized else 32 * 32)
                     for m, n in macs.items())
        assert cost.bitops(arch) == bitops
        bits = 0
        for name, p in fixed.named_parameters():
            owner = fixed.get_submodule(name.rsplit(".", 1)[0])
            q = quantized.get(owner)
            bits += p.numel() * (q.weight_bits if q is not None and name.endswith(".weight") else 32)
        assert cost.size(arch) == bits / 8  # the steps, as parameters, count at 32 bits
        assert cost.costs(arch) == {"flops": sum(macs.values()), "params": cost.params(arch),
                                    "bitops": bitops, "size": bits / 8}


def test_the_bitops_and_size_range_is_the_brute_force_range():
    model = mixed_precision(Small(), weight_bits=[2, 8], act_bits=[3, 32])
    cost = CostModel(model, (1, 5, 5))
    every = list(cost.space)
    assert len(every) == 2 * 2 ** 6
    for metric in ("bitops", "size"):
        values = [cost.value(metric, a) for a in every]
        r = cost.range()
        assert (r[f"{metric}_min"], r[f"{metric}_max"]) == (min(values), max(values))
        assert cost.value(metric, cost.extreme_arch(metric)) == min(values)
        assert cost.value(metric, cost.extreme_arch(metric, largest=True)) == max(values)


@pytest.mark.slow
def test_uniform_bits_and_constraints_on_bitops_and_size():
    model = digits_space(share="block")
    cost = CostModel(model)
    arch = cost.space.sample(random.Random(1))
    two, eight = with_bits(cost.space, arch, 2), with_bits(cost.space, arch, 8)
    assert cost.bitops(eight) > cost.bitops(two) and cost.size(eight) > cost.size(two)
    c = Constraints(cost, [f"bitops<={cost.bitops(two)}", "size<=10MB"])
    assert c.ok(two) and not c.ok(eight)
    lo = cost.range()["bitops_min"]
    with pytest.raises(ValueError, match=r"bitops <= 1000 cannot be met: this space's bitops range is .*13\.6253M"):
        Constraints(cost, ["bitops<=1000"]).check_feasible()
    assert lo == 13_625_344
    with pytest.raises(ValueError, match="needs quantized layers, and this model has none"):
        Constraints(CostModel(create("shufflenet-cifar", **DIGITS)), ["bitops<=1G"])


@pytest.mark.parametrize("kwargs,message", [
    (dict(weight_bits=[1, 2]), "bit width 1 is not supported; use integers in 2..8, or 32"),
    (dict(act_bits=[4, 16]), "bit width 16 is not supported"),
    (dict(weight_bits=[4, 4]), "repeat a value"),
    (dict(weight_bits=[]), "a non-empty list"),
    (dict(exclude=["nothing.here"]), "exclude 'nothing.here' names no quantizable layer; the layers are stem"),
    (dict(exclude=["*"]), "leaves no layer to quantize"),
])
def test_bad_settings_are_one_clear_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixed_precision(Small(), **kwargs)


def test_a_model_with_nothing_to_quantize_or_quantized_twice_is_refused():
    with pytest.raises(ValueError, match="has no layer to quantize"):
        mixed_precision(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)))
    model = mixed_precision(Small())
    with pytest.raises(ValueError, match="already has quantized layers"):
        mixed_precision(model)
    assert quantizable(Small()) == ["stem", "block.candidates.0.0", "block.candidates.1.0", "mix", "head"]
