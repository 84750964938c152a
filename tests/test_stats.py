"""Null tails computed without scipy.stats, and the assignment solver loaded without scipy.optimize: each
checked against brute force or the scipy function it replaces."""

import itertools
import math

import numpy as np
import pytest

from parentage import assignment
from parentage.evidence.neurons import _inversions, _rank_order
from parentage.stats import LOG10_P_FLOOR, inversions_tail, poisson_tail


@pytest.mark.parametrize("n", range(1, 8))
def test_the_inversions_tail_is_exact_against_every_permutation(n):
    counts = np.array([sum(p[i] > p[j] for i in range(n) for j in range(i + 1, n))
                       for p in itertools.permutations(range(n))])
    for k in range(-1, n * (n - 1) // 2 + 1):
        expected = math.log10((counts <= k).mean()) if (counts <= k).any() else LOG10_P_FLOOR
        assert inversions_tail(k, n) == pytest.approx(expected, abs=1e-9), (n, k)


def test_the_inversions_tail_of_a_kept_order_is_one_over_n_factorial_past_float_range():
    assert inversions_tail(0, 100) == pytest.approx(-math.lgamma(101) / math.log(10), abs=1e-9)
    assert inversions_tail(0, 300) == LOG10_P_FLOOR  # 1/300! is below the floor


def test_inversions_are_counted_like_the_definition():
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 50, 2100):  # past one 1024-row slab
        x = rng.permutation(n)
        brute = sum(int((x[i] > x[i + 1:]).sum()) for i in range(n))
        assert _inversions(x) == brute


def test_the_rank_order_test_is_calibrated_under_random_relabelling():
    rng = np.random.default_rng(1)
    ps = np.array([10 ** _rank_order(rng.permutation(40))[0] for _ in range(2000)])
    for level in (0.01, 0.05, 0.2):
        assert (ps <= level).mean() <= level * 1.3 + 0.005, level  # exact: P(p <= a) <= a, up to sampling


@pytest.mark.parametrize("k,lam", [(1, 0.5), (3, 0.5), (10, 0.5), (50, 2.0), (5, 5.0), (3, 10.0), (100, 80.0),
                                   (200, 3.0), (1, 1e-9), (40, 400.0), (900, 400.0)])
def test_the_poisson_tail_matches_scipy(k, lam):
    from scipy.stats import poisson

    expected = max(LOG10_P_FLOOR, poisson.logsf(k - 1, lam) / math.log(10))
    assert poisson_tail(k, lam) == pytest.approx(expected, abs=1e-9, rel=1e-9)


def test_the_assignment_solver_is_scipys_and_falls_back_to_the_public_import(monkeypatch):
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(2)
    for shape in ((5, 5), (7, 12), (64, 64)):
        cost = rng.standard_normal(shape)
        rows, cols = assignment.linear_sum_assignment(cost)
        r2, c2 = linear_sum_assignment(cost)
        assert (rows == r2).all() and (cols == c2).all()
    assignment._solver.cache_clear()
    monkeypatch.setattr(assignment.importlib.util, "find_spec", lambda name: None)  # a scipy we cannot read
    try:
        rows, cols = assignment.linear_sum_assignment(-np.eye(4))
        assert (cols == np.arange(4)).all()
    finally:
        assignment._solver.cache_clear()
