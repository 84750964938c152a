"""A pack: an index as one versioned, self-describing file, queried in place or imported into a store.

    MAGIC | u32 pack version | u64 header length | header (JSON)
    | scan block: every entry's scan row (index/sketch.py), in entry order: what a query reads whole, in one go
    | every entry's whole sketch (read for the first stage's re-scoring only)
    | every entry's fingerprint (read for the shortlist only)

The header lists each entry with its source (ref, commit, hub id and dates, files), the parentage version and
fingerprint plan it was made under, and the offset, length and SHA-256 of its sketch and fingerprint; the scan
block has a digest of its own. A pack is read through the same byte-source verbs as weights (`read(offset, n)`):
a local file through mmap, a URL or `hf://datasets/org/name[/file]` through HTTP range requests, the range
cache and the retries model reads use. So a query of a hosted pack sends range requests for the pack's own
bytes and nothing else: not the query's path, name or weights.

    parentage index export lineage.pack --db team.sqlite
    parentage identify ./suspect --db https://host/lineage.pack
    parentage index import hf://datasets/org/lineage
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..errors import FormatError, IndexStoreError
from ..safeio import parse_json
from .fingerprint import PLAN_VERSION, Fingerprint
from .sketch import SCAN_ROW, SKETCH_VERSION, Sketch, scan_row
from .store import Entry

MAGIC = b"PARENTPK"
PACK_VERSION = 1
MAX_HEADER = 256 << 20  # a header for a million entries fits
PACK_NAME = "index.pack"  # the file `hf://datasets/org/name` means when it names no file
ENTRY_TYPES = {"ref": str, "commit": str, "digest": str, "sketch_digest": str, "plan": int, "tool_version": str,
               "n_bytes": int, "fingerprint": list, "sketch": list, "declared": dict}


def is_pack_ref(ref: str) -> bool:
    """Whether `--db` names a pack: a URL, an hf:// dataset, or a local file that starts with the pack magic."""
    if ref.startswith(("http://", "https://", "hf://")):
        return True
    path = Path(ref).expanduser()
    try:
        if not path.is_file():  # never open a FIFO or device to look: it could block for ever
            return False
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# -- writing -----------------------------------------------------------------------------------------------------


def export_pack(store, path: str | Path, refs: list[str] | None = None, progress=None) -> dict:
    """Write the store's entries (or those `refs` name) as one pack at `path`: written beside it under a
    temporary name and renamed into place, so a pack is never seen half-written."""
    entries = store.entries() if not refs else [e for r in refs for e in _found(store, r)]
    if not entries:
        raise IndexStoreError(store.where, "nothing to export: the index holds no models" if not refs
                              else "nothing to export: no indexed model matches")
    entries = list({e.id: e for e in entries}.values())
    fps = [store.load(e) for e in entries]
    sketches = [store.sketch(e) for e in entries]
    blobs = [fp.to_bytes() for fp in fps]
    raw_sketches = [sk.to_bytes() for sk in sketches]
    scan = b"".join(scan_row(sk) for sk in sketches)
    table = []
    for e, fp, blob, raw in zip(entries, fps, blobs, raw_sketches):
        m = fp.meta
        table.append({"ref": e.ref, "commit": e.commit, "digest": hashlib.sha256(blob).hexdigest(),
                      "sketch_digest": hashlib.sha256(raw).hexdigest(), "plan": m["plan"],
                      "tool_version": m["tool_version"], "n_bytes": len(blob), "declared": m["declared"],
                      "arch": e.arch, "n_layers": e.n_layers, "hidden_size": e.hidden_size, "n_params": e.n_params,
                      "source": {"kind": m["source"], "hub": m.get("hub"), "files": m["files"],
                                 "file_digests": m.get("file_digests") or {}, "created": m.get("created")},
                      "fingerprint": [0, len(blob)], "sketch": [0, len(raw)]})
    header = {"pack": PACK_VERSION, "tool_version": __version__, "plan": PLAN_VERSION, "sketch_version": SKETCH_VERSION,
              "scan_row": SCAN_ROW, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "scan": [0, len(scan)], "scan_digest": hashlib.sha256(scan).hexdigest(), "entries": table}
    # offsets depend on the header's length, which depends on the offsets: lay out with fixed-width numbers
    for attempt in range(3):
        head = json.dumps(header, separators=(",", ":")).encode()
        offset = len(MAGIC) + 12 + len(head)
        header["scan"][0] = offset
        offset += len(scan)
        for t, raw in zip(table, raw_sketches):
            t["sketch"][0] = offset
            offset += len(raw)
        for t, blob in zip(table, blobs):
            t["fingerprint"][0] = offset
            offset += len(blob)
        again = json.dumps(header, separators=(",", ":")).encode()
        if len(again) == len(head):
            break
    else:  # pragma: no cover - the offsets' widths settle in two passes
        raise IndexStoreError(path, "could not lay out the pack's header")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + struct.pack("<IQ", PACK_VERSION, len(again)) + again + scan)
            for raw in raw_sketches:
                f.write(raw)
            for i, blob in enumerate(blobs):
                f.write(blob)
                if progress is not None:
                    progress(i + 1, len(blobs))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"pack": str(path), "n_entries": len(entries), "n_bytes": path.stat().st_size,
            "scan_bytes": len(scan), "sketch_bytes": sum(map(len, raw_sketches)), "fingerprint_bytes": sum(map(len, blobs))}


