import pytest

from supernet.cost import Constraints, CostModel
from supernet.strategies import PathSampler

from ..conftest import tiny_model


@pytest.fixture(scope="module")
def cost():
    return CostModel(tiny_model("shufflenet-cifar", channel_search=True))


def test_path_is_a_function_of_seed_and_step(cost):
    a, b = PathSampler(cost.space, seed=1), PathSampler(cost.space, seed=1)
    assert [a(t) for t in (5, 0, 3)] == [b(t) for t in (5, 0, 3)]
    assert a(0) != PathSampler(cost.space, seed=2)(0)
    assert len({str(a(t)) for t in range(50)}) == 50


def test_hard_constraints_hold_on_every_sampled_path(cost):
    r = cost.range()
    mid = (r["flops_min"] + r["flops_max"]) / 2
    sampler = PathSampler(cost.space, 0, cost, Constraints(cost, [f"flops<={mid}"]))
    assert all(cost.flops(sampler(t)) <= mid for t in range(200))


def test_flops_bins_are_drawn_uniformly_and_hit(cost):
    r = cost.range()
    lo, hi = r["flops_min"], r["flops_max"]
    edges = [lo + (hi - lo) * f for f in (0.3, 0.4, 0.5, 0.6)]
    sampler = PathSampler(cost.space, 0, cost, flops_bins=edges)
    flops = [cost.flops(sampler(t)) for t in range(300)]
    counts = [sum(a <= f <= b for f in flops) for a, b in zip(edges, edges[1:])]
    assert sampler.fallbacks == 0 and sum(counts) == 300
    assert min(counts) > 60  # 100 expected per bin


def test_impossible_constraints_fail_at_once_with_the_range(cost):
    with pytest.raises(ValueError, match="cannot be met: this space's flops range is"):
        PathSampler(cost.space, 0, cost, Constraints(cost, ["flops<=10"]))
    with pytest.raises(ValueError, match=r"FLOPs bin \[1000G, 2000G\] is outside this space.s FLOPs range"):
        PathSampler(cost.space, 0, cost, flops_bins=[1e12, 2e12])
