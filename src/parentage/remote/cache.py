"""A disk cache of the byte ranges fetched from remote weight files.

Keyed by what pins the bytes: (repo, commit, file, etag) for hub files and (url, etag) for URLs, so a file
whose contents change gets a new key and a stale range is never served. Each fetched range is one file
`<start>-<end>` (hex byte offsets) in its key's folder, written under a temporary name and renamed, so no reader
sees half a range. Reads touch a range's mtime; past the size cap the least recently used ranges go. The cache
may be deleted at any moment, even mid-run: a range that vanished is fetched again, and a cache that cannot be
written (full disk, read-only home) degrades to memory for this process.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import threading
from pathlib import Path

MEMORY_FALLBACK_BYTES = 256 << 20  # ranges kept in memory when the disk cache cannot be written


def _piece_name(start: int, end: int) -> str:
    return f"{start:012x}-{end:012x}"


def _parse_piece(name: str) -> tuple[int, int] | None:
    parts = name.split("-")
    if len(parts) != 2 or not all(len(p) == 12 for p in parts):
        return None
    try:
        start, end = int(parts[0], 16), int(parts[1], 16)
    except ValueError:
        return None
    return (start, end) if start < end else None


class RangeCache:
    def __init__(self, root: Path, max_bytes: int):
        self.root, self.max_bytes = Path(root), max_bytes
        self._index: dict[str, list[tuple[int, int]]] = {}  # key -> sorted (start, end) pieces on disk
        self._memory: dict[tuple[str, int, int], bytes] = {}
        self._memory_bytes = 0
        self._total: int | None = None  # bytes on disk under root, counted once per process
        self._keys: dict[str, str] = {}  # folder name -> key, to drop trimmed pieces from the index
        self._lock = threading.Lock()
        self.disk_ok = True

    def folder(self, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        self._keys[name] = key
        return self.root / name

    def pieces(self, key: str) -> list[tuple[int, int]]:
        with self._lock:
            if key not in self._index:
                found = []
                try:
                    found = [p for p in map(_parse_piece, os.listdir(self.folder(key))) if p]
                except OSError:
                    pass
                self._index[key] = sorted(found)
            return list(self._index[key]) + [(s, e) for (k, s, e) in self._memory if k == key]

    def read(self, key: str, piece: tuple[int, int], lo: int, hi: int) -> bytes | None:
        """Bytes [lo, hi) of the file from one cached piece, or None if it has gone (deleted under us)."""
        start, end = piece
        mem = self._memory.get((key, start, end))
        if mem is not None:
            return mem[lo - start: hi - start]
        path = self.folder(key) / _piece_name(start, end)
        try:
            with open(path, "rb") as f:
                f.seek(lo - start)
                data = f.read(hi - lo)
            os.utime(path)
        except OSError:
            data = None
        if data is None or len(data) != hi - lo:  # vanished or truncated: forget it, the caller fetches again
            self._forget(key, piece)
            return None
        return data

    def store(self, key: str, start: int, data: bytes) -> None:
        end = start + len(data)
        if not data:
            return
        folder = self.folder(key)
        if self.disk_ok:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".tmp-{os.getpid()}-{threading.get_ident()}-{_piece_name(start, end)}"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, folder / _piece_name(start, end))
            except OSError:
                self.disk_ok = False  # keep going from memory; the run is not worth failing for a cache
            else:
                with self._lock:
                    pieces = self._index.setdefault(key, [])
                    if (start, end) not in pieces:
                        bisect.insort(pieces, (start, end))
                    self._total = None if self._total is None else self._total + len(data)
                self._trim()
                return
        if self._memory_bytes + len(data) <= MEMORY_FALLBACK_BYTES:
            with self._lock:
                self._memory[(key, start, end)] = bytes(data)
                self._memory_bytes += len(data)

    def _forget(self, key: str, piece: tuple[int, int]) -> None:
        with self._lock:
            pieces = self._index.get(key, [])
            if piece in pieces:
                pieces.remove(piece)

    def _files(self) -> list[tuple[float, int, Path]]:
        out = []
        try:
            folders = list(os.scandir(self.root))
        except OSError:
            return out
        for folder in folders:
            try:
                for entry in os.scandir(folder.path):
                    if _parse_piece(entry.name):
                        st = entry.stat()
                        out.append((st.st_mtime, st.st_size, Path(entry.path)))
            except OSError:
                continue
        return out

    def _trim(self) -> None:
        """Remove the least recently used ranges once the cache holds more than its cap (down to 90% of it)."""
        if self._total is None:
            self._total = sum(size for _, size, _ in self._files())
        if self._total <= self.max_bytes:
            return
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= 0.9 * self.max_bytes:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            key = self._keys.get(path.parent.name)
            if key is not None:
                self._forget(key, _parse_piece(path.name))
        self._total = total


_CACHES: dict[Path, RangeCache] = {}


def range_cache() -> RangeCache:
    """The process's cache for the current cache folder (tests and users may move it between calls)."""
    from ..constants import range_cache_bytes, range_cache_dir

    root = range_cache_dir()
    if root not in _CACHES:
        _CACHES[root] = RangeCache(root, range_cache_bytes())
    return _CACHES[root]
