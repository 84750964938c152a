"""Null distributions used by the evidence tests, all in log10 space (p-values of related models underflow).

The exact tests rest on one fact about training: initialisation draws every hidden unit (residual dimension,
FFN neuron, value row of a head) from the same distribution, and the optimisers in use (SGD, Adam, their
variants) act on each coordinate alike, so relabelling the units of an independently trained model B gives a
model that was exactly as likely. An alignment computed by a rule that does not look at unit labels (nearest
neighbours, assignment by similarity) therefore maps A's unit i to a *uniformly random* label of B under the null,
and the number of units that land on their own label ("fixed points") has a known tail that no amount of
shared training data or shared semantics can inflate.
"""

from __future__ import annotations

import math

import numpy as np

from .evidence import LOG10_P_FLOOR

LN10 = math.log(10.0)


def _clip(log10_p: float) -> float:
    return float(min(0.0, max(LOG10_P_FLOOR, log10_p)))


def fixed_points_tail(k: int, n_domain: int, n_range: int) -> float:
    """log10 P(F >= k), F = fixed points of a uniformly random one-to-one map of n_domain labels into n_range.

    Union bound over the k-subsets of the domain: C(n_domain, k) (n_range - k)! / n_range!, which is 1/k! for
    a permutation. For permutations the exact tail (rencontres numbers) is used instead, as the bound is loose
    for small k and the benchmark checks that p-values of unrelated pairs are not piled at one end.
    """
    if k <= 0:
        return 0.0
    if n_domain == n_range:
        return _clip(_rencontres_tail(k, n_domain))
    lg = math.lgamma
    log_p = lg(n_domain + 1) - lg(k + 1) - lg(n_domain - k + 1) + lg(n_range - k + 1) - lg(n_range + 1)
    return _clip(log_p / LN10)


def _rencontres_tail(k: int, n: int) -> float:
    """log10 P(F >= k) for the fixed points F of a uniform permutation of n: sum_j (1/j!) * D(n-j)/(n-j)!."""
    if k > n:
        return LOG10_P_FLOOR
    # D(r)/r! = sum_{t<=r} (-1)^t / t!: 1, 0, 1/2, 1/3, 3/8, ... -> 1/e
    derange = np.cumsum([(-1) ** t / math.factorial(t) for t in range(min(n - k, 30) + 1)])
    terms = []
    for j in range(k, n + 1):
        r = n - j
        frac = derange[r] if r < len(derange) else math.exp(-1)
        if frac > 0:
            terms.append(-math.lgamma(j + 1) + math.log(frac))
        if len(terms) > 40 and terms[-1] < terms[0] - 80:  # the rest cannot move the sum
            break
    m = max(terms)
    return (m + math.log(sum(math.exp(t - m) for t in terms))) / LN10


def poisson_tail(k: int, lam: float) -> float:
    """log10 P(X >= k) for X ~ Poisson(lam), summed exactly in log space (no scipy: it costs 0.3 s to import)."""
    if k <= 0:
        return 0.0
    if lam <= 0:
        return LOG10_P_FLOOR
    # enough terms that the ones left out are below e^-40 of the largest: the pmf falls off within ~sqrt(lam)
    span = int(40 + 12 * math.sqrt(lam))
    if k > lam:  # the upper tail directly: terms fall from j = k on
        return _clip(_log_pmf_sum(np.arange(k, k + span), lam) / LN10)
    # k <= lam: the tail holds at least ~40% of the mass, so 1 - P(X <= k-1) loses nothing to cancellation;
    # the cdf's terms rise towards j = k-1
    cdf = math.exp(_log_pmf_sum(np.arange(max(0, k - span), k), lam))
    return _clip(math.log1p(-cdf) / LN10)


def _log_pmf_sum(j: np.ndarray, lam: float) -> float:
    """ln sum_j e^-lam lam^j / j!, by log-sum-exp."""
    log_terms = -lam + j * math.log(lam) - np.array([math.lgamma(x + 1) for x in j.tolist()])
    top = float(log_terms.max())
    return top + math.log(float(np.exp(log_terms - top).sum()))


def inversions_tail(k: int, n: int) -> float:
    """log10 P(I <= k), I = the inversions of a uniformly random permutation of n (Kendall's tau's null).

    Exact: the number of permutations of j items with i inversions follows f_j(i) = sum_{t < j} f_{j-1}(i - t)
    (the j-th item is placed with t larger items before it), so P(I <= k) is one window sum per item over the
    first k + 1 counts. The counts are rescaled after each item (1/n! underflows past n = 170), the scale kept
    in log space. O(n k) time."""
    total = n * (n - 1) // 2
    if k >= total:
        return 0.0
    if k < 0:
        return LOG10_P_FLOOR
    f = np.zeros(k + 1)
    f[0] = 1.0  # one item: no inversions
    log_scale = 0.0
    for j in range(2, n + 1):
        c = np.concatenate(([0.0], np.cumsum(f)))  # c[i] = sum f[:i]
        i = np.arange(k + 1)
        f = c[i + 1] - c[np.maximum(i + 1 - j, 0)]  # sum of f[i-j+1 .. i]
        top = float(f.max())
        f /= top
        log_scale += math.log(top) - math.log(j)  # divided by j: the placements are equally likely
    return _clip((math.log(float(f.sum())) + log_scale) / LN10)


def bonferroni(log10_ps: list[float]) -> float | None:
    """Valid under any dependence between the tests: the smallest p times the number of tests."""
    if not log10_ps:
        return None
    return _clip(min(log10_ps) + math.log10(len(log10_ps)))


def rencontres_pmf(n: int) -> np.ndarray:
    """P(F = k), k = 0..n, for the fixed points F of a uniformly random permutation of n."""
    derange = np.cumsum([(-1) ** t / math.factorial(t) for t in range(n + 1)])  # D(r)/r!
    return np.array([derange[n - k] / math.factorial(k) for k in range(n + 1)])


def sum_tail(pmfs: list[np.ndarray], k: int) -> float:
    """log10 P(F_1 + ... + F_L >= k) for independent counts with the given pmfs (exact, by convolution)."""
    total = np.array([1.0])
    for pmf in pmfs:
        total = np.convolve(total, pmf)
    tail = float(total[k:].sum()) if k < len(total) else 0.0
    return _clip(math.log10(tail)) if tail > 0 else LOG10_P_FLOOR
