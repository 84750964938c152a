"""What B kept of A, once the pair is called related: residual dimensions, attention heads, FFN neurons.

Pruning in the Minitron style keeps a subset of A's channels, heads and neurons, in A's order; a relabelling
keeps all of them in another order. Each map is drawn from evidence the pair already has, or from a few of A's
and B's attention matrices:

- residual dimensions: the signed permutation fitted on shared tokens' embeddings (`evidence.hidden`); the
  longest run of B's dimensions that follows A's order says "kept in order" (a subset, or a superset with
  dimensions added) from "relabelled";
- attention heads: each head's query (and key) rows span a subspace of the residual stream that no gauge of
  the head changes (Q M and K M^-T leave attention scores as they were). In a few matched layer pairs, B's
  heads are assigned to A's by the mean squared cosine of the principal angles between those subspaces (1 for
  the same head, head_dim / d for unrelated ones), and the assignment says which of A's heads B kept, per
  key/value group;
- FFN neurons: the neurons the agreement test matched keep A's order or not (Kendall's tau of its rank cells),
  and the order test's blocks sit at the same offsets or not;
- experts: which of B's experts are which of A's, or which hold A's dense FFN (evidence/experts.py).

None of this has a calibrated null of its own (JSON `alignment.subsets`, marked descriptive): the maps only say
*which* parts correspond in a pair the counted tests already related.
"""

from __future__ import annotations

import bisect

import numpy as np

from ..assignment import linear_sum_assignment
from ..checkpoint import Checkpoint
from ..report.words import join, layers as layer_words
from .heads import head_bases
from .experts import expert_map
from .hidden import HiddenMap

IN_ORDER = 0.95  # share of the paired dimensions (or matched neurons) on one increasing run for "in A's order"
HEAD_LAYERS = 4  # matched layer pairs whose heads are mapped, spread over depth
HEAD_KEPT = 0.5  # subspace overlap above which an assigned head is A's, and at least halfway from the overlap of
# unrelated heads (about head_dim / d, which is large in narrow models) to 1
RANK_IN_ORDER = 0.95  # Kendall's tau of matched neurons for "kept in A's order"


def longest_increasing(x: np.ndarray) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []
    for v in x.tolist():
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
        else:
            tails[k] = v
    return len(tails)


# -- residual dimensions -------------------------------------------------------------------------------------------


def residual_kept(hmap: HiddenMap) -> dict | None:
    """How B's residual dimensions relate to A's when the map is a signed permutation; None when there is nothing
    to say (a rotation is said elsewhere; A's own coordinates in A's order need no sentence)."""
    if hmap.kind != "permutation" or hmap.perm is None:
        return None
    paired = hmap.perm[hmap.perm >= 0]  # B's dimension of each paired dimension of A, in A's order
    n, d_a, d_b = len(paired), hmap.d_a, hmap.d_b
    if n == 0:
        return None
    run = longest_increasing(paired)
    in_order = run >= IN_ORDER * n
    out = {"kind": None, "paired": n, "in_order": run, "d_a": d_a, "d_b": d_b}
    if in_order and d_b < d_a:
        out["kind"] = "subset"
        out["note"] = (f"B's residual stream keeps {d_b} of A's {d_a} dimensions, in A's order ({d_a - d_b} "
                       f"removed; {run} of the {n} paired over shared tokens follow A's order)")
    elif in_order and d_b > d_a:
        out["kind"] = "superset"
        out["note"] = (f"B's residual stream holds A's {d_a} dimensions in A's order, and {d_b - d_a} more "
                       f"({run} of the {n} paired over shared tokens follow A's order)")
    elif not in_order:
        out["kind"] = "permutation" if d_a == d_b else "subset, relabelled" if d_b < d_a else "superset, relabelled"
        kept = "" if d_a == d_b else f" ({min(d_a, d_b)} of {max(d_a, d_b)} dimensions in common)"
        out["note"] = (f"B's residual dimensions are A's relabelled{kept}: {n - run} of the {n} paired over shared "
                       f"tokens are out of A's order")
    else:
        return None
    return out


# -- attention heads ----------------------------------------------------------------------------------------------


