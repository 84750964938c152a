"""FP8 weights with scales: DeepSeek-V3's and transformers' fine-grained FP8, compressed-tensors' float-quantized.

A weight `X` stored in float8 (E4M3 or E5M2) comes with a scale tensor `X_scale_inv` (DeepSeek, transformers) or
`X_scale` (compressed-tensors, FBGEMM), which multiplies it: one number for the tensor, one per output row, one
per group of input channels, or one per (row block, column block) tile (DeepSeek-V3: 128 x 128), as the two
shapes say (`packed.tile`).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import float_steps
from ..errors import FormatError
from .base import rows_cols
from .packed import FLOATS, Packed, Parts, expect, floats_rows, tile

F8 = ("F8_E4M3", "F8_E5M2")
SCALE_SUFFIXES = ("_scale_inv", "_scale")


class FP8Weight(Packed):
    method = "fp8"
    bits = 8
    symmetric = True

    def __init__(self, stored: Parts, name: str, scale: str):
        info, sinfo = stored.info(name), stored.info(scale)
        expect(sinfo.dtype in FLOATS + F8, sinfo.file, f"FP8 scale {scale!r} is {sinfo.dtype}, not a float")
        super().__init__(stored, name, info.shape, (name, scale), info.dtype)
        n_rows, n_cols = rows_cols(info.shape)
        s_rows, s_cols = rows_cols(sinfo.shape)
        self.per_tensor = s_rows * s_cols == 1
        if not self.per_tensor:
            self.b_row, self.b_col = tile(n_rows, s_rows), tile(n_cols, s_cols)
            if not self.b_row or not self.b_col or -(-n_rows // self.b_row) != s_rows or -(-n_cols // self.b_col) != s_cols:
                raise FormatError(info.file, f"scale tensor {scale!r} {list(sinfo.shape)} does not tile {name!r} "
                                             f"{list(info.shape)}")
        self.layout = "per tensor" if self.per_tensor else "per row" if s_cols == 1 else \
            f"{self.b_row}x{self.b_col} blocks" if s_rows != n_rows else "groups"
        self.group_size = 0 if self.per_tensor or s_cols == 1 or s_rows != n_rows else self.b_col
        self.n_cols = n_cols

    def decode(self, start: int, stop: int, steps: bool):
        name, scale = self.parts
        raw = floats_rows(self.stored, name, start, stop)  # (k, n_cols), FP8 codes decoded, before scaling
        if self.per_tensor:
            s = floats_rows(self.stored, scale, 0, 1).reshape(())
        else:
            first, last = start // self.b_row, (stop - 1) // self.b_row + 1
            blocks = floats_rows(self.stored, scale, first, last)  # (row blocks, column blocks)
            # (k, n_cols): each value takes the scale of its tile
            s = blocks[np.arange(start, stop) // self.b_row - first][:, np.arange(self.n_cols) // self.b_col]
        values = raw * s
        return values, (float_steps(self.info.dtype, raw) * np.abs(s) if steps else None)


def claim(stored: Parts, qc: dict, where: str) -> list[FP8Weight]:
    out = []
    for name in stored.names():
        info = stored.info(name)
        if info.dtype not in F8:
            continue
        scale = next((name + s for s in SCALE_SUFFIXES if name + s in stored), None)
        if scale is not None:
            out.append(FP8Weight(stored, name, scale))
    return out
