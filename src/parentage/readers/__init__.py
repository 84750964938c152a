"""Format readers behind one protocol, and `WeightSet`, which joins the files of one checkpoint.

One module per file format (safetensors, gguf, torch_bin, onnx); each exposes a class with the verbs of
`base.Reader`. One module per quantisation method stored inside safetensors files (gptq, awq, bnb, mlx,
compressed, fp8), behind `quantization.attach`, which reads a checkpoint's weights through its method.
`open_file` picks the class from the file's magic bytes, not its extension, so a misnamed file still opens
and a hostile one cannot pick its own parser.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import MAX_TENSORS
from ..errors import CheckpointNotFoundError, FormatError, LimitError
from .base import Reader, TensorInfo, is_local
from .gguf import GGUFFile
from .safetensors import SafetensorsFile

__all__ = ["Reader", "TensorInfo", "WeightSet", "open_file", "sniff_format", "GGUFFile", "ONNXFile", "SafetensorsFile",
           "TorchZipFile"]

# format -> (module, class); the ONNX and torch adapters are imported when a file needs them (start-up time of
# every command that reads neither)
READERS = {"safetensors": ("safetensors", "SafetensorsFile"), "gguf": ("gguf", "GGUFFile"),
           "torch": ("torch_bin", "TorchZipFile"), "onnx": ("onnx", "ONNXFile")}


def reader_class(fmt: str) -> type:
    import importlib

    module, name = READERS[fmt]
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __getattr__(name: str):
    lazy = {cls: fmt for fmt, (_, cls) in READERS.items()}
    if name in lazy:
        return reader_class(lazy[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from . import onnx  # the last format tried: only now worth importing

    if onnx.sniff(head):
        return "onnx"
    if len(head) < 9 and str(where).endswith(".safetensors"):
        return "safetensors"  # let the safetensors parser explain the truncation
    raise FormatError(where, "not a weights file parentage knows (safetensors, GGUF, ONNX or a torch zip checkpoint)")


def open_file(source, siblings=None) -> Reader:
    """A reader for a local path or a byte source with the verbs of `base.MappedFile` (a remote file);
    `siblings(name, stats)` opens another file of the same checkpoint (an ONNX model's external data) when it is
    not beside a local file, its reads counted in `stats`."""
    if isinstance(source, str):
        source = Path(source)
    fmt = sniff_format(source)
    if fmt == "torch" and not isinstance(source, Path):
        raise FormatError(source.path, "a torch checkpoint is read only from disk (its zip directory sits at the "
                                       "end and its pickle must be read whole); ask for the safetensors files, or "
                                       "download it")
    if fmt == "onnx":
        return reader_class("onnx")(source, siblings)
    return reader_class(fmt)(source)


class WeightSet:
    """All the weight files of one checkpoint, as one name space: stored tensors by their names, and the weights
    of a quantisation method (`quantization.attach`) by theirs, in place of the parts they are read from."""

    complete = True  # every row can be read (a fingerprint's `readers.stored.StoredWeights` holds only some)
    recorder = None  # while a fingerprint is taken: called with (name, start, rows) for every read
    memo: dict | None = None  # identify: the query's rows, read once for all candidates
    scheme = None  # quantization.Scheme when the weights are quantised

    def __init__(self, readers: Sequence[Reader]):
        self.readers = list(readers)
        self.owner: dict[str, Reader] = {}  # stored name -> the file's reader
        if sum(len(r.names()) for r in self.readers) > MAX_TENSORS:
            raise LimitError(self.readers[0].path, f"the checkpoint's files hold more than {MAX_TENSORS:,} tensors; "
                                                   "no real checkpoint does")
        for r in self.readers:
            for name in r.names():
                if name in self.owner:
                    raise FormatError(r.path, f"tensor {name!r} also appears in {self.owner[name].path}")
                self.owner[name] = r
        self.packed: dict = {}  # weight name -> packed.Packed
        self._parts: set[str] = set()  # stored names read only through a packed weight
        self._names = list(self.owner)

    def join(self, packed: list) -> None:
        """Put quantised weights in the name space in place of their parts (each where its first part was)."""
        by_first = {w.parts[0]: w for w in packed}
        parts = {p for w in packed for p in w.parts}
        names = []
        for name in self._names:
            if name in by_first:
                names.append(by_first[name].name)
            elif name not in parts:
                names.append(name)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise FormatError(self.readers[0].path, f"weight {dup!r} is stored both whole and as quantised parts")
        self.packed.update({w.name: w for w in packed})
        self._parts |= parts
        self._names = names

    @property
    def remote(self) -> bool:
        """Whether any file is read over the network (its reads are then worth running concurrently)."""
        return any(not is_local(r._file) for r in self.readers if hasattr(r, "_file"))

    @property
    def format(self) -> str:
        formats = sorted({r.format for r in self.readers})
        return formats[0] if len(formats) == 1 else "+".join(formats)

    def names(self) -> list[str]:
        return list(self._names)

    def holds(self, name: str, start: int, stop: int) -> bool:
        return True

    def file_names(self) -> list[str]:
        """The files, after links, or the remote names (repository, commit and file, or URL): same bytes."""
        return sorted(os.path.realpath(r.path) if isinstance(r.path, Path) else str(r.path) for r in self.readers)

    def __contains__(self, name: str) -> bool:
        return name in self.packed or (name in self.owner and name not in self._parts)

    def info(self, name: str) -> TensorInfo:
        packed = self.packed.get(name)
        return packed.info if packed is not None else self.owner[name].info(name)

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

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        if self.memo is not None:
            key = (name, start, stop)
            if key not in self.memo:
                self.memo[key] = self._read_rows(name, start, stop)
            return self.memo[key].copy()  # callers fold norm gains in place
        return self._read_rows(name, start, stop)

    def _read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        packed = self.packed.get(name)
        rows = packed.read_rows(start, stop) if packed is not None else self.owner[name].read_rows(name, start, stop)
        if self.recorder is not None:
            self.recorder(name, start, rows)
        return rows

    def has_steps(self, name: str) -> bool:
        """Whether a weight is stored quantised with a step per value (`steps`)."""
        if name in self.packed:
            return True
        owner = self.owner.get(name)
        return hasattr(owner, "has_steps") and owner.has_steps(name)

    def steps(self, name: str, start: int, stop: int) -> np.ndarray:
        """The quantiser's step at each value of rows [start, stop) of a quantised weight (evidence/export.py
        measures errors in these)."""
        if name in self.packed:
            return self.packed[name].steps(start, stop)
        return self.owner[name].steps(name, start, stop)

    def close(self) -> None:
        for r in self.readers:
            r.close()
