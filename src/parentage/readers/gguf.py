"""GGUF: header parsed here, quantised rows dequantised with the `gguf` package.

We parse the header ourselves because `gguf.GGUFReader` builds a numpy object per vocabulary entry, which
costs seconds on a 150k-token vocabulary; here large string arrays are skipped over and decoded only when
someone asks for them.

llama.cpp's converter reorders the rows of Q and K in llama-family models (it interleaves the two halves of
each rotary head). We undo that on read, so GGUF tensors come back in the Hugging Face row order and can be
compared with safetensors checkpoints directly.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import (GGUF_MAX_ARRAY, GGUF_MAX_HEADER, GGUF_MAX_ITEMS, GGUF_MAX_KEYS, GGUF_MAX_NESTING, GGUF_MAX_STRING, GGUF_REMOTE_HEAD,
                         GGUF_MAX_TENSORS, MAX_DIM)
from ..dtypes import decode
from ..errors import FormatError, LimitError, UnsupportedDtypeError
from .base import FileReader, TensorInfo, check_row_range, is_local, rows_cols, shaped_rows

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Metadata value types: code -> (struct format, size); 8 = string, 9 = array.
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9

# GGML tensor types we decode with our own dtype table (the rest go through gguf.quants).
_PLAIN = {0: "F32", 1: "F16", 30: "BF16", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64"}

# Architectures whose converter permutes Q/K rows (llama.cpp's LlamaModel.permute and its subclasses).
PERMUTED_QK_ARCHS = {"llama", "granite", "granitemoe", "deci"}


@dataclass(frozen=True)
class LazyStrings:
    """An array of strings in the header, decoded on demand (vocabularies are large)."""

    offset: int
    count: int

    def __len__(self) -> int:
        return self.count


class _NeedMore(Exception):
    """The header runs past the bytes fetched so far (a remote file is read a few MB at a time)."""


class _Cursor:
    def __init__(self, path: Path, buf: memoryview, partial: bool = False):
        self.path, self.buf, self.pos, self.partial = path, buf, 0, partial
        self.items = 0  # keys, array elements and tensor entries parsed: a small file must not mean unbounded work

    def count(self, n: int) -> None:
        self.items += n
        if self.items > GGUF_MAX_ITEMS:
            raise LimitError(self.path, f"GGUF header holds more than {GGUF_MAX_ITEMS:,} keys, array elements and "
                                        "tensors (corrupt or hostile)")

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            if self.partial:
                raise _NeedMore
            raise FormatError(self.path, f"truncated GGUF header: needs {n} bytes at offset {self.pos}, file ends at {len(self.buf)}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, size: int):
        return struct.unpack(fmt, self.take(size))[0]

    def string(self) -> str:
        n = self.unpack("<Q", 8)
        if n > GGUF_MAX_STRING:
            raise FormatError(self.path, f"GGUF string of {n} bytes at offset {self.pos} exceeds the cap")
        return bytes(self.take(n)).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = int.from_bytes(self.take(8), "little")
        if n > GGUF_MAX_STRING:
            raise FormatError(self.path, f"GGUF string of {n} bytes at offset {self.pos} exceeds the cap")
        self.take(n)

    def value(self, vtype: int, depth: int = 0):
        if vtype in _SCALARS:
            return self.unpack(*_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<I", 4), self.unpack("<Q", 8)
            if count > GGUF_MAX_ARRAY:
                raise LimitError(self.path, f"GGUF array of {count:,} elements exceeds the cap ({GGUF_MAX_ARRAY:,})")
            self.count(count)
            if etype in _NUMPY:
                size = _SCALARS[etype][1]
                arr = np.frombuffer(self.take(size * count), dtype=_NUMPY[etype]).copy()
                return arr.astype(bool) if etype == 7 else arr
            if etype == _STRING:
                start = self.pos
                for _ in range(count):
                    self.skip_string()
                return LazyStrings(start, count)
            if etype == _ARRAY:
                if depth >= GGUF_MAX_NESTING:
                    raise LimitError(self.path, f"GGUF arrays nested deeper than {GGUF_MAX_NESTING} levels")
                return [self.value(_ARRAY, depth + 1) for _ in range(count)]
            raise FormatError(self.path, f"unknown GGUF array element type {etype}")
        raise FormatError(self.path, f"unknown GGUF metadata value type {vtype} at offset {self.pos}")


def llama_qk_row_map(n_rows: int, n_head: int) -> np.ndarray:
    """For each Hugging Face row of Q (or K), the GGUF row that holds it.

    The converter maps HF row (h, j, i) — head h, half j of the rotary pair, index i within the half — to GGUF
    row (h, i, j). Inverting it lets us read HF rows from the file.
    """
    head_dim = n_rows // n_head
    half = head_dim // 2
    r = np.arange(n_rows)
    h, within = r // head_dim, r % head_dim
    j, i = within // half, within % half
    return h * head_dim + 2 * i + j


class GGUFFile(FileReader):
    format = "gguf"
    _buf = None

    def _open(self) -> None:
        if self._file.size < 24:
            raise FormatError(self.path, f"truncated: {self._file.size} bytes, too short for a GGUF header")
        # Map the header region once (a remote file: its first few MB, more until the header fits); bytes are
        # counted below once we know where the tensor data starts.
        limit = min(self._file.size, GGUF_MAX_HEADER)
        want = limit if is_local(self._file) else min(limit, GGUF_REMOTE_HEAD)
        while True:
            view = memoryview(self._file.read(0, want))
            self.stats.bytes_read -= len(view)
            try:
                return self._parse(view, partial=want < limit)
            except _NeedMore:
                want = min(limit, 2 * want)

    def _parse(self, view: memoryview, partial: bool) -> None:
        cur = _Cursor(self.path, view, partial)
        if bytes(cur.take(4)) != MAGIC:
            raise FormatError(self.path, "not a GGUF file (magic bytes are not 'GGUF')")
        self.version = cur.unpack("<I", 4)
        if self.version not in (2, 3):
            hint = " (big-endian files are not supported)" if self.version > 0xFFFF else ""
            raise FormatError(self.path, f"unsupported GGUF version {self.version}{hint}")
        n_tensors, n_kv = cur.unpack("<Q", 8), cur.unpack("<Q", 8)
        if n_tensors > GGUF_MAX_TENSORS or n_kv > GGUF_MAX_KEYS:
            raise LimitError(self.path, f"implausible GGUF counts: {n_tensors:,} tensors, {n_kv:,} metadata keys "
                                        f"(caps {GGUF_MAX_TENSORS:,} and {GGUF_MAX_KEYS:,})")
        self.metadata: dict = {}
        for _ in range(n_kv):
            cur.count(1)
            key = cur.string()
            if key in self.metadata:
                raise FormatError(self.path, f"metadata key {key[:80]!r} appears twice")
            self.metadata[key] = cur.value(cur.unpack("<I", 4))
        self._buf = view

        raw_infos, seen = [], set()
        for _ in range(n_tensors):
            cur.count(1)
            name = cur.string()
            if name in seen:
                raise FormatError(self.path, f"tensor {name[:80]!r} is listed twice")
            seen.add(name)
            n_dims = cur.unpack("<I", 4)
            if n_dims > 8:
                raise FormatError(self.path, f"tensor {name[:80]!r} claims {n_dims} dimensions")
            dims = [cur.unpack("<Q", 8) for _ in range(n_dims)]
            if any(d > MAX_DIM for d in dims):
                raise FormatError(self.path, f"tensor {name[:80]!r} has a dimension beyond 2^40 ({dims})")
            raw_infos.append((name, dims, cur.unpack("<I", 4), cur.unpack("<Q", 8)))
        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
            raise FormatError(self.path, f"general.alignment {alignment} is not a power of two")
        self._data_start = -(-cur.pos // alignment) * alignment
        self.stats.add(cur.pos)

        self._entries: dict[str, tuple[TensorInfo, int, int]] = {}  # name -> (info, ggml type, absolute offset)
        spans = []
        for name, dims, ggml_type, offset in raw_infos:
            info = self._tensor_info(name, dims, ggml_type)
            if name in self._entries:
                raise FormatError(self.path, f"tensor {name!r} is listed twice")
            if offset % alignment:
                raise FormatError(self.path, f"tensor {name!r} offset {offset} is not aligned to {alignment}")
            begin = self._data_start + offset
            if begin + info.nbytes > self._file.size:
                raise FormatError(
                    self.path, f"tensor {name!r} ends at byte {begin + info.nbytes}, past the end of the file ({self._file.size} bytes; truncated?)"
                )
            self._entries[name] = (info, ggml_type, begin)
            spans.append((begin, begin + info.nbytes, name))
        self._check_tiling(sorted(spans), alignment)
        arch = self.metadata.get("general.architecture", "")
        self.arch = arch if isinstance(arch, str) else ""

    def _check_tiling(self, spans: list[tuple[int, int, str]], alignment: int) -> None:
        """The tensors must tile the data section as the writer lays them out (each at the next aligned offset
        after the one before, the last ending the file): a header whose tensor count is one short, or whose
        offsets were shifted, would otherwise have every tensor read from the wrong bytes."""
        cursor, prev = self._data_start, None
        for begin, end, name in spans:
            if begin < cursor:
                raise FormatError(self.path, f"tensor {name!r} overlaps tensor {prev!r}")
            if begin - cursor >= alignment:
                raise FormatError(self.path, f"{begin - cursor:,} bytes before tensor {name!r} belong to no tensor "
                                             "(a tensor missing from the header?)")
            cursor, prev = end, name
        trailing = self._file.size - (spans[-1][1] if spans else self._data_start)
        if spans and trailing >= alignment:
            raise FormatError(self.path, f"{trailing:,} bytes after the last tensor belong to no tensor "
                                         "(a tensor missing from the header?)")

    def _tensor_info(self, name: str, dims: list[int], ggml_type: int) -> TensorInfo:
        import gguf  # the type table lives there; imported lazily so `import parentage` stays light

        try:
            qtype = gguf.GGMLQuantizationType(ggml_type)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise UnsupportedDtypeError(self.path, f"tensor {name!r} has unknown GGML type {ggml_type}") from None
        if dims and dims[0] % block:
            raise FormatError(self.path, f"tensor {name!r}: row length {dims[0]} is not a multiple of the {qtype.name} block size {block}")
        n_elems = math.prod(dims) if dims else 1
        shape = tuple(int(d) for d in reversed(dims))  # GGUF lists the innermost dimension first
        return TensorInfo(name, qtype.name, shape, str(self.path), n_elems // block * type_size)

    def names(self) -> list[str]:
        return list(self._entries)

    def info(self, name: str) -> TensorInfo:
        return self._entries[name][0]

    def strings(self, key: str) -> list[str]:
        """Decode a string-array metadata value (e.g. `tokenizer.ggml.tokens`)."""
        value = self.metadata[key]
        if not isinstance(value, LazyStrings):
            raise FormatError(self.path, f"metadata {key!r} is not an array of strings")
        cur = _Cursor(self.path, self._buf)
        cur.pos = value.offset
        out = [cur.string() for _ in range(value.count)]
        self.stats.add(cur.pos - value.offset)
        return out

    def _row_map(self, name: str, n_rows: int) -> np.ndarray | None:
        if self.arch not in PERMUTED_QK_ARCHS or not name.endswith(("attn_q.weight", "attn_k.weight", "attn_q.bias", "attn_k.bias")):
            return None
        key = "head_count" if "attn_q" in name else "head_count_kv"
        n_head = self.metadata.get(f"{self.arch}.attention.{key}")
        if n_head is None:
            n_head = self.metadata.get(f"{self.arch}.attention.head_count")
        if isinstance(n_head, np.ndarray):  # per-layer head counts (deci); take this layer's
            parts = name.split(".")
            layer = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() and len(parts[1]) < 9 else -1
            if not (n_head.ndim == 1 and 0 <= layer < n_head.size and np.issubdtype(n_head.dtype, np.integer)):
                return None
            n_head = int(n_head[layer])
        if isinstance(n_head, bool) or not isinstance(n_head, (int, np.integer)) or n_head <= 0 or n_rows % n_head \
                or (n_rows // n_head) % 2:
            return None
        return llama_qk_row_map(n_rows, int(n_head))

    def _read_stored_rows(self, info: TensorInfo, ggml_type: int, begin: int, start: int, stop: int) -> np.ndarray:
        import gguf

        n_cols = rows_cols(info.shape)[1]
        qtype = gguf.GGMLQuantizationType(ggml_type)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        row_bytes = n_cols // block * type_size
        raw = self._file.read(begin + start * row_bytes, (stop - start) * row_bytes)
        if ggml_type in _PLAIN:
            return decode(_PLAIN[ggml_type], raw).reshape(stop - start, n_cols)
        try:
            rows = gguf.quants.dequantize(raw.reshape(stop - start, row_bytes), qtype)
        except NotImplementedError:
            raise UnsupportedDtypeError(self.path, f"tensor {info.name!r}: the gguf package cannot dequantise {qtype.name}") from None
        return np.asarray(rows, dtype=np.float32).reshape(stop - start, n_cols)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        info, ggml_type, begin = self._entries[name]
        check_row_range(self.path, info, start, stop)
        row_map = self._row_map(name, info.n_rows)
        if row_map is None or stop == start:
            rows = self._read_stored_rows(info, ggml_type, begin, start, stop)
        else:
            src = row_map[start:stop]
            lo, hi = int(src.min()), int(src.max()) + 1  # one contiguous read covering the rows we need
            rows = self._read_stored_rows(info, ggml_type, begin, lo, hi)[src - lo]
        return shaped_rows(rows.reshape(-1), info.shape, stop - start)

    def close(self) -> None:
        self._buf = None
        self._file.close()
