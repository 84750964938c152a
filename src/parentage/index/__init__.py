"""The fingerprint index: fingerprints (the canonical plan's rows of each model), their store, and the queries
over it (identify, verify, graph).

    from parentage.index import add_models, open_store
    add_models(["./base", "org/name@main"], db="team.sqlite")
"""

from __future__ import annotations

import os
import time
from concurrent.futures import as_completed

from ..checkpoint import Checkpoint
from ..errors import ParentageError
from .fingerprint import Fingerprint, source_meta, take
from .pool import process_pool
from .store import Entry, open_store

__all__ = ["Entry", "Fingerprint", "add_model", "add_models", "open_store", "read_ref_list", "take"]


def add_model(ref: str, db: str | None = None, replace: bool = False, store=None) -> dict:
    """Fingerprint one model into the index; idempotent per (ref, commit): an indexed one is not read again."""
    t0 = time.perf_counter()
    own = store is None
    store = store or open_store(db, create=True)
    try:
        with Checkpoint.open(ref) as ck:
            commit = source_meta(ck)["commit"]
            if not replace and store.has(ck.ref, commit):
                return {"ref": ref, "commit": commit, "status": "indexed already", "n_bytes": None, "seconds": 0.0}
            fp = take(ck)
            cost = ck.cost()
        added = store.add(fp, replace=replace)
        return {"ref": ref, "commit": commit, "status": "added" if added else "indexed already",
                "n_bytes": fp.n_bytes, "bytes_read": cost["bytes_read"], "bytes_total": cost["bytes_total"],
                "seconds": round(time.perf_counter() - t0, 3)}
    finally:
        if own:
            store.close()


def _add_one(args: tuple) -> dict:
    ref, db, replace = args
    try:
        return add_model(ref, db, replace)
    except ParentageError as e:  # one bad model does not stop a run over thousands; it is reported
        return {"ref": ref, "commit": None, "status": "failed", "error": str(e)}


def add_models(refs: list[str], db: str | None = None, replace: bool = False, workers: int | None = None,
               ray: str | None = None, on_result=None) -> list[dict]:
    """Fingerprint many models: in this process for a few, else a local process pool (or a Ray cluster, with
    `ray`). Each model is written in its own transaction, so a killed run keeps every finished entry and no
    partial one, and running it again skips what is indexed (resumable)."""
    open_store(db, create=True).close()  # create (and migrate) once, before workers race to
    jobs = [(ref, db, replace) for ref in refs]
    results: list[dict] = []
    done = on_result or (lambda r: None)
    if ray is not None:
        from .scale import run_on_ray

        for r in run_on_ray(jobs, ray):
            results.append(r)
            done(r)
        return results
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1 or len(jobs) < 3:
        for job in jobs:
            results.append(_add_one(job))
            done(results[-1])
        return results
    with process_pool(workers) as pool:
        for fut in as_completed([pool.submit(_add_one, job) for job in jobs]):
            results.append(fut.result())
            done(results[-1])
    order = {ref: i for i, ref in enumerate(refs)}
    return sorted(results, key=lambda r: order.get(r["ref"], 0))


BASES = "bases"  # `index add --from bases`: the shipped list of open base models (data/bases.tsv)


def shipped_bases() -> list[dict]:
    """The pretrained checkpoints of the open families (data/bases.tsv): hub id, revision, family, parameters
    (billions, from the model cards) and architecture, one dict each."""
    from importlib.resources import files

    out = []
    for line in files("parentage").joinpath("data/bases.tsv").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            repo, revision, family, params, arch = line.split("\t")
            out.append({"ref": repo, "revision": revision, "family": family, "params_b": float(params), "arch": arch})
    return out


def read_ref_list(path: str) -> list[str]:
    """One reference a line (paths, hub ids, URLs); blank lines and # comments skipped. `bases` is the shipped
    list of open base models (`shipped_bases`), each at its listed revision (to read a file of that name, give
    ./bases)."""
    if path == BASES:
        return [b["ref"] if b["revision"] == "main" else f"{b['ref']}@{b['revision']}" for b in shipped_bases()]
    from ..safeio import read_prefix
    from ..errors import FormatError

    try:
        text = read_prefix(path, 64 << 20).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(path, "a list of models must be UTF-8 text, one reference a line") from None
    refs = [line.strip() for line in text.splitlines()]
    refs = [r for r in refs if r and not r.startswith("#")]
    if not refs:
        raise FormatError(path, "lists no models (one reference a line)")
    return refs
