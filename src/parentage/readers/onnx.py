"""ONNX exports (torch.onnx, optimum, transformers.js, onnxruntime-genai): weights found through the graph.

An ONNX model is a protobuf `ModelProto` whose graph holds nodes and initializers (and `Constant` nodes); an
initializer's bytes lie in the file (`raw_data`, packed `float_data`) or in an external data file beside it
(`location`, `offset`, `length`). We parse the protobuf ourselves, field by field through the reader's byte
source, recording where tensor bytes lie and never reading them during the parse: every length is checked
against the bytes that remain before anything is taken, counts and string sizes are capped (constants.py),
and subgraphs (If, Loop) are skipped. A hostile file cannot make the parse allocate more than its caps.

A weight is what a node computes with: an initializer reached from a MatMul, Gemm, Gather, MatMulNBits or a
normalisation's scale, possibly through Transpose, Cast, Reshape and DequantizeLinear:
- MatMul(x, W) stores W as (in, out): a canonical row is a stored column, read as one strided run per stored
  row; Gemm with transB=1 stores (out, in);
- DequantizeLinear(q, scale, zero_point, axis, block_size) on int8/uint8/int4/uint4: (q - zero) * scale, per
  tensor, per axis, or in blocks along the axis;
- com.microsoft MatMulNBits(A, B, scales, zero_points, K, N, bits, block_size): B (N, blocks, block*bits/8)
  uint8 with codes low bits first, scales (N, blocks), zero points packed the same way (or floats, or 2^(b-1)
  when absent): a canonical row is a stored row.
The weight's name is the Hugging Face name its node path spells (`/model/layers.3/self_attn/q_proj/MatMul` ->
`model.layers.3.self_attn.q_proj.weight`; onnxruntime-genai's `attn` read as `self_attn`), else an
initializer's own name when it reads like one. Graphs whose nodes are anonymous (`MatMul_12`) get their roles
from the graph itself: the weight matmuls in graph order, grouped by the input they share, layer by layer
(q, k, v; o; gate, up; down), the norm scales in order.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import (MAX_DIM, MAX_TENSORS, ONNX_MAX_ATTRIBUTES, ONNX_MAX_FIELDS, ONNX_MAX_NODES,
                         ONNX_MAX_SMALL_ELEMENTS, ONNX_MAX_STRING)
from ..dtypes import DTYPES, decode
from ..errors import FormatError, LimitError, UnsupportedDtypeError
from ..safeio import is_inside
from .base import FileReader, MappedFile, TensorInfo, check_row_range, shaped_rows

# TensorProto.DataType -> our dtype name (None: known, not decodable as weights)
ONNX_DTYPES = {1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64", 9: "BOOL", 10: "F16", 11: "F64",
               12: "U32", 13: "U64", 16: "BF16", 17: "F8_E4M3", 19: "F8_E5M2", 21: "U4", 22: "I4"}
NIBBLES = ("U4", "I4")  # two values a byte, the first in the low nibble
PASS_THROUGH = ("Transpose", "Cast", "Reshape", "Identity", "Squeeze", "Unsqueeze")
NORM_OPS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "LayerNormalization",
            "SkipLayerNormalization", "RMSNormalization")
# onnxruntime-genai's module names -> Hugging Face's
GENAI_NAMES = (("attn.", "self_attn."),)
_NODE_PATH = re.compile(r"^/?(?P<path>(?:[^/]+/)*[^/]+)/(?P<op>[A-Za-z][A-Za-z0-9_]*)$")
_WIRE_VARINT, _WIRE_64, _WIRE_LEN, _WIRE_32 = 0, 1, 2, 5


class _Parse:
    """A protobuf reader over a byte source, in fixed chunks, with a budget of fields."""

    CHUNK = 1 << 20

    def __init__(self, source, path):
        self.source, self.path, self.size = source, path, source.size
        self._chunks: dict[int, bytes] = {}
        self.fields = 0
        self.bytes_fetched = 0

    def _chunk(self, k: int) -> bytes:
        if k not in self._chunks:
            if len(self._chunks) >= 64:
                self._chunks.pop(next(iter(self._chunks)))
            start = k * self.CHUNK
            n = min(self.CHUNK, self.size - start)
            data = bytes(self.source.read(start, n))
            self.source.stats.bytes_read -= n  # counted once parsing is done: what the header spans
            self.bytes_fetched += n
            self._chunks[k] = data
        return self._chunks[k]

    def take(self, pos: int, n: int) -> bytes:
        if n < 0 or pos + n > self.size:
            raise FormatError(self.path, f"protobuf field of {n} bytes at offset {pos} runs past the end of the file")
        out = bytearray()
        while n:
            k, off = divmod(pos, self.CHUNK)
            piece = self._chunk(k)[off: off + n]
            out += piece
            pos += len(piece)
            n -= len(piece)
        return bytes(out)

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        value = shift = 0
        for i in range(10):
            if pos + i >= end:
                raise FormatError(self.path, f"protobuf varint at offset {pos} runs past its message")
            b = self.take(pos + i, 1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value, pos + i + 1
            shift += 7
        raise FormatError(self.path, f"protobuf varint at offset {pos} is longer than 10 bytes")

    def fields_of(self, start: int, end: int):
        """(field number, wire type, value) of a message in [start, end): an int, or (offset, length) for bytes."""
        pos = start
        while pos < end:
            self.fields += 1
            if self.fields > ONNX_MAX_FIELDS:
                raise LimitError(self.path, f"ONNX model holds more than {ONNX_MAX_FIELDS:,} protobuf fields")
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise FormatError(self.path, f"protobuf field number 0 at offset {pos}")
            if wire == _WIRE_VARINT:
                value, pos = self.varint(pos, end)
            elif wire == _WIRE_64:
                if pos + 8 > end:
                    raise FormatError(self.path, f"protobuf fixed64 at offset {pos} runs past its message")
                value, pos = struct.unpack("<Q", self.take(pos, 8))[0], pos + 8
            elif wire == _WIRE_32:
                if pos + 4 > end:
                    raise FormatError(self.path, f"protobuf fixed32 at offset {pos} runs past its message")
                value, pos = struct.unpack("<I", self.take(pos, 4))[0], pos + 4
            elif wire == _WIRE_LEN:
                n, pos = self.varint(pos, end)
                if n > end - pos:
                    raise FormatError(self.path, f"protobuf field {number} of {n:,} bytes at offset {pos} runs past "
                                                 f"its message ({end - pos:,} bytes left)")
                value, pos = (pos, n), pos + n
            else:
                raise FormatError(self.path, f"protobuf wire type {wire} (field {number}) at offset {pos} is not "
                                             "one ONNX uses")
            yield number, wire, value

    def string(self, span: tuple[int, int]) -> str:
        pos, n = span
        if n > ONNX_MAX_STRING:
            raise LimitError(self.path, f"ONNX string of {n:,} bytes at offset {pos} exceeds the cap")
        return self.take(pos, n).decode("utf-8", errors="replace")

    def ints(self, wire: int, value, out: list, limit: int) -> None:
        """A repeated int64 field, packed or not, appended to out (at most `limit` values)."""
        if wire == _WIRE_VARINT:
            out.append(_signed64(value))
        elif wire != _WIRE_LEN:
            raise FormatError(self.path, f"a repeated integer field is stored as wire type {wire}, not as varints")
        else:
            pos, n = value
            end = pos + n
            while pos < end:
                v, pos = self.varint(pos, end)
                out.append(_signed64(v))
                if len(out) > limit:
                    raise LimitError(self.path, f"a repeated integer field holds more than {limit:,} values")
        if len(out) > limit:
            raise LimitError(self.path, f"a repeated integer field holds more than {limit:,} values")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass
class _Tensor:
    name: str
    dims: list[int]
    dtype: str | None
    where: tuple  # ("raw", offset, n) | ("varint", offset, n, wide) | ("external", location, offset, length) | ("none",)


@dataclass
class _Node:
    name: str
    op: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


def _tensor(p: _Parse, start: int, end: int) -> _Tensor:
    dims: list[int] = []
    dtype_code, name, where = 0, "", ("none",)
    external: dict[str, str] = {}
    location = 0
    for number, wire, value in p.fields_of(start, end):
        if number == 1:
            p.ints(wire, value, dims, 8)
        elif number == 2 and wire == _WIRE_VARINT:
            dtype_code = value
        elif number == 8 and wire == _WIRE_LEN:
            name = p.string(value)
        elif number == 9 and wire == _WIRE_LEN:
            where = ("raw", *value)
        elif number == 4 and wire == _WIRE_LEN:  # packed float_data: the bytes of a little-endian float32 array
            where = ("raw", *value)
        elif number in (5, 7, 11) and wire == _WIRE_LEN:  # int32_data, int64_data, uint64_data: varints
            where = ("varint", *value)
        elif number == 10 and wire == _WIRE_LEN:  # packed double_data
            where = ("raw", *value)
        elif number == 13 and wire == _WIRE_LEN:
            key = val = ""
            for n2, w2, v2 in p.fields_of(*_span(value)):
                if n2 == 1 and w2 == _WIRE_LEN:
                    key = p.string(v2)
                elif n2 == 2 and w2 == _WIRE_LEN:
                    val = p.string(v2)
            if len(external) < 16:
                external[key] = val
        elif number == 14 and wire == _WIRE_VARINT:
            location = value
        elif number == 3:
            raise FormatError(p.path, f"tensor {name or '?'!r} is stored in segments, which parentage does not read")
    if any(d < 0 or d > MAX_DIM for d in dims):
        raise FormatError(p.path, f"tensor {name!r} has dimensions {dims[:8]} outside [0, 2^40]")
    if location == 1:
        where = ("external", external.get("location", ""), external.get("offset", "0"), external.get("length"))
    return _Tensor(name, dims, ONNX_DTYPES.get(dtype_code), where)


def _span(value: tuple[int, int]) -> tuple[int, int]:
    pos, n = value
    return pos, pos + n


def _node(p: _Parse, start: int, end: int) -> tuple[_Node, list[_Tensor]]:
    node = _Node("", "", "", [], [])
    constants: list[_Tensor] = []
    for number, wire, value in p.fields_of(start, end):
        if wire != _WIRE_LEN:
            continue
        if number == 1:
            node.inputs.append(p.string(value))
        elif number == 2:
            node.outputs.append(p.string(value))
        elif number == 3:
            node.name = p.string(value)
        elif number == 4:
            node.op = p.string(value)
        elif number == 7:
            node.domain = p.string(value)
        elif number == 5:
            if len(node.attrs) >= ONNX_MAX_ATTRIBUTES:
                raise LimitError(p.path, f"node {node.name!r} has more than {ONNX_MAX_ATTRIBUTES} attributes")
            name, val = _attribute(p, *_span(value))
            if isinstance(val, _Tensor):
                constants.append(val)
            node.attrs[name] = val
        if len(node.inputs) + len(node.outputs) > 4096:
            raise LimitError(p.path, f"node {node.name!r} has more than 4096 inputs and outputs")
    for t in constants:  # a Constant node's tensor is named by the node's output
        t.name = node.outputs[0] if node.outputs else t.name
    return node, constants


def _attribute(p: _Parse, start: int, end: int):
    name, value = "", None
    ints: list[int] = []
    for number, wire, v in p.fields_of(start, end):
        if number == 1 and wire == _WIRE_LEN:
            name = p.string(v)
        elif number == 3 and wire == _WIRE_VARINT:
            value = _signed64(v)
        elif number == 2 and wire == _WIRE_32:
            value = struct.unpack("<f", struct.pack("<I", v))[0]
        elif number == 4 and wire == _WIRE_LEN:
            value = p.string(v)
        elif number == 8:
            p.ints(wire, v, ints, 64)
            value = ints
        elif number == 5 and wire == _WIRE_LEN:
            value = _tensor(p, *_span(v))
        # graphs (6, 11) and the rest: not needed for weights, skipped
    return name, value


def _graph(p: _Parse, start: int, end: int) -> tuple[list[_Node], list[_Tensor]]:
    nodes, tensors = [], []
    for number, wire, value in p.fields_of(start, end):
        if wire != _WIRE_LEN:
            continue
        if number == 1:
            node, constants = _node(p, *_span(value))
            nodes.append(node)
            tensors += constants
            if len(nodes) > ONNX_MAX_NODES:
                raise LimitError(p.path, f"ONNX graph holds more than {ONNX_MAX_NODES:,} nodes")
        elif number == 5:
            tensors.append(_tensor(p, *_span(value)))
            if len(tensors) > MAX_TENSORS:
                raise LimitError(p.path, f"ONNX graph holds more than {MAX_TENSORS:,} initializers")
    return nodes, tensors


# -- the stored bytes of one tensor -------------------------------------------------------------------------------


@dataclass
class _Stored:
    """One tensor's bytes: a source (the model file, an external data file, or decoded varints in memory)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    source: object
    offset: int

    @property
    def rows_cols(self) -> tuple[int, int]:
        if len(self.dims) == 0:
            return 1, 1
        if len(self.dims) == 1:
            return self.dims[0], 1
        return math.prod(self.dims[:-1]), self.dims[-1]

    @property
    def nbytes(self) -> int:
        n = math.prod(self.dims) if self.dims else 1
        return -(-n // 2) if self.dtype in NIBBLES else n * DTYPES[self.dtype].itemsize

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the 2-D view as float32 values (integers as their values)."""
        _, cols = self.rows_cols
        if self.dtype in NIBBLES:
            e0, e1 = start * cols, stop * cols
            raw = self.source.read(self.offset + e0 // 2, -(-e1 // 2) - e0 // 2)
            return _nibbles(raw, self.dtype)[e0 % 2: e0 % 2 + e1 - e0].astype(np.float32).reshape(stop - start, cols)
        size = DTYPES[self.dtype].itemsize
        raw = self.source.read(self.offset + start * cols * size, (stop - start) * cols * size)
        return decode(self.dtype, raw).reshape(stop - start, cols)

    def cols(self, start: int, stop: int) -> np.ndarray:
        """Columns [start, stop) of every row of the 2-D view, (rows, stop - start): one strided run a row."""
        rows, cols = self.rows_cols
        if self.dtype in NIBBLES:
            if cols % 2:  # rows do not start on a byte: read them whole
                return self.rows(0, rows)[:, start:stop]
            lo, hi = start - start % 2, stop + stop % 2
            raw = self._strided(lo // 2, (hi - lo) // 2, cols // 2, rows)
            return _nibbles(raw.reshape(-1), self.dtype).reshape(rows, hi - lo)[:, start - lo: stop - lo].astype(np.float32)
        size = DTYPES[self.dtype].itemsize
        raw = self._strided(start * size, (stop - start) * size, cols * size, rows)
        return decode(self.dtype, raw.reshape(-1)).reshape(rows, stop - start)

    def _strided(self, first: int, seg: int, stride: int, count: int) -> np.ndarray:
        return self.source.read_strided(self.offset + first, seg, stride, count)

    def whole(self) -> np.ndarray:
        rows, cols = self.rows_cols
        return self.rows(0, rows).reshape(self.dims if self.dims else ())

    def flat(self, start: int, stop: int) -> np.ndarray:
        """Elements [start, stop) of the tensor in storage order, as float32 values: one contiguous read."""
        if self.dtype in NIBBLES:
            raw = self.source.read(self.offset + start // 2, -(-stop // 2) - start // 2)
            return _nibbles(raw, self.dtype)[start % 2: start % 2 + stop - start].astype(np.float32)
        size = DTYPES[self.dtype].itemsize
        return decode(self.dtype, self.source.read(self.offset + start * size, (stop - start) * size))


def _nibbles(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Bytes -> their 4-bit values, low nibble first (int4 sign-extended)."""
    raw = np.asarray(raw, dtype=np.uint8)
    out = np.empty(raw.size * 2, dtype=np.int16)
    out[0::2], out[1::2] = raw & 0x0F, raw >> 4
    if dtype == "I4":
        out = np.where(out >= 8, out - 16, out)
    return out


class _Memory:
    """Decoded varint data held in memory, with a byte source's verbs (small tensors only)."""

    def __init__(self, data: bytes, stats):
        self.data, self.size, self.stats = np.frombuffer(data, dtype=np.uint8), len(data), stats

    def read(self, offset: int, n: int) -> np.ndarray:
        return self.data[offset: offset + n]

    def read_strided(self, offset: int, seg: int, stride: int, count: int) -> np.ndarray:
        return np.stack([self.data[offset + k * stride: offset + k * stride + seg] for k in range(count)]) if count \
            else np.empty((0, seg), np.uint8)

    def close(self) -> None:
        pass


# -- weights: what the graph computes with ----------------------------------------------------------------------


class _Weight:
    """A canonical weight: (out, in) for matrices, rows read on request."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str, nbytes: int, file: str):
        self.info = TensorInfo(name, dtype, shape, file, nbytes)

    def rows(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def steps(self, start: int, stop: int) -> np.ndarray | None:
        return None


class _Plain(_Weight):
    def __init__(self, name: str, t: _Stored, transposed: bool, file: str):
        rows, cols = t.rows_cols
        shape = (cols, rows) if transposed else (tuple(t.dims) if len(t.dims) <= 2 else (rows, cols))
        super().__init__(name, shape, t.dtype, t.nbytes, file)
        self.t, self.transposed = t, transposed

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self.transposed:
            return np.ascontiguousarray(self.t.cols(start, stop).T)
        return self.t.rows(start, stop)


class _Dequant(_Weight):
    """DequantizeLinear: (q - zero) * scale, per tensor, per axis or in blocks along the axis."""

    def __init__(self, name: str, q: _Stored, scale: _Stored, zero: _Stored | None, axis: int, block: int,
                 transposed: bool, file: str):
        rows, cols = q.rows_cols
        if len(q.dims) != 2:
            raise FormatError(file, f"DequantizeLinear weight {q.name!r} is {len(q.dims)}-D; parentage reads 2-D ones")
        shape = (cols, rows) if transposed else (rows, cols)
        super().__init__(name, shape, f"ONNX-{q.dtype}", q.nbytes + scale.nbytes, file)
        axis = axis % 2
        n_scale = math.prod(scale.dims) if scale.dims else 1
        if n_scale == 1:
            self.layout = "tensor"
        elif block and len(scale.dims) == 2:
            self.layout = "block"
            expect_dims = [rows, cols]
            expect_dims[axis] = -(-expect_dims[axis] // block)
            if list(scale.dims) != expect_dims:
                raise FormatError(file, f"DequantizeLinear scale {scale.name!r} {scale.dims} does not block "
                                        f"{q.name!r} {q.dims} by {block} along axis {axis}")
        elif len(scale.dims) == 1 and scale.dims[0] == q.dims[axis]:
            self.layout = "axis"
        else:
            raise FormatError(file, f"DequantizeLinear scale {scale.name!r} {scale.dims} fits neither a tensor, "
                                    f"axis {axis} nor blocks of {q.name!r} {q.dims}")
        if zero is not None and (math.prod(zero.dims) if zero.dims else 1) != n_scale:
            raise FormatError(file, f"DequantizeLinear zero point {zero.name!r} {zero.dims} does not match its scale")
        self.q, self.scale, self.zero, self.axis, self.block, self.transposed = q, scale, zero, axis, block, transposed
        self._params = None

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero) broadcast to the stored (rows, cols) shape's structure: read whole (small)."""
        if self._params is None:
            s = self.scale.whole().astype(np.float32)
            z = self.zero.whole().astype(np.float32) if self.zero is not None else np.zeros_like(s)
            self._params = (s, z)
        return self._params

    def _at(self, values: np.ndarray, stored_rows: np.ndarray, stored_cols: np.ndarray) -> np.ndarray:
        """The per-element parameter for stored coordinates (rows r, cols c) as a (len(r), len(c)) array."""
        if self.layout == "tensor":
            return np.broadcast_to(values.reshape(()), (len(stored_rows), len(stored_cols)))
        if self.layout == "axis":
            v = values.reshape(-1)
            return np.broadcast_to(v[stored_rows][:, None] if self.axis == 0 else v[stored_cols][None, :],
                                   (len(stored_rows), len(stored_cols)))
        r = stored_rows // self.block if self.axis == 0 else stored_rows
        c = stored_cols // self.block if self.axis == 1 else stored_cols
        return values[r][:, c]

    def _decode(self, start: int, stop: int, steps: bool):
        rows, cols = self.q.rows_cols
        if self.transposed:  # canonical rows [start, stop) are stored columns
            q = self.q.cols(start, stop)  # (stored rows, k)
            r, c = np.arange(rows), np.arange(start, stop)
        else:
            q = self.q.rows(start, stop)
            r, c = np.arange(start, stop), np.arange(cols)
        s, z = self.params()
        scale = self._at(s, r, c)
        values = (q - self._at(z, r, c)) * scale
        out = values.T if self.transposed else values
        return np.ascontiguousarray(out), (np.ascontiguousarray(np.abs(scale.T if self.transposed else scale))
                                           if steps else None)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._decode(start, stop, False)[0]

    def steps(self, start: int, stop: int) -> np.ndarray:
        return self._decode(start, stop, True)[1]


class _NBits(_Weight):
    """com.microsoft MatMulNBits: B (N, blocks, blob) uint8, codes low bits first along K."""

    def __init__(self, name: str, node: _Node, b: _Stored, scale: _Stored, zero: _Stored | None, file: str):
        k, n, bits, block = (node.attrs.get(x) for x in ("K", "N", "bits", "block_size"))
        bits = 4 if bits is None else bits
        if not all(isinstance(x, int) and 0 < x <= MAX_DIM for x in (k, n, bits, block)) or bits not in (2, 3, 4, 8) \
                or block < 16 or block & (block - 1):
            raise FormatError(file, f"MatMulNBits {node.name!r}: attributes K={k} N={n} bits={bits} "
                                    f"block_size={block} are not a layout parentage reads")
        blocks = -(-k // block)
        blob = block * bits // 8
        if list(b.dims) != [n, blocks, blob] or b.dtype != "U8":
            raise FormatError(file, f"MatMulNBits {node.name!r}: B {b.dtype}{b.dims} should be U8{[n, blocks, blob]}")
        if (math.prod(scale.dims) if scale.dims else 1) != n * blocks:
            raise FormatError(file, f"MatMulNBits {node.name!r}: {scale.name!r} holds {math.prod(scale.dims)} scales "
                                    f"for {n} x {blocks} blocks")
        if zero is not None:
            per_row = -(-blocks * bits // 8) if zero.dtype == "U8" else blocks
            if (math.prod(zero.dims) if zero.dims else 1) != n * per_row:
                raise FormatError(file, f"MatMulNBits {node.name!r}: zero points {zero.name!r} {zero.dims} do not fit "
                                        f"{n} rows of {blocks} blocks")
        super().__init__(name, (n, k), f"ONNX-NBITS{bits}", b.nbytes + scale.nbytes, file)
        self.b, self.scale, self.zero, self.k, self.bits, self.block, self.blocks = b, scale, zero, k, bits, block, blocks

    def _decode(self, start: int, stop: int, steps: bool):
        from .packed import unpack

        m = stop - start
        raw = self.b.source.read(self.b.offset + start * self.blocks * (self.block * self.bits // 8),
                                 m * self.blocks * (self.block * self.bits // 8))
        codes = unpack(np.asarray(raw, np.uint8).reshape(m, -1), self.bits, self.blocks * self.block)[:, : self.k]
        scales = self.scale.flat(start * self.blocks, stop * self.blocks).reshape(m, self.blocks)  # only these rows'
        if self.zero is None:
            zeros = np.full((m, self.blocks), 1 << (self.bits - 1), np.float32)
        elif self.zero.dtype == "U8":
            per_row = -(-self.blocks * self.bits // 8)
            zraw = self.zero.flat(start * per_row, stop * per_row)
            zeros = unpack(zraw.astype(np.uint8).reshape(m, per_row), self.bits, self.blocks).astype(np.float32)
        else:
            zeros = self.zero.flat(start * self.blocks, stop * self.blocks).reshape(m, self.blocks)
        g = np.arange(self.k) // self.block
        scale_at = scales[:, g]
        return (codes - zeros[:, g]) * scale_at, (np.abs(scale_at) if steps else None)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._decode(start, stop, False)[0]

    def steps(self, start: int, stop: int) -> np.ndarray:
        return self._decode(start, stop, True)[1]


class ONNXFile(FileReader):
    """An ONNX model file (and its external data files) behind the reader protocol."""

    format = "onnx"

    def __init__(self, source, siblings=None):
        self._siblings_open = siblings  # name -> byte source, for external data (None: beside a local file)
        self._external: dict[str, object] = {}
        super().__init__(source)

    def _open(self) -> None:
        p = _Parse(self._file, self.path)
        graph = None
        self.metadata = {}
        for number, wire, value in p.fields_of(0, self._file.size):
            if number == 7 and wire == _WIRE_LEN:
                graph = value
            elif number == 2 and wire == _WIRE_LEN:
                self.metadata["producer_name"] = p.string(value)
            elif number == 3 and wire == _WIRE_LEN:
                self.metadata["producer_version"] = p.string(value)
        if graph is None:
            raise FormatError(self.path, "ONNX model holds no graph")
        nodes, tensors = _graph(p, *_span(graph))
        self.stats.add(p.bytes_fetched)
        stored = {t.name: s for t in tensors if (s := self._stored(t, p)) is not None}
        self._weights = _weights(nodes, stored, str(self.path))
        if not self._weights:
            raise FormatError(self.path, "ONNX graph holds no weight tensors (no initializer a MatMul, Gemm, Gather "
                                         "or normalisation computes with)")

    def _stored(self, t: _Tensor, p: _Parse) -> _Stored | None:
        if t.dtype is None or t.where[0] == "none" or not t.name:
            return None
        s = _Stored(t.name, t.dtype, tuple(t.dims), self._file, 0)
        kind = t.where[0]
        if kind == "raw":
            _, offset, n = t.where
            if n != s.nbytes:
                raise FormatError(self.path, f"tensor {t.name!r} {t.dtype}{t.dims} needs {s.nbytes:,} bytes, holds {n:,}")
            s.offset = offset
        elif kind == "varint":
            _, offset, n = t.where
            count = math.prod(t.dims) if t.dims else 1
            if count > ONNX_MAX_SMALL_ELEMENTS:
                raise LimitError(self.path, f"tensor {t.name!r} holds {count:,} values as varints; parentage reads "
                                            f"up to {ONNX_MAX_SMALL_ELEMENTS:,} that way (re-export with raw_data)")
            values: list[int] = []
            p.ints(_WIRE_LEN, (offset, n), values, count)
            if len(values) != count or t.dtype in NIBBLES:
                raise FormatError(self.path, f"tensor {t.name!r} holds {len(values)} varint values for {count}")
            arr = _from_varints(values, t.dtype, self.path, t.name)
            s.source, s.offset = _Memory(arr.tobytes(), self.stats), 0
        else:
            _, location, offset, length = t.where
            s.source = self._external_file(location, t.name)
            try:
                s.offset = int(offset)
                length = s.nbytes if length is None else int(length)
            except ValueError:
                raise FormatError(self.path, f"tensor {t.name!r}: external offset {offset!r} or length {length!r} is "
                                             "not a number") from None
            if s.offset < 0 or length != s.nbytes or s.offset + length > s.source.size:
                raise FormatError(self.path, f"tensor {t.name!r}: {length} bytes at offset {s.offset} of {location} "
                                             f"do not hold its {s.nbytes:,} (the file has {s.source.size:,})")
        return s

    def _external_file(self, location: str, tensor: str):
        if not location or location.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", location) \
                or "\0" in location:
            raise FormatError(self.path, f"tensor {tensor!r}: external data location {location[:80]!r} is not a plain "
                                         "file name beside the model")
        if location not in self._external:
            if self._siblings_open is not None:
                src = self._siblings_open(location, self.stats)
                if src is None:
                    raise FormatError(self.path, f"external data file {location!r} is not in the repository")
            else:
                where = Path(self.path).parent / location
                if not is_inside(where, Path(self.path).parent) or not where.is_file():
                    raise FormatError(self.path, f"external data file {location!r} is missing or not a file beside "
                                                 "the model")
                src = MappedFile(where, self.stats)
            self._external[location] = src
        return self._external[location]

    def names(self) -> list[str]:
        return list(self._weights)

    def info(self, name: str) -> TensorInfo:
        return self._weights[name].info

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        w = self._weights[name]
        check_row_range(self.path, w.info, start, stop)
        if stop == start:
            return shaped_rows(np.empty(0, np.float32), w.info.shape, 0)
        return shaped_rows(np.asarray(w.rows(start, stop), dtype=np.float32).reshape(-1), w.info.shape, stop - start)

    def steps(self, name: str, start: int, stop: int) -> np.ndarray | None:
        """The quantiser's step at each value of a dequantised weight (None for a float one)."""
        return self._weights[name].steps(start, stop)

    def has_steps(self, name: str) -> bool:
        return isinstance(self._weights[name], (_Dequant, _NBits))

    @property
    def bytes_total(self) -> int:
        return self._file.size + sum(s.size for s in self._external.values())

    def close(self) -> None:
        for s in self._external.values():
            s.close()
        self._file.close()


def _from_varints(values: list[int], dtype: str, path, name: str) -> np.ndarray:
    """int32_data holds 16-bit floats as their bit patterns, small integers as themselves."""
    arr = np.array(values, dtype=np.int64)
    if dtype in ("F16", "BF16"):
        return (arr & 0xFFFF).astype("<u2")
    if dtype in ("I8", "U8", "I16", "U16", "I32", "U32", "BOOL", "F8_E4M3", "F8_E5M2"):
        np_type = {"I8": "<i1", "U8": "<u1", "I16": "<i2", "U16": "<u2", "I32": "<i4", "U32": "<u4", "BOOL": "<u1",
                   "F8_E4M3": "<u1", "F8_E5M2": "<u1"}[dtype]
        return arr.astype(np_type)
    if dtype in ("I64", "U64"):
        return arr.astype("<i8")
    raise UnsupportedDtypeError(path, f"tensor {name!r}: {dtype} stored as varints is not read")


# -- from the graph to named weights -------------------------------------------------------------------------


def _weights(nodes: list[_Node], stored: dict[str, _Stored], file: str) -> dict[str, _Weight]:
    consumers: dict[str, list[tuple[_Node, int]]] = {}
    producer: dict[str, _Node] = {}
    for node in nodes:
        for i, name in enumerate(node.inputs):
            consumers.setdefault(name, []).append((node, i))
        for name in node.outputs:
            producer[name] = node
    uses: list[tuple[str, _Node, _Weight]] = []  # (kind, the node that computes with it, the weight)
    claimed: set[str] = set()
    for node in nodes:  # MatMulNBits first: its parts are not weights of their own
        if node.op == "MatMulNBits" and len(node.inputs) >= 3 and node.inputs[1] in stored and node.inputs[2] in stored:
            zero = stored.get(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
            w = _NBits("", node, stored[node.inputs[1]], stored[node.inputs[2]], zero, file)
            uses.append(("matmul", node, w))
            claimed |= {x for x in node.inputs[1:4] if x}
    for name, t in stored.items():
        if name in claimed:
            continue
        found = _follow(name, t, consumers, stored, file)
        if found is not None:
            kind, node, weight, parts = found
            uses.append((kind, node, weight))
            claimed |= parts
    named = _name_weights(uses, nodes)
    out: dict[str, _Weight] = {}
    for (kind, node, w), name in zip(uses, named):
        if name in out:
            name = f"{name}.{node.name or node.op}"  # a second weight under one path: kept apart, not merged
        w.info = TensorInfo(name, w.info.dtype, w.info.shape, w.info.file, w.info.nbytes)
        out[name] = w
    return out


def _follow(name: str, t: _Stored, consumers: dict, stored: dict, file: str):
    """(kind, consuming node, weight, stored names it uses) for an initializer a weight op reaches, or None."""
    transposed, current, dequant = False, name, None
    for _ in range(8):
        users = consumers.get(current, [])
        if len(users) != 1:
            return None
        node, slot = users[0]
        if node.op == "DequantizeLinear" and slot == 0 and dequant is None and len(node.inputs) >= 2:
            scale = stored.get(node.inputs[1])
            zero = stored.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
            if scale is None:
                return None
            axis, block = node.attrs.get("axis", 1), node.attrs.get("block_size", 0)
            if not isinstance(axis, int) or not isinstance(block, int) or block < 0:
                raise FormatError(file, f"DequantizeLinear {node.name!r}: axis {axis} or block_size {block} is not "
                                        "an integer")
            dequant = (scale, zero, axis, block)
            current = node.outputs[0] if node.outputs else ""
            continue
        if node.op in PASS_THROUGH and slot == 0:
            if node.op == "Transpose":
                perm = node.attrs.get("perm", [1, 0])
                if perm not in ([1, 0], None):
                    return None
                transposed = not transposed
            current = node.outputs[0] if node.outputs else ""
            continue
        if len(t.dims) == 2 and ((node.op == "MatMul" and slot == 1) or (node.op == "Gemm" and slot == 1)):
            stored_in_out = node.op == "MatMul" or not node.attrs.get("transB", 0)
            flip = stored_in_out != transposed  # the weight reaches the op as (in, out): canonical is its transpose
            kind = "matmul"
        elif len(t.dims) == 2 and node.op == "Gather" and slot == 0:
            flip, kind = transposed, "embed"
        elif len(t.dims) == 1 and (node.op in NORM_OPS and slot in (1, 2) or node.op in ("Mul", "Add")):
            flip, kind = False, ("bias" if node.op == "Add" or (node.op in NORM_OPS and slot == 2) else "norm")
        else:
            return None
        if dequant is not None:
            scale, zero, axis, block = dequant
            w = _Dequant(name, t, scale, zero, axis, block, flip, file)
            return kind, node, w, {name, scale.name} | ({zero.name} if zero is not None else set())
        return kind, node, _Plain(name, t, flip, file), {name}
    return None


def _hf_path(node: _Node) -> str | None:
    """The module path a node's name spells (`/model/layers.3/self_attn/q_proj/MatMul` -> model.layers.3.
    self_attn.q_proj), in Hugging Face's spelling, or None for an anonymous node."""
    m = _NODE_PATH.match(node.name or "")
    if not m or "/" not in (node.name or "").strip("/"):
        return None
    path = m.group("path").strip("/").replace("/", ".")
    for theirs, ours in GENAI_NAMES:
        path = re.sub(r"(^|\.)" + re.escape(theirs), r"\1" + ours, path)
    return path


def _name_weights(uses: list[tuple[str, _Node, _Weight]], nodes: list[_Node]) -> list[str]:
    """A Hugging Face-style name for every weight: its node's path, else the initializer's own name when it reads
    like one, else a role from the graph's structure (`_by_structure`)."""
    paths = [_hf_path(node) for _, node, _ in uses]
    out = []
    for (kind, node, w), path in zip(uses, paths):
        own = w.info.name if hasattr(w, "info") else ""
        if path:
            out.append(f"{path}.{'bias' if kind == 'bias' else 'weight'}")
        elif _reads_like_a_name(own):
            out.append(own)
        else:
            out.append("")
    if sum(1 for n in out if n) < len(out) / 2:  # mostly anonymous: roles from the structure
        structural = _by_structure(uses, nodes)
        out = [n or s or _plain_name(w, kind) for n, s, (kind, _, w) in zip(out, structural, uses)]
    return [n or _plain_name(w, kind) for n, (kind, _, w) in zip(out, uses)]


def _reads_like_a_name(name: str) -> bool:
    return bool(name) and name.endswith((".weight", ".bias")) and not name.startswith(("onnx::", "/"))


def _plain_name(w: _Weight, kind: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.]", "_", w.info.name or "tensor")
    return f"onnx.{base}.{'bias' if kind == 'bias' else 'weight'}"


LAYER_MATMULS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj")


def _by_structure(uses: list[tuple[str, _Node, _Weight]], nodes: list[_Node]) -> list[str]:
    """Roles of anonymous weights from the graph: nodes are in topological order (the ONNX rule). The first
    Gather of a 2-D weight is the embedding, the last matmul with the embedding's output width the LM head; the
    matmuls between come seven a layer when their inputs group as (q, k, v share one input), o, (gate, up share
    one), down; the norm scales two a layer, then the final one."""
    order = {id(n): i for i, n in enumerate(nodes)}
    idx = sorted(range(len(uses)), key=lambda i: order.get(id(uses[i][1]), 0))
    names = [""] * len(uses)
    embed = next((i for i in idx if uses[i][0] == "embed"), None)
    mats = [i for i in idx if uses[i][0] == "matmul"]
    if embed is not None:
        names[embed] = "model.embed_tokens.weight"
        vocab = uses[embed][2].info.shape[0]
        if mats and uses[mats[-1]][2].info.shape[0] == vocab:
            names[mats[-1]] = "lm_head.weight"
            mats = mats[:-1]
    # group consecutive matmuls by the activation they read
    groups: list[list[int]] = []
    for i in mats:
        x = uses[i][1].inputs[0] if uses[i][1].inputs else None
        if groups and x is not None and uses[groups[-1][0]][1].inputs[:1] == [x]:
            groups[-1].append(i)
        else:
            groups.append([i])
    pattern = [3, 1, 2, 1]  # q k v | o | gate up | down
    if len(groups) % 4 == 0 and all(len(g) == pattern[k % 4] for k, g in enumerate(groups)):
        for layer in range(len(groups) // 4):
            members = [i for g in groups[4 * layer: 4 * layer + 4] for i in g]
            for i, role in zip(members, LAYER_MATMULS):
                names[i] = f"model.layers.{layer}.{role}.weight"
    norms = [i for i in idx if uses[i][0] == "norm"]
    if norms and len(norms) % 2 == 1 and len(groups) % 4 == 0 and len(norms) == 2 * (len(groups) // 4) + 1:
        for k, i in enumerate(norms[:-1]):
            names[i] = f"model.layers.{k // 2}.{'input_layernorm' if k % 2 == 0 else 'post_attention_layernorm'}.weight"
        names[norms[-1]] = "model.norm.weight"
    return names


def sniff(head: bytes) -> bool:
    """Whether the first bytes look like an ONNX ModelProto: field 1 (ir_version, a varint) first, as every
    exporter writes it, with a plausible version, then another field."""
    if len(head) < 4 or head[0] != 0x08:
        return False
    value, pos, shift = 0, 1, 0
    while pos < len(head) and pos < 11:
        b = head[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            break
        shift += 7
    return 1 <= value <= 64 and pos < len(head) and (head[pos] >> 3) in (2, 3, 4, 5, 6, 7, 8, 14, 20, 25)

