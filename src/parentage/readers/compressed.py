"""compressed-tensors checkpoints (what llm-compressor writes and vLLM loads).

config.json's `quantization_config` (`quant_method: compressed-tensors`) names a `format` and `config_groups`,
each with its weights' `num_bits`, `type`, `symmetric`, `strategy` (tensor, channel, group, block) and
`group_size`. For a weight `X.weight` of shape (out, in):
- pack-quantized: `X.weight_packed` (out, words) int32 holds the signed b-bit values plus 2^(b-1), as one
  little-endian bit stream per row (32 values in b words), or, before the dense packing, 32 // b values per
  word (the layouts differ only for 3, 5, 6 and 7 bits; the word count tells them apart); `X.weight_shape` the
  (out, in) it unpacks to;
- int-quantized / naive-quantized: `X.weight` int8, the signed values themselves;
- float-quantized: `X.weight` float8 (read by fp8.py);
- beside each: `X.weight_scale` (one per tensor, per row, per group of input channels or per block), for
  asymmetric schemes `X.weight_zero_point` (int8 as the scales are shaped, or, packed, int32 words along the
  rows), and with act-order groups `X.weight_g_idx` (the group of each input channel).
W[o, i] = (q[o, i] - zero[o, group(i)]) * scale[o, group(i)]. Rows are stored rows: one contiguous read per block.
Weights the config leaves out (`ignore`) stay plain. NVFP4/MXFP4, the 2:4-sparse and Marlin formats are
refused by name.
"""

from __future__ import annotations

import numpy as np

from ..constants import MAX_DIM
from ..errors import FormatError, UnsupportedQuantizationError
from . import fp8
from .packed import (FLOATS, Groups, Packed, Parts, config_int, config_str, expect, floats_rows, n_words, need, signed, span,
                     tile, unpack, words_rows)

FORMATS = ("pack-quantized", "int-quantized", "naive-quantized", "float-quantized", "mixed-precision", "dense")
NOT_READ = ("nvfp4-pack-quantized", "mxfp4-pack-quantized", "mxfp8-quantized", "sparse-24-bitmask", "sparse-bitmask",
            "marlin-24")


class IntWeight(Packed):
    """An integer-quantised compressed-tensors weight, packed (int32 words) or not (int8)."""

    method = "compressed-tensors"

    def __init__(self, stored: Parts, base: str, bits_allowed: set[int], symmetric: bool | None, where: str):
        packed = base + ".weight_packed" in stored
        if packed:
            w = need(stored, base + ".weight_packed", ("I32",), 2, "a pack-quantized weight", where)
            shape = _weight_shape(stored, base + ".weight_shape", w.file)
            expect(shape[0] == w.shape[0], w.file, f"{base}: weight_shape {list(shape)} but {w.shape[0]} packed rows")
            self.bits, self.mode = _bits_of(w.shape[1], shape[1], bits_allowed, w.file, base)
            parts = [base + ".weight_packed", base + ".weight_shape"]
            self.layout = "pack-quantized" if self.mode == "stream" else "pack-quantized (one word per 32 // b values)"
        else:
            w = need(stored, base + ".weight", ("I8",), 2, "an int-quantized weight", where)
            shape = w.shape
            self.bits, self.mode, self.layout = 8, None, "int-quantized"
            parts = [base + ".weight"]
        where = w.file
        out, n_in = shape
        s = need(stored, base + ".weight_scale", FLOATS, (0, 1, 2), "a compressed-tensors weight", where)
        s_rows, s_cols = (s.shape + (1, 1))[:2] if len(s.shape) < 2 else s.shape
        parts.append(base + ".weight_scale")
        self.g_idx = base + ".weight_g_idx" in stored
        if self.g_idx:
            g = need(stored, base + ".weight_g_idx", ("I32", "I64"), 1, "an act-order weight", where)
            expect(g.shape == (n_in,), where, f"{base}.weight_g_idx has {g.shape[0]} entries for {n_in} input channels")
            parts.append(base + ".weight_g_idx")
        self.b_row, self.b_col = tile(out, s_rows), tile(n_in, s_cols)
        expect(self.b_row > 0 and (self.b_col > 0 or self.g_idx), where,
               f"{base}: scales {list(s.shape)} do not tile the ({out}, {n_in}) weight")
        self.n_groups = s_cols
        self.zero = None
        if base + ".weight_zero_point" in stored:
            z = stored.info(base + ".weight_zero_point")
            if z.dtype == "I32" and packed and z.shape == (n_words(s_rows, self.bits), s_cols):
                self.zero = "packed"  # along the rows, as the codes are along the input
            else:
                expect(z.dtype in ("I8", "I32") and (z.shape == s.shape or (len(z.shape) <= 1 and s_rows * s_cols == 1)),
                       where, f"{base}.weight_zero_point {z.dtype}{list(z.shape)} does not match its scales "
                              f"{list(s.shape)}")
                self.zero = "plain"
            parts.append(base + ".weight_zero_point")
        super().__init__(stored, base + ".weight", (out, n_in), tuple(parts), f"INT{self.bits}")
        self.s_rows, self.s_cols, self.symmetric = s_rows, s_cols, symmetric
        self.group_size = 0 if s_cols == 1 else self.b_col
        self.scale_name = base + ".weight_scale"
        self.groups = Groups(stored, base + ".weight_g_idx" if self.g_idx else None, n_in, s_cols, self.b_col)

    def decode(self, start: int, stop: int, steps: bool):
        k, n_in = stop - start, self.shape[1]
        if self.mode is not None:  # codes are the signed values plus 2^(b-1)
            words = words_rows(self.stored, self.parts[0], start, stop)
            q = unpack(words, self.bits, n_in, self.mode).astype(np.float32) - (1 << (self.bits - 1))
        else:
            q = floats_rows(self.stored, self.parts[0], start, stop)  # int8 values
        r0, r1 = start // self.b_row, (stop - 1) // self.b_row + 1  # scale rows these rows use
        rows = np.arange(start, stop) // self.b_row - r0
        g = self.groups()
        scale = _rows2d(floats_rows(self.stored, self.scale_name, r0, r1) if self.s_rows > 1
                        else floats_rows(self.stored, self.scale_name, 0, 1), self.s_cols)[rows if self.s_rows > 1 else
                                                                                          np.zeros(k, dtype=int)][:, g]
        if self.zero is not None:
            zero = self._zeros(r0, r1)[rows if self.s_rows > 1 else np.zeros(k, dtype=int)][:, g]
            q = q - zero
        values = q * scale
        return values, (np.abs(scale) if steps else None)

    def _zeros(self, r0: int, r1: int) -> np.ndarray:
        name = self.parts[-1]
        if self.zero == "packed":  # (words along the rows, groups): unpack down each column
            w0, w1, skip = span(r0, r1, self.bits)
            words = words_rows(self.stored, name, w0, w1)  # (words, groups)
            codes = unpack(np.ascontiguousarray(words.T), self.bits, r1 - r0, skip=skip).T  # (rows, groups)
            return codes.astype(np.float32) - (1 << (self.bits - 1))
        if self.s_rows == 1:
            return _rows2d(floats_rows(self.stored, name, 0, 1), self.s_cols)
        return _rows2d(floats_rows(self.stored, name, r0, r1), self.s_cols)


