"""`parentage identify MODEL`: which indexed model does this one descend from?

1. Screen: every indexed fingerprint (A) against the query (B) with the compare tests (`detail=False`: the
   verdict's tests only), in a process pool when the index is large. The query is read once: its reads are the
   same for every candidate (the canonical plan), so they are memoised.
2. Correct: each candidate's log10 p plus log10(number of candidates) (Bonferroni), so a 100,000-model index
   does not make chance hits; `related` needs the corrected value at or below RELATED_LEVEL.
3. Order the significant candidates (`order_relatives`): the weights first (ancestors by growth, exports,
   inserted layers, upcycled experts, an extended vocabulary or a merge: index/direction.py; then the relative
   the weights put between the query and every other relative; then relatives in the query's basis), dates
   after (written before the query, no information, written after), then closeness and log10 p. `best` is the
   first significant candidate: a date orders and labels, it never vetoes evidence. The candidates nothing
   orders apart from it are named with it (`best_or`: the parent, or a sibling of the query).

The first stage (`shortlist`) ranks every indexed model by its sketch (index/sketch.py) and gives the full tests
to the first K; the correction is still for the whole index. `exhaustive=True` gives every candidate every
counted test.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ..checkpoint import Checkpoint
from ..pair import compare_checkpoints
from ..errors import IndexStoreError
from ..verdict import RELATED_LEVEL
from .direction import ffn_vector, growth, is_merge, merge_weight
from .fingerprint import FLOAT_TYPES, source_meta
from .pool import process_pool
from .sketch import SCAN_ROW, ScanTable, Sketch, rank, take_sketch
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
    quantized: bool = False  # its matrices are stored quantised (a cue: such models are nearly always leaves)
    shape: tuple = ()  # (layers, width, FFN width, experts): whether it has the query's own structure


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
    return Screened(entry.id, v["log10_p"], v["label"], v["summary"], pair_closeness(doc), created, same_basis(doc),
                    is_quantized(fp.meta["infos"]), shape_of(fp.meta["summary"]))


def shape_of(summary: dict) -> tuple:
    return tuple(summary.get(k) for k in ("n_layers", "hidden_size", "intermediate_size", "n_experts"))


def is_quantized(infos: list) -> bool:
    """Whether a fingerprint's tensor table stores any matrix in a quantised type."""
    return any(len(shape) == 2 and dtype not in FLOAT_TYPES for _, dtype, shape, _ in infos)


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


SHORTLIST_BYTES = 900_000_000  # fingerprint bytes the full tests may load per query: 10 of 87 MB (7B models),
# which with the sketches read keeps a query of an index of 1,000 7B models under 1 GB
SHORTLIST_MIN, SHORTLIST_MAX = 8, 64  # candidates given the full tests, whatever their size


def shortlist(store, entries: list[Entry], q: Checkpoint, k: int | None = None) -> tuple[list[Entry], dict]:
    """The first stage: every entry's sketch against the query's; the entries the full tests will see, in the
    sketch's order (index/sketch.py), as many as fit SHORTLIST_BYTES (at least SHORTLIST_MIN, at most
    SHORTLIST_MAX) or `k`; and what the stage read."""
    by_digest: dict[str, list[Entry]] = {}
    for e in entries:
        by_digest.setdefault(e.digest, []).append(e)
    rows = store.scan_rows(entries)
    table = ScanTable.from_rows({d: rows[d] for d in by_digest}, store.where)
    q_sketch = take_sketch(q)
    loaded: list[int] = []

    def load(digest: str) -> Sketch:
        sk = store.sketch(by_digest[digest][0])
        loaded.append(sk.n_bytes)
        return sk

    ranked = rank(q_sketch, table, load)
    chosen, scores, total = [], {}, 0
    for r in ranked:
        group = by_digest[r.digest]
        size = sum(e.n_bytes for e in group)
        full = len(chosen) >= (k or SHORTLIST_MAX) or (k is None and len(chosen) >= SHORTLIST_MIN
                                                        and total + size > SHORTLIST_BYTES)
        if full:
            break
        chosen += group
        total += size
        for e in group:
            scores[e.id] = {"rank": len(scores) + 1, "gram": None if r.gram is None else round(r.gram, 4),
                            "copied": round(r.copied, 4), "nearness": None if r.nearness is None else round(r.nearness, 4)}
    info = {"k": len(chosen), "of": len(entries), "fingerprint_bytes": total,
            "sketch_bytes": len(table.digests) * SCAN_ROW + sum(loaded), "scores": scores}
    return chosen, info


