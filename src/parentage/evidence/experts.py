"""Which of B's experts came from what in A, whatever the order of experts and of the neurons inside them.

Drawn once the pair is called related, in up to LAYERS matched layer pairs (JSON `alignment.subsets.experts`,
descriptive: it says which parts correspond, the counted tests say whether the models do):

- MoE -> MoE: router row e picks expert e, so a relabelling of experts moves the router rows with them. A's
  router rows, in B's residual basis, are assigned one to one to B's by |cosine| (unrelated directions sit near
  sqrt(2 / (pi d))); B's expert e is A's expert map[e]. Experts B dropped or added show as unassigned. The map
  is then checked on the weights of one mapped expert per layer (neuron matchings by gate rows and by up rows
  of a block of A's expert against the whole of B's agree, as in the agreement test).
- dense -> MoE (upcycling, fine-grained or not): every expert of B is matched against A's dense FFN of the aligned
  layer, read whole once for all of them. A block of each expert's rows is assigned to A's neurons twice, by
  gate rows and by up rows; an expert that holds A's neurons (in any order) has the two assignments agree on
  most rows, an unrelated one on about m / n_A. The same count against A's FFN of another layer is the pair's
  own reference: different layers of one model share directions, so an expert is said to come from the aligned
  FFN only when it beats every such decoy.
"""

from __future__ import annotations

import math

import numpy as np

from ..align import unit_rows
from ..assignment import linear_sum_assignment
from ..checkpoint import Checkpoint
from ..report.words import format_bytes, layers as layer_words
from .blocks import Unit, fold_norm, read_block
from .hidden import HiddenMap

LAYERS = 4  # matched layer pairs mapped, spread over depth
ROWS = 64  # rows of each expert (or of A's expert) matched
ROUTER_KEPT = 0.5  # router |cos| above which an assigned router row is A's ...
ROUTER_CHANCE = 5.0  # ... and at least this many times the |cos| of unrelated directions
AGREE_SHARE = 0.5  # share of an expert's rows both assignments agree on for "holds A's neurons"
SPELLED_OUT = 16  # experts per layer up to which the note spells the map out


def _span(xs: list[int]) -> str:
    return str(min(xs)) if min(xs) == max(xs) else f"{min(xs)}\u2013{max(xs)}"


def _units(ck: Checkpoint, layer: int) -> list[tuple[int | None, Unit]]:
    """Every FFN of a layer as (expert index or None for a dense FFN, unit of gate and up rows)."""
    norm = ck.find("mlp_norm", layer) or ck.find("attn_norm", layer)
    out = []
    e = 0
    while (up := ck.find("mlp_up", layer, e)) is not None:
        gate = ck.find("mlp_gate", layer, e)
        out.append((e, Unit(layer, f"expert {e}", [m for m in (gate, up) if m is not None], norm)))
        e += 1
    if not out and (up := ck.find("mlp_up", layer)) is not None:
        gate = ck.find("mlp_gate", layer)
        out.append((None, Unit(layer, "ffn", [m for m in (gate, up) if m is not None], norm)))
    return out


def _comparable(units: list[tuple[int | None, Unit]], d: int) -> bool:
    """Every unit has gate and up rows of width d (the two views the agreement needs), held whole."""
    return bool(units) and all(len(u.matrices) == 2 and all(t.shape[-1] == d and t.has(0, t.n_rows) for t in u.matrices)
                               for _, u in units)


def _chance_abs_cos(d: int) -> float:
    return math.sqrt(2.0 / (math.pi * max(d, 1)))


def _router_rows(ck: Checkpoint, layer: int) -> np.ndarray | None:
    t = ck.find("router", layer)
    if t is None or len(t.shape) != 2 or t.shape[1] != (ck.summary.hidden_size or 0):
        return None
    return fold_norm(ck, ck.find("mlp_norm", layer), t.read())  # the router reads the normed stream too


def _agreement(block: list[np.ndarray], whole: list[np.ndarray]) -> int:
    """Rows of a block (gate, up: (m, d) each) whose assignments to the whole unit's neurons (gate, up: (n, d)
    each) by gate rows and by up rows agree."""
    picks = []
    for x, y in zip(block, whole):
        score = np.abs(unit_rows(x) @ unit_rows(y).T)  # (m, n)
        rows, cols = linear_sum_assignment(-score)
        to = np.full(x.shape[0], -1)
        to[rows] = cols
        picks.append(to)
    return int(((picks[0] == picks[-1]) & (picks[0] >= 0)).sum()) if len(picks) == 2 else 0


def _in_basis(rows: list[np.ndarray], hmap: HiddenMap | None) -> list[np.ndarray]:
    return [hmap.apply(r) if hmap is not None else r for r in rows]


