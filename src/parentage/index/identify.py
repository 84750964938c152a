"""`parentage identify MODEL`: which indexed model does this one descend from?

1. Screen: every indexed fingerprint (A) against the query (B) with the compare tests (`detail=False`: the
   verdict's tests only), in a process pool when the index is large. The query is read once: its reads are the
   same for every candidate (the canonical plan), so they are memoised.
2. Correct: each candidate's log10 p plus log10(number of candidates) (Bonferroni), so a 100,000-model index
   does not make chance hits; `related` needs the corrected value at or below RELATED_LEVEL.
3. Order the significant candidates: those the evidence names as the query's ancestors first (an export, inserted
   layers, upcycled experts, an extended vocabulary: index/direction.py), then relatives of unknown direction,
   then the query's own descendants; within each, by closeness (how alike the paired neurons are, descriptive),
   then by log10 p. The rest follow by log10 p. `best` is the first significant candidate that is not a
   descendant, else null ("none").

Nothing is dropped before the full tests run: every candidate gets every counted test (no pre-filter).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from ..checkpoint import Checkpoint
from ..compare import compare_checkpoints
from ..errors import IndexStoreError
from ..verdict import RELATED_LEVEL
from .direction import growth
from .fingerprint import _meta
from .pool import process_pool
from .store import Entry, open_store

PARALLEL_MIN = 48  # candidates below this are screened in this process
CHUNK = 16  # candidates per task sent to a worker
FINALISTS = 32  # significant candidates given the full compare (both orders) for direction and notes


@dataclass
class Screened:
    entry_id: int
    log10_p: float | None
    label: str
    summary: str
    closeness: float | None


def _closeness(doc: dict) -> float | None:
    """The invariant closeness when the agreement test ran, else the order test's (evidence.neurons)."""
    by = {e["name"]: e for e in doc["evidence"]}
    for name in ("ffn_neuron_agreement", "ffn_neuron_order"):
        value = (by.get(name) or {}).get("details", {}).get("closeness")
        if value is not None:
            return value
    return None


def _screen_one(store, entry: Entry, q: Checkpoint, seed: int, budget: str | None) -> Screened:
    with store.load(entry).open() as a:
        doc = compare_checkpoints(a, q, seed, budget, detail=False)
    v = doc["verdict"]
    return Screened(entry.id, v["log10_p"], v["label"], v["summary"], _closeness(doc))


# -- the worker side of the pool: one store connection and one open query per process -------------------------

_WORKER: dict = {}


def _worker_init(db: str | None, query: str, seed: int, budget: str | None) -> None:
    store = open_store(db)
    q = Checkpoint.open(query)
    q.weights.memo = {}
    _WORKER.update(store=store, q=q, seed=seed, budget=budget, entries={e.id: e for e in store.entries()})


def _worker_run(ids: list[int]) -> list[Screened]:
    w = _WORKER
    return [_screen_one(w["store"], w["entries"][i], w["q"], w["seed"], w["budget"]) for i in ids]


def identify(query: str, db: str | None = None, top: int = 5, seed: int = 0, budget: str | None = None,
             workers: int | None = None) -> dict:
    t0 = time.perf_counter()
    with open_store(db) as store:
        entries = store.entries()
        if not entries:
            raise IndexStoreError(store.where, "the index holds no models; add some with `parentage index add MODEL`")
        with Checkpoint.open(query) as q:
            q.weights.memo = {}  # the canonical plan reads the same rows of the query for every candidate
            own = _meta(q)["commit"]
            itself = [e for e in entries if e.commit == own]
            entries = [e for e in entries if e.commit != own]
            if not entries:
                raise IndexStoreError(store.where, "the index holds only the query itself")
            n = len(entries)
            workers = workers or os.cpu_count() or 1
            if n >= PARALLEL_MIN and workers > 1:
                chunks = [[e.id for e in entries[i:i + CHUNK]] for i in range(0, n, CHUNK)]
                with process_pool(workers, _worker_init, (db, query, seed, budget)) as pool:
                    screened = [s for part in pool.map(_worker_run, chunks) for s in part]
            else:
                screened = [_screen_one(store, e, q, seed, budget) for e in entries]
            by_id = {e.id: e for e in entries}
            penalty = math.log10(n)
            rows = [_row(by_id[s.entry_id], s, penalty) for s in screened]
            significant = sorted((r for r in rows if r["label"] == "related"), key=lambda r: r["log10_p"])
            best_doc = None
            for r in significant[:FINALISTS]:
                r["relation"], r["basis"], doc = _direction(store, by_id[r["_id"]], q, seed, budget)
                best_doc = best_doc or doc
                r["_doc"] = doc
            ordered = sorted(significant, key=_rank) + sorted((r for r in rows if r["label"] != "related"),
                                                              key=lambda r: (r["log10_p"] is None, r["log10_p"] or 0.0))
            best = next((r for r in ordered if r["label"] == "related" and r["relation"] != "descendant"), None)
            cost = q.cost()
    notes = [f"the query itself is indexed ({', '.join(e.ref for e in itself)}) and was left out"] if itself else []
    out_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in ordered[:max(top, 1)]]
    return {
        "schema_version": 1,
        "query": query,
        "candidates": out_rows,
        "best": best["ref"] if best else None,
        "best_relation": best["relation"] if best else None,  # ancestor, or relative (direction not determined)
        "best_alignment": (best["_doc"]["alignment"] if best and best.get("_doc") else None),
        "n_candidates": n,
        "correction": f"Bonferroni over {n} candidates: log10 p + {penalty:.2f}",
        "notes": notes,
        "cost": {"bytes_read": cost["bytes_read"], "bytes_total": cost["bytes_total"],
                 "bytes_transferred": cost["bytes_transferred"], "seconds": round(time.perf_counter() - t0, 3)},
    }


def _row(e: Entry, s: Screened, penalty: float) -> dict:
    corrected = None if s.log10_p is None else min(0.0, s.log10_p + penalty)
    if corrected is not None and corrected <= RELATED_LEVEL:
        label = "related"
    elif s.label == "related":
        label = "inconclusive"  # significant alone, not after the correction for the number of candidates
    else:
        label = s.label
    return {"ref": e.ref, "commit": e.commit, "log10_p": None if corrected is None else round(corrected, 2),
            "log10_p_pair": s.log10_p, "label": label, "summary": s.summary, "closeness": s.closeness,
            "relation": None, "basis": None, "_id": e.id}


RELATION_ORDER = {"ancestor": 0, "relative": 1, None: 1, "descendant": 2}


def _rank(r: dict) -> tuple:
    c = r["closeness"]
    return RELATION_ORDER[r["relation"]], c is None, -(c or 0.0), r["log10_p"]


def _direction(store, entry: Entry, q: Checkpoint, seed: int, budget: str | None) -> tuple[str, str | None, dict]:
    """The full compare both ways; which side (if any) the evidence says was made from the other."""
    with store.load(entry).open() as a:
        forward = compare_checkpoints(a, q, seed, budget)  # A = candidate, B = query
        backward = compare_checkpoints(q, a, seed, budget)
        query_from_candidate = growth(a, q, forward, "the candidate", "the query")
        candidate_from_query = growth(q, a, backward, "the query", "the candidate")
    if query_from_candidate and not candidate_from_query:
        return "ancestor", "; ".join(query_from_candidate), forward
    if candidate_from_query and not query_from_candidate:
        return "descendant", "; ".join(candidate_from_query), forward
    return "relative", None, forward