def _head_bases(ck: Checkpoint, role: str, layer: int, n_heads: int, hmap: HiddenMap | None, width: int
                ) -> np.ndarray | None:
    """Every head's row space of `role` in one layer, in B's residual basis: (n_heads, hd, d_b); None when the
    tensor is missing, not held whole, or does not read the residual stream of `width`."""
    t = ck.find(role, layer)
    if t is None or not n_heads or t.n_rows % n_heads or t.shape[-1] != width or not t.has(0, t.n_rows):
        return None
    return head_bases(ck, role, layer, 0, n_heads, t.n_rows // n_heads, hmap)


def _assign_heads(qa: np.ndarray, qb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of B's heads, A's head it is assigned to and their overlap (mean squared cosine of principal
    angles): qa (n_a, hd, d), qb (n_b, hd, d)."""
    hd = qa.shape[1]
    overlap = np.einsum("gkd,hld->ghkl", qa, qb)  # (n_a, n_b, hd, hd)
    score = (overlap**2).sum(axis=(2, 3)) / hd  # (n_a, n_b)
    rows, cols = linear_sum_assignment(-score.T)  # B's heads to A's, one to one
    to_a = np.full(qb.shape[0], -1)
    to_a[rows] = cols
    return to_a, score.T[rows, cols]


def head_map(a: Checkpoint, b: Checkpoint, hmap: HiddenMap, layer_pairs: list, budget_bytes: float) -> dict | None:
    """Which of A's query and key/value heads B kept, in up to HEAD_LAYERS matched layer pairs, when the head
    counts differ (a pruned or grown attention: otherwise nothing to say). None when nothing was mapped."""
    sa, sb = a.summary, b.summary
    if not sa.head_dim or sa.head_dim != sb.head_dim or not sa.n_heads or not sb.n_heads:
        return None
    if (sa.n_heads, sa.n_kv_heads) == (sb.n_heads, sb.n_kv_heads):
        return None
    pairs = [(i, j) for i, j in layer_pairs if i is not None and j is not None]
    d = max(sa.hidden_size or 1, sb.hidden_size or 1)
    per_layer = max((s.n_heads + (s.n_kv_heads or 0)) * sa.head_dim * (s.hidden_size or d) * ck.weights.bytes_total
                    / max(s.n_params, 1) for s, ck in ((sa, a), (sb, b)))  # query and key rows, per checkpoint
    n = int(min(HEAD_LAYERS, len(pairs), budget_bytes // max(per_layer, 1)))
    if n < 1:
        return None
    picks = [pairs[k] for k in np.unique(np.linspace(0, len(pairs) - 1, n).round().astype(int))]
    hd = sa.head_dim
    chance = hd / (sb.hidden_size or d)
    out: dict = {"descriptive": True, "layers": [], "chance_overlap": round(chance, 4)}
    for role, na, nb in (("attn_q", sa.n_heads, sb.n_heads), ("attn_k", sa.n_kv_heads, sb.n_kv_heads)):
        if not na or not nb or (role == "attn_k" and na == nb):
            continue
        per = []
        for i, j in picks:
            qa, qb = _head_bases(a, role, i, na, hmap, hmap.d_a), _head_bases(b, role, j, nb, None, hmap.d_b)
            if qa is None or qb is None:
                continue
            to_a, ov = _assign_heads(qa, qb)
            kept = [int(h) if o >= max(HEAD_KEPT, (1 + chance) / 2) else -1 for h, o in zip(to_a, ov)]
            per.append({"a": i, "b": j, "b_to_a": kept, "overlap": [round(float(o), 3) for o in ov]})
        if per:
            out["layers"].append({"role": role, "n_a": na, "n_b": nb, "pairs": per})
    if not out["layers"]:
        return None
    out["notes"] = [n for r in out["layers"] for n in [_head_note(r, sa)] if n]
    return out


def _head_note(r: dict, sa) -> str | None:
    """One sentence for a role's head map: which heads B kept of A's, per key/value group for query heads."""
    query = r["role"] == "attn_q"
    what = "query heads" if query else "key/value heads"
    group = sa.n_heads // sa.n_kv_heads if query and sa.n_kv_heads and sa.n_heads % sa.n_kv_heads == 0 else None
    layers_b = [p["b"] for p in r["pairs"]]
    kept_sets = [sorted(h for h in p["b_to_a"] if h >= 0) for p in r["pairs"]]
    unmatched = sum(h < 0 for p in r["pairs"] for h in p["b_to_a"])
    n_a, n_b = r["n_a"], r["n_b"]
    where = f"(heads mapped in {layer_words(layers_b)} of B"
    where += f"; {unmatched} of B's heads there match none of A's)" if unmatched else ")"
    if all(not k for k in kept_sets):
        return f"none of B's {what} matches one of A's {where}"
    in_order = all(longest_increasing(np.array([h for h in p["b_to_a"] if h >= 0])) == len(k)
                   for p, k in zip(r["pairs"], kept_sets))
    order = "in A's order" if in_order else "reordered"
    sizes = sorted({len(k) for k in kept_sets})
    count = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}\u2013{sizes[-1]}"
    if n_b >= n_a:
        return f"B's {what} hold {count} of A's {n_a}, {order}, and {n_b - sizes[0]} others {where}"
    same = all(k == kept_sets[0] for k in kept_sets)
    gone_sets = [sorted(set(range(n_a)) - set(k)) for k in kept_sets]
    per_group, by_group = "", group
    if group:
        counts = {len([h for h in k if h // group == g]) for k in kept_sets for g in range(sa.n_kv_heads)}
        whole = all(len([h for h in gone if h // group == g]) in (0, group) for gone in gone_sets
                    for g in range(sa.n_kv_heads))
        if len(counts) == 1:  # the same number from every group: the groups need not be named
            per_group, by_group = f", {counts.pop()} of {group} in every key/value group", None
        elif whole:
            per_group = ", whole key/value groups removed with their query heads"
        else:
            per_group = ", unevenly across key/value groups"
    gone = [_heads(g, by_group) for g in gone_sets]
    removed = (f"A's {gone[0]} removed" if same else
               "; ".join(f"A's {g} removed in B's layer {j}" for g, j in zip(gone, layers_b)))
    return f"B keeps {count} of A's {n_a} {what}{per_group}, {order}; {removed} {where}"


def _heads(hs: list[int], group: int | None) -> str:
    """'head 4', 'heads 1, 4 and 6 (groups 0, 1 and 2)'."""
    word = "head" if len(hs) == 1 else "heads"
    text = f"{word} {join([str(h) for h in hs])}"
    if group:
        gs = sorted({h // group for h in hs})
        text += f" (key/value group{'s' if len(gs) > 1 else ''} {join([str(g) for g in gs])})"
    return text


# -- FFN neurons --------------------------------------------------------------------------------------------------


def ffn_kept(f_a: int | None, f_b: int | None, rank_cells: list, index_in_place: bool,
             layer_pairs: list) -> dict | None:
    """How B's FFN neurons relate to A's when the widths differ: from the rank cells on the layer map (agreed
    neurons in A's order or not) and whether the order test found A's neurons at their own offsets."""
    if not f_a or not f_b or f_a == f_b:
        return None
    on_path = {(i, j) for i, j in layer_pairs if i is not None and j is not None}
    taus = [c.extra["rank_tau"] for c in rank_cells
            if c.extra.get("rank_tau") is not None and (c.a.layer, c.b.layer) in on_path]
    out = {"f_a": f_a, "f_b": f_b, "rank_tau": [round(t, 3) for t in taus], "in_place": index_in_place}
    verb = "pruned" if f_b < f_a else "widened"
    if taus and float(np.median(taus)) >= RANK_IN_ORDER:
        out["kind"] = "in order"
        kept = f"the {f_b} neurons B kept are A's" if f_b < f_a else f"A's {f_a} neurons are kept"
        out["note"] = (f"FFN {verb}: {kept}, in A's order (Kendall's tau {min(taus):.2f} or more over the neurons "
                       f"matched in {len(taus)} layer pairs)")
    elif taus:
        out["kind"] = "relabelled"
        out["note"] = (f"FFN {verb}: B's neurons match A's out of A's order (median Kendall's tau "
                       f"{float(np.median(taus)):.2f} over {len(taus)} layer pairs)")
    elif index_in_place and f_b > f_a:
        out["kind"] = "in place"
        out["note"] = "FFN widened: A's neurons sampled sit at their own places in B"
    else:
        return None
    return out


def subsets(a: Checkpoint, b: Checkpoint, hmap: HiddenMap, layer_pairs: list, rank_cells: list,
            index_in_place: bool, budget_bytes: float, expert_bytes: float, seed: int) -> dict | None:
    """alignment.subsets: the residual, head, FFN and expert maps that have something to say, with their notes.
    budget_bytes: what the head map may read; expert_bytes: what the expert map may read."""
    dense = not a.summary.n_experts and not b.summary.n_experts  # an expert's width is not an FFN's
    out = {"descriptive": True, "residual": residual_kept(hmap),
           "heads": head_map(a, b, hmap, layer_pairs, budget_bytes),
           "ffn": ffn_kept(a.summary.intermediate_size, b.summary.intermediate_size, rank_cells, index_in_place,
                           layer_pairs) if dense else None,
           "experts": expert_map(a, b, hmap, layer_pairs, seed, expert_bytes)}
    notes = [x["note"] for x in (out["residual"], out["ffn"], out["experts"]) if x and x.get("note")]
    notes += (out["heads"] or {}).get("notes", [])
    if not notes:
        return None
    out["notes"] = notes
    return out
