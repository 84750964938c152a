"""Alignment primitives shared by the evidence tests (DESIGN principle 3: align, then test).

- hidden dimensions: an orthogonal map between two residual streams (Procrustes), and a check of whether that
  map is really a signed permutation (the cheap re-parameterisation) or a general rotation;
- neurons, heads and experts: maximum-similarity one-to-one matching of rows, rectangular when widths differ;
- layers: a monotone alignment over a layer-by-layer evidence matrix that allows inserted and deleted layers.

Nothing here computes a p-value: these functions say *which* parts correspond; the tests in `evidence/` say
whether the correspondence is more than chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .assignment import linear_sum_assignment


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The orthogonal map R (d_x, d_y) minimising ||x R - y||_F, for paired rows x (n, d_x), y (n, d_y).

    With d_x != d_y, R has orthonormal rows (d_x <= d_y) or columns (d_x > d_y): the best isometric embedding
    of the smaller space into the larger one. R is the polar factor of M = x^T y, computed from the symmetric
    eigendecomposition of M^T M (or M M^T), which is several times faster than an SVD at d = 4096.
    """
    # float64 where cheap; at LLM widths float32 halves the time and a derived pair's M is well conditioned
    m = (x.T @ y).astype(np.float64 if max(x.shape[1], y.shape[1]) <= 2048 else np.float32)  # (d_x, d_y)
    if m.shape[0] >= m.shape[1]:
        w, v = np.linalg.eigh(m.T @ m)  # M^T M = V diag(w) V^T, (d_y, d_y)
        return (m @ (v * _inv_sqrt(w)) @ v.T).astype(np.float32)  # M (M^T M)^(-1/2)
    w, v = np.linalg.eigh(m @ m.T)  # (d_x, d_x)
    return ((v * _inv_sqrt(w)) @ v.T @ m).astype(np.float32)  # (M M^T)^(-1/2) M


def _inv_sqrt(w: np.ndarray) -> np.ndarray:
    """w^(-1/2) for the eigenvalues of a Gram matrix, zero for the numerically null ones."""
    keep = w > w.max() * 1e-10
    return np.where(keep, 1.0 / np.sqrt(np.where(keep, w, 1.0)), 0.0).astype(w.dtype)


@dataclass(frozen=True)
class SignedPermutation:
    perm: np.ndarray  # perm[i] = the column of R that row i maps to
    signs: np.ndarray  # +1 / -1
    dominance: float  # mean over rows of max |R_ij|^2 / sum_j R_ij^2: 1 for an exact signed permutation


def as_signed_permutation(r: np.ndarray) -> SignedPermutation:
    """Read an orthogonal map as a signed permutation, with how well that describes it.

    A rotation by a random orthogonal matrix spreads each row's weight over all columns (dominance about
    2 ln d / d); a permutation with signs keeps it on one (dominance 1).
    """
    energy = r**2  # (d_x, d_y)
    rows, cols = linear_sum_assignment(-energy)
    perm = np.full(r.shape[0], -1)
    perm[rows] = cols
    signs = np.sign(r[rows, cols]).astype(np.int8)
    full_signs = np.zeros(r.shape[0], dtype=np.int8)
    full_signs[rows] = signs
    dominance = float(np.mean(energy[rows, cols] / np.maximum(energy[rows].sum(axis=1), 1e-30)))
    return SignedPermutation(perm, full_signs, dominance)


def unit_rows(w: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Rows scaled to unit length: matching is then blind to per-row gauges (up-row c, down-column 1/c).

    `inplace` reuses w's memory when it is writable float32: whole FFNs of large models pass through here, and
    the callers that ask for it own a fresh array."""
    norms = np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-30)
    if inplace and w.dtype == np.float32 and w.flags.writeable:
        w /= norms
        return w
    return w / norms


def match_rows(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of the rows of a (n_a, d) and b (n_b, d) maximising total cosine similarity.

    Returns (rows of a, matched rows of b, their cosines). With n_a != n_b only min(n_a, n_b) pairs are made
    (a widened or pruned FFN). `absolute` ignores signs, as a neuron's sign is a free gauge for odd activations.
    """
    sim = unit_rows(a) @ unit_rows(b).T  # (n_a, n_b)
    score = np.abs(sim) if absolute else sim
    ra, rb = linear_sum_assignment(-score)
    return ra, rb, sim[ra, rb]


@dataclass(frozen=True)
class LayerAlignment:
    pairs: list[tuple[int | None, int | None]]  # monotone; (i, None) deleted from A, (None, j) inserted in B
    score: float

    @property
    def matched(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j in self.pairs if i is not None and j is not None]

    def notes(self, name_a: str = "A", name_b: str = "B") -> list[str]:
        inserted = [j for i, j in self.pairs if i is None]
        deleted = [i for i, j in self.pairs if j is None]
        out = []
        if inserted:
            out.append(f"layers {_list(inserted)} of {name_b} have no counterpart in {name_a}")
        if deleted:
            out.append(f"layers {_list(deleted)} of {name_a} have no counterpart in {name_b}")
        return out


def _list(xs: list[int]) -> str:
    return ", ".join(map(str, xs[:-1])) + (" and " if len(xs) > 1 else "") + str(xs[-1])


def align_layers(score: np.ndarray, min_score: float = 0.0) -> LayerAlignment:
    """Monotone alignment of A's layers (rows) to B's (columns) maximising the summed score of matched pairs.

    score[i, j] is the evidence that layer i of A and layer j of B correspond (e.g. -log10 p). Pairs scoring
    at most `min_score` are never matched, and skipping a layer costs nothing, so layers with no counterpart
    (inserted, deleted, or retrained from scratch) are left unmatched rather than forced onto a neighbour.
    Dynamic programming, O(n_a * n_b).
    """
    n_a, n_b = score.shape
    gain = np.where(score > min_score, score - min_score, -np.inf)
    best = np.zeros((n_a + 1, n_b + 1))  # best[i, j]: best total over the first i layers of A and j of B
    move = np.zeros((n_a + 1, n_b + 1), dtype=np.int8)  # 0 match, 1 skip A's layer, 2 skip B's layer
    move[1:, 0], move[0, 1:] = 1, 2
    for i in range(1, n_a + 1):
        for j in range(1, n_b + 1):
            options = (best[i - 1, j - 1] + gain[i - 1, j - 1], best[i - 1, j], best[i, j - 1])
            k = int(np.argmax(options))
            best[i, j], move[i, j] = options[k], k
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n_a, n_b
    while i > 0 or j > 0:
        k = move[i, j]
        if k == 0:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif k == 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return LayerAlignment(pairs[::-1], float(best[n_a, n_b]))
