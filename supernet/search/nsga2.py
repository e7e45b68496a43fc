"""Multi-objective search: NSGA-II (Deb et al. 2002, https://doi.org/10.1109/4235.996017) over a
trained supernet, for the front of held-out top-1 error against cost (``search.objectives``, e.g.
``[error, flops]``), every objective minimised.

It is the evolution with two things changed. Parents are drawn by binary tournament on
(non-dominated rank, crowding distance) from a population of ``search.population``, and the next
population keeps the best fronts of parents and offspring, the last front cut by crowding
distance. Everything else is the evolution's, inherited rather than copied: the mutation and
crossover operators in the space's encoding, the legality check (constraints before any
evaluation, a seen architecture never evaluated again), the random refill, the
prefix-tree-shared and BN-recalibrated scoring by the same evaluator, the split of a generation
across torchrun ranks, and the plain-JSON state saved each generation (``objectives`` joins the
settings a resume may not change).

The front reported (``pareto.json``, the hypervolume per generation) is that of every candidate
evaluated so far, not only of the current population: no evaluated architecture is lost to the
population's truncation. The hypervolume is measured in normalised objectives: the error as it is
(0..1), each cost scaled to 0..1 over the whole space's range (``CostModel.range()``), against the
fixed reference point (error 1.0, every cost at the space's maximum), so it lies in 0..1 and is
comparable between runs of one space, NSGA-II's and random search's alike.

Why not pymoo or optuna: both are well kept, but each owns what must stay ours here. pymoo's
algorithms hold their population as arrays in their own encoding, drop duplicates by their own
rule and checkpoint by pickling the algorithm object; optuna's ``NSGAIISampler`` keeps its
generations in a study's storage and samples parameters one by one, so constraints could only be
checked after sampling, and a seen architecture would be re-suggested and re-scored. Fitting
either to the evolution's legality, seen set, JSON resume and rank-split scoring would take more
code than the sorting and crowding themselves (``supernet.search.pareto``, about 100 lines,
tested against brute force), and add a dependency.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..arch import Arch, SearchSpace
from ..cost import Constraints, CostModel
from .aging import AgingEvolution
from .evolution import EvolutionSearch
from .pareto import crowding_distance, front_of, hypervolume, nondominated_sort

# Where each objective is read from a candidate's record in history.jsonl.
RECORD_KEY = {"error": "top1_err", "flops": "flops", "params": "params", "latency": "latency_ms",
              "bitops": "bitops", "size": "size"}


class NSGA2Search(EvolutionSearch):
    """NSGA-II over a trained supernet (``cfg.algorithm == "nsga2"``); the arguments are the
    evolution's. ``front()`` is every non-dominated architecture evaluated so far; ``best()`` its
    lowest-error member."""

    def __init__(self, space: SearchSpace, evaluate: Callable[[Arch], dict], cfg, cost: CostModel,
                 constraints: Optional[Constraints] = None, state: Optional[dict] = None):
        check_computable(cfg.objectives, cost)
        self.objectives = list(cfg.objectives)
        self.span = objective_span(self.objectives, cost)
        self.hypervolumes: list[dict] = []  # one per generation run
        self._front: list[dict] = []
        self._standing: list[tuple[int, float]] = []  # the population's (rank, crowding), for the tournaments
        super().__init__(space, evaluate, cfg, cost, constraints, state)
        if state is not None:
            self._replay()

    # --- objectives -----------------------------------------------------------------------------
    def point(self, record: dict) -> tuple[float, ...]:
        """The record's objectives, each scaled to 0..1 over its span (the reference point is all ones)."""
        return tuple((record[RECORD_KEY[o]] - lo) / (hi - lo) if hi > lo else 0.0
                     for o, (lo, hi) in zip(self.objectives, self.span))

    def _objectives(self, record: dict) -> tuple[float, ...]:
        return tuple(record[RECORD_KEY[o]] for o in self.objectives)

    # --- NSGA-II --------------------------------------------------------------------------------
    def propose(self) -> list[tuple[Arch, str]]:
        self._standing = self._rank(self.topk)
        return super().propose()

    def _rank(self, records: list[dict]) -> list[tuple[int, float]]:
        """Each record's (non-dominated rank, crowding distance within its front)."""
        points = [self.point(r) for r in records]
        standing: list = [None] * len(records)
        for rank, front in enumerate(nondominated_sort(points)):
            for i, d in zip(front, crowding_distance([points[i] for i in front])):
                standing[i] = (rank, d)
        return standing

    def _parent(self) -> Arch:
        """Binary tournament: of two population members drawn uniformly, the lower rank, then the
        larger crowding distance (the first drawn on a tie)."""
        i, j = self.rng.randrange(len(self.topk)), self.rng.randrange(len(self.topk))
        (ri, di), (rj, dj) = self._standing[i], self._standing[j]
        return self.topk[j if (rj, -dj) < (ri, -di) else i]["arch"]

    def select(self, new: list[dict]) -> list[dict]:
        """The next population: whole fronts of parents and offspring while they fit, then the
        last front's members by decreasing crowding distance (ties: earlier first)."""
        pool = self.topk + new
        points = [self.point(r) for r in pool]
        survivors: list[dict] = []
        for front in nondominated_sort(points):
            room = self.cfg.population - len(survivors)
            if len(front) > room:
                crowding = crowding_distance([points[i] for i in front])
                front = [i for _, i in sorted(zip(crowding, front), key=lambda t: (-t[0], t[1]))[:room]]
            survivors += [pool[i] for i in front]
            if len(survivors) == self.cfg.population:
                break
        self._extend_front(new, self.generation, len(self.results))
        return survivors

    # --- the front of everything evaluated ------------------------------------------------------
    def _extend_front(self, new: list[dict], generation: int, evaluated: int) -> None:
        """Add one generation's candidates to the front, and record its hypervolume."""
        pool = self._front + new
        self._front = [pool[i] for i in front_of([self._objectives(r) for r in pool])]
        self.hypervolumes.append({"generation": generation, "hypervolume": self.hypervolume(self._front),
                                  "front_size": len(self._front), "evaluated": evaluated})

    def _replay(self) -> None:
        """The front and hypervolumes of a resumed search, from its results, generation by generation."""
        evaluated = 0
        for g in range(self.generation):
            new = [r for r in self.results if r["generation"] == g]
            evaluated += len(new)
            self._extend_front(new, g, evaluated)

    def hypervolume(self, records: list[dict]) -> float:
        """The hypervolume of ``records`` in normalised objectives, reference point all ones."""
        return hypervolume([self.point(r) for r in records], (1.0,) * len(self.objectives))

    def front(self) -> list[dict]:
        """Every non-dominated architecture evaluated so far, by increasing error (then the costs)."""
        return sorted(self._front, key=lambda r: (self._objectives(r), self._key(r["arch"])))

    def front_at(self, generation: int) -> list[dict]:
        """The front of the candidates evaluated up to ``generation`` (0: the random start)."""
        pool = [r for r in self.results if r["generation"] <= generation]
        return sorted((pool[i] for i in front_of([self._objectives(r) for r in pool])),
                      key=lambda r: (self._objectives(r), self._key(r["arch"])))

    def best(self) -> dict:
        """The front's lowest-error member: ``best_arch.json`` of a multi-objective search."""
        return self.front()[0]

    def history(self) -> list[dict]:
        """The lines of ``history.jsonl``: each generation's candidates, then a line with the
        front's hypervolume after it (``{"generation", "hypervolume", "front_size", "evaluated"}``)."""
        rows, at = [], 0
        for h in self.hypervolumes:
            while at < len(self.results) and self.results[at]["generation"] == h["generation"]:
                rows.append(self.results[at])
                at += 1
            rows.append(h)
        return rows + self.results[at:]

    def reference(self) -> dict:
        """The hypervolume's scale and reference point, in the objectives' own units."""
        return {o: {"best": lo, "reference": hi} for o, (lo, hi) in zip(self.objectives, self.span)}

    def pareto(self) -> dict:
        """``pareto.json``: the front with each member's scores and exact costs, and its hypervolume."""
        members = [{"arch": r["arch"], "generation": r["generation"], "origin": r["origin"],
                    **{k: r[k] for k in ("top1", "top5", "top1_err", "top5_err")}, "costs": self.cost.costs(r["arch"])}
                   for r in self.front()]
        return {"objectives": self.objectives, "reference": self.reference(),
                "hypervolume": self.hypervolumes[-1]["hypervolume"] if self.hypervolumes else 0.0,
                "generation": self.generation, "evaluated": len(self.results), "front": members}


