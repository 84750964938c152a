"""`parentage identify MODEL`: which indexed model does this one descend from?

1. Screen: every indexed fingerprint (A) against the query (B) with the compare tests (`detail=False`: the
   verdict's tests only), in a process pool when the index is large. The query is read once: its reads are the
   same for every candidate (the canonical plan), so they are memoised.
2. Correct: each candidate's log10 p plus log10(number of candidates) (Bonferroni), so a 100,000-model index
   does not make chance hits; `related` needs the corrected value at or below RELATED_LEVEL.
3. Order the significant candidates (`order_relatives`): ancestors by the weights first (the query is an
   export of them, has layers inserted, experts upcycled, an extended vocabulary, or is a merge of two of them:
   index/direction.py); then relatives whose files were written before the query, earliest first (file dates:
   circumstantial); undated ones; relatives written after the query; descendants. Within each, relatives in the
   query's basis first, then by closeness (how alike the paired neurons are, descriptive), then by log10 p. The
   rest follow by log10 p. `best` is the first significant candidate in the first three groups, else null.

Nothing is dropped before the full tests run: every candidate gets every counted test (no pre-filter).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from ..checkpoint import Checkpoint
from ..pair import compare_checkpoints
from ..errors import IndexStoreError
from ..verdict import RELATED_LEVEL
from .direction import ffn_vector, growth, is_merge, merge_weight
from .fingerprint import source_meta
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
    created: str | None  # the candidate's file date (circumstantial)
    same_basis: bool  # the order tests see kinship as stored: no re-parameterisation between the two


def pair_closeness(doc: dict) -> float | None:
    """The invariant closeness when the agreement test ran, else the order test's (evidence.neurons)."""
    by = {e["name"]: e for e in doc["evidence"]}
    for name in ("ffn_neuron_agreement", "ffn_neuron_order"):
        value = (by.get(name) or {}).get("details", {}).get("closeness")
        if value is not None:
            return value
    return None


def _screen_one(store, entry: Entry, q: Checkpoint, seed: int, budget: str | None) -> Screened:
    fp = store.load(entry)
    with fp.open() as a:
        doc = compare_checkpoints(a, q, seed, budget, detail=False)
    v = doc["verdict"]
    created = fp.meta.get("created") if isinstance(fp.meta.get("created"), str) else None
    return Screened(entry.id, v["log10_p"], v["label"], v["summary"], pair_closeness(doc), created, same_basis(doc))


def same_basis(doc: dict) -> bool:
    """Whether the exact order tests see the kinship, i.e. hidden units kept their labels between the two. A
    re-parameterisation (rotated residual stream, relabelled neurons) is a step of its own on the path: a
    relative in the query's basis is nearer to it than one that needs the invariant test to be seen."""
    by = {e["name"]: e for e in doc["evidence"]}
    return any((by.get(n) or {}).get("log10_p") is not None and by[n]["log10_p"] <= RELATED_LEVEL
               for n in ("hidden_dimension_order", "ffn_neuron_order"))


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
            meta = source_meta(q)
            own, q_created = meta["commit"], meta["created"]
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
            significant = [r for r in rows if r["label"] == "related"]
            significant = order_relatives(significant, q, q_created, lambda r: store.load(by_id[r["_id"]]).open(),
                                          seed, budget)
            ordered = significant + sorted((r for r in rows if r["label"] != "related"),
                                           key=lambda r: (r["log10_p"] is None, r["log10_p"] or 0.0))
            best = next((r for r in significant if r["_group"] <= 2), None)
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
            "relation": None, "basis": None, "created": s.created, "same_basis": s.same_basis, "_id": e.id}


