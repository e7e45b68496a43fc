"""The ENAS macro and micro spaces: exact cost for random architectures (FlopCounterMode), the
unused-node concat's exact range, and shapes that never depend on the skip set."""
import itertools
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from supernet import SearchSpace, fix
from supernet.cost import CostModel
from supernet.nn import InputChoice
from supernet.spaces import create


def _counted(model, arch, size):
    fixed = fix(model, arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fixed(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2, sum(p.numel() for p in fixed.parameters())


@pytest.mark.parametrize("name, options", [("enas-macro", dict(layers=6, channels=8, input_size=16)),
                                           ("enas-micro", dict(cells=1, channels=4, nodes=5, input_size=16))])
def test_cost_is_exact_for_random_architectures_and_the_extremes(name, options):
    torch.manual_seed(0)
    model = create(name, **options)
    cost = CostModel(model)
    rng = random.Random(1)
    archs = [cost.space.sample(rng) for _ in range(10)]
    archs += [cost.extreme_arch(m, big) for m in ("flops", "params") for big in (False, True)]
    for arch in archs:
        assert cost.cost(arch) == _counted(model, arch, options["input_size"]), arch
    r = cost.range()
    assert (r["flops_min"], r["flops_max"]) == (cost.flops(archs[-4]), cost.flops(archs[-3]))
    assert (r["params_min"], r["params_max"]) == (cost.params(archs[-2]), cost.params(archs[-1]))
    assert all(r["flops_min"] <= cost.flops(a) <= r["flops_max"] for a in archs)


def test_micro_range_equals_brute_force_over_every_input_selection():
    """The ops are independent of the inputs, so the extremes over inputs x ops are the extremes over
    every input selection with the ops at their own extremes (nodes=3: 2*2*3*3*4*4 per cell kind)."""
    torch.manual_seed(0)
    model = create("enas-micro", cells=1, channels=4, nodes=3, input_size=8)
    cost = CostModel(model)
    space = cost.space
    inputs = [l for l in space.labels if isinstance(space.choice(l), InputChoice)]
    for metric in ("flops", "params"):
        for big in (False, True):
            ops = cost.extreme_arch(metric, big)
            values = []
            kinds = [[l for l in inputs if l.startswith(k)] for k in ("normal/", "reduce/")]
            for kind_labels in kinds:  # the kinds are independent: vary one, the other at the extreme
                for combo in itertools.product(*(range(space.n_options(l)) for l in kind_labels)):
                    arch = {**ops, **{l: [v] for l, v in zip(kind_labels, combo)}}
                    values.append(getattr(cost, metric)(arch))
            best = max(values) if big else min(values)
            assert best == cost.range()[f"{metric}_{'max' if big else 'min'}"] == getattr(cost, metric)(ops)


def test_macro_shapes_do_not_depend_on_the_skip_set():
    model = create("enas-macro", layers=6, channels=8, input_size=16).eval()
    space = SearchSpace(model)
    x = torch.randn(2, 3, 16, 16)
    for skips in ("none", "all"):
        arch = {l: (list(range(space.n_options(l))) if skips == "all" else [])
                if isinstance(space.choice(l), InputChoice) else 0 for l in space.labels}
        space.activate(arch)
        assert model(x).shape == (2, 10)
        assert torch.allclose(fix(model, arch).eval()(x), model(x), atol=1e-5)


def test_a_latency_table_of_the_micro_space_is_refused_clearly():
    from supernet.cost.timing import build_table
    from supernet.runtime.typed import ConfigError
    with pytest.raises(ConfigError, match="NoneChosen-gated modules"):
        build_table(create("enas-micro", cells=1, channels=4, nodes=2, input_size=8), progress=False)
