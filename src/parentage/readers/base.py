"""The reader protocol and what every format shares: bounded mmap access with read accounting.

A reader sees one weights file. It lists tensor names, gives each one's dtype and shape, and reads rows
`[start, stop)` as float32. "Rows" are along the first axis of the tensor viewed as 2-D
`(prod(shape[:-1]), shape[-1])`, so a 3-D expert stack `(n_experts, d_ff, d_model)` is read expert by expert as
row blocks; a 1-D tensor (norm gain, bias) is a column of single-element rows and comes back 1-D.
"""

from __future__ import annotations

import math
import contextlib
import mmap
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import FormatError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors spelling for plain dtypes ("BF16"), GGML spelling for quantised ones ("Q8_0")
    shape: tuple[int, ...]
    file: str
    nbytes: int  # bytes the tensor occupies on disk

    @property
    def n_rows(self) -> int:
        return rows_cols(self.shape)[0]

    @property
    def n_cols(self) -> int:
        return rows_cols(self.shape)[1]


def rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view every reader reads rows of: leading axes flattened, last axis kept."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], 1
    return math.prod(shape[:-1]), shape[-1]


def shaped_rows(flat: np.ndarray, shape: tuple[int, ...], n: int) -> np.ndarray:
    """Give `n` decoded rows the 2-D (or, for 1-D tensors, 1-D) shape the protocol promises."""
    return flat.reshape(n) if len(shape) <= 1 else flat.reshape(n, shape[-1])


def check_row_range(path: str | Path, info: TensorInfo, start: int, stop: int) -> None:
    if not (0 <= start <= stop <= info.n_rows):
        raise IndexError(f"{path}: rows [{start}, {stop}) out of range for {info.name} with {info.n_rows} rows")


def check_col_range(path: str | Path, info: TensorInfo, start: int, stop: int) -> None:
    if not (0 <= start <= stop <= info.n_cols):
        raise IndexError(f"{path}: columns [{start}, {stop}) out of range for {info.name} with {info.n_cols} columns")


_BACKGROUND = threading.local()


@contextlib.contextmanager
def background_reads(on: bool = True):
    """Reads made by this thread inside the block are a background test's: counted in the cost line as every
    read is, and also apart (`ReadStats.background_bytes`), so a budget decision taken meanwhile on another
    thread sees only the foreground's reads, whatever the interleaving."""
    before = getattr(_BACKGROUND, "on", False)
    _BACKGROUND.on = on
    try:
        yield
    finally:
        _BACKGROUND.on = before


def in_background() -> bool:
    return getattr(_BACKGROUND, "on", False)


@dataclass
class ReadStats:
    """What a reader has read so far: the cost line of every report comes from here."""

    bytes_read: int = 0
    n_reads: int = 0
    background_bytes: int = 0  # of bytes_read, those read inside background_reads()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        with self._lock:  # remote checkpoints read from several threads
            self.bytes_read += nbytes
            self.n_reads += 1
            if in_background():
                self.background_bytes += nbytes

    def foreground_bytes(self) -> int:
        with self._lock:  # one consistent snapshot of both counters
            return self.bytes_read - self.background_bytes


@runtime_checkable
class Reader(Protocol):
    path: Path
    format: str
    metadata: dict
    stats: ReadStats

    def names(self) -> list[str]: ...

    def info(self, name: str) -> TensorInfo: ...

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray: ...

    @property
    def bytes_total(self) -> int: ...

    def close(self) -> None: ...


_OPEN_LOCK = threading.Lock()
MAX_ADVISED_RUNS = 8192  # strided reads with more runs than this are left to page faults (one madvise a run)


def check_strided(path, size: int, offset: int, seg: int, stride: int, count: int) -> None:
    if offset < 0 or seg < 0 or count < 0 or (count > 1 and stride < seg) \
            or (count and offset + stride * (count - 1) + seg > size):
        raise FormatError(path, f"strided read of {count} runs of {seg} bytes every {stride} from offset {offset} "
                                f"runs past the end of the file ({size} bytes)")


