"""Attention heads: does each key/value head of A sit at the same place in B, whatever gauge was applied?

A head's key rows K_h (head_dim, d) and value rows V_h enter the model only through their row spaces, up to
the free gauges: Q_h M and K_h M^-T leave attention scores unchanged, V_h M and O_h M^-1 leave the output
unchanged, for any invertible M. So each head is described by two subspaces of the residual stream (in B's
basis), and two heads by the mean squared cosine of the principal angles between them (1 for the same head,
head_dim / d for unrelated random ones), which no gauge can change.

Counted test (exact): KV heads are exchangeable under independent initialisation (heads are drawn alike and
trained alike), so in each paired layer the assignment of A's heads to B's is a uniformly random permutation
of the sampled block, and its fixed points have the rencontres distribution. Layers are paired by the FFN
alignment (which does not look at attention weights) or, without one, by relative depth; the counts of the
paired layers are independent under the null and their sum has an exact tail (`stats.sum_tail`).
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint
from ..assignment import linear_sum_assignment
from ..stats import rencontres_pmf, sum_tail
from . import Evidence
from .blocks import fold_norm
from .hidden import HiddenMap

MIN_HEADS = 2  # a block of one head has no order to test


def head_layers(ck: Checkpoint) -> list[int]:
    s = ck.summary
    if not s.head_dim or not s.n_kv_heads:
        return []
    return [i for i in range(s.n_layers or 0) if ck.find("attn_k", i) is not None and ck.find("attn_v", i) is not None
            and ck.find("attn_k", i).n_rows == s.n_kv_heads * s.head_dim]


def head_bases(ck: Checkpoint, role: str, layer: int, first: int, n: int, hd: int, hmap: HiddenMap | None) -> np.ndarray:
    """Orthonormal bases of the row spaces of heads [first, first + n) of one role in one layer, norm folded in,
    in B's residual basis: (n, hd, d_b)."""
    rows = ck.find(role, layer).read_rows(first * hd, (first + n) * hd)  # (n * hd, d)
    rows = fold_norm(ck, ck.find("attn_norm", layer), rows)
    if hmap is not None:
        rows = hmap.apply(rows)
    heads = rows.reshape(n, hd, -1).transpose(0, 2, 1)  # (n, d_b, hd)
    q, _ = np.linalg.qr(heads)  # (n, d_b, hd): orthonormal columns spanning each head's rows
    return q.transpose(0, 2, 1)


def read_head_bases(ck: Checkpoint, layers: list[int], first: int, n: int, hmap: HiddenMap | None) -> np.ndarray:
    """Orthonormal bases of the key and value row spaces of heads [first, first + n) of each layer, in B's
    residual basis: (n_layers, n, 2, head_dim, d_b)."""
    hd = ck.summary.head_dim
    return np.stack([np.stack([head_bases(ck, role, layer, first, n, hd, hmap) for role in ("attn_k", "attn_v")],
                              axis=1) for layer in layers])


def head_order_test(bases_a: np.ndarray, bases_b: np.ndarray, pairs: list[tuple[int, int]], paired_by: str) -> Evidence:
    """bases_*: (n_layers, n_heads, 2, hd, d); pairs: (index into A's layers, index into B's layers)."""
    n_heads, hd = bases_a.shape[1], bases_a.shape[3]
    counts, overlaps = [], []
    for i, j in pairs:
        # (n_heads, n_heads): mean over the two views of ||Qa Qb^T||_F^2 / hd
        sim = np.einsum("gvkd,hvld->ghvkl", bases_a[i], bases_b[j])
        score = (sim**2).sum(axis=(3, 4)).mean(axis=2) / hd
        rows, cols = linear_sum_assignment(-score)
        counts.append(int((rows == cols).sum()))
        overlaps.append(float(score[rows, cols].mean()))
    total = sum(counts)
    log10_p = sum_tail([rencontres_pmf(n_heads)] * len(pairs), total) if pairs else 0.0
    d = bases_a.shape[-1]
    summary = (f"{total} of {n_heads * len(pairs)} sampled KV heads sit at the same place in {len(pairs)} layer pairs "
               f"({paired_by}); subspace overlap {np.mean(overlaps):.2f} vs {hd / d:.2f} for unrelated heads; "
               "invariant to the Q/K and V/O gauges")
    details = {
        "heads_per_layer": n_heads, "layer_pairs": [list(p) for p in pairs], "fixed_per_pair": counts,
        "overlap_per_pair": [round(x, 3) for x in overlaps], "paired_by": paired_by,
        "null": "sum over paired layers of the fixed points of independent uniformly random head permutations (exact)",
        "max_power_log10_p": sum_tail([rencontres_pmf(n_heads)] * len(pairs), n_heads * len(pairs)) if pairs else 0.0,
        "null_overlap": round(hd / d, 4),
    }
    return Evidence("attention_head_order", log10_p, total / max(n_heads * len(pairs), 1), True, summary, details)