def identify(query: str, db: str | None = None, top: int = 5, seed: int = 0, budget: str | None = None,
             workers: int | None = None, exhaustive: bool = False, k: int | None = None,
             also: set[str] | None = None) -> dict:
    """`also`: refs given the full tests whatever their sketches say (verify's declared bases)."""
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
            if exhaustive:
                chosen, stage = entries, {"k": n, "of": n, "fingerprint_bytes": sum(e.n_bytes for e in entries),
                                          "sketch_bytes": 0, "scores": {}}
            else:
                chosen, stage = shortlist(store, entries, q, k)
                chosen += [e for e in entries if also and e.ref in also and e not in chosen]
            workers = workers or os.cpu_count() or 1
            if len(chosen) >= PARALLEL_MIN and workers > 1:
                chunks = [[e.id for e in chosen[i:i + CHUNK]] for i in range(0, len(chosen), CHUNK)]
                with process_pool(workers, _worker_init, (db, query, seed, budget)) as pool:
                    screened = [s for part in pool.map(_worker_run, chunks) for s in part]
            else:
                screened = [_screen_one(store, e, q, seed, budget) for e in chosen]
            by_id = {e.id: e for e in entries}
            penalty = math.log10(n)
            rows = [_row(by_id[s.entry_id], s, penalty) for s in screened]
            for r in rows:
                r["sketch"] = stage["scores"].get(r["_id"])
            significant = [r for r in rows if r["label"] == "related"]
            significant = order_relatives(significant, q, q_created, lambda r: store.load(by_id[r["_id"]]).open(),
                                          seed, budget)
            ordered = significant + sorted((r for r in rows if r["label"] != "related"),
                                           key=lambda r: (r["log10_p"] is None, r["log10_p"] or 0.0))
            best = significant[0] if significant else None  # dates order and label; they never veto
            cost = q.cost()
    notes = [f"the query itself is indexed ({', '.join(e.ref for e in itself)}) and was left out"] if itself else []
    answer = best_answer(significant)
    out_rows = [{key: v for key, v in r.items() if not key.startswith("_")} for r in ordered[:max(top, 1)]]
    return {
        "schema_version": 1,
        "query": query,
        "candidates": out_rows,
        "best": best["ref"] if best else None,
        "best_relation": best["relation"] if best else None,  # ancestor, descendant, or relative (not determined)
        "best_direction_from": answer["direction_from"],  # weights, dates (circumstantial), or null
        "best_or": answer["or"],  # the candidates the weights and dates cannot tell from `best` (maybe none)
        "answer": answer["sentence"],
        "best_alignment": (best["_doc"]["alignment"] if best and best.get("_doc") else None),
        "n_candidates": n,
        "correction": f"Bonferroni over {n} candidates: log10 p + {penalty:.2f}",
        "stage": ("exhaustive: every indexed model given the full tests" if exhaustive else
                  f"two-stage: {stage['k']} of {n} indexed models given the full tests, in the order of their "
                  f"sketches"),
        "shortlist": {key: v for key, v in stage.items() if key != "scores"},
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
            "relation": None, "basis": None, "created": s.created, "same_basis": s.same_basis, "quantized": s.quantized, "_shape": s.shape,
            "_id": e.id}


# -- ordering the significant candidates ------------------------------------------------------------------------
#
# Each significant candidate gets a key of evidence first, circumstance last:
#   weights: 0 an ancestor by the weights (growth or merge), 1 undirected, 2 a descendant by the weights;
#   between: 0 the weights put it between the query and every other relative (see `_betweenness`), else 1;
#   dates:   0 written before the query, 1 no information (missing or equal dates), 2 written after;
#   basis:   relatives in the query's basis first (a re-parameterisation is a step of its own on the path);
#   cue:     quantized models after the rest (they are nearly always leaves: 99.4% on the hub, Model Atlas, arXiv
#            2503.10633; true of every quantized model of the zoo). A cue orders, it is never counted;
#   then earliest first among those dated before, then closeness, then log10 p.
# A date only orders and labels: nothing here removes a candidate, and `best` is the first one.

