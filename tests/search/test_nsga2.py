"""NSGA-II over a supernet: the evolution's legality and seen set, the front of everything evaluated,
its hypervolume per generation, and an exact resume from the JSON state."""
import dataclasses
import json

import pytest

from supernet.cost import Constraints
from supernet.search import NSGA2Search, make_search
from supernet.search.evolution import SearchStateError
from supernet.search.pareto import dominates

from .test_search import Recorder, small_search


def nsga2_search(objectives=("error", "flops"), **kw):
    model, cost, cfg = small_search(algorithm="nsga2", objectives=list(objectives), **kw)
    return cost, cfg


def test_nsga2_evaluates_each_legal_architecture_once_and_reports_the_front_of_all_of_them():
    cost, cfg = nsga2_search()
    space = cost.space
    r = cost.range()
    limit = (r["flops_min"] + 3 * r["flops_max"]) / 4
    rec = Recorder(space)
    engine = make_search(space, rec, cfg, cost, Constraints(cost, [f"flops<={limit}"]))
    assert isinstance(engine, NSGA2Search)
    engine.run()
    assert len(rec.calls) == len(set(rec.calls)) == len(engine.results) > 3 * cfg.population
    assert all(x["flops"] <= limit for x in engine.results)
    assert len(engine.topk) == cfg.population
    objectives = [(x["top1_err"], x["flops"]) for x in engine.results]
    brute = sorted(i for i, p in enumerate(objectives) if not any(dominates(q, p) for q in objectives))
    assert sorted(engine.results.index(x) for x in engine.front()) == brute
    assert engine.best() == min(engine.front(), key=lambda x: (x["top1_err"], x["flops"]))
    volumes = [h["hypervolume"] for h in engine.hypervolumes]
    assert len(volumes) == cfg.generations and volumes == sorted(volumes) and 0 < volumes[0] < 1
    assert volumes[-1] == pytest.approx(engine.hypervolume(engine.results))  # dominated points add nothing
    assert {x["origin"] for x in engine.results if x["generation"] > 0} >= {"mutation", "crossover"}


def test_the_hypervolume_uses_the_fixed_reference_of_the_space():
    cost, cfg = nsga2_search()
    engine = NSGA2Search(cost.space, Recorder(cost.space), cfg, cost)
    r = cost.range()
    assert engine.reference() == {"error": {"best": 0.0, "reference": 1.0},
                                  "flops": {"best": r["flops_min"], "reference": r["flops_max"]}}
    half = {"top1_err": 0.5, "flops": (r["flops_min"] + r["flops_max"]) / 2}
    assert engine.hypervolume([half]) == pytest.approx(0.25)


def test_history_holds_each_generation_then_its_hypervolume():
    cost, cfg = nsga2_search(objectives=("error", "flops", "params"))
    engine = NSGA2Search(cost.space, Recorder(cost.space), cfg, cost)
    engine.run()
    rows = engine.history()
    marks = [i for i, row in enumerate(rows) if "hypervolume" in row]
    assert [rows[i]["generation"] for i in marks] == list(range(cfg.generations))
    assert [row for row in rows if "arch" in row] == engine.results
    for i in marks:  # every candidate before the line belongs to its generation or an earlier one
        assert all(row["generation"] <= rows[i]["generation"] for row in rows[:i])
        assert rows[i]["evaluated"] == sum(1 for row in rows[:i] if "arch" in row)


def test_a_resumed_nsga2_search_is_identical_to_an_uninterrupted_one():
    cost, cfg = nsga2_search()
    space = cost.space
    full = NSGA2Search(space, Recorder(space), cfg, cost)
    full.run()
    part = NSGA2Search(space, Recorder(space), cfg, cost)
    part.step()
    part.step()
    state = json.loads(json.dumps(part.state_dict()))
    resumed = NSGA2Search(space, Recorder(space), cfg, cost, state=state)
    resumed.run()
    assert json.dumps(resumed.history()) == json.dumps(full.history())
    assert json.dumps(resumed.pareto()) == json.dumps(full.pareto())
    assert resumed.topk == full.topk


def test_a_resume_refuses_other_objectives():
    cost, cfg = nsga2_search()
    engine = NSGA2Search(cost.space, Recorder(cost.space), cfg, cost)
    engine.step()
    state = json.loads(json.dumps(engine.state_dict()))
    other = dataclasses.replace(cfg, objectives=["error", "params"])
    with pytest.raises(SearchStateError, match=r"objectives: the search used \['error', 'flops'\], now \['error', 'params'\]"):
        NSGA2Search(cost.space, Recorder(cost.space), other, cost, state=state)


@pytest.mark.parametrize("objective, message", [
    ("latency", "search.objectives: latency needs a latency table"),
    ("bitops", "search.objectives: bitops needs quantized layers"),
    ("size", "search.objectives: size needs quantized layers")])
def test_an_objective_the_cost_model_cannot_compute_is_refused(objective, message):
    cost, cfg = nsga2_search(objectives=("error", objective))
    with pytest.raises(ValueError, match=message):
        NSGA2Search(cost.space, Recorder(cost.space), cfg, cost)
