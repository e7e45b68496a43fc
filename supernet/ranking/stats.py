"""How well a score ranks architectures against their stand-alone accuracy, and which architectures
to train alone so that the answer means something.

Every figure is computed over the same K architectures: Kendall's τ-b and Spearman's ρ with their
p-values (``scipy.stats``), the same two within the top quarter by stand-alone accuracy (where a
search has to be right), the overlap of the k best by score with the k best in truth, and for the
architecture the score would pick (its highest), its percentile among the K and its regret (the
best stand-alone accuracy minus the pick's).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from scipy.stats import kendalltau, spearmanr


def finite(value) -> Optional[float]:
    """``value`` as a float, or None where it is NaN or infinite (JSON has neither)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def correlations(score: Sequence[float], truth: Sequence[float]) -> dict:
    """Kendall τ-b and Spearman ρ with their two-sided p-values; None where undefined (fewer than
    two values, or one side constant)."""
    pairs = [(s, t) for s, t in zip(score, truth) if finite(s) is not None and finite(t) is not None]
    if len(pairs) < 2 or len({s for s, _ in pairs}) < 2 or len({t for _, t in pairs}) < 2:
        return {"kendall_tau": None, "kendall_p": None, "spearman": None, "spearman_p": None, "n": len(pairs)}
    s, t = zip(*pairs)
    tau, tau_p = kendalltau(s, t)  # variant 'b' (ties in either ranking), scipy's default
    rho, rho_p = spearmanr(s, t)
    return {"kendall_tau": finite(tau), "kendall_p": finite(tau_p), "spearman": finite(rho), "spearman_p": finite(rho_p),
            "n": len(pairs)}


def top_quarter(truth: Sequence[float]) -> list[int]:
    """The indices of the best quarter by ``truth`` (at least three, so that a τ is defined)."""
    k = min(len(truth), max(3, len(truth) // 4))
    return sorted(range(len(truth)), key=lambda i: -truth[i])[:k]


def topk_overlap(score: Sequence[float], truth: Sequence[float], k: int) -> Optional[float]:
    """|k best by score ∩ k best by truth| / k; None when a score is missing."""
    if any(finite(s) is None for s in score) or not truth:
        return None
    k = min(k, len(truth))
    best = lambda values: set(sorted(range(len(values)), key=lambda i: -values[i])[:k])  # noqa: E731
    return len(best(score) & best(truth)) / k


def percentile(truth: Sequence[float], i: int) -> float:
    """The share of the architectures whose stand-alone accuracy is at most that of ``i`` (1: the best)."""
    return sum(t <= truth[i] for t in truth) / len(truth)


def figures(score: Sequence[float], truth: Sequence[float], k: int, pick: Optional[int] = None) -> dict:
    """Every figure of ``score`` against ``truth``. ``pick``: the index the score's owner chose (a
    search's best, a strategy's own architecture); default the highest score."""
    out = correlations(score, truth)
    quarter = top_quarter(truth)
    q = correlations([score[i] for i in quarter], [truth[i] for i in quarter])
    out.update({"top_quarter_kendall_tau": q["kendall_tau"], "top_quarter_spearman": q["spearman"],
                "top_quarter_n": q["n"], "topk": k, "topk_overlap": topk_overlap(score, truth, k)})
    scored = [i for i, s in enumerate(score) if finite(s) is not None]
    if pick is None and scored:
        pick = max(scored, key=lambda i: score[i])
    if pick is not None:
        out.update({"pick": pick, "pick_percentile": percentile(truth, pick), "pick_regret": max(truth) - truth[pick]})
    return out


def stratified(scores: Sequence[float], m: int) -> list[int]:
    """``m`` indices spread evenly over the range of ``scores``: the architectures at equally spaced
    ranks, from the lowest score to the highest (so that a ranking is tested over its whole span,
    not only where random architectures crowd)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    if m >= len(order):
        return order
    if m == 1:
        return [order[-1]]
    return [order[round(j * (len(order) - 1) / (m - 1))] for j in range(m)]