def _date_order(r: dict, q_created: str | None, subject: str = "the query") -> None:
    """Where the weights give no direction, the file dates may (circumstantial): a relative written before the
    query can be its ancestor, one written after cannot."""
    r["_group"] = {"ancestor": 0, "descendant": 4}.get(r["relation"], 2)
    if r["relation"] in ("relative", None) and r["created"] and q_created:
        before = r["created"] < q_created
        r["_group"] = 1 if before else 3
        if r["relation"] == "relative":
            r["basis"] = (f"written {r['created'][:19]}, {'before' if before else 'after'} {subject} "
                          f"({q_created[:19]}): file dates are circumstantial; the weights do not say which came first")


def _rank(r: dict) -> tuple:
    """Ancestors, then relatives dated before the query (earliest first: a family's first member is an
    ancestor of every later one, a sibling is not), undated ones, later ones, descendants; within each, those
    in the query's basis first; then closeness."""
    c = r["closeness"]
    early = r["created"] if r["_group"] in (0, 1) and r["created"] else "~"
    return r["_group"], not r["same_basis"], early, c is None, -(c or 0.0), r["log10_p"]


def order_relatives(significant: list[dict], q: Checkpoint, q_created: str | None, open_candidate, seed: int,
                    budget: str | None, subject: str = "the query") -> list[dict]:
    """The significant candidates in the order of the module docstring, each with its relation and basis
    (which calls the model they are relatives of `subject`). `open_candidate(row)` gives the candidate's
    Checkpoint as a context manager."""
    significant = sorted(significant, key=lambda r: r["log10_p"])
    for r in significant[:FINALISTS]:
        if r.get("relation") is None:  # graph has found it already, for every pair at once
            with open_candidate(r) as a:
                r["relation"], r["basis"], r["_doc"] = _direction(a, q, seed, budget)
    _merges(open_candidate, q, significant, subject)
    for r in significant:
        _date_order(r, q_created, subject)
    # a relative written after the query (group 3) sorts after those it may come from, and is never `best`
    return sorted(significant, key=_rank)


MERGE_CANDIDATES = 8  # significant candidates in the query's basis tried pairwise as the ingredients of a merge


def _merges(open_candidate, q: Checkpoint, significant: list[dict], subject: str) -> None:
    """Mark the ingredients, if the query is a weighted average of two related candidates (the earliest pair
    that fits, so a merge is credited to the models, not to later copies of them)."""
    vq = ffn_vector(q)
    if vq is None:
        return
    near = [r for r in significant if r["same_basis"] and r["relation"] != "descendant"]
    near = sorted(near, key=lambda r: (r["created"] or "~", -(r["closeness"] or 0.0)))[:MERGE_CANDIDATES]
    vectors = {}
    for r in near:
        with open_candidate(r) as ck:
            vectors[r["ref"]] = ffn_vector(ck)
    for i, x in enumerate(near):
        for y in near[i + 1:]:
            vx, vy = vectors[x["ref"]], vectors[y["ref"]]
            fit = merge_weight(vq, vx, vy) if vx is not None and vy is not None else None
            if is_merge(fit):
                a, residual = fit
                for r, w, other in ((x, a, y), (y, 1 - a, x)):
                    r["relation"] = "ancestor"
                    r["basis"] = (f"{subject} is a weighted average of this ({w:.2f}) and {other['ref']} "
                                  f"({1 - w:.2f}), to within {residual:.0%} of its distance from either: a merge")
                return


def _direction(a: Checkpoint, q: Checkpoint, seed: int, budget: str | None) -> tuple[str, str | None, dict]:
    """The full compare both ways; which side (if any) the evidence says was made from the other."""
    forward = compare_checkpoints(a, q, seed, budget)  # A = candidate, B = query
    backward = compare_checkpoints(q, a, seed, budget)
    query_from_candidate = growth(a, q, forward, "the candidate", "the query")
    candidate_from_query = growth(q, a, backward, "the query", "the candidate")
    if query_from_candidate and not candidate_from_query:
        return "ancestor", "; ".join(query_from_candidate), forward
    if candidate_from_query and not query_from_candidate:
        return "descendant", "; ".join(candidate_from_query), forward
    return "relative", None, forward
