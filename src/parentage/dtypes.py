"""Storage dtypes and their decoding to float32.

One table, keyed by the safetensors dtype name (the torch and GGUF readers translate their own names to these).
Decoding is a pure function of the raw little-endian bytes, so every reader shares it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np


def _fp8_table(exp_bits: int, man_bits: int, finite_only: bool) -> np.ndarray:
    """float32 value of each of the 256 codes of an 8-bit float (1 sign, exp_bits, man_bits)."""
    bias = (1 << (exp_bits - 1)) - 1
    max_exp = (1 << exp_bits) - 1
    table = np.empty(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e = (code >> man_bits) & max_exp
        m = code & ((1 << man_bits) - 1)
        if finite_only and e == max_exp and m == (1 << man_bits) - 1:
            value = float("nan")  # E4M3FN: only S.1111.111 is NaN; there is no infinity
        elif not finite_only and e == max_exp:
            value = float("inf") if m == 0 else float("nan")  # E5M2 follows IEEE
        elif e == 0:
            value = (m / (1 << man_bits)) * 2.0 ** (1 - bias)  # subnormal
        else:
            value = (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        table[code] = sign * value
    return table


_E4M3 = _fp8_table(4, 3, finite_only=True)
_E5M2 = _fp8_table(5, 2, finite_only=False)


def _bf16(raw: np.ndarray, out: np.ndarray) -> None:
    # bf16 is the top half of a float32: widen to uint32 and shift the bits into place.
    bits = out.view(np.uint32)
    np.copyto(bits, raw.view("<u2"), casting="unsafe")
    bits <<= 16


def _cast(np_dtype: str) -> Callable[[np.ndarray, np.ndarray], None]:
    def decode_into(raw: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, raw.view(np.dtype(np_dtype).newbyteorder("<")), casting="unsafe")

    return decode_into


def _lut(table: np.ndarray) -> Callable[[np.ndarray, np.ndarray], None]:
    return lambda raw, out: np.take(table, raw.view(np.uint8), out=out)


@dataclass(frozen=True)
class DType:
    name: str  # safetensors spelling
    itemsize: int
    decode_into: Callable[[np.ndarray, np.ndarray], None]  # raw uint8 (itemsize * n) -> float32 out (n,)
    is_float: bool


DTYPES: dict[str, DType] = {
    d.name: d
    for d in [
        DType("F64", 8, _cast("f8"), True),
        DType("F32", 4, _cast("f4"), True),
        DType("F16", 2, _cast("f2"), True),
        DType("BF16", 2, _bf16, True),
        DType("F8_E4M3", 1, _lut(_E4M3), True),
        DType("F8_E5M2", 1, _lut(_E5M2), True),
        DType("I64", 8, _cast("i8"), False),
        DType("I32", 4, _cast("i4"), False),
        DType("I16", 2, _cast("i2"), False),
        DType("I8", 1, _cast("i1"), False),
        DType("U64", 8, _cast("u8"), False),
        DType("U32", 4, _cast("u4"), False),
        DType("U16", 2, _cast("u2"), False),
        DType("U8", 1, _cast("u1"), False),
        DType("BOOL", 1, _cast("u1"), False),
    ]
}

# Decoding is memory-bound; past a few MB, first-touch page faults on the output dominate, and two threads
# fault and convert in parallel (numpy releases the GIL in copyto/take/shift).
_PARALLEL_MIN = 1 << 22  # elements
_CHUNK = 1 << 18  # elements per task: fits in L2 with its source
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="parentage-decode")
    return _POOL


# (mantissa bits, smallest normal exponent) of each float type: the spacing of its values
FLOAT_GRID = {"F64": (52, -1022), "F32": (23, -126), "F16": (10, -14), "BF16": (7, -126), "F8_E4M3": (3, -6),
              "F8_E5M2": (2, -14)}


def float_steps(dtype: str, values: np.ndarray) -> np.ndarray:
    """The spacing of a float type's values at each of `values` (stored in that type): the gap to the next value
    away from zero, which bounds how far rounding to the type moved a value in either direction."""
    mant, emin = FLOAT_GRID[dtype]
    exp = np.floor(np.log2(np.maximum(np.abs(values.astype(np.float64)), np.finfo(np.float64).tiny)))
    return np.exp2(np.maximum(exp, emin) - mant).astype(np.float32)


def encode_float8(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values -> the uint8 codes of the nearest float8 value (saturating at the largest finite one)."""
    table = {"F8_E4M3": _E4M3, "F8_E5M2": _E5M2}[dtype]
    codes = np.flatnonzero(np.isfinite(table))
    order = codes[np.argsort(table[codes], kind="stable")]
    sorted_values = table[order]
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    hi = np.clip(np.searchsorted(sorted_values, v), 1, len(sorted_values) - 1)
    take_hi = np.abs(sorted_values[hi] - v) < np.abs(v - sorted_values[hi - 1])
    return order[np.where(take_hi, hi, hi - 1)].astype(np.uint8).reshape(np.shape(values))


def round_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> the uint16 bf16 codes, rounding to nearest even (what torch and ml_dtypes do)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


def decode(dtype: str, raw: np.ndarray) -> np.ndarray:
    """Raw little-endian bytes (uint8 array) -> a new float32 array."""
    dt = DTYPES[dtype]
    n = raw.size // dt.itemsize
    out = np.empty(n, dtype=np.float32)
    if n < _PARALLEL_MIN:
        dt.decode_into(raw, out)
        return out
    step = -(-n // _WORKERS)

    def part(a: int) -> None:
        for i in range(a, min(n, a + step), _CHUNK):
            j = min(n, a + step, i + _CHUNK)
            dt.decode_into(raw[i * dt.itemsize : j * dt.itemsize], out[i:j])

    list(_pool().map(part, range(0, n, step)))
    return out