def objective_span(objectives: list[str], cost: CostModel) -> list[tuple[float, float]]:
    """Each objective's (best, reference) for the hypervolume: error 0..1, a cost over the space's range."""
    r = cost.range()
    return [(0.0, 1.0) if o == "error" else (float(r[f"{o}_min"]), float(r[f"{o}_max"])) for o in objectives]


def check_computable(objectives: list[str], cost: CostModel) -> None:
    """Refuse, in one line, an objective this run's cost model cannot compute."""
    for o in objectives:
        if o == "error" or o in cost.metrics():
            continue
        if o == "latency":
            raise ValueError("search.objectives: latency needs a latency table for this model: build one with "
                             "'supernet latency' and set latency.table=FILE, or use flops or params")
        raise ValueError(f"search.objectives: {o} needs quantized layers, and this model has none: make it a "
                         f"mixed-precision space (space.quant), or use flops or params")


def make_search(space: SearchSpace, evaluate, cfg, cost: CostModel, constraints: Optional[Constraints] = None,
                state: Optional[dict] = None) -> EvolutionSearch:
    """The search ``cfg.algorithm`` names: ``NSGA2Search`` for nsga2, ``AgingEvolution`` for aging, else
    ``EvolutionSearch`` (evolution, random)."""
    kind = {"nsga2": NSGA2Search, "aging": AgingEvolution}.get(cfg.algorithm, EvolutionSearch)
    return kind(space, evaluate, cfg, cost, constraints, state)

