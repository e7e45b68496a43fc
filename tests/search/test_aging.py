"""Aging (regularized) evolution: Real et al.'s Algorithm 1 against a plain reference written from
the paper, the regularization (the oldest dies, not the worst), an exact resume, and its settings."""
import collections
import random

import pytest

from supernet import SearchSpace
from supernet.cost import CostModel
from supernet.search.aging import AgingEvolution
from supernet.search.config import SearchConfig
from supernet.search.evolution import SearchStateError
from supernet.search.nsga2 import make_search
from supernet.spaces import create

TARGET = {"0_1": 3, "0_2": 3, "1_2": 4, "0_3": 1, "1_3": 3, "2_3": 1}


def score(arch: dict) -> dict:
    """A toy fitness with one optimum (TARGET): the share of edges that agree with it, with a tie-break."""
    hits = sum(arch[k] == v for k, v in TARGET.items())
    return {"top1_err": 1 - hits / 6, "top5_err": sum(arch.values()) / 100}


def aging(**kw):
    model = create("nas-bench-201", channels=4, cells=1)
    space = SearchSpace(model)
    cfg = SearchConfig(**{"algorithm": "aging", "population": 10, "sample_size": 3, "mutations": 1,
                          "generations": 60, "progress": False, **kw})
    return space, CostModel(model), cfg


def reference(space: SearchSpace, cfg: SearchConfig) -> list[dict]:
    """Algorithm 1 as the paper writes it (a deque; the sample drawn with replacement; the child from
    one label changed), with the library's rule that a seen architecture is never evaluated again
    (a seen child is another try: another tournament), and its random start."""
    rng = random.Random(cfg.seed)
    seen, history = set(), []
    population = collections.deque()

    def evaluate(arch):
        seen.add(space.encode(arch))
        history.append(arch)
        population.append((arch, score(arch)))

    while len(population) < cfg.population:
        arch = space.sample(rng)
        if space.encode(arch) not in seen:
            evaluate(arch)
    while len(history) < cfg.population + (cfg.generations - 1):
        for _ in range(10):  # the library's bound: 10x mutations tries per generation
            sample = [population[rng.randrange(len(population))] for _ in range(cfg.sample_size)]
            parent = min(sample, key=lambda p: (p[1]["top1_err"], p[1]["top5_err"]))[0]
            label = rng.choice(space.labels)
            value = parent[label]
            while value == parent[label]:
                value = space.sample_label(label, rng)
            child = {**parent, label: value}
            if space.encode(child) not in seen:
                evaluate(child)
                population.popleft()  # the oldest dies
                break
    return history


def test_it_is_the_papers_algorithm():
    space, cost, cfg = aging()
    search = make_search(space, score, cfg, cost)
    assert isinstance(search, AgingEvolution)
    search.run()
    assert [r["arch"] for r in search.results] == reference(space, cfg)
    assert len(search.results) == cfg.population + cfg.generations - 1
    best = min(search.results, key=lambda r: (r["top1_err"], r["top5_err"]))
    assert search.best() == best == search.topk[0]


def test_the_oldest_dies_not_the_worst():
    space, cost, cfg = aging(mutations=4, generations=8)
    search = AgingEvolution(space, score, cfg, cost)
    search.step()  # the random start
    for _ in range(5):
        alive = [r["arch"] for r in search.population]
        new = search.step()
        assert [r["arch"] for r in search.population] == alive[len(new):] + [r["arch"] for r in new]
        for r in new:  # each child is one label away from a member alive when it was made
            assert min(sum(r["arch"][k] != a[k] for k in a) for a in alive) == 1
            assert r["origin"] == "mutation"


def test_it_beats_random_search_on_a_toy_fitness():
    """Not a proof, a sanity check: with 150 evaluations, aging finds the one optimum of the toy
    fitness in 7 of 20 seeds, random search (chance 150/15,625 a seed) in none."""
    found = {"aging": 0, "random": 0}
    for seed in range(20):
        space, cost, cfg = aging(seed=seed, generations=141)
        found["aging"] += AgingEvolution(space, score, cfg, cost).run()[0]["top1_err"] == 0
        space, cost, cfg = aging(seed=seed, algorithm="random", random_candidates=150)
        found["random"] += make_search(space, score, cfg, cost).run()[0]["top1_err"] == 0
    assert found["aging"] >= 5 and found["random"] <= 1, found


def test_a_resumed_search_continues_exactly():
    space, cost, cfg = aging(mutations=3, generations=12)
    full = AgingEvolution(space, score, cfg, cost)
    full.run()
    space, cost, short = aging(mutations=3, generations=5)
    first = AgingEvolution(space, score, short, cost)
    first.run()
    resumed = AgingEvolution(space, score, cfg, cost, state=first.state_dict())
    resumed.run()
    assert resumed.results == full.results and resumed.topk == full.topk


def test_its_settings_are_checked():
    with pytest.raises(ValueError, match="sample_size=20 is larger than population=10"):
        SearchConfig(algorithm="aging", population=10, sample_size=20)
    with pytest.raises(ValueError, match="algorithm=aging makes search.mutations children a generation"):
        SearchConfig(algorithm="aging", mutations=0)
    space, cost, cfg = aging(generations=3)
    state = AgingEvolution(space, score, cfg, cost).state_dict()
    _, _, other = aging(generations=3, sample_size=5)
    with pytest.raises(SearchStateError, match="sample_size: the search used 3, now 5"):
        AgingEvolution(space, score, other, cost, state=state)