DATE_GROUPS = {"before": 0, None: 1, "after": 2}
BETWEEN_COS = 0.25  # |cos| of the query's and another relative's offsets from a candidate below which it sits between
BETWEEN_MARGIN = 0.2  # ... and the runner-up must sit at least this much further off the line
COPY_SHARE = 0.01  # a relative nearer the query than this share of its FFN rows' norm is a copy of them
SAME_POINT = 0.05  # relatives nearer each other than this share of the query's distance count as one point
BETWEEN_CANDIDATES = 8  # relatives in the query's basis given the test (one vector of leading FFN rows each)


def date_relation(created: str | None, q_created: str | None) -> str | None:
    """'before' or 'after' when both dates are known and differ; None (no information) otherwise."""
    if not created or not q_created or created[:19] == q_created[:19]:
        return None
    return "before" if created < q_created else "after"


def _date_label(r: dict, q_created: str | None, subject: str) -> None:
    r["_dates"] = date_relation(r["created"], q_created)
    if r["relation"] == "relative" and not r.get("basis"):
        if r["_dates"]:
            r["basis"] = (f"written {r['created'][:19]}, {r['_dates']} {subject} ({q_created[:19]}): file dates are "
                          f"circumstantial; the weights do not say which came first")
        elif r["created"] and q_created:
            r["basis"] = f"written at the same second as {subject}: the dates do not order them, nor do the weights"


def _rank(r: dict) -> tuple:
    c = r["closeness"]
    weights = -1 if r.get("_alike") else {"ancestor": 0, "descendant": 2}.get(r["relation"], 1)
    # earliest first among relatives dated before, and among ancestors by structure (a family's first member
    # is an ancestor of every later one); an export's source is the nearest of its ancestors, not the earliest
    export = r["relation"] == "ancestor" and not _structural(r)
    early = r["created"] if r["_dates"] == "before" and not export else "~"
    dated = r["created"] if r["_dates"] == "before" else "~"
    # the last keys make the order the same whatever order the candidates came in (shortlist or exhaustive)
    return (weights, not r.get("_between"), DATE_GROUPS[r["_dates"]], not r["same_basis"], bool(r.get("quantized")),
            early, c is None, -(c or 0.0), dated, r["log10_p"], r["ref"])


CLOSE_TIE = 0.01  # closeness (evidence.neurons) differences below this do not order two relatives


def _standing(r: dict) -> tuple:
    return _rank(r)[:6]  # weights, between, dates, basis, cue, earliest: everything but closeness and p


# Growth the weights see relative to a structure, not to one model: every relative with the original depth,
# dense FFNs or vocabulary is "grown from" alike, so these name the family's structure, not which member.
STRUCTURAL = ("layers inserted", "upcycled", "vocabulary extends")


def _structural(r: dict) -> bool:
    return r["relation"] == "ancestor" and any(k in (r.get("basis") or "") for k in STRUCTURAL)


def ties_of(ordered: list[dict]) -> list[dict]:
    """The candidates after the first that nothing orders apart from it: the same standing by the weights, the
    cue and the dates, and a closeness within CLOSE_TIE; for an ancestor by structural growth, every other such
    ancestor of the same date standing (the growth says which structure the query grew from, not which model)."""
    if not ordered:
        return []
    best = ordered[0]
    c0 = best["closeness"]
    if _structural(best):
        return [r for r in ordered[1:] if _structural(r) and r["_dates"] == best["_dates"]]
    return [r for r in ordered[1:] if _standing(r) == _standing(best)
            and ((c0 is None and r["closeness"] is None)
                 or (c0 is not None and r["closeness"] is not None and c0 - r["closeness"] <= CLOSE_TIE))]


