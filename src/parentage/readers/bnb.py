"""bitsandbytes checkpoints as transformers saves them: 4-bit NF4/FP4 and LLM.int8.

4-bit (`load_in_4bit`), for a weight `X` of shape (out, in):
- `X` holds the codes of the weight flattened row by row, two per byte, the first in the high nibble; stored as
  uint8 (n, 1), or the same bytes viewed as another dtype (`bnb_4bit_quant_storage`);
- `X.absmax` the absolute maximum of each block of `blocksize` consecutive values (64 by default), float32, or
  with nested ("double") quantisation uint8 codes of it: absmax = nested_quant_map[code] *
  nested_absmax[block // nested_blocksize] + nested_offset;
- `X.quant_map` the 16 values a code stands for (NF4's normal quantiles or FP4's), `X.nested_quant_map` the 256
  of the nested codes;
- `X.quant_state.bitsandbytes__nf4` (or `__fp4`) a JSON object stored as uint8 bytes: quant_type, blocksize,
  dtype, shape, nested_blocksize, nested_offset.
W.flat[j] = quant_map[code j] * absmax[j // blocksize]. A block of canonical rows is one contiguous read.

LLM.int8 (`load_in_8bit`): `X` int8 (out, in) and `X`'s `SCB` (out,) float32, the absolute maximum of each row:
W[o] = X[o] * SCB[o] / 127 (`weight_format` beside them says the rows are in plain order).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..constants import MAX_DIM
from ..dtypes import DTYPES
from ..errors import FormatError, UnsupportedQuantizationError
from ..safeio import parse_json
from .packed import FLOATS, Packed, Parts, expect, floats_rows, need, words_rows

BLOB_PREFIX = ".quant_state.bitsandbytes__"
QUANT_TYPES = ("nf4", "fp4")
BLOCK_SIZES = frozenset({32, 64, 128, 256, 512, 1024, 2048, 4096})
BLOB_MAX_BYTES = 1 << 16  # the blob holds a few fields


def _blob(stored: Parts, name: str) -> dict:
    info = stored.info(name)
    expect(info.dtype == "U8" and info.nbytes <= BLOB_MAX_BYTES, info.file,
           f"{name}: a bitsandbytes quant state should be a small uint8 tensor, is {info.dtype}{list(info.shape)}")
    raw = bytes(words_rows(stored, name, 0, info.n_rows).reshape(-1))
    doc = parse_json(info.file, raw, f"bitsandbytes quant state {name!r}")
    expect(isinstance(doc, dict), info.file, f"{name}: the quant state is not a JSON object")
    return doc


def _positive_int(doc: dict, key: str, where: str, name: str) -> int:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_DIM:
        raise FormatError(where, f"{name}: quant state {key} = {str(v)[:40]!r} is not a positive integer")
    return v


def _codebook_steps(code: np.ndarray) -> np.ndarray:
    """For each code, the larger gap to its neighbours in value (how far rounding to it may have moved a value)."""
    order = np.argsort(code)
    v = code[order].astype(np.float64)
    gaps = np.diff(v)
    larger = np.maximum(np.concatenate([[0.0], gaps]), np.concatenate([gaps, [0.0]]))
    out = np.empty(len(code), dtype=np.float32)
    out[order] = larger
    return out


class NF4Weight(Packed):
    """A 4-bit bitsandbytes weight (NF4 or FP4)."""

    method = "bitsandbytes"
    bits = 4
    symmetric = True

    def __init__(self, stored: Parts, name: str, blob_name: str):
        doc = _blob(stored, blob_name)
        where = stored.info(blob_name).file
        qtype = doc.get("quant_type")
        if qtype not in QUANT_TYPES:
            raise UnsupportedQuantizationError(where, f"{name}: bitsandbytes quant_type {str(qtype)[:20]!r} "
                                                      "(parentage reads nf4 and fp4)")
        shape = doc.get("shape")
        expect(isinstance(shape, list) and 1 <= len(shape) <= 4
               and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM for d in shape),
               where, f"{name}: quant state shape {str(shape)[:60]} is not a list of positive integers")
        self.blocksize = _positive_int(doc, "blocksize", where, name)
        if self.blocksize not in BLOCK_SIZES:
            raise UnsupportedQuantizationError(where, f"{name}: block size {self.blocksize} is not one bitsandbytes uses")
        numel = math.prod(shape)
        data = need(stored, name, tuple(DTYPES), (1, 2), "a bitsandbytes 4-bit weight", where)
        self.itemsize = DTYPES[data.dtype].itemsize
        expect(data.n_cols == 1 and data.nbytes >= -(-numel // 2), where,
               f"{name}: {data.dtype}{list(data.shape)} cannot hold the {numel} 4-bit codes of a {shape} weight")
        absmax = need(stored, name + ".absmax", FLOATS + ("U8",), 1, "a bitsandbytes 4-bit weight", where)
        n_blocks = -(-numel // self.blocksize)
        expect(absmax.shape[0] == n_blocks, where, f"{name}.absmax has {absmax.shape[0]} entries for {n_blocks} blocks")
        need(stored, name + ".quant_map", FLOATS, 1, "a bitsandbytes 4-bit weight", where)
        expect(stored.info(name + ".quant_map").shape == (16,), where, f"{name}.quant_map should hold 16 values")
        parts = [name, name + ".absmax", name + ".quant_map", blob_name]
        self.nested = absmax.dtype == "U8"
        if self.nested:
            nested = need(stored, name + ".nested_absmax", FLOATS, 1, "a nested bitsandbytes weight", where)
            need(stored, name + ".nested_quant_map", FLOATS, 1, "a nested bitsandbytes weight", where)
            self.nested_block = _positive_int(doc, "nested_blocksize", where, name)
            expect(nested.shape[0] == -(-n_blocks // self.nested_block), where,
                   f"{name}.nested_absmax has {nested.shape[0]} entries for {n_blocks} blocks in nests of "
                   f"{self.nested_block}")
            expect(stored.info(name + ".nested_quant_map").shape == (256,), where,
                   f"{name}.nested_quant_map should hold 256 values")
            offset = doc.get("nested_offset")
            expect(isinstance(offset, (int, float)) and not isinstance(offset, bool) and math.isfinite(offset), where,
                   f"{name}: quant state nested_offset is not a number")
            self.offset = float(offset)
            parts += [name + ".nested_absmax", name + ".nested_quant_map"]
        super().__init__(stored, name, tuple(shape), tuple(parts), qtype.upper())
        self.layout, self.group_size, self.n_cols = qtype, self.blocksize, math.prod(shape[1:]) if len(shape) > 1 else 1
        self._tables = None
        self._lock = threading.Lock()

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The codebook, its steps, and the nested codebook (read once)."""
        with self._lock:
            if self._tables is None:
                code = floats_rows(self.stored, self.parts[2], 0, 16).reshape(16)
                nested = floats_rows(self.stored, self.parts[5], 0, 256).reshape(256) if self.nested else None
                self._tables = (code, _codebook_steps(code), nested)
            return self._tables

    def decode(self, start: int, stop: int, steps: bool):
        name, absmax_name = self.parts[:2]
        code, code_steps, nested = self.tables()
        e0, e1 = start * self.n_cols, stop * self.n_cols  # elements of the flattened weight
        b0, b1 = e0 // 2, -(-e1 // 2)  # bytes holding them
        r0, r1 = b0 // self.itemsize, -(-b1 // self.itemsize)  # stored rows (of itemsize bytes) holding those
        raw = self.stored.raw_rows(name, r0, r1).reshape(-1)[b0 - r0 * self.itemsize: b1 - r0 * self.itemsize]
        codes = np.empty(2 * raw.size, dtype=np.uint8)
        codes[0::2], codes[1::2] = raw >> 4, raw & 0x0F  # the first value of a byte in its high nibble
        codes = codes[e0 - 2 * b0: e0 - 2 * b0 + (e1 - e0)]
        k0, k1 = e0 // self.blocksize, -(-e1 // self.blocksize)
        absmax = floats_rows(self.stored, absmax_name, k0, k1).reshape(-1)
        if self.nested:
            n0, n1 = k0 // self.nested_block, (k1 - 1) // self.nested_block + 1
            outer = floats_rows(self.stored, self.parts[4], n0, n1).reshape(-1)
            absmax = nested[absmax.astype(np.int64)] * outer[np.arange(k0, k1) // self.nested_block - n0] + self.offset
        block = absmax[np.arange(e0, e1) // self.blocksize - k0]  # (k * n_cols,)
        values = code[codes] * block
        return values.reshape(stop - start, -1), ((code_steps[codes] * np.abs(block)).reshape(stop - start, -1)
                                                   if steps else None)


class Int8Weight(Packed):
    """An LLM.int8 weight: int8 rows with their absolute maxima."""

    method = "bitsandbytes"
    bits = 8
    symmetric = True
    layout = "llm.int8"
    group_size = 0

    def __init__(self, stored: Parts, name: str, scb: str, where: str):
        info = need(stored, name, ("I8",), 2, "an LLM.int8 weight", where)
        s = need(stored, scb, FLOATS, 1, "an LLM.int8 weight", where)
        expect(s.shape[0] == info.shape[0], info.file, f"{scb} has {s.shape[0]} entries for {info.shape[0]} rows")
        parts = (name, scb)
        fmt = scb[: -len("SCB")] + "weight_format"
        if fmt in stored:
            f = stored.info(fmt)
            value = words_rows(stored, fmt, 0, f.n_rows).reshape(-1) if f.dtype in ("U8", "I8", "I32", "I64") else None
            if value is None or value.size != 1 or int(value[0]) != 0:
                raise UnsupportedQuantizationError(f.file, f"{fmt}: LLM.int8 rows in a GPU tile layout (not 'row') "
                                                           "are not read")
            parts += (fmt,)
        super().__init__(stored, name, info.shape, parts, "INT8")

    def decode(self, start: int, stop: int, steps: bool):
        q = floats_rows(self.stored, self.parts[0], start, stop)  # (k, in) the int8 values
        step = floats_rows(self.stored, self.parts[1], start, stop).reshape(-1, 1) / 127.0  # (k, 1)
        return q * step, (np.broadcast_to(np.abs(step), q.shape) if steps else None)


def claim(stored: Parts, qc: dict, where: str) -> list[Packed]:
    out: list[Packed] = []
    for name in stored.names():
        for qtype in QUANT_TYPES:
            if name.endswith(BLOB_PREFIX + qtype):
                out.append(NF4Weight(stored, name[: -len(BLOB_PREFIX + qtype)], name))
        if name.endswith(".SCB"):
            weight = name[: -len("SCB")] + "weight"
            out.append(Int8Weight(stored, weight, name, where))
    return out
