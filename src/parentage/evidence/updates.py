"""What kind of update turned A's matrices into B's, where the layers line up: descriptive statistics, no tests.

On the attention and FFN matrices both hold in one shape, at up to LAYERS matched layer pairs (the layer map)
and only when B's residual stream is A's own coordinates (a rotation or relabelling changes every value), on the
same block of rows read from both:

- unstructured sparsity: the share of B's values that are exactly zero where A's are not. When the zeroed ones
  are A's smallest (nearly all below the share's quantile of |A| in their row), magnitude pruning; when every
  group of four consecutive values holds at least two zeros, 2:4 semi-structured sparsity;
- low rank: the singular values of B - A on the rows read, against what the two storages' rounding alone
  gives. A merged low-rank update of rank r (a LoRA adapter folded in) shows r values above that floor and none
  beyond; an update by training stands above it everywhere. The rank is said when most matrices of a role show
  the same one;
- drift: otherwise, how far B's matrices moved from A's (||B - A|| / ||A||, median over the matrices): a few
  percent for a fine-tune, tens of percent or more for continued pretraining or washing.

Neither has a calibrated null: they describe (JSON `alignment.updates`, marked descriptive) and never enter the
verdict. Frozen, cast and quantised tensors are told apart elsewhere (identity test, export check).
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint
from ..dtypes import FLOAT_GRID, float_steps
from ..report.words import layers as layer_words

LAYERS = 4  # matched layer pairs examined, spread over depth
FLOATS = ("F64", "F32", "F16", "BF16")  # storages whose rounding floor is their spacing
ROWS = (16, 64)  # rows of each matrix: the identity test's (already read), or more when the budget allows
ROLES = ("attn_q", "attn_k", "attn_v", "attn_o", "mlp_gate", "mlp_up", "mlp_down")
SHORT = {"attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_o": "o", "mlp_gate": "gate", "mlp_up": "up",
         "mlp_down": "down"}
SPARSE = 0.2  # share of A's non-zero values zeroed in B above which sparsity is said
MAGNITUDE = 0.9  # share of the zeroed values among A's smallest for "magnitude pruning"
ABOVE, BELOW = 3.0, 1.5  # a rank-r update: r singular values of B - A above ABOVE x the rounding floor, the rest below BELOW x


def update_types(a: Checkpoint, b: Checkpoint, layer_pairs: list, same_basis: bool, seed: int,
                 rows: int = ROWS[0]) -> dict | None:
    """{"sparsity": ..., "low_rank": ..., "notes": [...], "descriptive": True}, or None when nothing lines up.
    `rows` per matrix: a rank r is told apart from a full update only when 2r < rows."""
    if not same_basis:
        return None
    pairs = [(i, j) for i, j in layer_pairs if i is not None and j is not None]
    if not pairs:
        return None
    picks = sorted({pairs[k] for k in np.linspace(0, len(pairs) - 1, min(LAYERS, len(pairs))).round().astype(int)})
    records = []
    for i, j in picks:
        for role in ROLES:
            ta, tb = a.find(role, i), b.find(role, j)
            if ta is None or tb is None or ta.shape != tb.shape or len(ta.shape) != 2 or min(ta.shape) < 2 \
                    or ta.dtype not in FLOATS or tb.dtype not in FLOATS:  # quantised storage: its own rounding
                continue
            va = ta.sample_rows(rows, seed).astype(np.float64)
            vb = tb.sample_rows(rows, seed).astype(np.float64)
            records.append((role, j, *_sparsity(va, vb), _drift(va, vb), _rank(va, vb, ta.dtype, tb.dtype)))
    if not records:
        return None
    out = {"descriptive": True, "layers_b": sorted({j for _, j in picks}), "rows_per_matrix": rows,
           "sparsity": _say_sparsity(records), "low_rank": _say_rank(records)}
    out["notes"] = [x["summary"] for x in (out["sparsity"], out["low_rank"]) if x and x.get("summary")]
    out["drift"] = _say_drift(records, bool(out["notes"]), out["layers_b"])
    if out["drift"]["summary"]:
        out["notes"].append(out["drift"]["summary"])
    return out


def _drift(va: np.ndarray, vb: np.ndarray) -> float:
    """||B - A|| / ||A|| over the rows read."""
    return float(np.linalg.norm(vb - va) / max(np.linalg.norm(va), 1e-30))


def _say_drift(records: list, explained: bool, layers_b: list[int]) -> dict:
    """How far B's matrices moved from A's, said when sparsity or a low-rank update does not already say how:
    a fine-tune moves them a few percent, continued pretraining or washing tens of percent or more."""
    rel = np.array([r[5] for r in records])
    moved = rel > 0
    out = {"median_relative_change": round(float(np.median(rel)), 4), "n_changed": int(moved.sum()),
           "n_compared": len(records), "summary": None}
    if explained or not moved.any():
        return out
    low = sum(r[6] is not None for r in records)
    pct = 100 * float(np.median(rel[moved]))
    out["summary"] = (f"B's layer matrices differ from A's by a median {pct:.{1 if pct < 10 else 0}f}% of their "
                      f"norm (||B - A|| / ||A|| over the rows read; {int(moved.sum())} of {len(records)} matrices "
                      f"changed, at {layer_words(layers_b)} of B); "
                      + ("a full-rank change, not sparse (training leaves one; pruning and merged adapters do not)"
                         if low == 0 else
                         f"{low} of them low-rank, the rest not") + " (descriptive)")
    return out


def _sparsity(va: np.ndarray, vb: np.ndarray) -> tuple[float, float | None, float]:
    """(share of A's non-zero values that are zero in B, share of those among A's smallest, share of groups of
    four in B with at least two zeros)."""
    zeroed = (vb == 0) & (va != 0)
    share = float(zeroed.sum() / max((va != 0).sum(), 1))
    smallest = None
    if zeroed.any():
        # per row: is each zeroed value below the row's share-quantile of |A|? (magnitude pruning zeroes exactly those)
        mag = np.abs(va)
        cut = np.quantile(mag, min(1.0, max(share, 1e-6)), axis=1, keepdims=True)
        smallest = float((mag[zeroed] <= np.broadcast_to(cut, mag.shape)[zeroed] * (1 + 1e-6)).mean())
    n = vb.shape[1] // 4 * 4
    groups = (vb[:, :n] == 0).reshape(len(vb), -1, 4).sum(-1) if n else np.zeros((len(vb), 0))
    two_of_four = float((groups >= 2).mean()) if groups.size else 0.0
    return share, smallest, two_of_four


def _rank(va: np.ndarray, vb: np.ndarray, da: str, db: str) -> int | None:
    """The rank of B - A over what storage rounding explains: singular values above ABOVE x the largest one the
    two storages' rounding alone would give, with every further one below BELOW x it. None when there is no
    such gap, or more than the rows read can tell.

    Rounding error is uniform over each value's spacing (variance spacing^2 / 12), and a row or column of large
    values rounds on a coarser grid (Gemma's q_proj has such columns: residual dimensions of massive activations).
    So B - A is first scaled, row by row and column by column, to rounding noise of unit variance: scaling rows
    and columns keeps the rank of an update, and white noise of unit variance has its largest singular value at
    about sqrt(rows) + sqrt(cols)."""
    d = vb - va
    if not np.any(d):
        return None
    spacing = [float_steps(t, v) for t, v in ((da, va), (db, vb)) if t in FLOAT_GRID]
    if spacing:
        var = sum(x.astype(np.float64) ** 2 for x in spacing) / 12  # (rows, cols) rounding variance per value
        col = np.sqrt(var.mean(axis=0))
        col = np.maximum(col, 1e-3 * np.median(col) + 1e-300)  # a column of zeros must not blow up
        row = np.sqrt((var / col**2).mean(axis=1))
        row = np.maximum(row, 1e-3 * np.median(row) + 1e-300)
        d = d / row[:, None] / col[None, :]
        floor = np.sqrt(d.shape[0]) + np.sqrt(d.shape[1])
    else:
        floor = 0.0
    s = np.linalg.svd(d, compute_uv=False)
    floor = max(floor, s[0] * 1e-6)  # float32 arithmetic below that
    r = int((s > ABOVE * floor).sum())
    # a rank that is half of what the rows read allow, or more, is not low: a full update of a small matrix
    if r == 0 or 2 * r >= min(d.shape) or s[r] > BELOW * floor:
        return None
    return r


def _say_sparsity(records: list) -> dict | None:
    shares = np.array([r[2] for r in records])
    if np.median(shares) < SPARSE:
        return {"share_zeroed": round(float(np.median(shares)), 4), "summary": None}
    smallest = [r[3] for r in records if r[3] is not None]
    by_magnitude = bool(smallest) and float(np.median(smallest)) >= MAGNITUDE
    semi = float(np.median([r[4] for r in records])) >= 0.95
    how = ("2:4 semi-structured (two zeros in every four values)" if semi else "unstructured")
    why = ("the zeroed values are A's smallest in magnitude (magnitude pruning)" if by_magnitude else
           "not by magnitude alone (activation-aware or error-compensating pruning, or trained after)")
    summary = (f"{how} sparsity: {100 * float(np.median(shares)):.0f}% of A's non-zero values are exactly zero in B "
               f"(median over {len(records)} matrices); {why} (descriptive)")
    return {"share_zeroed": round(float(np.median(shares)), 4),
            "zeroed_among_smallest": round(float(np.median(smallest)), 4) if smallest else None,
            "two_of_four": semi, "by_magnitude": by_magnitude, "summary": summary}


def _say_rank(records: list) -> dict | None:
    by_role: dict[str, list[int | None]] = {}
    layers_b: set[int] = set()
    for role, j, *_rest, rank in records:  # (role, layer, three sparsity figures, drift, rank)
        by_role.setdefault(role, []).append(rank)
    ranks = {}
    for role, rs in by_role.items():
        found = [r for r in rs if r is not None]
        if found and len(found) >= 0.75 * len(rs):
            values, counts = np.unique(found, return_counts=True)
            ranks[role] = int(values[np.argmax(counts)])
    if not ranks:
        return {"ranks": {}, "summary": None}
    for role, j, *_rest, rank in records:
        if role in ranks and rank is not None:
            layers_b.add(j)
    distinct = sorted(set(ranks.values()))
    rank_text = f"rank-{distinct[0]}" if len(distinct) == 1 else "rank-" + "/".join(map(str, distinct))
    roles = ", ".join(SHORT[r] for r in ROLES if r in ranks)
    summary = (f"a merged {rank_text} update in {roles} (B - A has {distinct[0] if len(distinct) == 1 else 'that many'} "
               f"singular values above storage rounding and none beyond, at {layer_words(sorted(layers_b))} of B: a "
               "low-rank adapter folded in) (descriptive)")
    return {"ranks": ranks, "summary": summary}


def wide_read_bytes(b: Checkpoint, n_layers: int) -> int:
    """What reading ROWS[1] rows of every examined matrix of B costs (the same again for A)."""
    d = b.summary.hidden_size or 1
    ffn = b.summary.intermediate_size or d
    per_layer = ROWS[1] * (4 * d + 2 * d + ffn) * b.weights.bytes_total / max(b.summary.n_params, 1)
    return int(min(LAYERS, n_layers) * per_layer)
