"""Indexing at hub scale on a Ray cluster (`index add --ray auto|local|ADDRESS`; optional extra `ray`).

Workers open a model, take its fingerprint and send it back; the driver writes each into the index as it
arrives, one transaction per model. So the database needs no shared file system (a SQLite index stays on the
driver's disk, a PostgreSQL one on its server), a killed worker costs only its task (Ray runs it again), and a
killed run keeps every model written so far; running it again skips them (idempotent per (ref, commit)).
"""

from __future__ import annotations

from ..errors import IndexStoreError, ParentageError
from .fingerprint import Fingerprint
from .store import open_store

TASK_RETRIES = 3  # a worker that dies (out of memory, node lost) is replaced and its model fingerprinted again


def _fingerprint_task(ref: str, known: frozenset) -> dict:
    """Runs on a Ray worker: the fingerprint of one model as bytes, or why it failed."""
    from ..checkpoint import Checkpoint
    from .fingerprint import source_meta, take

    try:
        with Checkpoint.open(ref) as ck:
            commit = source_meta(ck)["commit"]
            if (ck.ref, commit) in known:
                return {"ref": ref, "commit": commit, "status": "indexed already"}
            return {"ref": ref, "commit": commit, "status": "taken", "blob": take(ck).to_bytes(),
                    "bytes_read": ck.cost()["bytes_read"]}
    except ParentageError as e:
        return {"ref": ref, "commit": None, "status": "failed", "error": str(e)}


def run_on_ray(jobs: list[tuple], address: str):
    """Yield one result per job, in the order they finish. `address`: "local" starts a Ray instance here,
    "auto" joins the running cluster, anything else is a cluster address."""
    try:
        import ray
    except ImportError:
        raise IndexStoreError(None, "--ray needs Ray: pip install 'parentage[ray]'") from None
    db, replace = jobs[0][1], jobs[0][2]
    started = not ray.is_initialized()
    if started:
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise IndexStoreError(address, f"cannot reach the Ray cluster: {str(e).splitlines()[0] if str(e) else e}") from None
    try:
        with open_store(db, create=True) as store:
            known = frozenset() if replace else frozenset((e.ref, e.commit) for e in store.entries())
            task = ray.remote(max_retries=TASK_RETRIES)(_fingerprint_task)
            pending = [task.remote(ref, known) for ref, _, _ in jobs]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                result = ray.get(ready[0])
                if result["status"] == "taken":
                    fp = Fingerprint.from_bytes(result.pop("blob"), result["ref"])
                    added = store.add(fp, replace=replace)
                    result.update(status="added" if added else "indexed already", n_bytes=fp.n_bytes)
                yield result
    finally:
        if started:
            ray.shutdown()