def best_answer(ordered: list[dict]) -> dict:
    """What the first of the ordered candidates is to the query, what that rests on, and the candidates that
    nothing orders apart from it (`ties_of`): the parent, or a sibling of the query, when neither the weights
    nor the dates order them."""
    if not ordered:
        return {"direction_from": None, "or": [],
                "sentence": "none: no indexed model is a significant ancestor or relative"}
    best = ordered[0]
    tied = [r["ref"] for r in ties_of(ordered)]
    more = ""
    if tied:
        named = ", ".join(tied[:3]) + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
        more = f" (or {named}: nothing in the weights or dates orders them)"
    if best.get("_alike"):
        others = [r["ref"] for r in ordered[1:] if r.get("_alike") or _structural(r)]
        return {"direction_from": "weights", "or": others,
                "sentence": f"grew as {best['ref']} did, from the structure of "
                            f"{', '.join(others[:3])}{f' and {len(others) - 3} more' if len(others) > 3 else ''}: "
                            f"{best['ref']} is its parent, a sibling grown alike, or a child"}
    if _structural(best) and tied:
        named = ", ".join(tied[:3]) + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
        return {"direction_from": "weights", "or": tied,
                "sentence": f"grew from the structure {best['ref']} shares with {named} ({best['basis']}): it descends "
                            f"from one of them; the weights do not say which"
                            + (", the dates put it first" if best["_dates"] == "before" else "")}
    if best["relation"] == "ancestor":
        return {"direction_from": "weights", "or": tied, "sentence": f"descends from {best['ref']}{more}"}
    if best["relation"] == "descendant":
        return {"direction_from": "weights", "or": tied,
                "sentence": f"is an ancestor of {best['ref']} (the weights say {best['ref']} was made from it){more}"}
    if best.get("_between"):
        return {"direction_from": "weights", "or": tied,
                "sentence": f"nearest to {best['ref']} on the path to its other relatives: its parent, unless it is "
                            f"a child{more}"}
    if best["_dates"] == "before":
        return {"direction_from": "dates", "or": tied,
                "sentence": f"shares weight ancestry with {best['ref']}, written before it (file dates, circumstantial): "
                            f"likely its parent; the weights do not say which came first{more}"}
    after = ", written after it (file dates, circumstantial)" if best["_dates"] == "after" else ""
    if tied and after:
        return {"direction_from": None, "or": tied,
                "sentence": f"shares weight ancestry with {best['ref']}{after}: a child or another relative{more}"}
    if tied:
        return {"direction_from": None, "or": tied,
                "sentence": f"shares weight ancestry with {best['ref']}, or with {', '.join(tied[:3])}"
                            f"{f' and {len(tied) - 3} more' if len(tied) > 3 else ''} as closely: its parent, or a "
                            f"sibling or child; nothing in the weights or dates orders them"}
    return {"direction_from": None, "or": [],
            "sentence": f"shares weight ancestry with {best['ref']}{after}; the weights do not say which came first"}


def can_be_parent(r: dict) -> bool:
    """Neither a descendant by the weights nor written after the query (what graph hangs a model under)."""
    return r["relation"] != "descendant" and r["_dates"] != "after"


def order_relatives(significant: list[dict], q: Checkpoint, q_created: str | None, open_candidate, seed: int,
                    budget: str | None, subject: str = "the query") -> list[dict]:
    """The significant candidates in the order above, each with its relation and basis (which calls the model
    they are relatives of `subject`). `open_candidate(row)` gives the candidate's Checkpoint as a context
    manager."""
    significant = sorted(significant, key=lambda r: r["log10_p"])
    for r in significant[:FINALISTS]:
        if r.get("relation") is None:  # graph has found it already, for every pair at once
            with open_candidate(r) as a:
                r["relation"], r["basis"], r["_doc"] = _direction(a, q, seed, budget)
    _merges(open_candidate, q, significant, subject)
    for r in significant:
        r["relation"] = r.get("relation") or "relative"
        _date_label(r, q_created, subject)
    _grown_alike(significant, q, subject)
    _betweenness(open_candidate, q, significant, subject)
    return sorted(significant, key=_rank)


