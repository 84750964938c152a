"""`parentage graph`: the family tree of the index, from the fingerprints alone.

1. Every pair of indexed models is compared (fingerprint against fingerprint, the verdict's tests only) and its
   log10 p corrected for the number of pairs (Bonferroni), so a large index makes no chance edges. Families are
   the connected parts of the related pairs.
2. Each related pair gets the full compare both ways, for its alignment notes and a direction where the weights
   give one (index/direction.py: exports, inserted layers, upcycled experts, an extended vocabulary, merges).
3. Each model then takes as its parent the relative `identify` would name (ancestors by the weights first, then
   relatives whose files were written earlier — circumstantial — earliest first, the query's own basis first,
   then closeness); a model with no such relative is a root. An edge says what its direction rests on:
   `weights`, `dates` (circumstantial) or nothing (undirected).

The pair count grows as n^2: MAX_MODELS bounds one run (pass more explicitly).
"""

from __future__ import annotations

import contextlib
import math
import time

from ..pair import compare_checkpoints
from ..errors import IndexStoreError
from ..verdict import RELATED_LEVEL
from .direction import growth
from .identify import order_relatives, pair_closeness, same_basis
from .store import open_store

MAX_MODELS = 400  # 80,000 pairs, about an hour on 2 cores for small models


def family_graph(db: str | None = None, seed: int = 0, max_models: int = MAX_MODELS) -> dict:
    t0 = time.perf_counter()
    with open_store(db) as store:
        entries = store.entries()
        if not entries:
            raise IndexStoreError(store.where, "the index holds no models; add some with `parentage index add MODEL`")
        if len(entries) > max_models:
            raise IndexStoreError(store.where, f"holds {len(entries):,} models; a graph compares every pair "
                                               f"({len(entries) * (len(entries) - 1) // 2:,}): pass --max-models "
                                               f"{len(entries)} to run it anyway")
        fps = {e.id: store.load(e) for e in entries}
    ids = [e.id for e in entries]
    by_id = {e.id: e for e in entries}
    n_pairs = max(len(ids) * (len(ids) - 1) // 2, 1)
    penalty = math.log10(n_pairs)
    opened = {i: fps[i].open() for i in ids}
    created = {i: fps[i].meta.get("created") if isinstance(fps[i].meta.get("created"), str) else None for i in ids}
    try:
        related: dict[tuple[int, int], dict] = {}
        for x in range(len(ids)):
            for y in range(x + 1, len(ids)):
                i, j = ids[x], ids[y]
                doc = compare_checkpoints(opened[i], opened[j], seed, detail=False)
                p = doc["verdict"]["log10_p"]
                corrected = None if p is None else min(0.0, p + penalty)
                if corrected is not None and corrected <= RELATED_LEVEL:
                    d = _directions(opened[i], opened[j], seed)
                    related[(i, j)] = {"log10_p": round(corrected, 2), "closeness": pair_closeness(doc),
                                       "same_basis": same_basis(doc), "summary": d["summary"],
                                       "relation_of": {i: d["relation"]["a"], j: d["relation"]["b"]},
                                       "basis_of": {i: d["basis"]["a"], j: d["basis"]["b"]},
                                       "notes": {i: d["notes"]["a"], j: d["notes"]["b"]}}
        parents = {}
        for n in ids:
            rows = []
            for (i, j), pair in related.items():
                if n not in (i, j):
                    continue
                other = j if n == i else i
                rel = pair["relation_of"][other]  # what `other` is to n
                rows.append({"ref": by_id[other].ref, "label": "related", "log10_p": pair["log10_p"],
                             "closeness": pair["closeness"], "same_basis": pair["same_basis"], "created": created[other],
                             "relation": rel, "basis": pair["basis_of"][other], "_id": other, "_pair": (i, j)})
            ordered = order_relatives(rows, opened[n], created[n], lambda r: contextlib.nullcontext(opened[r["_id"]]),
                                      seed, None, subject="this model")
            chosen = next((r for r in ordered if r["_group"] <= 2), None)
            if chosen is not None:
                parents[n] = chosen
    finally:
        for ck in opened.values():
            ck.close()
    # the forest: each model under its chosen parent, unless that closes a loop (two undated relatives)
    tree, edges = _Sets(ids), []
    for n in ids:
        r = parents.get(n)
        if r is None or not tree.join(r["_id"], n):
            continue
        pair = related[r["_pair"]]
        kind = "weights" if r["relation"] == "ancestor" else "dates" if r["_group"] == 1 else None
        edges.append({"a": by_id[r["_id"]].ref, "b": by_id[n].ref, "log10_p": pair["log10_p"],
                      "closeness": pair["closeness"], "parent": by_id[r["_id"]].ref if kind else None,
                      "direction_from": kind, "basis": r["basis"] or "the weights do not say which came first",
                      "summary": pair["summary"], "notes": pair["notes"][r["_id"]]})
    kin = _Sets(ids)
    for i, j in related:
        kin.join(i, j)
    families: dict[int, list[int]] = {}
    for i in ids:
        families.setdefault(kin.find(i), []).append(i)
    ref = lambda i: by_id[i].ref  # noqa: E731
    nodes = [{"id": e.id, "ref": e.ref, "commit": e.commit, "arch": e.arch, "n_layers": e.n_layers,
              "hidden_size": e.hidden_size, "n_params": e.n_params, "created": created[e.id]} for e in entries]
    return {
        "schema_version": 1,
        "nodes": nodes,
        "edges": edges,
        "families": sorted(([ref(i) for i in members] for members in families.values()), key=lambda f: (-len(f), f)),
        "n_pairs": n_pairs,
        "n_related_pairs": len(related),
        "correction": f"Bonferroni over {n_pairs} pairs: log10 p + {penalty:.2f}",
        "cost": {"seconds": round(time.perf_counter() - t0, 3)},
    }


def _directions(a, b, seed: int) -> dict:
    """The full compare of a related pair both ways: what each is to the other (by the weights), the cue, and
    the alignment notes with each as A."""
    forward, backward = compare_checkpoints(a, b, seed), compare_checkpoints(b, a, seed)
    b_from_a = growth(a, b, forward, "the parent", "this model")
    a_from_b = growth(b, a, backward, "the parent", "this model")
    basis = {"a": None, "b": None}
    if b_from_a and not a_from_b:  # a is b's ancestor
        relation, basis = {"a": "ancestor", "b": "descendant"}, {"a": "; ".join(b_from_a), "b": None}
    elif a_from_b and not b_from_a:
        relation, basis = {"a": "descendant", "b": "ancestor"}, {"a": None, "b": "; ".join(a_from_b)}
    else:
        relation = {"a": "relative", "b": "relative"}
    return {"relation": relation, "basis": basis, "summary": forward["verdict"]["summary"],
            "notes": {"a": (forward.get("alignment") or {}).get("notes") or [],
                      "b": (backward.get("alignment") or {}).get("notes") or []}}


class _Sets:
    """Disjoint sets (union-find) over model ids."""

    def __init__(self, ids):
        self.up = {i: i for i in ids}

    def find(self, i: int) -> int:
        while self.up[i] != i:
            self.up[i] = self.up[self.up[i]]
            i = self.up[i]
        return i

    def join(self, i: int, j: int) -> bool:
        """Put i and j in one set; False when they were already."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        self.up[rj] = ri
        return True
