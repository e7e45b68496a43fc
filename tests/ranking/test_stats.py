"""The ranking figures, against hand-counted cases and scipy."""
import pytest
from scipy.stats import kendalltau

from supernet.ranking.stats import correlations, figures, stratified, top_quarter, topk_overlap


def test_a_perfect_and_a_reversed_ranking():
    truth = [0.5, 0.6, 0.7, 0.8, 0.9]
    assert correlations([1, 2, 3, 4, 5], truth)["kendall_tau"] == pytest.approx(1.0)
    f = figures([5, 4, 3, 2, 1], truth, k=2)
    assert f["kendall_tau"] == pytest.approx(-1.0) and f["spearman"] == pytest.approx(-1.0)
    assert f["topk_overlap"] == 0.0
    # reversed: the score picks the worst, which only it is at or below
    assert f["pick"] == 0 and f["pick_percentile"] == pytest.approx(0.2) and f["pick_regret"] == pytest.approx(0.4)


def test_tau_b_with_ties_is_scipys_and_undefined_cases_are_none():
    score, truth = [1, 1, 2, 3, 3, 4], [0.1, 0.3, 0.2, 0.5, 0.4, 0.6]
    assert correlations(score, truth)["kendall_tau"] == pytest.approx(kendalltau(score, truth)[0])
    assert correlations([1, 1, 1], [0.1, 0.2, 0.3])["kendall_tau"] is None
    assert correlations([float("nan"), 1, 2], [0.1, 0.2, 0.3])["n"] == 2


def test_the_top_quarter_and_the_overlap():
    truth = [0.1 * i for i in range(12)]
    assert sorted(top_quarter(truth)) == [9, 10, 11]
    assert topk_overlap([0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 10, 9], truth, 3) == 1.0
    assert topk_overlap([11, 10, 9, 8, 7, 6, 5, 4, 3, 0, 1, 2], truth, 3) == 0.0


def test_stratified_spans_the_scores_from_lowest_to_highest():
    scores = [0.5, 0.1, 0.9, 0.3, 0.7]
    assert stratified(scores, 3) == [1, 0, 2]
    assert sorted(stratified(scores, 10)) == [0, 1, 2, 3, 4]
