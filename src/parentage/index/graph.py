"""`parentage graph`: the family tree of the index, from the fingerprints alone.

1. Every pair of indexed models is compared (fingerprint against fingerprint, the verdict's tests only) and its
   log10 p corrected for the number of pairs (Bonferroni), so a large index makes no chance edges.
2. Families are the connected parts of the significant pairs; each is drawn as a spanning tree that keeps the
   closest pairs (Kruskal on closeness, then on log10 p): a relative attaches to its nearest kin.
3. Each tree edge gets the full compare both ways: its alignment notes, and a direction where the evidence has
   one (index/direction.py: exports, inserted layers, upcycled experts, an extended vocabulary); else it stays
   undirected. Circumstantial dates are not used: none is stored that a copy could not fake.

The pair count grows as n^2: MAX_MODELS bounds one run (pass more explicitly).
"""

from __future__ import annotations

import math
import time

from ..compare import compare_checkpoints
from ..errors import IndexStoreError
from ..verdict import RELATED_LEVEL
from .direction import growth
from .identify import _closeness
from .store import open_store

MAX_MODELS = 400  # 80,000 pairs, about half an hour on 2 cores for small models


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
    n_pairs = max(len(ids) * (len(ids) - 1) // 2, 1)
    penalty = math.log10(n_pairs)
    opened = {i: fps[i].open() for i in ids}
    pairs = []
    for x in range(len(ids)):
        for y in range(x + 1, len(ids)):
            a, b = opened[ids[x]], opened[ids[y]]
            doc = compare_checkpoints(a, b, seed, detail=False)
            p = doc["verdict"]["log10_p"]
            corrected = None if p is None else min(0.0, p + penalty)
            pairs.append({"a": ids[x], "b": ids[y], "log10_p_pair": p, "log10_p": corrected,
                          "related": corrected is not None and corrected <= RELATED_LEVEL, "closeness": _closeness(doc)})
    related = [p for p in pairs if p["related"]]
    # Kruskal: closest first (closeness unknown last), then strongest evidence
    related.sort(key=lambda p: (p["closeness"] is None, -(p["closeness"] or 0.0), p["log10_p"]))
    parent = {i: i for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = []
    for p in related:
        ra, rb = root(p["a"]), root(p["b"])
        if ra == rb:
            continue
        parent[ra] = rb
        edges.append(_describe(p, opened[p["a"]], opened[p["b"]], seed))
    for ck in opened.values():
        ck.close()
    families: dict[int, list[int]] = {}
    for i in ids:
        families.setdefault(root(i), []).append(i)
    by_id = {e.id: e for e in entries}
    ref = lambda i: by_id[i].ref  # noqa: E731
    nodes = [{"id": e.id, "ref": e.ref, "commit": e.commit, "arch": e.arch, "n_layers": e.n_layers,
              "hidden_size": e.hidden_size, "n_params": e.n_params} for e in entries]
    out_edges = [{**e, "a": ref(e["a"]), "b": ref(e["b"]),
                  "parent": None if e["parent"] is None else ref(e["parent"])} for e in edges]
    return {
        "schema_version": 1,
        "nodes": nodes,
        "edges": out_edges,
        "families": sorted(([ref(i) for i in members] for members in families.values()), key=lambda f: (-len(f), f)),
        "n_pairs": n_pairs,
        "n_related_pairs": len(related),
        "correction": f"Bonferroni over {n_pairs} pairs: log10 p + {penalty:.2f}",
        "cost": {"seconds": round(time.perf_counter() - t0, 3)},
    }


def _describe(p: dict, a, b, seed: int) -> dict:
    """A tree edge: the full compare both ways, for its notes and its direction."""
    forward = compare_checkpoints(a, b, seed)
    backward = compare_checkpoints(b, a, seed)
    b_from_a = growth(a, b, forward, "A", "B")
    a_from_b = growth(b, a, backward, "B", "A")
    if b_from_a and not a_from_b:
        direction, basis = p["a"], "; ".join(b_from_a)
    elif a_from_b and not b_from_a:
        direction, basis = p["b"], "; ".join(a_from_b)
    else:
        direction, basis = None, ("conflicting cues" if a_from_b and b_from_a else
                                  "the weights do not say which came first")
    return {"a": p["a"], "b": p["b"], "log10_p": p["log10_p"], "closeness": p["closeness"], "parent": direction,
            "basis": basis, "summary": forward["verdict"]["summary"],
            "notes": (forward.get("alignment") or {}).get("notes") or []}
