"""`parentage graph`: the family tree of the index, from the fingerprints alone.

1. Candidate pairs: each model with the GRAPH_K models its sketch ranks first (index/sketch.py), so the full
   tests run on about n * GRAPH_K pairs instead of n^2 (`exhaustive=True`: every pair, bounded by MAX_MODELS).
   Each pair is compared (fingerprint against fingerprint, the verdict's tests only) and its log10 p corrected
   for the number of all pairs, n (n - 1) / 2 (Bonferroni), so a large index makes no chance edges. Families
   are the connected parts of the related pairs. Pair results are cached in the store (by the two
   fingerprints' digests, the seed and this parentage's version), so a graph run again, or after models are
   added, compares only the new pairs.
2. Each related pair gets the full compare both ways, for its alignment notes and a direction where the weights
   give one (index/direction.py: exports, inserted layers, upcycled experts, added tokens, merges).
3. Each model then takes as its parent the relative `identify` would name (index/identify.order_relatives),
   among those that can be its parent (not a descendant by the weights, not written after it); a model with no
   such relative is a root. An edge says what its direction rests on: `weights`, `dates` (circumstantial) or
   nothing (undirected).
"""

from __future__ import annotations

import contextlib
import math
import time

from .. import __version__
from ..pair import compare_checkpoints
from ..errors import IndexStoreError
from ..verdict import RELATED_LEVEL
from .direction import growth
from .fingerprint import PLAN_VERSION
from .identify import can_be_parent, order_relatives, pair_closeness, same_basis
from .sketch import ScanTable, rank
from .store import open_store

MAX_MODELS = 400  # exhaustive: 80,000 pairs, about an hour on 2 cores for small models
GRAPH_K = 8  # candidate relatives per model from the sketches
GRAPH_RERANK = 32  # of which the first stage re-scores this many by the exact Gram correlation