def _rows2d(values: np.ndarray, n_cols: int) -> np.ndarray:
    return values.reshape(-1, n_cols)


def _weight_shape(stored: Parts, name: str, where: str) -> tuple[int, int]:
    info = need(stored, name, ("I32", "I64"), 1, "a pack-quantized weight", where)
    expect(info.shape == (2,), info.file, f"{name} should hold the two numbers of a 2-D shape, holds {list(info.shape)}")
    dims = signed(words_rows(stored, name, 0, 2)).reshape(2)
    expect(all(0 < int(d) <= MAX_DIM for d in dims), info.file, f"{name} = {dims.tolist()} is not a shape")
    return int(dims[0]), int(dims[1])


def _bits_of(n_packed: int, n_in: int, allowed: set[int], where: str, base: str) -> tuple[int, str]:
    """Which bit width (and packing) turns n_in values into n_packed words: dense packing first."""
    for mode in ("stream", "word"):
        for b in sorted(allowed or range(1, 9)):
            if n_words(n_in, b, 4, mode) == n_packed:
                return b, mode
    raise FormatError(where, f"{base}: {n_packed} int32 words per row fit no bit width of "
                             f"{sorted(allowed) or '1-8'} for {n_in} values")


def _groups_config(qc: dict, where: str) -> tuple[set[int], bool | None, set[str]]:
    """Bit widths, symmetry and formats the config's groups declare (each checked where it enters)."""
    bits, sym, formats = set(), set(), set()
    groups = qc.get("config_groups")
    for g in (groups.values() if isinstance(groups, dict) else []):
        if not isinstance(g, dict):
            continue
        w = g.get("weights")
        if isinstance(w, dict):
            b = config_int(w, ("num_bits",), where, (1, 8))
            if b is not None:
                bits.add(b)
            if isinstance(w.get("symmetric"), bool):
                sym.add(w["symmetric"])
        f = config_str(g, "format")
        if f:
            formats.add(f)
    return bits, (sym.pop() if len(sym) == 1 else None), formats


def claim(stored: Parts, qc: dict, where: str) -> list[Packed]:
    fmt = config_str(qc, "format") or ""
    bits, symmetric, group_formats = _groups_config(qc, where)
    for f in {fmt} | group_formats:
        if f in NOT_READ or (f and f not in FORMATS):
            raise UnsupportedQuantizationError(where, f"compressed-tensors format {f!r}: parentage reads "
                                                      f"{', '.join(FORMATS[:4])}")
    out: list[Packed] = []
    for name in stored.names():
        if name.endswith(".weight_scale"):
            base = name[: -len(".weight_scale")]
            weight = stored.info(base + ".weight") if base + ".weight" in stored else None
            if base + ".weight_packed" in stored or (weight is not None and weight.dtype == "I8"):
                out.append(IntWeight(stored, base, bits, symmetric, where))
            elif weight is not None and weight.dtype in fp8.F8:
                w = fp8.FP8Weight(stored, base + ".weight", name)
                w.method, w.layout = "compressed-tensors", "float-quantized"
                out.append(w)
            elif weight is not None and weight.dtype in FLOATS:
                raise UnsupportedQuantizationError(where, f"{base}: compressed-tensors weights left unpacked beside "
                                                          "their scales (quantization_status frozen); not read")
    return out