def _found(store, ref: str) -> list[Entry]:
    found = store.find(ref)
    if not found:
        raise IndexStoreError(store.where, f"{ref!r} is not in the index (see `parentage index list`)")
    return found


# -- reading in place --------------------------------------------------------------------------------------------


class PackStore:
    """A pack opened for queries: the read verbs of `store.Store` (entries, scan_rows, sketch, load, find) over
    its bytes; the write verbs refuse. Every part read is checked against its digest in the header."""

    def __init__(self, source, where: str):
        self.source, self.where, self.dialect = source, where, "pack"
        try:
            self.header = self._header()
            self._entries = [self._entry(i, t) for i, t in enumerate(self.header["entries"])]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, struct.error) as e:
            raise IndexStoreError(where, f"the pack's header is corrupt ({type(e).__name__}: {e})") from None
        self._table = {e.id: t for e, t in zip(self._entries, self.header["entries"])}
        self._scan: dict[str, bytes] | None = None

    def _read(self, offset: int, n: int) -> bytes:
        try:
            return self.source.read(offset, n).tobytes()
        except FormatError as e:
            raise IndexStoreError(self.where, e.problem) from None

    def _header(self) -> dict:
        size = self.source.size
        if size < len(MAGIC) + 12:
            raise IndexStoreError(self.where, "is too short to be a parentage pack")
        start = self._read(0, len(MAGIC) + 12)
        if start[:len(MAGIC)] != MAGIC:
            raise IndexStoreError(self.where, "is not a parentage pack (bad magic)")
        version, n = struct.unpack("<IQ", start[len(MAGIC):])
        if version > PACK_VERSION:
            raise IndexStoreError(self.where, f"pack made by a newer parentage (pack version {version}; this one "
                                              f"reads {PACK_VERSION}): upgrade parentage")
        if version != PACK_VERSION or n > min(MAX_HEADER, size - len(MAGIC) - 12):
            raise IndexStoreError(self.where, f"the pack's header ({n:,} bytes, version {version}) does not fit the file")
        try:
            header = parse_json(self.where, self._read(len(MAGIC) + 12, n), "the pack's header")
        except FormatError as e:
            raise IndexStoreError(e.where, e.problem) from None
        if not isinstance(header, dict) or header.get("pack") != PACK_VERSION or not isinstance(header.get("entries"), list):
            raise IndexStoreError(self.where, "the pack's header is malformed")
        if header.get("scan_row") != SCAN_ROW or header.get("sketch_version") != SKETCH_VERSION:
            raise IndexStoreError(self.where, f"the pack's sketches are version {header.get('sketch_version')!r}, "
                                              f"this parentage ({__version__}) reads {SKETCH_VERSION}: make the pack "
                                              f"again with this version, or query it with parentage "
                                              f"{header.get('tool_version')!r}")
        lo, length = header["scan"]
        if not (isinstance(lo, int) and isinstance(length, int) and 0 <= lo and lo + length <= size
                and length == SCAN_ROW * len(header["entries"])):
            raise IndexStoreError(self.where, "the pack's scan block does not fit the file or its entries")
        return header

    def _entry(self, i: int, t: dict) -> Entry:
        for key, kind in ENTRY_TYPES.items():
            if not isinstance(t.get(key), kind) or isinstance(t.get(key), bool):
                raise IndexStoreError(self.where, f"entry {i} of the pack has no valid {key!r}")
        for part in ("fingerprint", "sketch"):
            lo, n = t[part]
            if not (isinstance(lo, int) and isinstance(n, int) and lo >= 0 and n > 0 and lo + n <= self.source.size):
                raise IndexStoreError(self.where, f"entry {t['ref']!r}: its {part} lies outside the pack")
        if t["plan"] != PLAN_VERSION:
            raise IndexStoreError(self.where, f"entry {t['ref']!r} was made under fingerprint plan {t['plan']} by "
                                              f"parentage {t['tool_version']}; this one ({__version__}) reads plan "
                                              f"{PLAN_VERSION}: query it with parentage {t['tool_version']}, or make "
                                              f"the pack again")
        ints = [t.get(k) if isinstance(t.get(k), int) and not isinstance(t.get(k), bool) else None
                for k in ("n_layers", "hidden_size", "n_params")]
        source = t.get("source") if isinstance(t.get("source"), dict) else {}
        return Entry(i + 1, t["ref"], t["commit"], t["digest"], t.get("arch") if isinstance(t.get("arch"), str) else None,
                     *ints, t["n_bytes"], t["declared"], str(self.header.get("created")), t["tool_version"],
                     source.get("kind") if isinstance(source.get("kind"), str) else None)

    # -- the read verbs of a store ------------------------------------------------------------------------------

    def entries(self, ref: str | None = None) -> list[Entry]:
        return [e for e in self._entries if ref is None or e.ref == ref]

    def find(self, ref: str) -> list[Entry]:
        if ref.startswith("#") and ref[1:].isdigit():
            return [e for e in self._entries if e.id == int(ref[1:])]
        return self.entries(ref) or ([e for e in self._entries if e.commit.startswith(ref)] if len(ref) >= 7 else [])

    def scan_rows(self, entries: list[Entry], progress=None) -> dict[str, bytes]:
        """Every entry's scan row by fingerprint digest: the scan block, read whole once and checked."""
        if self._scan is None:
            lo, n = self.header["scan"]
            block = self._read(lo, n)
            if hashlib.sha256(block).hexdigest() != self.header["scan_digest"]:
                raise IndexStoreError(self.where, "the pack's scan block does not match its digest")
            self._scan = {e.digest: block[i * SCAN_ROW:(i + 1) * SCAN_ROW] for i, e in enumerate(self._entries)}
        return self._scan

    def _part(self, entry: Entry, part: str, digest_key: str) -> bytes:
        t = self._table[entry.id]
        lo, n = t[part]
        data = self._read(lo, n)
        if hashlib.sha256(data).hexdigest() != t[digest_key]:
            raise IndexStoreError(self.where, f"the {part} of {entry.ref!r} does not match its digest: the pack is "
                                              f"damaged or forged")
        return data

    def sketch(self, entry: Entry) -> Sketch:
        try:
            return Sketch.from_bytes(self._part(entry, "sketch", "sketch_digest"), f"{self.where} [{entry.ref}]")
        except FormatError as e:
            raise IndexStoreError(e.where, e.problem) from None

    def load(self, entry: Entry) -> Fingerprint:
        try:
            return Fingerprint.from_bytes(self._part(entry, "fingerprint", "digest"), f"{self.where} [{entry.ref}]")
        except FormatError as e:
            raise IndexStoreError(e.where, e.problem) from None

    def pair(self, a: str, b: str, setting: str) -> None:
        return None  # a pack holds no pair cache

    def put_pair(self, a: str, b: str, setting: str, doc: dict) -> None:
        pass  # nor takes one: it is read only

    def add(self, *args, **kwargs):
        raise IndexStoreError(self.where, "a pack is read only: import it into an index (`parentage index import`)")

    remove = add

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "PackStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_pack(ref: str) -> PackStore:
    """A pack by local path, URL, or `hf://datasets/org/name[/file]` (index.pack when no file is named)."""
    if ref.startswith(("http://", "https://", "hf://")):
        from ..remote.hub import open_remote_file

        source, where = open_remote_file(ref, PACK_NAME), ref
    else:
        from ..readers.base import MappedFile

        path = Path(ref).expanduser()
        if not path.is_file():
            raise IndexStoreError(path, "no pack here")
        source, where = MappedFile(path), str(path)
    try:
        return PackStore(source, where)
    except BaseException:
        source.close()
        raise