def expert_map(a: Checkpoint, b: Checkpoint, hmap: HiddenMap, layer_pairs: list, seed: int,
               budget_bytes: float) -> dict | None:
    """alignment.subsets.experts, or None when B has no experts or nothing could be mapped."""
    if not b.summary.n_experts:
        return None
    pairs = [(i, j) for i, j in layer_pairs if i is not None and j is not None
             and _comparable(_units(a, i), hmap.d_a) and _comparable(_units(b, j), hmap.d_b)
             and _units(b, j)[0][0] is not None]
    if not pairs:  # no layer of B with experts lines up with an FFN of A both hold as gate and up rows
        return None
    dense_a = not a.summary.n_experts
    d_a, d_b = a.summary.hidden_size or 1, b.summary.hidden_size or 1
    bpv_a = a.weights.bytes_total / max(a.summary.n_params, 1)
    bpv_b = b.weights.bytes_total / max(b.summary.n_params, 1)
    width_b = b.summary.intermediate_size or 1  # an expert's
    if dense_a:  # A's FFN read whole once per layer pair and once for the decoy; a block of each of B's experts
        per_layer = max(2 * (a.summary.intermediate_size or 1) * d_a * bpv_a, b.summary.n_experts * ROWS * 2 * d_b * bpv_b)
        fixed = per_layer
    else:  # the routers, a block of one of A's experts, and B's mapped expert whole
        per_layer = max(a.summary.n_experts or 1, b.summary.n_experts) * d_b * bpv_b + 2 * width_b * d_b * bpv_b
        fixed = 0
    n = int(min(LAYERS, len(pairs), (budget_bytes - fixed) // max(per_layer, 1)))
    if n < 1:
        return {"descriptive": True, "kind": None, "layers": [],
                "note": f"experts not mapped: one layer's map reads about {format_bytes(per_layer + fixed)} of a "
                        f"checkpoint, beyond the {format_bytes(budget_bytes)} left for it (raise --budget)"}
    picks = [pairs[k] for k in np.unique(np.linspace(0, len(pairs) - 1, n).round().astype(int))]
    rng = np.random.default_rng(seed)
    if dense_a:
        return _from_dense(a, b, hmap, picks, pairs, rng)
    return _from_experts(a, b, hmap, picks, rng)


def _decoy_layer(pairs: list, picks: list) -> int | None:
    """A matched layer of A as far as possible from every picked one (at least two layers away): its FFN is what
    an expert that does *not* come from the aligned layer matches, in this pair's own lineage."""
    chosen = {i for i, _ in picks}
    far = [(min(abs(i - c) for c in chosen), i) for i, _ in pairs if i not in chosen]
    far = [x for x in far if x[0] >= 2]
    return max(far)[1] if far else None


def _from_dense(a, b, hmap, picks, pairs, rng) -> dict:
    def whole_ffn(layer: int) -> list[np.ndarray]:
        dense = _units(a, layer)[0][1]
        return _in_basis(read_block(a, dense, 0, dense.n_rows), hmap)

    decoy_i = _decoy_layer(pairs, picks)
    decoy = whole_ffn(decoy_i) if decoy_i is not None else None
    layers = []
    for i, j in picks:
        whole = whole_ffn(i)
        experts = _units(b, j)
        m = min(ROWS, *(u.n_rows for _, u in experts))
        start = int(rng.integers(0, min(u.n_rows for _, u in experts) - m + 1))
        counts, decoys = [], []
        for _, u in experts:
            block = read_block(b, u, start, start + m)
            counts.append(_agreement(block, whole))
            if decoy is not None:
                decoys.append(_agreement(block, decoy))
        del whole
        top_decoy = max(decoys, default=0)
        from_a = [k >= max(AGREE_SHARE * m, top_decoy + 1) for k in counts]
        layers.append({"a": i, "b": j, "rows": m, "agree": counts, "decoy_agree": decoys,
                       "b_to_a": ["ffn" if ok else None for ok in from_a]})
    n_exp = len(layers[0]["b_to_a"])
    matched = [sum(x is not None for x in lay["b_to_a"]) for lay in layers]
    bs = [lay["b"] for lay in layers]
    if all(k == n_exp for k in matched):
        head = f"all {n_exp} experts of B in each of its {layer_words(bs)} hold A's dense FFN of the aligned layer"
    else:
        head = (f"{' / '.join(map(str, matched))} of {n_exp} experts of B in its {layer_words(bs)} hold A's dense FFN "
                f"of the aligned layer")
    agree = [k for lay in layers for k, x in zip(lay["agree"], lay["b_to_a"]) if x is not None]
    detail = (f"neuron matchings by gate and up rows agree on {_span(agree)} of {layers[0]['rows']} rows per expert"
              if agree else "no expert's matchings agree")
    if decoy is not None:
        detail += (f", against at most {max(k for lay in layers for k in lay['decoy_agree'])} for A's FFN of layer "
                   f"{decoy_i}")
    kind = "upcycled" if any(matched) else None
    return {"descriptive": True, "kind": kind, "from": "dense", "layers": layers, "decoy_layer_a": decoy_i,
            "note": f"{head} (upcycled; {detail}, whatever the order of experts and of their neurons)" if kind else
            f"no expert of B in its {layer_words(bs)} holds A's dense FFN ({detail})"}


def _from_experts(a, b, hmap, picks, rng) -> dict:
    layers = []
    for i, j in picks:
        ra, rb = _router_rows(a, i), _router_rows(b, j)
        ua_all, ub_all = _units(a, i), _units(b, j)
        if ra is None or rb is None or ra.shape[0] != len(ua_all) or rb.shape[0] != len(ub_all) \
                or ra.shape[1] != hmap.d_a or rb.shape[1] != hmap.d_b:  # a router row per expert, in the stream
            continue
        ra = hmap.apply(ra) if hmap is not None else ra
        score = np.abs(unit_rows(ra) @ unit_rows(rb).T)  # (n_a, n_b)
        rows, cols = linear_sum_assignment(-score.T)  # B's experts to A's
        chance = _chance_abs_cos(rb.shape[1])
        b_to_a = [None] * rb.shape[0]
        cos = [0.0] * rb.shape[0]
        for eb, ea in zip(rows, cols):
            cos[eb] = round(float(score[ea, eb]), 3)
            if score[ea, eb] >= max(ROUTER_KEPT, ROUTER_CHANCE * chance):
                b_to_a[eb] = int(ea)
        entry = {"a": i, "b": j, "b_to_a": b_to_a, "router_abs_cos": cos, "chance_abs_cos": round(chance, 4)}
        mapped = [(eb, ea) for eb, ea in enumerate(b_to_a) if ea is not None]
        if mapped:  # one mapped expert checked on its weights: a block of A's against the whole of B's
            eb, ea = mapped[int(rng.integers(0, len(mapped)))]
            ua, ub = ua_all[ea][1], ub_all[eb][1]
            m = min(ROWS, ua.n_rows, ub.n_rows)
            start = int(rng.integers(0, ua.n_rows - m + 1))
            block = _in_basis(read_block(a, ua, start, start + m), hmap)
            whole = read_block(b, ub, 0, ub.n_rows)
            entry["checked"] = {"a": ea, "b": eb, "rows": m, "agree": _agreement(block, whole),
                                "null_mean": round(m / max(ub.n_rows, 1), 3)}
        layers.append(entry)
    if not layers:
        return {"descriptive": True, "kind": None, "layers": [],
                "note": "experts not mapped: no router with one row per expert on one side"}
    n_a, n_b = a.summary.n_experts, b.summary.n_experts
    bs = [lay["b"] for lay in layers]
    maps = [lay["b_to_a"] for lay in layers]
    unmapped = sum(x is None for mp in maps for x in mp)
    identity = all(mp == list(range(len(mp))) for mp in maps)
    checked = [lay["checked"] for lay in layers if "checked" in lay]
    check = (f"; checked on one mapped expert per layer: neuron matchings by gate and up rows agree on "
             f"{_span([c['agree'] for c in checked])} of {checked[0]['rows']} rows (chance about "
             f"{max(c['null_mean'] for c in checked):.1f})" if checked else "")
    cos = [c for lay in layers for c, x in zip(lay["router_abs_cos"], lay["b_to_a"]) if x is not None]
    router = (f"router rows matched one to one, |cos| {min(cos):.2f} or more against about "
              f"{layers[0]['chance_abs_cos']:.2f} for unrelated directions" if cos else "no router row matches")
    if unmapped == sum(len(mp) for mp in maps):
        kind, text = None, f"B's experts in its {layer_words(bs)} match none of A's by router rows"
    elif identity:
        kind, text = "in order", f"B's experts are A's, in A's order, in its {layer_words(bs)}"
    elif max(len(mp) for mp in maps) > SPELLED_OUT:
        kind = "reordered"
        text = (f"B's experts are A's reordered in each of its {layer_words(bs)} ({sum(len(mp) for mp in maps) - unmapped}"
                f" mapped; the map is in alignment.subsets.experts)")
    else:
        kind = "reordered"
        text = f"B's experts are A's reordered: in B's {layer_words(bs)}, " + "; ".join(
            f"layer {lay['b']}: " + ", ".join(f"{eb}\u2190{ea}" for eb, ea in enumerate(lay["b_to_a"]) if ea is not None)
            for lay in layers) + " (B's expert\u2190A's)"
    if kind and unmapped:
        text += f"; {unmapped} of B's experts there match none of A's ({n_a} experts in A, {n_b} in B)"
    if kind and n_b < n_a:  # experts pruned: which of A's went, per layer (once when the same everywhere)
        gone = [sorted(set(range(n_a)) - {x for x in mp if x is not None}) for mp in maps]
        words = [", ".join(map(str, g)) for g in gone]
        text += (f"; B keeps {n_b} of A's {n_a} experts, A's {words[0]} removed" if all(w == words[0] for w in words)
                 else f"; B keeps {n_b} of A's {n_a} experts: " + "; ".join(
                     f"A's {w} removed at B's layer {lay['b']}" for w, lay in zip(words, layers)))
    return {"descriptive": True, "kind": kind, "from": "experts", "layers": layers, "note": f"{text} ({router}{check})"}
