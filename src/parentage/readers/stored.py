"""The rows a fingerprint recorded, behind the verbs of `WeightSet`, so every test runs on them unchanged.

A fingerprint (index/fingerprint.py) is the rows one checkpoint yielded under the canonical plan. Opened as a
`Checkpoint` over `StoredWeights`, it answers `read_rows` for any span inside a recorded one, and says through
`holds` which spans it has, so a test that can choose its rows (pair.py) chooses among those. Rows were
recorded decoded (quantised weights through their method, FP8 scales applied).
"""

from __future__ import annotations

import bisect

import numpy as np

from ..errors import NotInFingerprintError
from .base import ReadStats, TensorInfo


class StoredWeights:
    """A fingerprint's recorded rows: {source tensor name: [(start, rows (n, cols) or (n,))]} sorted by start."""

    complete = False
    remote = False
    readers: tuple = ()  # no files: `declared`, `circumstantial` and `inspect` find none to read
    scheme = None  # the decoded rows are kept, not the quantiser's parts: the method is known by the dtypes only

    def __init__(self, ref: str, fmt: str, infos: dict[str, TensorInfo], spans: dict[str, list[tuple[int, np.ndarray]]],
                 bytes_total: int, files: list[str], prints: dict | None = None):
        self.ref, self.format, self._infos, self._bytes_total, self._files = ref, fmt, infos, bytes_total, files
        self.prints = prints or {}  # role key -> evidence.identical.RowPrints of its sampled rows
        self._spans = {name: sorted(v, key=lambda x: x[0]) for name, v in spans.items()}
        self._starts = {name: [s for s, _ in v] for name, v in self._spans.items()}
        self.stats = ReadStats()

    def names(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def file_names(self) -> list[str]:
        return self._files

    @property
    def bytes_total(self) -> int:
        return self._bytes_total

    @property
    def bytes_read(self) -> int:
        return 0  # nothing of the model itself is read: the rows were recorded when it was indexed

    def foreground_bytes(self) -> int:
        return 0

    @property
    def n_reads(self) -> int:
        return self.stats.n_reads

    def _span(self, name: str, start: int, stop: int) -> tuple[int, np.ndarray] | None:
        starts = self._starts.get(name)
        if not starts:
            return None
        k = bisect.bisect_right(starts, start) - 1
        if k < 0:
            return None
        s, rows = self._spans[name][k]
        return (s, rows) if stop <= s + rows.shape[0] else None

    def holds(self, name: str, start: int, stop: int) -> bool:
        return stop <= start or self._span(name, start, stop) is not None

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        info = self._infos[name]
        if stop <= start:
            return np.zeros((0,) + ((info.shape[-1],) if len(info.shape) > 1 else ()), dtype=np.float32)
        found = self._span(name, start, stop)
        if found is None:
            raise NotInFingerprintError(self.ref, f"rows {start}-{stop} of {name!r} are not in the fingerprint; "
                                                  "re-index the model (parentage index add) to record them")
        s, rows = found
        self.stats.n_reads += 1
        return rows[start - s:stop - s].astype(np.float32)  # a copy: callers fold norm gains in place

    def close(self) -> None:
        pass