def import_pack(ref: str, db: str | None = None, progress=None) -> list[dict]:
    """Copy every entry of a pack into the store at `db`, each checked against its digest and written in its own
    transaction: importing twice adds nothing, and an interrupted import leaves no partial entry."""
    from .store import open_store

    results = []
    with open_pack(ref) as pack:
        entries = pack.entries()
        # the whole pack is checked before the index is touched: a damaged pack leaves nothing behind
        pack.scan_rows(entries)
        for e in entries:  # one at a time: a pack of 110B models holds gigabytes
            pack.sketch(e)
            _checked(pack, e)
        with open_store(db, create=True) as store:
            _copy(pack, store, entries, results, progress)
    return results


def _copy(pack: PackStore, store, entries: list[Entry], results: list[dict], progress) -> None:
    for i, e in enumerate(entries):
        added = store.add(_checked(pack, e))
        results.append({"ref": e.ref, "commit": e.commit, "status": "added" if added else "indexed already",
                        "n_bytes": e.n_bytes})
        if progress is not None:
            progress(i + 1, len(entries))


def _checked(pack: PackStore, e: Entry) -> Fingerprint:
    fp = pack.load(e)
    if (fp.ref, fp.commit) != (e.ref, e.commit):
        raise IndexStoreError(pack.where, f"entry {e.ref!r}: its fingerprint names {fp.ref!r} @ {fp.commit}")
    return fp
