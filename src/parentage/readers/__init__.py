"""Format readers behind one protocol, and `WeightSet`, which joins the files of one checkpoint.

One module per format (safetensors, gguf, torch_bin); each exposes a class with the verbs of `base.Reader`.
`open_file` picks the class from the file's magic bytes, not its extension, so a misnamed file still opens
and a hostile one cannot pick its own parser.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import MAX_TENSORS
from ..errors import CheckpointNotFoundError, FormatError, LimitError
from .base import Reader, TensorInfo, is_local, rows_cols
from .gguf import GGUFFile
from .safetensors import SafetensorsFile
from .torch_bin import TorchZipFile

__all__ = ["Reader", "TensorInfo", "WeightSet", "open_file", "sniff_format", "GGUFFile", "SafetensorsFile", "TorchZipFile"]

READERS = {"safetensors": SafetensorsFile, "gguf": GGUFFile, "torch": TorchZipFile}


def sniff_format(source) -> str:
    """The format of a weights file (a local path, or a byte source such as a remote file), from its first bytes."""
    if isinstance(source, (str, Path)):
        where = Path(source)
        try:
            with open(where, "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            raise CheckpointNotFoundError(where, "no such file") from None
        except IsADirectoryError:
            raise FormatError(where, "is a folder, not a weights file") from None
    else:
        where = source.path
        head = bytes(source.read(0, min(16, source.size)))
        source.stats.bytes_read -= len(head)  # counted again by the reader that parses the header
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":  # before the pickle check: a header length may start with 0x80
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"  # a bare pickle: torch's legacy format, refused by the torch reader with a clear line
    if len(head) < 9 and str(where).endswith(".safetensors"):
        return "safetensors"  # let the safetensors parser explain the truncation
    raise FormatError(where, "not a weights file parentage knows (safetensors, GGUF or a torch zip checkpoint)")


def open_file(source) -> Reader:
    """A reader for a local path or a byte source with the verbs of `base.MappedFile` (a remote file)."""
    if isinstance(source, str):
        source = Path(source)
    fmt = sniff_format(source)
    if fmt == "torch" and not isinstance(source, Path):
        raise FormatError(source.path, "a torch checkpoint is read only from disk (its zip directory sits at the "
                                       "end and its pickle must be read whole); ask for the safetensors files, or "
                                       "download it")
    return READERS[fmt](source)


def _block_size(n: int, n_blocks: int) -> int:
    """The power-of-two block edge that cuts `n` into `n_blocks` pieces (DeepSeek-V3 uses 128)."""
    return 1 << max(0, math.ceil(math.log2(n / n_blocks))) if n_blocks else n


class WeightSet:
    """All the weight files of one checkpoint, as one name space, with FP8 scales applied on read."""

    complete = True  # every row can be read (a fingerprint's `readers.stored.StoredWeights` holds only some)
    recorder = None  # while a fingerprint is taken: called with (name, start, rows) for every read
    memo: dict | None = None  # identify: the query's rows, read once for all candidates

    def __init__(self, readers: Sequence[Reader]):
        self.readers = list(readers)
        self._owner: dict[str, Reader] = {}
        if sum(len(r.names()) for r in self.readers) > MAX_TENSORS:
            raise LimitError(self.readers[0].path, f"the checkpoint's files hold more than {MAX_TENSORS:,} tensors; "
                                                   "no real checkpoint does")
        for r in self.readers:
            for name in r.names():
                if name in self._owner:
                    raise FormatError(r.path, f"tensor {name!r} also appears in {self._owner[name].path}")
                self._owner[name] = r

    @property
    def remote(self) -> bool:
        """Whether any file is read over the network (its reads are then worth running concurrently)."""
        return any(not is_local(r._file) for r in self.readers if hasattr(r, "_file"))

    @property
    def format(self) -> str:
        formats = sorted({r.format for r in self.readers})
        return formats[0] if len(formats) == 1 else "+".join(formats)

    def names(self) -> list[str]:
        return list(self._owner)

    def holds(self, name: str, start: int, stop: int) -> bool:
        return True

    def file_names(self) -> list[str]:
        """The files, after links, or the remote names (repository, commit and file, or URL): same bytes."""
        return sorted(os.path.realpath(r.path) if isinstance(r.path, Path) else str(r.path) for r in self.readers)

    def __contains__(self, name: str) -> bool:
        return name in self._owner

    def info(self, name: str) -> TensorInfo:
        return self._owner[name].info(name)

    @property
    def bytes_total(self) -> int:
        return sum(r.bytes_total for r in self.readers)

    @property
    def bytes_read(self) -> int:
        return sum(r.stats.bytes_read for r in self.readers)

    @property
    def n_reads(self) -> int:
        return sum(r.stats.n_reads for r in self.readers)

    def foreground_bytes(self) -> int:
        """Bytes read outside background tests (`base.background_reads`): what a budget decision counts."""
        return sum(r.stats.foreground_bytes() for r in self.readers)

    def scale_for(self, name: str) -> str | None:
        """The tensor holding dequantisation scales for an FP8 tensor, if the checkpoint has one."""
        if not self.info(name).dtype.startswith("F8"):
            return None
        for candidate in (f"{name}_scale_inv", f"{name}_scale"):
            if candidate in self._owner:
                return candidate
        return None

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        if self.memo is not None:
            key = (name, start, stop)
            if key not in self.memo:
                self.memo[key] = self._read_rows(name, start, stop)
            return self.memo[key].copy()  # callers fold norm gains in place
        return self._read_rows(name, start, stop)

    def _read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        rows = self._owner[name].read_rows(name, start, stop)
        scale_name = self.scale_for(name)
        if scale_name is not None and stop > start:
            rows = rows * self._expand_scale(name, scale_name, start, stop)
        if self.recorder is not None:
            self.recorder(name, start, rows)
        return rows

    def _expand_scale(self, name: str, scale_name: str, start: int, stop: int) -> np.ndarray:
        info, sinfo = self.info(name), self.info(scale_name)
        n_rows, n_cols = rows_cols(info.shape)
        s_rows, s_cols = rows_cols(sinfo.shape)
        if s_rows * s_cols == 1:  # per-tensor scale
            return self.read_rows(scale_name, 0, 1).reshape(())
        b_row, b_col = _block_size(n_rows, s_rows), _block_size(n_cols, s_cols)
        if -(-n_rows // b_row) != s_rows or -(-n_cols // b_col) != s_cols:
            raise FormatError(info.file, f"scale tensor {scale_name!r} {sinfo.shape} does not tile {name!r} {info.shape}")
        first, last = start // b_row, (stop - 1) // b_row + 1
        scales = self.read_rows(scale_name, first, last).reshape(last - first, s_cols)
        # (stop-start, n_cols): each element takes the scale of its block
        expanded = scales[np.arange(start, stop) // b_row - first][:, np.arange(n_cols) // b_col]
        return expanded.reshape(stop - start) if len(info.shape) <= 1 else expanded

    def close(self) -> None:
        for r in self.readers:
            r.close()
