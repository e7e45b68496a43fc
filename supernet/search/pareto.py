"""Pareto fronts of minimised objectives: non-dominated sorting and crowding distance (NSGA-II, Deb
et al. 2002, https://doi.org/10.1109/4235.996017), the hypervolume, the knee, and choosing a front
member under a cost bound.

Points are tuples of floats, every objective minimised. Ties are broken by position, so every
function here is deterministic: the same points in the same order give the same answer on every
rank and after every resume.
"""
from __future__ import annotations

import math
from typing import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in at least one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Indices of ``points`` in fronts: front 0 is dominated by none, front k only by fronts < k.
    Deb's fast non-dominated sort, O(M N^2); within a front, indices ascend. Equal points share
    a front (neither dominates the other)."""
    beaten_by = [0] * len(points)        # how many points dominate i
    beats: list[list[int]] = [[] for _ in points]  # the points i dominates
    for i, p in enumerate(points):
        for j in range(i + 1, len(points)):
            if dominates(p, points[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(points[j], p):
                beats[j].append(i)
                beaten_by[i] += 1
    fronts, current = [], [i for i, n in enumerate(beaten_by) if n == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def front_of(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (front 0), ascending."""
    return nondominated_sort(points)[0] if points else []


def crowding_distance(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point within one front: per objective, the points sorted
    by it (ties by position), the two ends get infinity and each other point the gap between its
    neighbours over the objective's range; summed over objectives. An objective with no range
    adds nothing."""
    n = len(points)
    distance = [0.0] * n
    for m in range(len(points[0]) if n else 0):
        order = sorted(range(n), key=lambda i: (points[i][m], i))
        lo, hi = points[order[0]][m], points[order[-1]][m]
        if hi == lo:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        for k in range(1, n - 1):
            distance[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (hi - lo)
    return distance


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimisation): exact, by
    slicing along the last objective (HSO, While et al. 2006), which is fast for the fronts of a
    search (tens of points, two to four objectives). Points not strictly better than the
    reference in every objective add nothing."""
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference))]
    return _slices(inside, tuple(reference))


def _slices(points: list[tuple], reference: tuple) -> float:
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    points = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for k, p in enumerate(points):  # the slab from this point's last objective to the next one's
        top = points[k + 1][-1] if k + 1 < len(points) else reference[-1]
        if top > p[-1]:
            base = [q[:-1] for q in points[:k + 1]]
            volume += (top - p[-1]) * _slices([base[i] for i in front_of(base)], reference[:-1])
    return volume


def knee(points: Sequence[Point]) -> int:
    """Index of the knee: the point with the smallest sum of its objectives, each scaled to 0..1
    over ``points`` (min-max). With two objectives on a front this is the point farthest below the
    straight line joining the two extremes, the front's strongest bend. Ties: the earlier point."""
    spans = [(min(c), max(c)) for c in zip(*points)]

    def scaled_sum(p):
        return sum((x - lo) / (hi - lo) if hi > lo else 0.0 for x, (lo, hi) in zip(p, spans))
    return min(range(len(points)), key=lambda i: (scaled_sum(points[i]), i))
