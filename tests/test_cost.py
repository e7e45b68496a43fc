import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from supernet import fix
from supernet.cost import Constraint, Constraints, CostModel
from supernet.nn import full_kernels
from supernet.spaces import create


A = [0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2]
B = [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3]
C_SCALES = [1.4, 1.2, 0.8, 1.2, 0.6, 1.4, 0.8, 1.0, 0.6, 1.2, 1.6, 1.2, 1.0, 1.4, 1.6, 1.0, 1.0, 1.2, 1.0, 0.8]


def arch_of(blocks, scales=None):
    arch = {f"layer_{i}": b for i, b in enumerate(blocks)}
    if scales is not None:
        arch.update({f"channel_{i}": round(s * 5) - 1 for i, s in enumerate(scales)})
    return arch


def test_published_numbers_at_224_and_1000_classes():
    """The published costs: B 323M / 3.5M (the official README), A 319M / 3.3M (the paper), C 328M / 3.4M
    (megvii-model/ShuffleNet-Series, OneShot); affine BN, no FC bias."""
    blocks = CostModel(create("shufflenet"))
    assert blocks.cost(arch_of(B)) == (322_918_720, 3_558_464)
    assert blocks.cost(arch_of(A)) == (318_729_024, 3_345_088)
    channels = CostModel(create("shufflenet", channel_search=True))
    assert channels.cost(arch_of(A, [1.0] * 20)) == (318_729_024, 3_345_088)
    assert channels.cost(arch_of(A, C_SCALES)) == (327_857_920, 3_432_579)
    assert [round(x / 1e6) for x in channels.cost(arch_of(A, C_SCALES))] == [328, 3]
    assert round(3_432_579 / 1e5) / 10 == 3.4 and round(3_558_464 / 1e5) / 10 == 3.6  # 3.5M in the README is truncated


def independent_count(model, arch, shape):
    fixed = fix(model, arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad(), full_kernels(fixed):  # nominal MACs
        fixed(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2, sum(p.numel() for p in fixed.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("channel_search", [False, True])
@pytest.mark.parametrize("name, sizes", [("shufflenet", (64, 96)), ("shufflenet-cifar", (32, 48))])
def test_table_matches_flop_counter_for_random_architectures(name, sizes, channel_search):
    """4 x 2 sizes x 12 = 192 architectures in all, each checked exactly (with 20 layers, every option
    of every layer is drawn many times)."""
    for size in sizes:
        model = create(name, input_size=size, width_mult=0.5, channel_search=channel_search)
        cost = CostModel(model)
        rng = random.Random(size)
        for _ in range(12):
            arch = cost.space.sample(rng)
            assert cost.cost(arch) == independent_count(model, arch, (3, size, size)), arch


def test_range_is_exact_on_a_space_small_enough_to_enumerate():
    model = create("shufflenet-cifar", stage_repeats=(1, 1, 1, 1), width_mult=0.25, channel_search=False)
    cost = CostModel(model)
    values = [cost.cost(a) for a in cost.space]
    assert len(values) == 256
    r = cost.range()
    assert (r["flops_min"], r["flops_max"]) == (min(v[0] for v in values), max(v[0] for v in values))
    assert (r["params_min"], r["params_max"]) == (min(v[1] for v in values), max(v[1] for v in values))
    assert cost.flops(cost.extreme_arch("flops")) == r["flops_min"]
    assert cost.params(cost.extreme_arch("params", largest=True)) == r["params_max"]


def test_constraints_parse_check_and_report_the_feasible_range():
    assert Constraint.parse("flops<=330M") == Constraint("flops", max=330e6)
    assert Constraint.parse("params >= 3.3e6") == Constraint("params", min=3.3e6)
    assert Constraint.parse("flops=290M..360M") == Constraint("flops", 290e6, 360e6)
    with pytest.raises(ValueError, match="cannot read constraint"):
        Constraint.parse("energy<3")
    assert Constraint.parse("latency<=12ms") == Constraint("latency", max=12.0)
    assert Constraint.parse("latency>=800us") == Constraint("latency", min=0.8)
    assert Constraint.parse("latency=0.5..1s") == Constraint("latency", 0.5, 1000.0)
    assert str(Constraint.parse("latency<=12ms")) == "latency <= 12ms"
    with pytest.raises(ValueError, match="not a latency"):
        Constraint.parse("latency<=12M")
    with pytest.raises(ValueError, match="min 5 > max 3"):
        Constraint("flops", 5, 3)
    with pytest.raises(ValueError, match=r"constraint latency: the bound -1ms must be a finite number >= 0"):
        Constraint.parse("latency<=-1ms")
    with pytest.raises(ValueError, match=r"constraint flops: the bound inf must be a finite number >= 0"):
        Constraint.parse("flops<=1e999")
    cost = CostModel(create("shufflenet"))
    cons = Constraints(cost, ["flops<=330M"])
    assert cons.ok(arch_of(A)) and not Constraints(cost, ["flops<=300M"]).ok(arch_of(A))
    cons.check_feasible()
    with pytest.raises(ValueError, match=r"flops <= 100M cannot be met: this space's flops range is 270.359M .. 398.609M"):
        Constraints(cost, ["flops<=100M"]).check_feasible()


def test_queries_reject_bad_architectures_clearly():
    cost = CostModel(create("shufflenet-cifar", width_mult=0.25))
    with pytest.raises(ValueError, match="missing label"):
        cost.cost({"layer_0": 1})
