"""Non-dominated sorting, crowding distance, hypervolume and the knee against brute force on random
points with ties and duplicates."""
import itertools
import math
import random

import pytest

from supernet.search.pareto import crowding_distance, dominates, hypervolume, knee, nondominated_sort


def random_points(rng, n, m, levels):
    """Integer points on a small grid: many ties and exact duplicates."""
    return [tuple(rng.randrange(levels) for _ in range(m)) for _ in range(n)]


def brute_fronts(points):
    """Peel: front k is every remaining point that no remaining point dominates."""
    left, fronts = list(range(len(points))), []
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def brute_crowding(points):
    """Per objective, each point's neighbours in the (value, position) order, found by scanning all."""
    n, out = len(points), [0.0] * len(points)
    for m in range(len(points[0])):
        values = [p[m] for p in points]
        if max(values) == min(values):
            continue
        for i in range(n):
            below = [values[j] for j in range(n) if (values[j], j) < (values[i], i)]
            above = [values[j] for j in range(n) if (values[j], j) > (values[i], i)]
            if not below or not above:
                out[i] = math.inf
            elif out[i] != math.inf:
                out[i] += (min(above) - max(below)) / (max(values) - min(values))
    return out


def brute_hypervolume(points, reference):
    """Integer points: count the unit cells below the reference that some point dominates."""
    cells = itertools.product(*(range(r) for r in reference))
    return sum(1 for c in cells if any(all(p[k] <= c[k] for k in range(len(c))) for p in points))


@pytest.mark.parametrize("m", [2, 3])
def test_nondominated_sort_matches_peeling(m):
    rng = random.Random(0)
    for _ in range(200):
        points = random_points(rng, rng.randrange(1, 25), m, levels=rng.choice([2, 4, 8]))
        assert nondominated_sort(points) == brute_fronts(points)


def test_equal_points_share_a_front():
    assert nondominated_sort([(1, 2), (1, 2), (2, 1), (3, 3), (1, 2)]) == [[0, 1, 2, 4], [3]]


@pytest.mark.parametrize("m", [2, 3])
def test_crowding_distance_matches_brute_force(m):
    rng = random.Random(1)
    for _ in range(200):
        points = random_points(rng, rng.randrange(1, 15), m, levels=rng.choice([1, 3, 10]))
        assert crowding_distance(points) == pytest.approx(brute_crowding(points))


def test_crowding_distance_known_values():
    # Sorted by either objective: (0,4), (1,2), (3,1), (4,0); ranges 4 and 4.
    d = crowding_distance([(1, 2), (4, 0), (0, 4), (3, 1)])
    assert d[1] == d[2] == math.inf
    assert d[0] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4) and d[3] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)


@pytest.mark.parametrize("m, levels", [(2, 12), (3, 6)])
def test_hypervolume_matches_counted_cells(m, levels):
    rng = random.Random(2)
    reference = (levels,) * m
    for _ in range(100):
        points = random_points(rng, rng.randrange(0, 12), m, levels=levels + 2)  # some beyond the reference
        assert hypervolume(points, reference) == pytest.approx(brute_hypervolume(points, reference))


def test_hypervolume_known_values():
    assert hypervolume([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume([(0.25, 0.75), (0.75, 0.25)], (1, 1)) == pytest.approx(0.25 * 0.75 * 2 - 0.25 * 0.25)
    assert hypervolume([(0.5, 0.5, 0.5), (0, 0.75, 0.75)], (1, 1, 1)) == pytest.approx(0.125 + 1 * 0.25 * 0.25 - 0.5 * 0.25 * 0.25)
    assert hypervolume([(1, 0), (2, 2)], (1, 1)) == 0.0  # on or beyond the reference: nothing
    assert hypervolume([], (1, 1)) == 0.0


def test_the_knee_is_farthest_below_the_line_joining_the_extremes():
    front = [(0.0, 1.0), (0.1, 0.5), (0.5, 0.2), (1.0, 0.0)]
    line = [(1 - x - y) / math.sqrt(2) for x, y in front]  # distance below x + y = 1
    assert knee(front) == max(range(len(front)), key=line.__getitem__) == 1
    assert knee([(3.0, 7.0)]) == 0 and knee([(1, 2), (2, 1)]) == 0  # a tie: the earlier point
