import json
import random

import pytest
import torch

from supernet import SearchSpace
from supernet.search.config import SearchConfig
from supernet.cost import Constraints, CostModel
from supernet.search import CandidateEvaluator, EvolutionSearch, recalibrate_bn

from ..conftest import tiny_model


def test_recalibration_changes_running_stats_and_restores_modes_and_momentum():
    model = tiny_model("shufflenet-cifar")
    space = SearchSpace(model)
    space.activate(space.sample(random.Random(0)))
    model.eval()
    model.head[5].train()  # a mixed set of modes must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    bn = model.stem[1]
    bn.momentum = 0.3
    before = bn.running_mean.clone()
    batches = [(torch.randn(8, 3, 32, 32) * 2 + 1, None) for _ in range(3)]
    recalibrate_bn(model, batches)
    assert not torch.equal(bn.running_mean, before)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert bn.momentum == 0.3
    # Cumulative average: the stem BN's mean equals the mean over all recalibration images.
    with torch.no_grad():
        conv_out = torch.cat([model.stem[0](x) for x, _ in batches])
    torch.testing.assert_close(bn.running_mean, conv_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_evaluator_scores_identically_twice_and_independently_of_order():
    model = tiny_model("shufflenet-cifar", input_size=16)
    space = SearchSpace(model)
    recal = [(torch.randn(8, 3, 16, 16), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    val = [(torch.randn(16, 3, 16, 16), torch.randint(0, 5, (16,)))]
    ev = CandidateEvaluator(model, recal, val)
    a, b = space.sample(random.Random(1)), space.sample(random.Random(2))
    first = ev(a)
    ev(b)
    assert ev(a) == first and 0 <= first["top1_err"] <= 1


class Recorder:
    def __init__(self, space):
        self.space, self.calls = space, []

    def __call__(self, arch):
        self.calls.append(self.space.encode(arch))
        score = sum(v for v in arch.values()) / (3 * len(arch))  # prefers large indices
        return {"top1_err": 1 - score, "top5_err": 0.5 * (1 - score)}


def small_search(**kw):
    model = tiny_model("shufflenet-cifar", stage_repeats=(2, 2, 2, 2))
    cost = CostModel(model)
    cfg = SearchConfig(population=12, generations=5, topk=4, mutations=6, crossovers=6, seed=0, progress=False, **kw)
    return model, cost, cfg


def test_evolution_never_evaluates_twice_nor_breaks_the_constraint():
    model, cost, cfg = small_search()
    space = cost.space
    r = cost.range()
    limit = (r["flops_min"] + r["flops_max"]) / 2
    constraints = Constraints(cost, [f"flops<={limit}"])
    rec = Recorder(space)
    engine = EvolutionSearch(space, rec, cfg, cost, constraints)
    top = engine.run()
    assert len(rec.calls) == len(set(rec.calls)) == len(engine.results)
    assert len(rec.calls) > cfg.population * 3
    assert all(cost.flops(space.decode(k)) <= limit for k in rec.calls)
    assert [r["top1_err"] for r in top] == sorted(r["top1_err"] for r in engine.results)[: cfg.topk]
    origins = {r["origin"] for r in engine.results if r["generation"] > 0}
    assert {"mutation", "crossover"} <= origins


def test_search_resumes_from_json_state_identically():
    model, cost, cfg = small_search()
    space = cost.space
    full = EvolutionSearch(space, Recorder(space), cfg, cost)
    full.run()
    part = EvolutionSearch(space, Recorder(space), cfg, cost)
    part.step()
    part.step()
    state = json.loads(json.dumps(part.state_dict()))
    resumed = EvolutionSearch(space, Recorder(space), cfg, cost, state=state)
    resumed.run()
    assert resumed.results == full.results and resumed.topk == full.topk


def test_random_search_evaluates_the_requested_number_of_distinct_architectures():
    model, cost, cfg = small_search(algorithm="random", random_candidates=30)
    rec = Recorder(cost.space)
    engine = EvolutionSearch(cost.space, rec, cfg, cost)
    engine.run()
    assert len(rec.calls) == len(set(rec.calls)) == 30
    assert {r["origin"] for r in engine.results} == {"random"}


def test_an_impossible_search_constraint_fails_at_once_with_the_range():
    model, cost, cfg = small_search()
    with pytest.raises(ValueError, match="cannot be met: this space's flops range is"):
        EvolutionSearch(cost.space, Recorder(cost.space), cfg, cost, Constraints(cost, ["flops<=1"]))


def test_scorer_settings_that_a_user_evaluator_would_ignore_are_refused():
    import dataclasses
    model, cost, cfg = small_search()
    cfg = dataclasses.replace(cfg, recal_batches=7, val_images=10)
    with pytest.raises(ValueError, match="recal_batches=7, val_images=10: these settings build the built-in scorer"):
        EvolutionSearch(SearchSpace(model), lambda arch: {"top1_err": 0.5, "top5_err": 0.1}, cfg, cost)


def four_architectures():
    """A space of 4 architectures: one choice among convolutions of growing FLOPs."""
    from supernet.nn import LayerChoice
    model = torch.nn.Sequential(
        LayerChoice([torch.nn.Conv2d(3, 4, k, padding=k // 2) for k in (1, 3, 5, 7)], label="conv"),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    cost = CostModel(model, (3, 8, 8))
    cfg = SearchConfig(population=12, generations=10, topk=4, mutations=6, crossovers=6, seed=0, progress=False)
    return cost, cfg


@pytest.mark.parametrize("limit", [None, "largest"])
def test_an_exhausted_space_ends_the_search_with_one_line_and_so_does_its_resume(capsys, limit):
    cost, cfg = four_architectures()
    space = cost.space
    constraints, legal = None, 4
    if limit:  # the largest kernel breaks the constraint: 3 legal architectures
        constraints, legal = Constraints(cost, [f"flops<={cost.range()['flops_max'] - 1}"]), 3
    rec = Recorder(space)
    engine = EvolutionSearch(space, rec, cfg, cost, constraints)
    saved = []
    engine.run(on_generation=lambda e, new: saved.append(json.loads(json.dumps(e.state_dict()))))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the search space is exhausted" in err and f"all {legal} architectures" in err
    assert "stops after 1 of 10 generations" in err and "no legal new candidate" not in err
    assert engine.done and engine.generation == 1 and len(saved) == 1
    assert sorted(rec.calls) == sorted(set(rec.calls)) and len(rec.calls) == len(engine.results) == legal

    rec = Recorder(space)
    resumed = EvolutionSearch(space, rec, cfg, cost, constraints, state=saved[-1])
    resumed.run(on_generation=lambda e, new: saved.append(e))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the search space is exhausted" in err
    assert rec.calls == [] and len(saved) == 1 and resumed.results == engine.results


def test_a_generation_that_finds_nothing_in_a_space_not_exhausted_still_warns(capsys):
    cost, cfg = four_architectures()
    space = cost.space
    engine = EvolutionSearch(space, Recorder(space), cfg, cost)
    engine.step()
    engine.results, engine.visited = engine.results[:3], {space.encode(r["arch"]) for r in engine.results[:3]}
    engine.rng = random.Random(0)
    engine.propose = lambda: []  # nothing legal found although one architecture is left
    engine.step()
    assert not engine.exhausted and "generation 1 found no legal new candidate" in capsys.readouterr().err