def _advise(mm: mmap.mmap, advice: int | None, *span: int) -> None:
    """madvise where the platform has it; advice only, so a filesystem that refuses it changes nothing."""
    if advice is None or not hasattr(mm, "madvise"):
        return
    try:
        mm.madvise(advice, *span)
    except OSError:
        pass


@dataclass
class MappedFile:
    """A file read through mmap, opened on first use, every read bounds-checked and counted."""

    path: Path
    stats: ReadStats = field(default_factory=ReadStats)
    _fh: object = None
    _mm: mmap.mmap | None = None

    def __post_init__(self) -> None:
        self.size = os.path.getsize(self.path)

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        """`nbytes` bytes at `offset` as a uint8 array (a view on the map: decode copies it)."""
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise FormatError(
                self.path, f"read of {nbytes} bytes at offset {offset} runs past the end of the file ({self.size} bytes)"
            )
        self.stats.add(nbytes)
        if nbytes == 0:
            return np.empty(0, dtype=np.uint8)
        mm = self._map()
        # Ask for exactly these pages, in one request. Left to itself, a fault on a cold page reads ahead the
        # disk's whole window (8 MB on the issue machine): the 7B pair's 204 MB of rows cost 14 GB of disk
        # reads, 53% of the files, and 2-3x the time.
        start = offset - offset % mmap.PAGESIZE
        _advise(mm, getattr(mmap, "MADV_WILLNEED", None), start, offset + nbytes - start)
        return np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=offset)

    def read_strided(self, offset: int, seg: int, stride: int, count: int) -> np.ndarray:
        """`count` runs of `seg` bytes, `stride` apart from `offset`, as a (count, seg) uint8 array: a block of
        columns of a row-major tensor (formats that pack along the input dimension store a canonical row as a
        column). Only the runs are counted as read, and only their pages are asked for."""
        check_strided(self.path, self.size, offset, seg, stride, count)
        self.stats.add(seg * count)
        if seg == 0 or count == 0:
            return np.empty((count, seg), dtype=np.uint8)
        mm = self._map()
        if count <= MAX_ADVISED_RUNS:
            for k in range(count):
                a = offset + k * stride
                start = a - a % mmap.PAGESIZE
                _advise(mm, getattr(mmap, "MADV_WILLNEED", None), start, a + seg - start)
        span = np.frombuffer(mm, dtype=np.uint8, count=stride * (count - 1) + seg, offset=offset)
        return np.lib.stride_tricks.as_strided(span, shape=(count, seg), strides=(stride, 1)).copy()

    def _map(self) -> mmap.mmap:
        if self._mm is None:
            with _OPEN_LOCK:  # remote-style parallel readers may race to open the map
                if self._mm is None:
                    self._fh = open(self.path, "rb")
                    mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
                    _advise(mm, getattr(mmap, "MADV_RANDOM", None))  # no readahead around faults: see read()
                    self._mm = mm
        return self._mm

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a caller still holds a view; the map closes when it is dropped
                pass
            self._fh.close()
            self._mm = self._fh = None


class FileReader:
    """What every format reader shares: the byte source, its read accounting, and closing it when the header
    turns out bad (a hostile file must not leave descriptors open behind its error line).

    The source is a local path (read through `MappedFile`) or anything with the same verbs — `path` (a name
    for error lines), `size`, `stats`, `read(offset, n)` and `close()` — such as `remote.ranges.RangeFile`."""

    format = ""

    def __init__(self, source: "str | Path | MappedFile"):
        if isinstance(source, (str, os.PathLike)):
            self.path = Path(source)
            self.stats = ReadStats()
            self._file = MappedFile(self.path, self.stats)
        else:
            self.path, self.stats, self._file = source.path, source.stats, source
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Parse and validate the header."""
        raise NotImplementedError

    @property
    def bytes_total(self) -> int:
        return self._file.size

    def close(self) -> None:
        self._file.close()


def is_local(file) -> bool:
    """Whether a reader's byte source is a mapped local file (remote ones are fetched in pieces)."""
    return isinstance(file, MappedFile)
