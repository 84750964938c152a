"""MLX conversions (mlx-lm's `convert -q`): affine group quantisation in uint32 words.

For a weight `X.weight` of shape (..., out, in) quantised to b bits (2, 3, 4, 5, 6 or 8) in groups of g input
channels (32, 64 or 128):
- `X.weight` (..., out, in * b / 32) uint32: each row's codes as one little-endian bit stream (for 3, 5 and
  6 bits a code may straddle words);
- `X.scales` and `X.biases` (..., out, in / g), float: W[o, i] = scales[o, i // g] * q[o, i] + biases[o, i // g].
b and g come from config.json's `quantization` entry (`{"group_size": 64, "bits": 4}`), where a module's own
path may override them (mixed recipes) or say `false` (not quantised). Rows are stored rows: a block of
canonical rows is one contiguous read. Embeddings and expert stacks (`switch_mlp`) are quantised alike.
Modes other than "affine" (mxfp4, nvfp4, mxfp8: no biases) are refused by name.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedQuantizationError
from .packed import FLOATS, Packed, Parts, config_int, config_str, expect, floats_rows, need, unpack, words_rows

BITS = frozenset({2, 3, 4, 5, 6, 8})


class MLXWeight(Packed):
    method = "mlx"
    layout = "affine"
    symmetric = False

    def __init__(self, stored: Parts, base: str, bits: int, group_size: int, where: str):
        w = need(stored, base + ".weight", ("U32",), (2, 3), "an MLX quantised weight", where)
        s = need(stored, base + ".scales", FLOATS, (2, 3), "an MLX quantised weight", where)
        b = need(stored, base + ".biases", FLOATS, (2, 3), "an MLX quantised weight", where)
        where = w.file
        expect(s.shape == b.shape and s.shape[:-1] == w.shape[:-1], where,
               f"{base}: weight {list(w.shape)}, scales {list(s.shape)} and biases {list(b.shape)} do not fit together")
        n_in = w.shape[-1] * 32 // bits
        expect(w.shape[-1] * 32 % bits == 0 and n_in == s.shape[-1] * group_size, where,
               f"{base}: {w.shape[-1]} words per row at {bits} bits hold {w.shape[-1] * 32 / bits:g} codes, not the "
               f"{s.shape[-1]} groups of {group_size} the scales describe (is the config's bits/group_size right?)")
        super().__init__(stored, base + ".weight", w.shape[:-1] + (n_in,),
                         (base + ".weight", base + ".scales", base + ".biases"), f"MLX{bits}")
        self.bits, self.group_size = bits, group_size

    def decode(self, start: int, stop: int, steps: bool):
        weight, scales, biases = self.parts
        n_in = self.shape[-1]
        codes = unpack(words_rows(self.stored, weight, start, stop), self.bits, n_in)  # (k, in)
        g = np.arange(n_in) // self.group_size
        scale = floats_rows(self.stored, scales, start, stop)[:, g]  # (k, in)
        values = codes * scale + floats_rows(self.stored, biases, start, stop)[:, g]
        return values, (np.abs(scale) if steps else None)


def claim(stored: Parts, qc: dict, where: str) -> list[MLXWeight]:
    mode = config_str(qc, "mode") or "affine"
    if mode != "affine":
        raise UnsupportedQuantizationError(where, f"MLX quantisation mode {mode!r}: parentage reads the affine mode")
    bits = config_int(qc, ("bits",), where, BITS)
    group_size = config_int(qc, ("group_size",), where, (1, 1 << 16))
    out = []
    for name in stored.names():
        if not name.endswith(".biases"):
            continue
        base = name[: -len(".biases")]
        own = qc.get(base)  # a module's own setting (mixed-precision recipes)
        b, g = bits, group_size
        if isinstance(own, dict):
            b = config_int(own, ("bits",), where, BITS, bits)
            g = config_int(own, ("group_size",), where, (1, 1 << 16), group_size)
        if b is None or g is None:
            raise UnsupportedQuantizationError(where, f"{base}: MLX quantised weights, but no bits and group_size in "
                                                      "config.json's quantization entry")
        out.append(MLXWeight(stored, base, b, g, where))
    return out
