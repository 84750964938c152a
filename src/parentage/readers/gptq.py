"""GPTQ checkpoints (AutoGPTQ, GPTQModel, optimum): one weight from its qweight, qzeros, scales and g_idx.

For a linear layer `X` with `in` input and `out` output channels, quantised to b bits in groups of input channels:
- `X.qweight` (in * b / w, out), integer words of w bits (32; GPTQModel's `pack_dtype` allows 8, 16, 64): the
  codes of output row o run down column o, one little-endian bit stream of b-bit codes (for b = 3 a code
  straddles words);
- `X.qzeros` (n_groups, out * b / w): the zero point of each (group, output row), packed the same way along the
  row. Layout "v1" (AutoGPTQ; GPTQModel and optimum save it: `checkpoint_format: gptq`) stores zero - 1 (the
  kernels add one back, modulo 2^b); "v2" (`gptq_v2`) stores the zero itself;
- `X.scales` (n_groups, out), float;
- `X.g_idx` (in,): the group of each input channel, i // group_size, or any assignment of channels to groups
  under act-order (`desc_act`); some exports leave it out, and then it is i // group_size.

W[o, i] = scales[g[i], o] * (q[i, o] - zero[g[i], o]). A canonical row is a stored column, so a block of rows is
read as one strided run per packed row (`base.MappedFile.read_strided`), never the whole tensor.

Marlin, BitBLAS and planar (`gptq_p`) layouts repack the codes for their kernels and are refused by name.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import DTYPES
from ..errors import FormatError, UnsupportedQuantizationError
from .packed import (FLOATS, INTS, Groups, Packed, Parts, config_bool, config_int, config_str, expect, floats_cols,
                     group_size_of, n_words, need, span, unpack, words_cols)

BITS = frozenset({2, 3, 4, 8})
LAYOUTS = {"gptq": "v1", "gptq_v1": "v1", "gptq_v2": "v2", "": "v1"}
REPACKED = ("marlin", "bitblas", "gptq_p", "qqq", "exl3", "machete")  # kernel layouts: not read


class GPTQWeight(Packed):
    method = "gptq"

    def __init__(self, stored: Parts, base: str, bits: int, v1: bool, group_size: int | None, symmetric: bool | None,
                 where: str):
        qw = need(stored, base + ".qweight", INTS, 2, "a GPTQ weight", where)
        qz = need(stored, base + ".qzeros", INTS, 2, "a GPTQ weight", where)
        sc = need(stored, base + ".scales", FLOATS, 2, "a GPTQ weight", where)
        has_g = base + ".g_idx" in stored
        if has_g:
            need(stored, base + ".g_idx", INTS, 1, "a GPTQ weight", where)
        where = qw.file
        itemsize = DTYPES[qw.dtype].itemsize
        word_bits = itemsize * 8
        expect(DTYPES[qz.dtype].itemsize == itemsize, where, f"{base}: qzeros and qweight use different word sizes")
        out = qw.shape[1]
        expect(qw.shape[0] * word_bits % bits == 0, where, f"{base}.qweight: {qw.shape[0]} words of {word_bits} bits "
                                                            f"do not hold whole {bits}-bit codes")
        n_in = qw.shape[0] * word_bits // bits
        n_groups = sc.shape[0]
        expect(sc.shape[1] == out, where, f"{base}: scales {list(sc.shape)} do not match qweight {list(qw.shape)} "
                                          f"({out} output channels)")
        expect(qz.shape == (n_groups, n_words(out, bits, itemsize)), where,
               f"{base}: qzeros {list(qz.shape)} should be {[n_groups, n_words(out, bits, itemsize)]} for {out} "
               f"output channels at {bits} bits in {n_groups} groups")
        if has_g:
            g = stored.info(base + ".g_idx")
            expect(g.shape == (n_in,), where, f"{base}.g_idx has {g.shape[0]} entries for {n_in} input channels")
        # with g_idx the groups are as it says (act-order); the size is then only reported
        size = -(-n_in // n_groups) if has_g else group_size_of(n_in, n_groups, group_size, where, base)
        parts = (base + ".qweight", base + ".qzeros", base + ".scales") + ((base + ".g_idx",) if has_g else ())
        super().__init__(stored, base + ".weight", (out, n_in), parts, f"GPTQ{bits}")
        self.bits, self.v1, self.itemsize, self.n_groups, self.has_g = bits, v1, itemsize, n_groups, has_g
        self.layout = "gptq (v1: zero points stored minus one)" if v1 else "gptq_v2"
        self.symmetric = symmetric
        self.group_size = 0 if n_groups == 1 else size
        self.groups = Groups(stored, parts[3] if has_g else None, n_in, n_groups, size)

    def decode(self, start: int, stop: int, steps: bool):
        k, n_in = stop - start, self.shape[1]
        qweight, qzeros, scales = self.parts[:3]
        codes = unpack(np.ascontiguousarray(words_cols(self.stored, qweight, start, stop).T), self.bits, n_in)  # (k, in)
        w0, w1, skip = span(start, stop, self.bits, self.itemsize)
        zeros = unpack(words_cols(self.stored, qzeros, w0, w1), self.bits, k, skip=skip).astype(np.int16)  # (groups, k)
        if self.v1:
            zeros = (zeros + 1) & ((1 << self.bits) - 1)
        scale = floats_cols(self.stored, scales, start, stop)  # (groups, k)
        g = self.groups()
        scale_at = scale.T[:, g]  # (k, in)
        values = (codes.astype(np.float32) - zeros.T[:, g]) * scale_at
        return values, (np.abs(scale_at) if steps else None)


def claim(stored: Parts, qc: dict, where: str) -> list[GPTQWeight]:
    """Every weight stored as GPTQ parts (`X.qweight`), read as the config says."""
    layout = config_str(qc, "checkpoint_format") or config_str(qc, "format") or ""
    if config_bool(qc, "is_marlin_format") or layout in REPACKED:
        raise UnsupportedQuantizationError(where, f"GPTQ weights repacked for the {layout or 'marlin'} kernel; "
                                                  "parentage reads the gptq and gptq_v2 layouts (convert with "
                                                  "GPTQModel, or compare the checkpoint it was made from)")
    if layout not in LAYOUTS:
        raise UnsupportedQuantizationError(where, f"GPTQ checkpoint_format {layout!r}: parentage reads gptq and gptq_v2")
    bits = config_int(qc, ("bits", "w_bit", "num_bits"), where, BITS)
    group_size = config_int(qc, ("group_size", "q_group_size"), where, (-1, 1 << 20))
    out = []
    for name in stored.names():
        if not name.endswith(".qweight"):
            continue
        base = name[: -len(".qweight")]
        b = bits if bits is not None else _infer_bits(stored, base, where)
        out.append(GPTQWeight(stored, base, b, LAYOUTS[layout] == "v1", group_size, config_bool(qc, "sym"), where))
    return out


def _infer_bits(stored: Parts, base: str, where: str) -> int:
    """Without a config: the bits that make qweight's words hold exactly g_idx's input channels."""
    if base + ".g_idx" not in stored:
        raise UnsupportedQuantizationError(where, f"{base}: GPTQ weights without a quantization config or g_idx; "
                                                  "the number of bits is unknown (add quantize_config.json)")
    qw, g = stored.info(base + ".qweight"), stored.info(base + ".g_idx")
    word_bits = 8 * DTYPES[qw.dtype].itemsize
    for b in sorted(BITS):
        if qw.shape[0] * word_bits == b * g.shape[0]:
            return b
    raise FormatError(qw.file, f"{base}: {qw.shape[0]} words per column hold no whole number of codes for "
                               f"{g.shape[0]} input channels")
