"""Packed quantised weights: the codes in their words, and one weight read back from its parts.

A quantisation method stores one linear layer's weight as several tensors (packed codes, scales, zero points,
group indices). A method's module (gptq.py, awq.py, bnb.py, mlx.py, compressed.py, fp8.py) gives each weight
back as a `Packed` tensor: its canonical shape, its rows decoded on request (only those asked for: a block of
canonical rows is one strided read of the packed columns where a format packs along the input dimension), and
the quantiser's step at each decoded value, in which the export check (evidence/export.py) measures how far
another checkpoint lies. `quantization.py` finds the method and puts the Packed tensors in place of their parts.

Codes in words:
Every packed format here stores b-bit unsigned codes in little-endian order inside words of w bits (8 to 64):
- "stream": the codes form one little-endian bit stream across consecutive words, a code may straddle two
  words (GPTQ 3-bit, MLX 3/5/6-bit, compressed-tensors' dense packing); when b divides w this is simply
  w/b codes per word, lowest bits first;
- "word": floor(w/b) codes per word, lowest bits first, the leftover high bits unused (compressed-tensors
  before its dense packing, for 3, 5, 6 and 7 bits).
AWQ's GEMM layout adds an order of the codes inside each word; its module applies that after unpacking.

`pack` is the inverse, used by the writers of the zoo and the tests (never by the readers).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..constants import MAX_DIM
from ..dtypes import DTYPES, decode
from ..errors import FormatError, UnsupportedQuantizationError
from .base import TensorInfo, check_row_range, shaped_rows

FLOATS = ("F32", "F16", "BF16")
INTS = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def as_words(raw: np.ndarray, itemsize: int) -> np.ndarray:
    """Stored bytes (..., n * itemsize) uint8 -> (..., n) unsigned little-endian words."""
    raw = np.ascontiguousarray(raw)
    return raw.view(np.dtype(_UNSIGNED[itemsize]).newbyteorder("<")).astype(_UNSIGNED[itemsize], copy=False)


def unpack(words: np.ndarray, bits: int, n: int, mode: str = "stream", skip: int = 0) -> np.ndarray:
    """(..., n_words) unsigned words -> (..., n) codes (uint8 for b <= 8, else uint32): codes skip .. skip + n
    of what the words hold (`span` gives words and skip for a range of codes)."""
    w = words.dtype.itemsize * 8
    lead = words.shape[:-1]
    if w % bits == 0 or mode == "word":
        per = w // bits
        shifts = (np.arange(per, dtype=np.uint64) * bits).astype(words.dtype)
        codes = (words[..., None] >> shifts) & words.dtype.type((1 << bits) - 1)  # (..., n_words, per)
        codes = codes.reshape(*lead, -1)[..., skip:skip + n]
    else:
        # A code straddles words: expand to single bits (little-endian within bytes, bytes little-endian within
        # words), then gather b consecutive bits per code. 8x the bytes in a temporary, for the odd widths only.
        as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*lead, -1)
        stream = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., skip * bits:(skip + n) * bits]
        if stream.shape[-1] == n * bits:
            codes = stream.reshape(*lead, n, bits).astype(np.uint32) @ (1 << np.arange(bits, dtype=np.uint32))
        else:
            codes = stream[..., :0]
    if codes.shape[-1] != n:
        raise ValueError(f"{words.shape[-1]} words of {w} bits hold fewer than {skip + n} codes of {bits} bits")
    return codes.astype(np.uint8 if bits <= 8 else np.uint32, copy=False)


def span(start: int, stop: int, bits: int, itemsize: int = 4, mode: str = "stream") -> tuple[int, int, int]:
    """The words [w0, w1) that hold codes [start, stop), and how many codes of w0 come before `start`: w0 is
    taken where a code begins on a word boundary (every 32 codes for 3 bits in 32-bit words)."""
    w = itemsize * 8
    if mode == "word" or w % bits == 0:
        per = w // bits
        w0 = start // per
        return w0, -(-stop // per), start - w0 * per
    period_codes = math.lcm(w, bits) // bits  # codes after which a code starts on a word boundary again
    period_words = math.lcm(w, bits) // w
    w0 = start // period_codes * period_words
    return w0, -(-stop * bits // w), start - w0 * w // bits


def pack(codes: np.ndarray, bits: int, itemsize: int = 4, mode: str = "stream") -> np.ndarray:
    """(..., n) unsigned codes -> (..., n_words) unsigned words: the inverse of `unpack`, padding the last word
    with zero bits."""
    codes = np.asarray(codes).astype(np.uint64)
    w = itemsize * 8
    lead, n = codes.shape[:-1], codes.shape[-1]
    if np.any(codes >> np.uint64(bits)):
        raise ValueError(f"a code does not fit in {bits} bits")
    if mode == "word" and w % bits:
        per = w // bits
        n_words = -(-n // per)
        padded = np.zeros((*lead, n_words * per), dtype=np.uint64)
        padded[..., :n] = codes
        shifts = np.arange(per, dtype=np.uint64) * np.uint64(bits)
        words = (padded.reshape(*lead, n_words, per) << shifts).sum(axis=-1, dtype=np.uint64)
        return words.astype(_UNSIGNED[itemsize])
    n_words = -(-n * bits // w)
    if w % bits == 0:  # whole codes a word: shift each into place and add
        per = w // bits
        padded = np.zeros((*lead, n_words * per), dtype=np.uint64)
        padded[..., :n] = codes
        shifts = np.arange(per, dtype=np.uint64) * np.uint64(bits)
        words = (padded.reshape(*lead, n_words, per) << shifts).sum(axis=-1, dtype=np.uint64)
        return words.astype(_UNSIGNED[itemsize])
    stream = ((codes[..., None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    stream = stream.reshape(*lead, n * bits)
    padded = np.zeros((*lead, n_words * w), dtype=np.uint8)
    padded[..., :n * bits] = stream
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")  # (..., n_words * itemsize)
    return np.ascontiguousarray(as_bytes).view(np.dtype(_UNSIGNED[itemsize]).newbyteorder("<")).astype(_UNSIGNED[itemsize])


def n_words(n: int, bits: int, itemsize: int = 4, mode: str = "stream") -> int:
    """Words `pack` writes for n codes."""
    w = itemsize * 8
    if mode == "word" and w % bits:
        return -(-n // (w // bits))
    return -(-n * bits // w)


class Parts:
    """A checkpoint's stored tensors by their own names, before any method joins them into weights: what a
    method's module claims from and reads through (raw bytes: an int32 word is not a float32 value)."""

    def __init__(self, owner: dict):
        self._owner = owner  # stored name -> reader

    def names(self) -> list[str]:
        return list(self._owner)

    def __contains__(self, name: str) -> bool:
        return name in self._owner

    def info(self, name: str) -> TensorInfo:
        return self._owner[name].info(name)

    def _reader(self, name: str):
        reader = self._owner[name]
        if not hasattr(reader, "raw_rows"):
            raise FormatError(reader.path, f"tensor {name!r} is part of a quantised weight, which parentage reads "
                                           f"from safetensors files only (this is a {reader.format} file)")
        return reader

    def raw_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._reader(name).raw_rows(name, start, stop)

    def raw_cols(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._reader(name).raw_cols(name, start, stop)


class Packed:
    """One weight stored as the parts a quantisation method writes, read as the weight.

    Subclasses implement `decode(start, stop, steps)` -> (rows (k, n_cols) float32, steps or None): canonical
    rows [start, stop) of the weight's 2-D view, and the quantiser's step at each value when asked."""

    method = ""  # the quantization.METHODS key
    layout = ""  # the method's name for how the codes lie ("gemm", "nf4", "pack-quantized", ...)
    bits = 0
    group_size = 0  # input channels per scale; 0: one scale per row, block or tensor
    symmetric: bool | None = None  # None: not known from the files

    def __init__(self, stored: Parts, name: str, shape: tuple[int, ...], parts: tuple[str, ...], dtype: str):
        self.stored, self.name, self.shape, self.parts = stored, name, tuple(shape), tuple(parts)
        infos = [stored.info(p) for p in parts]
        self.info = TensorInfo(name, dtype, self.shape, infos[0].file, sum(i.nbytes for i in infos))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.shape}, {self.info.dtype})"

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        check_row_range(self.info.file, self.info, start, stop)
        if stop == start:
            return shaped_rows(np.empty(0, dtype=np.float32), self.shape, 0)
        values, _ = self.decode(start, stop, False)
        return shaped_rows(values.astype(np.float32, copy=False).reshape(-1), self.shape, stop - start)

    def steps(self, start: int, stop: int) -> np.ndarray:
        """The quantiser's step at each value of rows [start, stop): the distance to the next value the stored
        code could have taken (for a codebook, the larger of the two gaps around it)."""
        check_row_range(self.info.file, self.info, start, stop)
        _, steps = self.decode(start, stop, True)
        return steps.reshape(stop - start, -1)

    def decode(self, start: int, stop: int, steps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


class Groups:
    """The group of each input channel, (in,): read once from a group-index part (act-order) and checked (a
    hostile one could point anywhere), or i // size."""

    def __init__(self, stored: Parts, name: str | None, n_in: int, n_groups: int, size: int):
        self.stored, self.name, self.n_in, self.n_groups, self.size = stored, name, n_in, n_groups, size
        self._index = None
        self._lock = threading.Lock()

    def __call__(self) -> np.ndarray:
        with self._lock:
            if self._index is None:
                if self.name is None:
                    self._index = np.arange(self.n_in) // self.size
                else:
                    g = signed(words_rows(self.stored, self.name, 0, self.n_in)).reshape(self.n_in).astype(np.int64)
                    bad = (g < 0) | (g >= self.n_groups)
                    if bad.any():
                        raise FormatError(self.stored.info(self.name).file,
                                          f"{self.name}: group index {int(g[bad][0])} is outside the "
                                          f"{self.n_groups} groups of scales")
                    self._index = g
            return self._index


# -- reading the parts ------------------------------------------------------------------------------------------


def words_rows(stored, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of an integer part as unsigned words: (k, n_cols)."""
    return as_words(stored.raw_rows(name, start, stop), DTYPES[stored.info(name).dtype].itemsize)


def words_cols(stored, name: str, start: int, stop: int) -> np.ndarray:
    """Columns [start, stop) of every row of an integer part as unsigned words: (n_rows, k)."""
    return as_words(stored.raw_cols(name, start, stop), DTYPES[stored.info(name).dtype].itemsize)


def floats_rows(stored, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a float (or integer) part, decoded: (k, n_cols) float32."""
    info = stored.info(name)
    return decode(info.dtype, stored.raw_rows(name, start, stop).reshape(-1)).reshape(stop - start, -1)


def floats_cols(stored, name: str, start: int, stop: int) -> np.ndarray:
    info = stored.info(name)
    return decode(info.dtype, stored.raw_cols(name, start, stop).reshape(-1)).reshape(info.n_rows, stop - start)


def whole(stored, name: str) -> np.ndarray:
    """A small part read whole, decoded (group indices, a codebook, a blob)."""
    info = stored.info(name)
    return floats_rows(stored, name, 0, info.n_rows).reshape(info.shape)


def signed(words: np.ndarray) -> np.ndarray:
    """Unsigned words as the signed integers they store (an int32 group index)."""
    return words.view(words.dtype.str.replace("u", "i"))


# -- checking what a file claims ---------------------------------------------------------------------------------


def need(stored: "Parts", name: str, dtypes: tuple[str, ...], ndim: int | tuple[int, ...], what: str,
         where: str) -> TensorInfo:
    """The info of a part, which must exist, have one of `dtypes` and `ndim` dimensions."""
    if name not in stored:
        raise FormatError(where, f"{what} needs tensor {name!r}, which the checkpoint lacks")
    info = stored.info(name)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if info.dtype not in dtypes or len(info.shape) not in ndims:
        raise FormatError(info.file, f"{what}: tensor {name!r} is {info.dtype}{list(info.shape)}, expected a "
                                     f"{' or '.join(str(n) + '-D' for n in ndims)} tensor of {' or '.join(dtypes)}")
    return info


def expect(cond: bool, where: str, problem: str) -> None:
    if not cond:
        raise FormatError(where, problem)


def config_int(qc: dict, keys: tuple[str, ...], where: str, allowed=None, default=None) -> int | None:
    """An integer from the quantisation config (untrusted: a float holding an integer is accepted, anything else
    is one clear line), checked against `allowed` (a set or a (lo, hi) range)."""
    for key in keys:
        if key in qc and qc[key] is not None:
            v = qc[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
                raise FormatError(where, f"quantization config: {key} = {str(v)[:40]!r} is not an integer")
            v = int(v)
            ok = allowed is None or (v in allowed if isinstance(allowed, (set, frozenset)) else allowed[0] <= v <= allowed[1])
            if not ok:
                shown = sorted(allowed) if isinstance(allowed, (set, frozenset)) else f"[{allowed[0]}, {allowed[1]}]"
                raise UnsupportedQuantizationError(where, f"quantization config: {key} = {v} is not one parentage "
                                                          f"reads ({shown})")
            return v
    return default


def config_bool(qc: dict, key: str, default: bool | None = None) -> bool | None:
    v = qc.get(key, default)
    return v if isinstance(v, bool) else default


def config_str(qc: dict, key: str, default: str | None = None) -> str | None:
    v = qc.get(key, default)
    return v.strip().lower() if isinstance(v, str) and len(v) <= 64 else default


def group_size_of(n_in: int, n_groups: int, declared: int | None, where: str, name: str) -> int:
    """The input channels per group: the declared size if it tiles the input into n_groups, else the one that
    does (a per-channel quantisation has one group)."""
    expect(n_groups >= 1, where, f"{name}: no groups")
    if declared is not None and declared > 0 and -(-n_in // declared) == n_groups:
        return declared
    size = -(-n_in // n_groups)
    expect(-(-n_in // size) == n_groups, where, f"{name}: {n_groups} groups cannot tile {n_in} input channels")
    return size


def check_dim(n: int, where: str, what: str) -> int:
    expect(0 < n <= MAX_DIM, where, f"{what} = {n} is not a plausible dimension")
    return n


def tile(n: int, n_blocks: int) -> int:
    """The block edge that cuts `n` into `n_blocks` pieces, the last one possibly short: a power of two
    (DeepSeek-V3's 128 x 128 FP8 tiles: a 576-row weight in 5 blocks), else an exact division (groups of 96);
    0 when neither fits."""
    if n_blocks <= 0:
        return 0
    edge = 1 << max(0, math.ceil(math.log2(max(n, 1) / n_blocks)))
    if -(-n // edge) == n_blocks:
        return edge
    return n // n_blocks if n % n_blocks == 0 else 0
