"""Which of two related models came first, where the evidence says so; else nothing.

Shared ancestry is symmetric: continued training, fine-tuning and most edits leave the same trace whichever
side came first (compare says so in `direction`). A few edits do have a direction, and `identify` and `graph`
use them to order relatives (never to decide relatedness):

- an export: B is A's quantisation, cast or dequantised export (`alignment.export`, evidence/export.py), or,
  on a fingerprint, B holds A's values on its own storage grid in nearly every compared tensor, bit for bit
  (A's floats rounded to B's type or quantised as gguf's quantiser does; A's quantised values rounded to B's
  float type). Lying on the other's grid is direction; lower precision alone is not;
- layers inserted in B (two layers of B descend from one of A: a duplicated layer, or a copy with fresh outputs);
- experts of B that match A's dense FFNs (dense -> MoE upcycling);
- B's vocabulary extends A's with added or special tokens (A's tokens at their ids; ordinary tokens appended
  are no direction: a vocabulary cut at its tail looks the same from the other side);
- B is a weighted average of two related models (a merge): both are its ancestors (`merge_weight`).

`growth(a, b, doc)` lists the reasons B was made from A, from a compare document of (A, B).
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint

EXPORT_IDENTICAL = 0.9  # share of compared tensors identical after rounding that makes B a rounded export of A


def growth(a: Checkpoint, b: Checkpoint, doc: dict, a_name: str = "A", b_name: str = "B") -> list[str]:
    """Reasons the evidence gives for B having been made from A (empty when it gives none), naming the two
    models as given."""
    if doc["verdict"]["label"] != "related":
        return []
    out = []
    export = (doc.get("alignment") or {}).get("export") or {}
    if export.get("relation"):
        if export["child"] == "B":
            out.append(f"{b_name} is {a_name}'s {export['relation'].replace('_', '-')} ({export['method']})")
    else:
        details = next((e for e in doc["evidence"] if e["name"] == "identical_tensors"), {}).get("details", {})
        n = details.get("n_compared") or 0
        same = len(details.get("identical") or []) + len(details.get("identical_low_information") or [])
        copies = details.get("copies") or {}
        if n and same >= EXPORT_IDENTICAL * n and copies.get("B", 0) > copies.get("A", 0):
            out.append(f"{b_name} holds {a_name}'s values on its own storage grid (a cast or an export)")
    al = doc.get("alignment") or {}
    if any(t["side"] == "a" for t in al.get("ties") or []):  # several of B's layers descend from one of A's
        out.append(f"layers inserted in {b_name} (two of its layers descend from one of {a_name}'s)")
    experts = (al.get("subsets") or {}).get("experts") or {}
    if experts.get("kind") == "upcycled" or any("expert" in u["b"] and u["a"].endswith(" ffn")
                                                for u in al.get("units") or []):
        out.append(f"{b_name}'s experts upcycled from {a_name}'s dense FFNs")
    tok = next((e for e in doc["evidence"] if e["name"] == "tokenizer_lineage"), None)
    if tok is not None and tok["details"].get("kind") == "extension" and (b.summary.vocab_size or 0) > (a.summary.vocab_size or 0) \
            and _added_only(a, b):
        out.append(f"{b_name}'s vocabulary extends {a_name}'s with added tokens")
    return out


def _added_only(a: Checkpoint, b: Checkpoint) -> bool:
    """Whether every token B holds beyond A's ids is an added or special token (chat markers, tool tokens). A
    vocabulary cut at its tail looks exactly like the one it was cut from extended by ordinary tokens, so only
    added tokens, which no pruning removes, give the direction."""
    from ..tokenizers import checkpoint_vocab

    va, vb = checkpoint_vocab(a), checkpoint_vocab(b)
    if va is None or vb is None:
        return False
    extra = {i for i in (set(vb.tokens) | set(vb.special)) if i >= va.size}
    return bool(extra) and extra <= (set(vb.special) | set(vb.added_ids))


MERGE_ROWS = 32  # leading FFN rows of every unit: what every fingerprint holds
MERGE_RESIDUAL = 0.25  # residual of the fit, relative to the nearer ingredient, below which the query is a merge
MERGE_WEIGHT = (0.1, 0.9)  # a weight outside this is one ingredient with a little of the other: not called a merge


def ffn_vector(ck: Checkpoint) -> np.ndarray | None:
    """The leading FFN rows of every unit, as one vector (norm gains folded in), or None without FFNs."""
    from ..evidence.blocks import ffn_units, read_block

    units = [u for us in ffn_units(ck).values() for u in us]
    if not units or any(t.prefix() < min(MERGE_ROWS, t.n_rows) for u in units for t in u.matrices):
        return None
    return np.concatenate([r.ravel() for u in units for r in read_block(ck, u, 0, min(MERGE_ROWS, u.n_rows))])


def merge_weight(q: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """If q is (nearly) a weighted average a x + (1 - a) y: (a, residual relative to the nearer of x and y)."""
    if not (q.shape == x.shape == y.shape):
        return None
    d = x - y
    dd = float(d @ d)
    if dd == 0.0:
        return None
    a = float((q - y) @ d) / dd
    residual = float(np.linalg.norm(q - y - a * d)) / max(min(np.linalg.norm(q - x), np.linalg.norm(q - y)), 1e-30)
    return a, residual


def is_merge(fit: tuple[float, float] | None) -> bool:
    return fit is not None and MERGE_WEIGHT[0] <= fit[0] <= MERGE_WEIGHT[1] and fit[1] <= MERGE_RESIDUAL
