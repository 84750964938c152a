"""AWQ checkpoints (AutoAWQ, llm-compressor's AWQ export to the AutoAWQ layout): one weight from its qweight,
qzeros and scales.

AutoAWQ writes 4-bit codes in one of two layouts (`version` in the quantisation config):
- GEMM: `X.qweight` (in, out / 8) int32 packs eight output channels per word, in the interleaved order of its
  kernel: the word's nibble j (lowest first) holds output channel 8c + (0, 2, 4, 6, 1, 3, 5, 7)[j];
  `X.qzeros` (in / group, out / 8) the same way; `X.scales` (in / group, out). A canonical row is a stored
  column, read as one strided run per input channel.
- GEMV: `X.qweight` (out, in / 8) packs input channels in order, so a canonical row is a stored row;
  `X.qzeros` (out, width) packs the groups' zeros in order, `X.scales` (out, 8 * width), both padded past the
  real number of groups (`width` rounds in / group up to a multiple of 8, and of 8 * 128 / group).
W[o, i] = scales[o, i // group] * (q[o, i] - zero[o, i // group]). The zeros are stored as they are (no "-1").

AWQ scales each input channel before quantising and folds the inverse scale into the norm or layer before
(`ln.weight / s`, `W * s`): the decoded weight is the original's columns times s. The export check allows for
that (evidence/export.py); the function is unchanged. GEMV-fast (kstride interleaving) and Marlin are refused.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedQuantizationError
from .packed import (FLOATS, Packed, Parts, config_bool, config_int, config_str, expect, floats_cols,
                     floats_rows, group_size_of, need, unpack, words_cols, words_rows)

GEMM_ORDER = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # nibble j of a word holds channel 8c + GEMM_ORDER[j]
VERSIONS = ("gemm", "gemv")


def looks_like(parts: Parts) -> bool:
    """Whether `X.qweight` tensors are AWQ's (packed along the output: qweight's columns x 8 = scales' columns),
    not GPTQ's (packed along the input: the same number of columns)."""
    for name in parts.names():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            if base + ".scales" not in parts or base + ".g_idx" in parts:
                return False
            qw, sc = parts.info(name), parts.info(base + ".scales")
            if len(qw.shape) != 2 or len(sc.shape) != 2:
                return False
            per = 32 // 4
            gemm = qw.shape[1] * per == sc.shape[1] and qw.shape[0] != sc.shape[0]
            gemv = qw.shape[0] == sc.shape[0] and qw.shape[1] != sc.shape[1]
            return gemm or gemv
    return False


class AWQWeight(Packed):
    method = "awq"
    bits = 4

    def __init__(self, stored: Parts, base: str, version: str, group_size: int | None, where: str):
        qw = need(stored, base + ".qweight", ("I32", "U32"), 2, "an AWQ weight", where)
        qz = need(stored, base + ".qzeros", ("I32", "U32"), 2, "an AWQ weight", where)
        sc = need(stored, base + ".scales", FLOATS, 2, "an AWQ weight", where)
        where = qw.file
        if version == "gemm":
            n_in, out = qw.shape[0], qw.shape[1] * 8
            n_groups = sc.shape[0]
            expect(sc.shape[1] == out and qz.shape == (n_groups, qw.shape[1]), where,
                   f"{base}: GEMM qweight {list(qw.shape)}, qzeros {list(qz.shape)} and scales {list(sc.shape)} "
                   "do not fit together")
        else:
            out, n_in = qw.shape[0], qw.shape[1] * 8
            n_groups = -(-n_in // group_size) if group_size and group_size > 0 else None
            expect(n_groups is not None and sc.shape[0] == out and qz.shape[0] == out
                   and qz.shape[1] * 8 >= n_groups and sc.shape[1] >= n_groups, where,
                   f"{base}: GEMV qweight {list(qw.shape)}, qzeros {list(qz.shape)} and scales {list(sc.shape)} do "
                   f"not fit groups of {group_size}")
        self.group_size = group_size_of(n_in, n_groups, group_size, where, base)
        super().__init__(stored, base + ".weight", (out, n_in), (base + ".qweight", base + ".qzeros", base + ".scales"),
                         "AWQ4")
        self.version, self.n_groups, self.layout, self.symmetric = version, n_groups, version, None

    def decode(self, start: int, stop: int, steps: bool):
        qweight, qzeros, scales = self.parts
        n_in, k = self.shape[1], stop - start
        if self.version == "gemm":
            c0, c1 = start // 8, -(-stop // 8)
            lo = start - 8 * c0
            codes = _gemm_columns(words_cols(self.stored, qweight, c0, c1))[:, lo:lo + k].T  # (k, in)
            zeros = _gemm_columns(words_cols(self.stored, qzeros, c0, c1))[:, lo:lo + k].T  # (k, groups)
            scale = floats_cols(self.stored, scales, start, stop).T  # (k, groups)
        else:
            codes = unpack(words_rows(self.stored, qweight, start, stop), 4, n_in)  # (k, in)
            zeros = unpack(words_rows(self.stored, qzeros, start, stop), 4, self.n_groups)  # (k, groups)
            scale = floats_rows(self.stored, scales, start, stop)[:, : self.n_groups]
        g = np.arange(n_in) // self.group_size
        scale_at = scale[:, g]  # (k, in)
        values = (codes.astype(np.float32) - zeros[:, g]) * scale_at
        return values, (np.abs(scale_at) if steps else None)


def _gemm_columns(words: np.ndarray) -> np.ndarray:
    """(rows, c) GEMM words -> (rows, 8c) codes in channel order."""
    nibbles = unpack(words, 4, words.shape[1] * 8).reshape(words.shape[0], -1, 8)  # (rows, c, nibble j)
    out = np.empty_like(nibbles)
    out[:, :, GEMM_ORDER] = nibbles  # nibble j belongs to channel GEMM_ORDER[j]
    return out.reshape(words.shape[0], -1)


def claim(stored: Parts, qc: dict, where: str) -> list[AWQWeight]:
    version = config_str(qc, "version") or ""
    if version not in VERSIONS and version:
        raise UnsupportedQuantizationError(where, f"AWQ version {version!r}: parentage reads the gemm and gemv layouts")
    config_int(qc, ("bits", "w_bit"), where, {4})  # AutoAWQ packs 4-bit codes only: another width is refused
    group_size = config_int(qc, ("group_size", "q_group_size"), where, (-1, 1 << 20))
    if config_bool(qc, "zero_point") is False:
        raise UnsupportedQuantizationError(where, "AWQ without zero points is not a layout AutoAWQ saves; not read")
    out = []
    for name in stored.names():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            v = version or _version_of(stored, base)
            out.append(AWQWeight(stored, base, v, group_size, where))
    return out


def _version_of(stored: Parts, base: str) -> str:
    qw, sc = stored.info(base + ".qweight"), stored.info(base + ".scales")
    return "gemv" if qw.shape[0] == sc.shape[0] else "gemm"
