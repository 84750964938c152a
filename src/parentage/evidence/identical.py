"""Identical tensors: frozen or copied parameters, found by value after dtype casts.

Null: the two checkpoints were initialised independently. Then an informative tensor (many distinct values)
of B equals A's only by an astronomically unlikely coincidence. We bound that coincidence very conservatively:
each identical element that is not one of a handful of repeated values is worth one bit (p <= 2^-m for m such
elements), although a real float from an independent run matches far more rarely. Tensors with little
information (constant norm gains, zero biases, tensors under `MIN_ELEMENTS`) are listed but never count.

Rows are sampled in contiguous blocks (the same seeded rows in both), so a 100B checkpoint is not read whole;
a tensor counts as identical when every sampled row is.
"""

from __future__ import annotations

import math

import numpy as np

from ..checkpoint import Checkpoint
from ..dtypes import decode, round_to_bf16
from . import LOG10_P_FLOOR, Evidence

MIN_ELEMENTS = 256  # smaller tensors are too easy to match by construction (e.g. a copied default)
MIN_DISTINCT = 16  # fewer distinct values than this: a constant or a tiny codebook, no evidence
ROWS_PER_TENSOR = 16  # one contiguous block per tensor
PRECISION = {"F64": 3, "F32": 2, "F16": 1, "BF16": 1}  # bigger = finer; GGUF and FP8 types rank below all


def _round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 values to a coarser storage dtype, so a bf16 export of an f32 model compares equal."""
    if dtype == "F16":
        return values.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return decode("BF16", round_to_bf16(values).reshape(-1).view(np.uint8)).reshape(values.shape)
    return values


def _comparable(a: np.ndarray, b: np.ndarray, dtype_a: str, dtype_b: str) -> tuple[np.ndarray, np.ndarray] | None:
    pa, pb = PRECISION.get(dtype_a, 0), PRECISION.get(dtype_b, 0)
    if pa == 0 or pb == 0:  # quantised storage: equality is not defined by a cast
        return None
    if pa > pb:
        a = _round_to(a, dtype_b)
    elif pb > pa:
        b = _round_to(b, dtype_a)
    return a, b


def identical_tensors(a: Checkpoint, b: Checkpoint, seed: int = 0) -> Evidence:
    identical, low_info, checked = [], [], 0
    bits = 0.0
    for role in sorted(set(a.tensors) & set(b.tensors)):
        ta, tb = a.tensors[role], b.tensors[role]
        if ta.shape != tb.shape or (role.role == "lm_head" and (a.summary.tied_embeddings or b.summary.tied_embeddings)):
            continue
        pair = _comparable(ta.sample_rows(ROWS_PER_TENSOR, seed)[1], tb.sample_rows(ROWS_PER_TENSOR, seed)[1], ta.dtype, tb.dtype)
        if pair is None:
            continue
        checked += 1
        va, vb = pair
        if not np.array_equal(va, vb, equal_nan=True):
            continue
        n_total = math.prod(ta.shape)
        distinct = np.unique(va).size
        if n_total < MIN_ELEMENTS or distinct < MIN_DISTINCT:
            low_info.append(role.key)
            continue
        identical.append(role.key)
        bits += distinct  # one bit per distinct sampled value: very conservative
    log10_p = max(LOG10_P_FLOOR, -bits * math.log10(2)) if identical else 0.0
    if identical:
        summary = f"{len(identical)} of {checked} compared tensors are identical in every sampled row (e.g. {identical[0]})"
    else:
        summary = f"none of {checked} compared tensors is identical"
    return Evidence(
        name="identical_tensors",
        log10_p=log10_p,
        effect=len(identical) / checked if checked else None,
        counted=bool(checked),
        summary=summary,
        details={"identical": identical, "identical_low_information": low_info, "n_compared": checked,
                 "rows_per_tensor": ROWS_PER_TENSOR, "bits_counted": bits},
    )
