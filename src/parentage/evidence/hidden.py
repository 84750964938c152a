"""Hidden-dimension alignment: which residual dimension of A is which of B, from shared-token embeddings.

Rows of the two embedding matrices are paired by token byte strings (so a replaced tokenizer still pairs the
tokens both vocabularies hold). Each residual dimension is then a column over those tokens, and dimensions are
paired by mutual nearest neighbours of |correlation| (sign is a free gauge).

Counted test (exact): under independent initialisation B's residual dimensions are exchangeable, so the pairing
maps A's dimension i to a uniformly random label of B, and the number of dimensions paired with their own
index has the fixed-point tail of `stats.fixed_points_tail`, whatever the two models learned from their data.
A derived model that was not re-parameterised keeps its dimension order; one whose residual stream was
permuted or rotated does not, and then this test has no power (it says so) while the map is still estimated:
a signed permutation when mutual pairs cover most dimensions, else an orthogonal rotation fitted by
Procrustes, which the neuron tests use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..align import procrustes
from ..stats import fixed_points_tail
from . import Evidence

PERMUTATION_COVERAGE = 0.5  # mutual pairs must cover this share of dimensions to read the map as a permutation
PERMUTATION_DOMINANCE = 0.5  # ... and the fitted orthogonal map must put this much of each row on one column
SHUFFLED_RESIDUAL_MAX_DIM = 1024
PERMUTATION_MIN_R = 0.5  # without a fitted map (fewer tokens than dimensions): mean |r| of the mutual pairs
# A rotation is worth fitting (reading d more token rows per side, an SVD of d x d) only where the shared tokens'
# geometry agrees, which any rotation keeps. Measured on the sketches' anchor tokens (BENCHMARKS, issue 25): every
# derivation that kept its embeddings 0.99-1.00, every unrelated model 0.016 or below, including models trained
# on the same text.
ROTATION_MIN_GRAM = 0.2


@dataclass
class HiddenMap:
    """A's residual coordinates -> B's."""

    kind: str  # "permutation", "rotation", "identity" (unaligned, same width) or "truncate" (unaligned)
    d_a: int
    d_b: int
    perm: np.ndarray | None = None  # (d_a,) B's dimension for each of A's, -1 when unpaired
    signs: np.ndarray | None = None  # (d_a,)
    rotation: np.ndarray | None = None  # (d_a, d_b)
    fitted_on: tuple[int, int] | None = None  # FFN rows [start, stop) of the first layers it was fitted on, if so

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """(n, d_a) rows written in A's coordinates -> (n, d_b) in B's."""
        if self.kind == "rotation":
            return rows @ self.rotation
        out = np.zeros((rows.shape[0], self.d_b), dtype=np.float32)
        if self.kind == "permutation":
            keep = self.perm >= 0
            out[:, self.perm[keep]] = rows[:, keep] * self.signs[keep]
        else:
            d = min(self.d_a, self.d_b)
            out[:, :d] = rows[:, :d]
        return out

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "d_a": self.d_a, "d_b": self.d_b}
        if self.perm is not None:
            out["n_paired"] = int((self.perm >= 0).sum())
            out["n_in_place"] = int((self.perm == np.arange(self.d_a)).sum())
        return out


def centred_cosines(rows: np.ndarray) -> np.ndarray:
    """The cosines between rows after removing their mean (the direction all tokens share is anisotropy, not
    kinship): the upper triangle, (m (m - 1) / 2,). Unchanged by any rotation of the residual stream."""
    x = rows - rows.mean(axis=0)  # (m, d)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    return (x @ x.T)[np.triu_indices(len(rows), 1)]


def gram_agreement(ea: np.ndarray, eb: np.ndarray) -> float:
    """Correlation of the centred cosines of the same tokens in A and in B: 1 for a rotated (or permuted, or
    untouched) copy, near 0 for unrelated embeddings; ea (n, d_a), eb (n, d_b) with n >= 3."""
    x, y = centred_cosines(ea.astype(np.float32)), centred_cosines(eb.astype(np.float32))
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    return x / np.maximum(np.linalg.norm(x, axis=0), 1e-30)


def align_hidden(ea: np.ndarray, eb: np.ndarray) -> tuple[HiddenMap, Evidence]:
    """ea (n, d_a), eb (n, d_b): embedding rows of the same n shared tokens in A and B."""
    n, d_a = ea.shape
    d_b = eb.shape[1]
    corr = _standardise(ea).T @ _standardise(eb)  # (d_a, d_b) column correlations over the shared tokens
    best_b, best_a = _abs_argmax(corr)  # (d_a,), (d_b,)
    mutual = best_a[best_b] == np.arange(d_a)
    perm = np.where(mutual, best_b, -1)
    in_place = int((perm == np.arange(d_a)).sum())
    n_paired = int(mutual.sum())
    log10_p = fixed_points_tail(in_place, n_paired, d_b) if n_paired else 0.0
    paired_corr = float(np.abs(corr[mutual, best_b[mutual]]).mean()) if n_paired else 0.0
    signs = np.sign(corr[np.arange(d_a), best_b]).astype(np.float32)

    residual = residual_null = None
    coverage = n_paired / min(d_a, d_b)
    if n >= d_a:
        r = procrustes(ea, eb)  # (d_a, d_b), rows orthonormal when d_a <= d_b
        # A signed permutation keeps each row's weight on one column (dominance 1); a rotation spreads it.
        dominance = float(np.mean((r**2).max(axis=1) / np.maximum((r**2).sum(axis=1), 1e-30)))
        if dominance >= PERMUTATION_DOMINANCE and coverage >= PERMUTATION_COVERAGE:
            hmap = HiddenMap("permutation", d_a, d_b, perm=perm, signs=signs)
        else:
            hmap = HiddenMap("rotation", d_a, d_b, rotation=r.astype(np.float32))
        residual = _residual(ea, eb, r)
    elif coverage >= PERMUTATION_COVERAGE and paired_corr >= PERMUTATION_MIN_R:
        hmap = HiddenMap("permutation", d_a, d_b, perm=perm, signs=signs)
    else:  # too few tokens to tell a rotation from no relation: the caller may read more
        hmap = HiddenMap("identity" if d_a == d_b else "truncate", d_a, d_b)
    if residual is not None and max(d_a, d_b) <= SHUFFLED_RESIDUAL_MAX_DIM:
        # The fit again with the token pairing shuffled, where it is cheap: shown only, as models trained on
        # similar text share embedding geometry without sharing ancestry.
        shuffled = eb[np.random.default_rng(0).permutation(n)]
        residual_null = _residual(ea, shuffled, procrustes(ea, shuffled))

    null_scale = 1.0 / np.sqrt(n)
    if in_place:
        summary = (f"{in_place} of {d_a} residual dimensions of A pair with the same dimension of B "
                   f"(mutual nearest neighbours over {n} shared tokens, mean |r| {paired_corr:.2f})")
    else:
        summary = (f"no residual dimension pairs with its own index ({n_paired} mutual pairs over {n} shared tokens); "
                   f"map read as {hmap.kind}")
    details = {
        "map": hmap.to_dict(), "n_tokens": n, "mean_abs_r_paired": paired_corr, "null_abs_r_scale": null_scale,
        "procrustes_residual": residual, "procrustes_residual_shuffled_tokens": residual_null,
        "null": "fixed points of a uniformly random injection (B's residual dimensions are exchangeable)",
        "max_power_log10_p": fixed_points_tail(min(d_a, d_b), min(d_a, d_b), d_b),
    }
    return hmap, Evidence("hidden_dimension_order", log10_p, in_place / d_a, True, summary, details)


def _abs_argmax(corr: np.ndarray, rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """argmax of |corr| along each row and each column, a slab of rows at a time (a 110B model's (8192, 8192)
    |corr| would be another 268 MB)."""
    best_b = np.empty(corr.shape[0], dtype=np.int64)
    col_max = np.full(corr.shape[1], -1.0, dtype=corr.dtype)
    best_a = np.zeros(corr.shape[1], dtype=np.int64)
    for lo in range(0, corr.shape[0], rows):
        slab = np.abs(corr[lo:lo + rows])  # (rows, d_b)
        best_b[lo:lo + rows] = slab.argmax(axis=1)
        top = slab.argmax(axis=0)
        value = slab[top, np.arange(slab.shape[1])]
        better = value > col_max  # strictly: the first row wins ties, as argmax over all rows does
        col_max[better], best_a[better] = value[better], top[better] + lo
    return best_b, best_a


def _residual(ea: np.ndarray, eb: np.ndarray, r: np.ndarray) -> float:
    """||x R - y|| / ||y|| with x, y scaled to unit norm: 0 for a rotated copy, about 1.4 for unrelated."""
    a, b = ea / max(np.linalg.norm(ea), 1e-30), eb / max(np.linalg.norm(eb), 1e-30)
    return float(np.linalg.norm(a @ r - b))
