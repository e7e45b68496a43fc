"""Aging (regularized) evolution (Real et al., "Regularized Evolution for Image Classifier
Architecture Search", AAAI 2019, https://arxiv.org/abs/1802.01548, Algorithm 1).

A population of P architectures (``search.population``) starts at random. Each cycle draws a
sample of S members (``search.sample_size``, uniformly with replacement, as the paper's
pseudo-code), mutates the best of the sample into a child, evaluates it, adds it to the
population and removes the oldest member, not the worst: an architecture survives only by
having good children, which regularizes against one lucky score. The answer is the best
architecture ever evaluated.

The mutation is the paper's: one label, drawn uniformly, takes another of its values. A
generation here is ``search.mutations`` cycles whose tournaments all see the same population (the
paper's many workers evaluated children concurrently in the same way); ``mutations=1`` is the
serial algorithm exactly. Crossovers, ``topk`` (beyond ``topk.json``) and ``mutation_prob`` are
the evolution's and are not used.

Everything else is the evolution's, inherited: legality (constraints checked before any
evaluation, a seen architecture never evaluated again: a child already seen is another try, at
most 10x ``mutations`` tries a generation), the random start, scoring by the same evaluator, the
split across torchrun ranks, and the JSON state saved after each generation. The population needs
no state of its own: it is always the last P results in evaluation order, so a resumed search
continues exactly (tested).
"""
from __future__ import annotations

from ..arch import Arch
from .evolution import EvolutionSearch


class AgingEvolution(EvolutionSearch):
    """Aging evolution (``cfg.algorithm == "aging"``); the arguments are the evolution's.
    ``topk`` is the global best, as the evolution's (``topk.json``; ``best()`` is its first, the
    best ever evaluated); ``population`` the members alive, oldest first."""

    @property
    def population(self) -> list[dict]:
        """The members alive, oldest first: each generation's children join, the oldest leave."""
        return self.results[-self.cfg.population:]

    def settings(self) -> dict:
        return {**super().settings(), "sample_size": self.cfg.sample_size}

    def propose(self) -> list[tuple[Arch, str]]:
        if not self.results:  # the random start of P architectures
            return super().propose()
        self.tried = dict.fromkeys(self.tried, 0)
        self.rejected = dict.fromkeys(self.rejected, 0)
        out: list = []
        n = self.cfg.mutations
        self._fill(out, n, self._mutate, "mutation", set(), tries=10 * n)
        return out

    def _parent(self) -> Arch:
        """The tournament: the best of S members drawn uniformly with replacement (ties: first drawn)."""
        population = self.population
        sample = [population[self.rng.randrange(len(population))] for _ in range(self.cfg.sample_size)]
        return min(sample, key=lambda r: (r["top1_err"], r["top5_err"]))["arch"]

    def _mutate(self) -> Arch:
        """The parent with one label, drawn uniformly among those with a choice, set to another value."""
        parent = self._parent()
        labels = [label for label in self.space.labels if self.space.count(label) > 1]
        if not labels:
            return dict(parent)
        label = self.rng.choice(labels)
        value = parent[label]
        for _ in range(100):  # another value: at least 1/2 of the draws for any choice with two values
            value = self.space.sample_label(label, self.rng)
            if value != parent[label]:
                break
        return {**parent, label: value}
