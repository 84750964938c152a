"""`parentage verify MODEL`: does what the model's files declare about its base match what its weights say?

Declared lineage: the model card's `base_model`, GGUF `general.base_model.*`, mergekit configs and a config's
`base_model` (circumstantial.declared_bases). Observed: `identify` over the index. Statuses, and the exit
status an upload pipeline can gate on:

- `consistent` (0): a declared base is indexed and the weights relate the model to it; or nothing is declared
  and no indexed model is related;
- `undeclared_parent` (3): the weights relate the model to an indexed model it does not declare (it declares
  none, or another);
- `unsupported_claim` (4): a declared base is indexed, tests with the power to see kinship ran, and they found
  none;
- `unknown` (0): the declared base is not indexed and nothing indexed is related, or the tests lacked power.
"""

from __future__ import annotations

from ..checkpoint import Checkpoint
from ..circumstantial import declared_bases, mentions
from .identify import identify
from .store import Entry, open_store

EXIT_STATUS = {"consistent": 0, "unknown": 0, "undeclared_parent": 3, "unsupported_claim": 4}


def entry_names(e: Entry) -> set[str]:
    """The names an indexed model goes by: its ref (and last path part), and its GGUF general.name."""
    names = {e.ref, e.ref.rstrip("/").split("/")[-1]}
    gguf = e.declared.get("gguf") or {}
    names |= {gguf[k] for k in ("general.name", "general.basename") if isinstance(gguf.get(k), str)}
    return {n.strip().lower() for n in names if n and n.strip()}


def verify(model: str, db: str | None = None, seed: int = 0, budget: str | None = None, workers: int | None = None) -> dict:
    with Checkpoint.open(model) as ck:
        declared = declared_bases(ck)
    with open_store(db) as store:
        entries = store.entries()
    # the declared bases get the full tests even where the sketch would rank them out of the shortlist
    said = {e.ref for e in entries if declared and mentions(declared, entry_names(e))}
    doc = identify(model, db, top=len(entries), seed=seed, budget=budget, workers=workers, also=said)
    by_ref = {c["ref"]: c for c in doc["candidates"]}
    named = [e for e in entries if declared and mentions(declared, entry_names(e)) and e.ref in by_ref]
    related = [c for c in doc["candidates"] if c["label"] == "related" and c["relation"] != "descendant"]
    if named:
        hits = [by_ref[e.ref] for e in named if by_ref[e.ref]["label"] == "related"]
        if hits:
            status, reason = "consistent", f"declares {', '.join(declared)}; the weights relate it to {hits[0]['ref']} (log10 p {hits[0]['log10_p']})"
        elif all(by_ref[e.ref]["label"] == "unrelated" for e in named):
            status = "unsupported_claim"
            reason = (f"declares {', '.join(declared)}; the weights show no shared ancestry with "
                      f"{', '.join(e.ref for e in named)} in tests that would have seen it")
            if related:
                reason += f" (they relate it to {related[0]['ref']} instead)"
        else:
            status, reason = "unknown", f"declares {', '.join(declared)}; the tests against it were inconclusive"
    elif related:
        best = related[0]
        said = f"declares {', '.join(declared)} (not indexed)" if declared else "declares no base model"
        kin = "descends from" if best["relation"] == "ancestor" else "shares weight ancestry with"
        status, reason = "undeclared_parent", f"{said}; the weights say it {kin} {best['ref']} (log10 p {best['log10_p']})"
    elif declared:
        status, reason = "unknown", f"declares {', '.join(declared)}, which is not indexed; no indexed model is related"
    else:
        status, reason = "consistent", "declares no base model, and no indexed model is related"
    return {"schema_version": 1, "model": model, "status": status, "exit_status": EXIT_STATUS[status],
            "reason": reason, "declared": declared, "observed": [c["ref"] for c in related],
            "identify": doc}