def family_graph(db: str | None = None, seed: int = 0, max_models: int = MAX_MODELS, exhaustive: bool = False,
                 k: int = GRAPH_K) -> dict:
    t0 = time.perf_counter()
    with open_store(db) as store:
        entries = store.entries()
        if not entries:
            raise IndexStoreError(store.where, "the index holds no models; add some with `parentage index add MODEL`")
        if exhaustive and len(entries) > max_models:
            raise IndexStoreError(store.where, f"holds {len(entries):,} models; an exhaustive graph compares every "
                                               f"pair ({len(entries) * (len(entries) - 1) // 2:,}): pass --max-models "
                                               f"{len(entries)} to run it anyway, or leave out --exhaustive")
        candidates = _all_pairs(entries) if exhaustive else _sketch_pairs(store, entries, k)
        by_id = {e.id: e for e in entries}
        n_pairs = max(len(entries) * (len(entries) - 1) // 2, 1)
        penalty = math.log10(n_pairs)
        setting = f"{__version__}:plan{PLAN_VERSION}:seed{seed}"
        loaded: dict[int, object] = {}
        opened: dict[int, object] = {}

        def ck(i: int):
            if i not in opened:
                loaded[i] = store.load(by_id[i])
                opened[i] = loaded[i].open()
            return opened[i]

        try:
            related: dict[tuple[int, int], dict] = {}
            n_cached = 0
            for pair_ids in sorted(candidates):
                # oriented by digest, so a cached record reads the same whatever ids the entries have now
                i, j = sorted(pair_ids, key=lambda x: (by_id[x].digest, x))
                da, dbg = by_id[i].digest, by_id[j].digest
                record = store.pair(da, dbg, setting)
                if record is None or not _valid(record):
                    doc = compare_checkpoints(ck(i), ck(j), seed, detail=False)
                    record = {"log10_p": doc["verdict"]["log10_p"], "closeness": pair_closeness(doc),
                              "same_basis": same_basis(doc), "summary": doc["verdict"]["summary"]}
                else:
                    n_cached += 1
                p = record["log10_p"]
                corrected = None if p is None else min(0.0, p + penalty)
                if corrected is not None and corrected <= RELATED_LEVEL:
                    if "directions" not in record:
                        record["directions"] = _directions(ck(i), ck(j), seed)
                    d = record["directions"]
                    related[(i, j)] = {"log10_p": round(corrected, 2), "closeness": record["closeness"],
                                       "same_basis": record["same_basis"], "summary": d["summary"],
                                       "relation_of": {i: d["relation"]["a"], j: d["relation"]["b"]},
                                       "basis_of": {i: d["basis"]["a"], j: d["basis"]["b"]},
                                       "notes": {i: d["notes"]["a"], j: d["notes"]["b"]}}
                store.put_pair(da, dbg, setting, record)
            in_family = {x for pair in related for x in pair}
            for x in in_family:
                ck(x)
            created = {e.id: _date(loaded[e.id].meta.get("created")) if e.id in in_family else None for e in entries}
            parents = {}
            for n in sorted(in_family):
                rows = []
                for (i, j), pair in related.items():
                    if n not in (i, j):
                        continue
                    other = j if n == i else i
                    rows.append({"ref": by_id[other].ref, "label": "related", "log10_p": pair["log10_p"],
                                 "closeness": pair["closeness"], "same_basis": pair["same_basis"],
                                 "created": created[other], "relation": pair["relation_of"][other],
                                 "basis": pair["basis_of"][other], "_id": other, "_pair": (i, j)})
                ordered = order_relatives(rows, ck(n), created[n], lambda r: contextlib.nullcontext(ck(r["_id"])),
                                          seed, None, subject="this model")
                chosen = next((r for r in ordered if can_be_parent(r)), None)
                if chosen is not None:
                    parents[n] = chosen
        finally:
            for c in opened.values():
                c.close()
    ids = [e.id for e in entries]
    # the forest: each model under its chosen parent, unless that closes a loop (two undated relatives)
    tree, edges = _Sets(ids), []
    for n in ids:
        r = parents.get(n)
        if r is None or not tree.join(r["_id"], n):
            continue
        pair = related[r["_pair"]]
        kind = "weights" if r["relation"] == "ancestor" else "dates" if r["_dates"] == "before" else None
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
        "n_pairs_compared": len(candidates),
        "n_pairs_cached": n_cached,
        "stage": ("exhaustive: every pair compared" if exhaustive else
                  f"two-stage: each model compared with the {k} its sketch ranks first ({len(candidates):,} pairs)"),
        "n_related_pairs": len(related),
        "correction": f"Bonferroni over {n_pairs} pairs: log10 p + {penalty:.2f}",
        "cost": {"seconds": round(time.perf_counter() - t0, 3)},
    }


def _all_pairs(entries) -> set[tuple[int, int]]:
    ids = [e.id for e in entries]
    return {(ids[x], ids[y]) for x in range(len(ids)) for y in range(x + 1, len(ids))}


def _sketch_pairs(store, entries, k: int) -> set[tuple[int, int]]:
    """Each model with the k others its sketch ranks first (as identify's first stage), as (smaller id, larger)."""
    by_digest: dict[str, list] = {}
    for e in entries:
        by_digest.setdefault(e.digest, []).append(e)
    table = ScanTable.from_rows({d: r for d, r in store.scan_rows(entries).items() if d in by_digest}, store.where)
    sketches = {d: store.sketch(group[0]) for d, group in by_digest.items()}
    pairs = set()
    for d, group in by_digest.items():
        members = [e.id for e in group]  # one fingerprint under several names: each other's copies
        pairs |= {(min(a, b), max(a, b)) for a in members for b in members if a != b}
        near = []
        for r in rank(sketches[d], table, sketches.__getitem__, rerank=GRAPH_RERANK):
            if r.digest != d:
                near += [e.id for e in by_digest[r.digest]]
            if len(near) >= k:
                break
        pairs |= {(min(a, b), max(a, b)) for a in members for b in near[:k]}
    return pairs


def _valid(record: dict) -> bool:
    """A cached pair record of the expected shape (a damaged cache entry is recomputed, never trusted)."""
    p = record.get("log10_p")
    ok = (p is None or isinstance(p, (int, float))) and isinstance(record.get("same_basis"), bool) \
        and isinstance(record.get("summary"), str)
    d = record.get("directions")
    return ok and (d is None or (isinstance(d, dict) and {"relation", "basis", "notes", "summary"} <= set(d)))


def _date(value) -> str | None:
    return value if isinstance(value, str) else None


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
