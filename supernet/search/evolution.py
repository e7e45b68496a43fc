"""The official SPOS evolutionary search (REFERENCE §5), and random search as its baseline.

Per generation: 25 mutations of the global top-10 (each gene resampled with p=0.1), 25
crossovers of two top-10 parents (each gene from either, p=0.5), then a random refill to the
population of 50. Each operator stops after 10x its count in tries. A candidate is legal if it
was never seen and meets the constraints; the constraints are checked before any evaluation and a
seen architecture is never evaluated again. Ranking is by (top-1 error, top-5 error).

The whole state (generation, RNG, every result) is plain JSON, saved after each generation, so a
search killed mid-generation resumes by redoing that generation identically.
"""
from __future__ import annotations

import json
import random
from typing import Callable, Optional

from ..arch import Arch, SearchSpace
from ..cost import Constraints, CostModel
from ..train import dist
from ..train.metrics import progress_bar

STATE_VERSION = 1


class EvolutionSearch:
    """Runs evolution (``cfg.algorithm == "evolution"``) or random search over a trained supernet.

    Args:
        space: the supernet's space.
        evaluate: ``arch -> {"top1_err", "top5_err"}``.
        cfg: a ``SearchConfig``.
        cost: for FLOPs/params of each candidate.
        constraints: only architectures meeting them are evaluated.
        state: a saved ``state_dict()`` to resume from.
    """

    def __init__(self, space: SearchSpace, evaluate: Callable[[Arch], dict], cfg, cost: CostModel,
                 constraints: Optional[Constraints] = None, state: Optional[dict] = None):
        self.space, self.evaluate, self.cfg, self.cost = space, evaluate, cfg, cost
        self.constraints = constraints if constraints else None
        if self.constraints:
            self.constraints.check_feasible()
        self.rng = random.Random(cfg.seed)
        self.generation = 0            # the next generation to run
        self.results: list[dict] = []  # every evaluated candidate, in order
        self.topk: list[dict] = []
        if state is not None:
            self.load_state_dict(state)
        self.visited = {self._key(r["arch"]) for r in self.results}

    # --- state ----------------------------------------------------------------------------------
    @property
    def generations(self) -> int:
        if self.cfg.algorithm == "random":
            return -(-self.cfg.random_candidates // self.cfg.population)
        return self.cfg.generations

    @property
    def done(self) -> bool:
        return self.generation >= self.generations

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"version": STATE_VERSION, "algorithm": self.cfg.algorithm, "generation": self.generation,
                "rng": [version, list(internal), gauss], "results": self.results,
                "topk": [self._key_str(r["arch"]) for r in self.topk]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION or state.get("algorithm") != self.cfg.algorithm:
            raise ValueError(f"search state is for {state.get('algorithm')!r} (version {state.get('version')}), "
                             f"not {self.cfg.algorithm!r} (version {STATE_VERSION}); start a new search with --force")
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.generation = state["generation"]
        self.results = state["results"]
        by_key = {self._key_str(r["arch"]): r for r in self.results}
        self.topk = [by_key[k] for k in state["topk"]]

    def _key(self, arch: Arch) -> tuple:
        return self.space.encode(arch)

    def _key_str(self, arch: Arch) -> str:
        return json.dumps(self.space.encode(arch))

    # --- operators ------------------------------------------------------------------------------
    def _legal(self, arch: Arch, pending: set) -> bool:
        key = self._key(arch)
        if key in self.visited or key in pending:
            return False
        return self.constraints is None or self.constraints.ok(arch)

    def _fill(self, out: list, n: int, make: Callable[[], Arch], origin: str, pending: set, tries: int) -> None:
        """Append up to ``n`` legal candidates made by ``make``, with at most ``tries`` tries."""
        target = len(out) + n
        for _ in range(tries):
            if len(out) >= target:
                break
            arch = make()
            if self._legal(arch, pending):
                pending.add(self._key(arch))
                out.append((arch, origin))

    def _mutate(self) -> Arch:
        parent = self.rng.choice(self.topk)["arch"]
        return {l: self.space.sample_label(l, self.rng) if self.rng.random() < self.cfg.mutation_prob else v
                for l, v in parent.items()}

    def _crossover(self) -> Arch:
        a, b = self.rng.choice(self.topk)["arch"], self.rng.choice(self.topk)["arch"]
        return {l: a[l] if self.rng.random() < 0.5 else b[l] for l in self.space.labels}

    def propose(self) -> list[tuple[Arch, str]]:
        """The next generation's new candidates (arch, origin), all legal and unseen."""
        out: list = []
        pending: set = set()
        cfg = self.cfg
        if cfg.algorithm == "evolution" and self.topk:
            self._fill(out, cfg.mutations, self._mutate, "mutation", pending, tries=10 * cfg.mutations)
            self._fill(out, cfg.crossovers, self._crossover, "crossover", pending, tries=10 * cfg.crossovers)
        size = cfg.population
        if cfg.algorithm == "random":
            size = min(cfg.population, cfg.random_candidates - len(self.results))
        # The official refill loops until full; ours stops after 100x the missing count in tries so
        # a space with few legal architectures ends instead of hanging.
        missing = max(0, size - len(out))
        self._fill(out, missing, lambda: self.space.sample(self.rng), "random", pending, tries=100 * missing)
        return out

    # --- the loop -------------------------------------------------------------------------------
    def step(self, progress: bool = False) -> list[dict]:
        """Propose, evaluate and rank one generation; returns its results."""
        new = []
        proposals = self.propose()  # identical on every rank: same RNG, same results so far
        rank, world = dist.rank(), dist.world()
        # Under torchrun each rank takes a contiguous run of the generation in architecture order,
        # so candidates sharing a prefix stay on one rank (see CandidateEvaluator.evaluate_many).
        order = sorted(range(len(proposals)), key=lambda i: self._key(proposals[i][0]))
        share = order[rank * len(order) // world:(rank + 1) * len(order) // world]
        archs = [proposals[i][0] for i in share]
        bar = progress_bar(total=len(archs), desc=f"generation {self.generation}", leave=False,
                           disable=not progress)
        with bar:
            if hasattr(self.evaluate, "evaluate_many"):
                found = self.evaluate.evaluate_many(archs, on_result=lambda i, s: bar.update(1))
            else:
                found = []
                for arch in archs:
                    found.append(self.evaluate(arch))
                    bar.update(1)
        mine = dict(zip(share, found))
        scores = {i: s for part in dist.all_gather_objects(mine) for i, s in part.items()}
        for i, (arch, origin) in enumerate(proposals):
            score = scores[i]
            flops, params = self.cost.cost(arch)
            record = {"generation": self.generation, "origin": origin, "arch": arch,
                      "top1": 1 - score["top1_err"], "top5": 1 - score["top5_err"], **score,
                      "flops": flops, "params": params}
            self.visited.add(self._key(arch))
            self.results.append(record)
            new.append(record)
        ranked = sorted(self.topk + new, key=lambda r: (r["top1_err"], r["top5_err"]))
        self.topk = ranked[: self.cfg.topk]
        self.generation += 1
        return new

    def run(self, on_generation: Optional[Callable[["EvolutionSearch", list], None]] = None,
            progress: bool = False) -> list[dict]:
        """Run the remaining generations; ``on_generation`` is called after each (to save state)."""
        bar = progress_bar(total=self.generations, initial=self.generation, desc=f"{self.cfg.algorithm} search",
                           disable=not progress)
        try:
            while not self.done:
                new = self.step(progress=progress)
                bar.update(1)
                if self.topk:
                    bar.set_postfix(refresh=False, best_top1=f"{self.topk[0]['top1']:.4f}", evaluated=len(self.results))
                if on_generation is not None:
                    on_generation(self, new)
                if not new and self.cfg.algorithm == "random":
                    break  # no legal unseen architecture left
        finally:
            bar.close()
        return self.topk
