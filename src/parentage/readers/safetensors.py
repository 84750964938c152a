"""safetensors: our own validating header parser and mmap row reads.

We do not use the `safetensors` package to read: it loads whole tensors, and we want to read row blocks of
100B-parameter checkpoints. The parser is strict because the header is untrusted input: a size cap, dtype and
shape/offset consistency, and offsets that tile the data buffer exactly (no gaps, overlaps or overrun), as the
format specifies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..constants import MAX_DIM, MAX_TENSORS, SAFETENSORS_MAX_HEADER
from ..dtypes import DTYPES, decode
from ..errors import FormatError, LimitError, UnsupportedDtypeError
from ..safeio import parse_json
from .base import FileReader, TensorInfo, check_col_range, check_row_range, shaped_rows


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def parse_header(path: Path, raw: bytes, file_size: int) -> tuple[dict[str, tuple[TensorInfo, int]], dict]:
    """Validate a header and return {name: (info, begin offset in the buffer)} and the `__metadata__` map."""
    if raw.count(b'"data_offsets"') > MAX_TENSORS:  # a fast scan before the (costly) parse
        raise LimitError(path, f"header describes more than {MAX_TENSORS:,} tensors; no real checkpoint file does")
    header = parse_json(path, raw, "safetensors header", object_pairs_hook=_no_duplicate_keys, max_depth=None)
    if not isinstance(header, dict):
        raise FormatError(path, "safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(path, "safetensors __metadata__ must map strings to strings")

    entries: dict[str, tuple[TensorInfo, int]] = {}
    spans = []
    for name, spec in header.items():
        if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
            raise FormatError(path, f"tensor {name!r}: entry needs dtype, shape and data_offsets")
        dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise UnsupportedDtypeError(path, f"tensor {name!r} has dtype {dtype!r}, which parentage cannot decode")
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape)):
            raise FormatError(path, f"tensor {name!r}: shape {str(shape)[:80]} is not a list of up to 8 "
                                    "non-negative integers (each at most 2^40)")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise FormatError(path, f"tensor {name!r}: data_offsets {offsets!r} must be [begin, end] with begin <= end")
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != expected:
            raise FormatError(
                path,
                f"tensor {name!r}: {dtype}{shape} needs {expected} bytes but data_offsets span {offsets[1] - offsets[0]}",
            )
        info = TensorInfo(name, dtype, tuple(shape), str(path), expected)
        entries[name] = (info, offsets[0])
        spans.append((offsets[0], offsets[1], name))

    buffer_size = file_size - 8 - len(raw)
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin != cursor:
            what = "overlaps the previous tensor" if begin < cursor else f"leaves a gap of {begin - cursor} bytes"
            raise FormatError(path, f"tensor {name!r} at data offset {begin} {what}; offsets must tile the buffer")
        cursor = end
    if cursor != buffer_size:
        if cursor > buffer_size:
            problem = f"tensors need {cursor} data bytes but the file holds {buffer_size} (truncated?)"
        else:
            problem = f"{buffer_size - cursor} bytes after the last tensor are not described by the header"
        raise FormatError(path, problem)
    return entries, metadata


class SafetensorsFile(FileReader):
    format = "safetensors"

    def _open(self) -> None:
        size = self._file.size
        if size < 8:
            raise FormatError(self.path, f"truncated: {size} bytes, too short for the 8-byte safetensors header length")
        n = int.from_bytes(bytes(self._file.read(0, 8)), "little")
        if n > SAFETENSORS_MAX_HEADER:
            raise FormatError(self.path, f"header length {n} exceeds the {SAFETENSORS_MAX_HEADER}-byte cap (corrupt or not safetensors)")
        if 8 + n > size:
            raise FormatError(self.path, f"header length {n} runs past the end of the file ({size} bytes; truncated?)")
        raw = bytes(self._file.read(8, n))
        if not raw.lstrip().startswith(b"{"):
            raise FormatError(self.path, "not a safetensors file: the header does not start with '{'")
        self._entries, self.metadata = parse_header(self.path, raw, size)
        self._data_start = 8 + n

    def names(self) -> list[str]:
        return list(self._entries)

    def info(self, name: str) -> TensorInfo:
        return self._entries[name][0]

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        info = self._entries[name][0]
        return shaped_rows(decode(info.dtype, self.raw_rows(name, start, stop).reshape(-1)), info.shape, stop - start)

    def read_cols(self, name: str, start: int, stop: int) -> np.ndarray:
        """Columns [start, stop) of every row of the tensor's 2-D view: (n_rows, stop - start) float32."""
        info = self._entries[name][0]
        return decode(info.dtype, self.raw_cols(name, start, stop).reshape(-1)).reshape(info.n_rows, stop - start)

    def raw_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """The stored bytes of rows [start, stop): (stop - start, row bytes) uint8, one contiguous read. Packed
        quantised tensors are decoded from these (an int32 word is not a float32 value)."""
        info, begin = self._entries[name]
        check_row_range(self.path, info, start, stop)
        row_bytes = info.n_cols * DTYPES[info.dtype].itemsize
        return self._file.read(self._data_start + begin + start * row_bytes, (stop - start) * row_bytes).reshape(
            stop - start, row_bytes)

    def raw_cols(self, name: str, start: int, stop: int) -> np.ndarray:
        """The stored bytes of columns [start, stop) of every row: (n_rows, (stop - start) * itemsize) uint8, one
        strided run per row (`base.MappedFile.read_strided`): formats that pack along the input dimension keep
        a canonical row in a stored column."""
        info, begin = self._entries[name]
        check_col_range(self.path, info, start, stop)
        size = DTYPES[info.dtype].itemsize
        return self._file.read_strided(self._data_start + begin + start * size, (stop - start) * size,
                                       info.n_cols * size, info.n_rows)