def _grown_alike(significant: list[dict], q: Checkpoint, subject: str) -> None:
    """Where the weights say the query grew from a structure (layers inserted, experts upcycled, tokens added),
    a relative that already has the query's own grown structure (layers, widths and experts, which none of the
    structural ancestors has) was grown the same way: the query's parent, or a sibling grown alike. It is
    ranked before them. (Closeness is not compared: an MoE pair's and a dense-to-MoE pair's are not alike.)"""
    grown = [r for r in significant if _structural(r)]
    if not grown:
        return
    own = shape_of(vars(q.summary))
    bases = {r.get("_shape") for r in grown}
    for r in significant:
        if r["relation"] == "relative" and r.get("_shape") == own and own not in bases and r["_dates"] != "after":
            r["_alike"] = True
            r["basis"] = (f"has {subject}'s own structure, grown as {subject} was from its relatives "
                          f"({grown[0]['basis']}): its parent, a sibling grown alike, or a child")


def _betweenness(open_candidate, q: Checkpoint, significant: list[dict], subject: str) -> None:
    """Mark the relative that sits between the query and every other relative, if one clearly does.

    Updates from a common base are independent: for a parent P of the query Q and any other relative X (a
    sibling, P's own parent, a child of P), Q - P and X - P are nearly orthogonal, while for a sibling S of Q,
    (Q - S) . (P - S) = |S - P|^2 > 0. So the parent is the candidate whose offsets to the query and to every
    other relative meet at a right angle, where the weights (same basis, same shapes) can be compared at all.
    Measured on the zoo before use (benchmarks/BENCHMARKS.md); it orders, it never labels a relation."""
    pool = [r for r in significant if r["relation"] == "relative" and r["same_basis"]]
    pool = sorted(pool, key=lambda r: -(r["closeness"] or 0.0))[:BETWEEN_CANDIDATES]
    if len(pool) < 2:
        return
    vq = ffn_vector(q)
    if vq is None:
        return
    vectors = {}
    for r in pool:
        with open_candidate(r) as ck:
            v = ffn_vector(ck)
        if v is not None and v.shape == vq.shape:
            vectors[r["ref"]] = v
    if len(vectors) < 2:
        return
    # a relative whose FFNs are the query's to within COPY_SHARE (an export, a vocabulary pruned) is a copy of
    # it: its offset is rounding noise, at no angle to anything
    scale = float(np.linalg.norm(vq))
    vectors = {ref: v for ref, v in vectors.items() if np.linalg.norm(vq - v) > COPY_SHARE * scale}
    worst = {}
    for ref, v in vectors.items():
        dq = vq - v
        # another relative at the same point (FFNs untouched: a vocabulary pruned, an export) says nothing
        others = [w - v for other, w in vectors.items() if other != ref
                  and np.linalg.norm(w - v) > SAME_POINT * max(float(np.linalg.norm(dq)), 1e-30)]
        if not others or np.linalg.norm(dq) == 0:
            continue
        worst[ref] = max(abs(float(dq @ d)) / float(np.linalg.norm(dq) * np.linalg.norm(d)) for d in others)
    if len(worst) < 2:
        return
    ranked = sorted(worst, key=worst.get)
    first = ranked[0]
    rivals = [r for r in ranked[1:] if np.linalg.norm(vectors[r] - vectors[first])
              > SAME_POINT * float(np.linalg.norm(vq - vectors[first]))]
    if not rivals:
        return
    second = rivals[0]
    for r in pool:
        r["_between_cos"] = round(worst.get(r["ref"], float("nan")), 3)
    if worst[first] <= BETWEEN_COS and worst[second] - worst[first] >= BETWEEN_MARGIN:
        same = [r for r in pool if r["ref"] in vectors and np.linalg.norm(vectors[r["ref"]] - vectors[first])
                <= SAME_POINT * float(np.linalg.norm(vq - vectors[first]))]
        sentence = (f"sits between {subject} and every other relative in its basis (their offsets from it meet "
                      f"at {math.degrees(math.acos(min(worst[first], 1.0))):.0f} degrees or more): the weights make "
                      f"it the nearest relative on the path to them: the parent of {subject}, unless it is a child")
        for r in same:  # the point that sits between, and every relative at it
            r["_between"], r["basis"] = True, sentence


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
