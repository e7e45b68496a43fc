"""The official SPOS evolutionary search (Guo et al., https://arxiv.org/abs/1904.00420, and
``src/Search/search.py`` of https://github.com/megvii-model/SinglePathOneShot), and random search as
its baseline.

Per generation: 25 mutations of the global top-10 (each gene resampled with p=0.1), 25
crossovers of two top-10 parents (each gene from either, p=0.5), then a random refill to the
population of 50. Each operator stops after 10x its count in tries. A candidate is legal if it
was never seen and meets the constraints; the constraints are checked before any evaluation and a
seen architecture is never evaluated again. Ranking is by (top-1 error, top-5 error). Once every
legal architecture has been evaluated the search stops, whatever generations are left. Where
random sampling finds no legal architecture at all for generation 0 (a budget near the space's
minimum), the evolution starts from the cheapest architecture under the first upper bound and its
mutations (origins ``cheapest`` and ``cheapest+mutation``); nothing else changes.

The whole state (generation, RNG, every result, the settings) is plain JSON, saved after each
generation, so a search killed mid-generation resumes by redoing that generation identically. A
resume keeps the settings that decide which candidates are legal and how they are scored: only
``RESUMABLE`` ones may change (``generations`` may grow, which is the usual reason to resume).
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
from typing import Callable, Optional

from ..arch import Arch, SearchSpace
from ..cost import Constraint, Constraints, CostModel
from ..runtime import dist
from ..runtime.progress import progress_bar
from .evaluator import CandidateEvaluator

STATE_VERSION = 2
# Settings a resume may change: how long the search runs, and how (not what) it computes.
RESUMABLE = ("generations", "random_candidates", "val_batch_size", "device", "progress")
# Everything else in the search section decides which candidates are legal, or how they are scored.
FIXED = ("algorithm", "population", "topk", "mutations", "crossovers", "mutation_prob", "recal_batches",
         "recal_batch_size", "val_images", "seed")


# Settings that build the built-in scorer's batches (``supernet.pipeline.search_batches`` and
# ``CandidateEvaluator``); the search itself never reads them.
SCORER = ("recal_batches", "recal_batch_size", "val_batch_size", "val_images")

# Under constraints, a space of at most this many architectures is enumerated once to count the
# legal ones (about 10 µs each), so that its exhaustion is noticed; a larger one is not checked.
COUNT_LEGAL_UP_TO = 100_000


class SearchStateError(ValueError):
    """A saved search state that this search cannot continue."""


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
        self.tried = {"mutation": 0, "crossover": 0, "random": 0}  # this generation's proposals, for its warning
        self.rejected = {"seen": 0, "constraints": 0}
        self._legal_count: Optional[int] = None
        if state is not None:
            self.load_state_dict(state)
        check_scorer(evaluate, cfg)
        self.visited = {self._key(r["arch"]) for r in self.results}

    # --- state ----------------------------------------------------------------------------------
    @property
    def generations(self) -> int:
        if self.cfg.algorithm == "random":
            return -(-self.cfg.random_candidates // self.cfg.population)
        return self.cfg.generations

    @property
    def done(self) -> bool:
        """True once every generation has run, or every legal architecture has been evaluated."""
        return self.generation >= self.generations or self.exhausted

    @property
    def legal_count(self) -> Optional[int]:
        """How many architectures meet the constraints: the space's size without constraints, counted
        for a space of at most ``COUNT_LEGAL_UP_TO``, else None (unknown)."""
        if self.constraints is None:
            return self.space.size
        if self._legal_count is None and self.space.size <= COUNT_LEGAL_UP_TO:
            self._legal_count = sum(1 for arch in self.space if self.constraints.ok(arch))
        return self._legal_count

    @property
    def exhausted(self) -> bool:
        """True when no legal architecture is left unevaluated. It is derived from the results, so a
        resumed search of an exhausted space stops at once too."""
        legal = self.legal_count
        return legal is not None and len(self.visited) >= legal

    def exhausted_line(self) -> str:
        """One line: the space is used up, with its size, and what is skipped."""
        n, size = len(self.visited), self.space.size
        which = f"all {n:,} architectures of the space" if n == size else \
            f"all {n:,} architectures that meet the constraints ({self.constraints}) of the space's {size:,}"
        return (f"note: the search space is exhausted: {which} have been evaluated; the search stops after "
                f"{self.generation} of {self.generations} generations")

    def settings(self) -> dict:
        """The settings a resumed search must share with the saved one (constraints as exact bounds)."""
        out = {k: getattr(self.cfg, k) for k in FIXED}
        if self.cfg.objectives:  # recorded only where set, so that the states of single-objective searches stay as they were
            out["objectives"] = list(self.cfg.objectives)
        items = self.constraints.items if self.constraints else []
        out["constraints"] = sorted(([c.metric, c.min, c.max] for c in items), key=json.dumps)
        if any(c.metric == "latency" for c in items) or "latency" in self.cfg.objectives:
            # the same bounds (or objective) under another table are another search
            out["latency_table"] = self.cost.latency_table.digest()
        return out

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {"version": STATE_VERSION, "algorithm": self.cfg.algorithm, "generation": self.generation,
                "settings": self.settings(), "rng": [version, list(internal), gauss], "results": self.results,
                "topk": [self._key_str(r["arch"]) for r in self.topk]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise SearchStateError(f"the saved search has state version {state.get('version')!r} and this supernet "
                                   f"resumes version {STATE_VERSION}, which records the search settings; "
                                   f"start over with --force")
        changed = _diff_settings(state.get("settings") or {}, self.settings())
        if changed:
            raise SearchStateError(f"the saved search used other settings ({'; '.join(changed)}); resume with "
                                   f"the saved ones (only {', '.join(RESUMABLE)} may change) or start over with --force")
        by_generation = self.cfg.algorithm != "random"
        done = state["generation"] if by_generation else len(state["results"])
        asked = self.generations if by_generation else self.cfg.random_candidates
        if asked < done:
            key = "generations" if by_generation else "random_candidates"
            raise SearchStateError(f"search.{key}={asked} is fewer than the {done} already done; a resume can only "
                                   f"extend a search (search.{key}>={done}), or start over with --force")
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
            self.rejected["seen"] += 1
            return False
        if self.constraints is not None and not self.constraints.ok(arch):
            self.rejected["constraints"] += 1
            return False
        return True

    def _fill(self, out: list, n: int, make: Callable[[], Arch], origin: str, pending: set, tries: int) -> None:
        """Append up to ``n`` legal candidates made by ``make``, with at most ``tries`` tries."""
        target = len(out) + n
        for _ in range(tries):
            if len(out) >= target:
                break
            arch = make()
            self.tried[origin] = self.tried.get(origin, 0) + 1
            if self._legal(arch, pending):
                pending.add(self._key(arch))
                out.append((arch, origin))

    def _parent(self) -> Arch:
        """A parent for mutation or crossover: any of the top-k, uniformly."""
        return self.rng.choice(self.topk)["arch"]

    def _mutate(self) -> Arch:
        parent = self._parent()
        return {l: self.space.sample_label(l, self.rng) if self.rng.random() < self.cfg.mutation_prob else v
                for l, v in parent.items()}

    def _crossover(self) -> Arch:
        a, b = self._parent(), self._parent()
        return {l: a[l] if self.rng.random() < 0.5 else b[l] for l in self.space.labels}

    def propose(self) -> list[tuple[Arch, str]]:
        """The next generation's new candidates (arch, origin), all legal and unseen."""
        out: list = []
        pending: set = set()
        cfg = self.cfg
        self.tried = dict.fromkeys(self.tried, 0)
        self.rejected = dict.fromkeys(self.rejected, 0)
        if cfg.algorithm != "random" and self.topk:
            self._fill(out, cfg.mutations, self._mutate, "mutation", pending, tries=10 * cfg.mutations)
            self._fill(out, cfg.crossovers, self._crossover, "crossover", pending, tries=10 * cfg.crossovers)
        size = cfg.population
        if cfg.algorithm == "random":
            size = min(cfg.population, cfg.random_candidates - len(self.results))
        # The official refill loops until full; ours stops after 100x the missing count in tries so
        # a space with few legal architectures ends instead of hanging.
        missing = max(0, size - len(out))
        self._fill(out, missing, lambda: self.space.sample(self.rng), "random", pending, tries=100 * missing)
        if not out and not self.topk and missing and cfg.algorithm != "random":
            self._near_cheapest(out, missing, pending)
        return out

    def _near_cheapest(self, out: list, n: int, pending: set) -> None:
        """Where uniform sampling found no legal architecture (a budget near the space's minimum:
        few random bit widths add up to a low BitOps), start from the cheapest architecture under
        the first upper bound, and its mutations."""
        bound = next((c for c in (self.constraints.items if self.constraints else []) if c.max is not None), None)
        if bound is None:
            return
        cheapest = self.cost.extreme_arch(bound.metric)
        self._fill(out, 1, lambda: cheapest, "cheapest", pending, tries=1)
        if out:
            self._fill(out, n - 1, lambda: {l: self.space.sample_label(l, self.rng) if self.rng.random() <
                                            self.cfg.mutation_prob else v for l, v in cheapest.items()},
                       "cheapest+mutation", pending, tries=100 * n)

    # --- the loop -------------------------------------------------------------------------------
    def step(self, progress: bool = False) -> list[dict]:
        """Propose, evaluate and rank one generation; returns its results."""
        new = []
        proposals = self.propose()  # identical on every rank: same RNG, same results so far
        if not proposals and dist.is_main():
            t, r = self.tried, self.rejected
            print(f"warning: generation {self.generation} found no legal new candidate ({t['mutation']} mutations, "
                  f"{t['crossover']} crossovers, {t['random']} random tried: {r['seen']} seen before, "
                  f"{r['constraints']} broke the constraints)", file=sys.stderr)
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
            record = self._record(arch, origin, scores[i])
            self.visited.add(self._key(arch))
            self.results.append(record)
            new.append(record)
        self.topk = self.select(new)
        self.generation += 1
        return new

    def _record(self, arch: Arch, origin: str, score: dict) -> dict:
        """One line of ``history.jsonl``: the candidate, its scores and its exact costs."""
        flops, params = self.cost.cost(arch)
        record = {"generation": self.generation, "origin": origin, "arch": arch,
                  "top1": 1 - score["top1_err"], "top5": 1 - score["top5_err"], **score,
                  "flops": flops, "params": params}
        if self.cost.latency_table is not None:
            record["latency_ms"] = self.cost.latency(arch)  # predicted by the run's table
        if self.cost.quantized:
            record["bitops"], record["size"] = self.cost.bitops(arch), self.cost.size(arch)
        return record

    def select(self, new: list[dict]) -> list[dict]:
        """The parents of the next generation: the global top-k by (top-1 error, top-5 error)."""
        ranked = sorted(self.topk + new, key=lambda r: (r["top1_err"], r["top5_err"]))
        return ranked[: self.cfg.topk]

    def best(self) -> dict:
        """The search's answer: the candidate with the lowest (top-1 error, top-5 error)."""
        return self.topk[0]

    def history(self) -> list[dict]:
        """The lines of ``history.jsonl``: every evaluated candidate, in order."""
        return self.results

    def run(self, on_generation: Optional[Callable[["EvolutionSearch", list], None]] = None,
            progress: bool = False) -> list[dict]:
        """Run the remaining generations; ``on_generation`` is called after each (to save state)."""
        check_scorer(self.evaluate, self.cfg)
        bar = progress_bar(total=self.generations, initial=self.generation, desc=f"{self.cfg.algorithm} search",
                           disable=not progress)
        try:
            while not self.done:
                new = self.step(progress=progress)
                bar.update(1)
                if self.topk:
                    bar.set_postfix(refresh=False, best_top1=f"{self.best()['top1']:.4f}", evaluated=len(self.results))
                if on_generation is not None:
                    on_generation(self, new)
                if not new and self.cfg.algorithm == "random":
                    break  # no legal unseen architecture left
        finally:
            bar.close()
        if self.generation < self.generations and self.exhausted and dist.is_main():  # also a resume that had
            print(self.exhausted_line(), file=sys.stderr)                               # nothing left to do
        return self.topk


def _diff_settings(saved: dict, now: dict) -> list[str]:
    """'seed: the search used 0, now 1' for each differing setting; constraints in words."""
    def words(key, value):
        if key == "constraints" and isinstance(value, list):
            return " and ".join(str(Constraint(*c)) for c in value) or "none"
        return repr(value)
    return [f"{k}: the search used {words(k, saved.get(k))}, now {words(k, now.get(k))}"
            for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]


def check_scorer(evaluate, cfg) -> None:
    """Refuse scorer settings (``SCORER``) that a user's own ``evaluate`` function would silently
    ignore: only a ``CandidateEvaluator`` is built from them."""
    if evaluate is None or isinstance(evaluate, CandidateEvaluator) or not dataclasses.is_dataclass(cfg):
        return
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    changed = [f"{k}={getattr(cfg, k)}" for k in SCORER if k in defaults and getattr(cfg, k) != defaults[k]]
    if changed:
        raise ValueError(f"{', '.join(changed)}: these settings build the built-in scorer's batches "
                         f"(CandidateEvaluator), which your evaluate function replaces, so they would do nothing; "
                         f"leave them at their defaults, or score with a CandidateEvaluator built from them")
