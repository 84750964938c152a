"""Identical tensors and rows: frozen or copied parameters, found by value after dtype casts.

Null: the two checkpoints were initialised independently. Then an informative row of B (many distinct values)
equals A's only by an astronomically unlikely coincidence. We bound that coincidence very conservatively: each
distinct value in an identical row is worth one bit (p <= 2^-m for m such values), although a real float from an
independent run matches far more rarely. Rows with little information (constant norm gains, zero biases, a
padding token's zero row) and tensors under `MIN_ELEMENTS` are listed but never count.

Every tensor both models hold in one shape is checked, on ROWS_PER_TENSOR rows in BLOCKS contiguous blocks
spread over its rows (the same seeded rows in both), so a 100B checkpoint is not read whole, and a tensor whose
rows are partly identical (embedding rows of tokens training never saw) is not mistaken for a frozen one. What
is known is stated exactly: a tensor is "identical in every sampled row (k of n)" unless all its rows were read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checkpoint import SAMPLE_BLOCKS, Checkpoint, Tensor
from ..dtypes import decode, round_to_bf16
from . import LOG10_P_FLOOR, Evidence
from .blocks import sampled_experts

MIN_ELEMENTS = 256  # smaller tensors are too easy to match by construction (e.g. a copied default)
MIN_DISTINCT = 16  # fewer distinct values than this: a constant or a tiny codebook, no evidence
ROWS_PER_TENSOR = 16  # in Tensor.sample_rows' spread blocks: the rows the baselines read too
# bigger = finer; GGUF and FP8 types rank below all, and compare only with their own type
PRECISION = {"F64": 3, "F32": 2, "F16": 1, "BF16": 1}


@dataclass(frozen=True)
class TensorIdentity:
    """One tensor both models hold: how many of the sampled rows are bit-identical (after dtype rounding)."""

    key: str  # canonical role key, e.g. "layers.3.mlp_up.weight"
    role: str  # "mlp_up"
    layer: int | None
    rows: int  # rows the tensor has
    sampled: int  # rows compared
    identical: int  # of those, rows equal in A and B
    informative: bool  # enough elements and distinct values to count as evidence
    matrix: bool = True  # a weight matrix, not a gain or bias vector
    comparable: bool = True  # False: held by both but not comparable (shapes differ, quantised storage)

    @property
    def whole(self) -> bool:
        return self.sampled == self.rows

    @property
    def all_identical(self) -> bool:
        return self.identical == self.sampled

    def to_dict(self) -> dict:
        return {"tensor": self.key, "rows_identical": self.identical, "rows_sampled": self.sampled, "rows": self.rows}


def _round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 values to a coarser storage dtype, so a bf16 export of an f32 model compares equal."""
    if dtype == "F16":
        return values.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return decode("BF16", round_to_bf16(values).reshape(-1).view(np.uint8)).reshape(values.shape)
    return values


def _comparable(a: np.ndarray, b: np.ndarray, dtype_a: str, dtype_b: str) -> tuple[np.ndarray, np.ndarray] | None:
    if dtype_a == dtype_b:  # one storage type: decoding is a fixed function of the stored bytes (and FP8 scales)
        return a, b
    pa, pb = PRECISION.get(dtype_a, 0), PRECISION.get(dtype_b, 0)
    if pa == 0 or pb == 0:  # two quantised storages: equality is not defined by a cast
        return None
    if pa > pb:
        a = _round_to(a, dtype_b)
    elif pb > pa:
        b = _round_to(b, dtype_a)
    return a, b


def _compare(ta: Tensor, tb: Tensor, rows_a: np.ndarray, rows_b: np.ndarray, key: str, role, layer
             ) -> tuple[TensorIdentity, int] | None:
    """One tensor pair on the same sampled rows: its identity record and the distinct values its identical rows
    carry (0 unless informative), or None when the dtypes are not comparable by a cast."""
    matrix = len(ta.shape) == 2 and min(ta.shape) > 1
    pair = _comparable(rows_a, rows_b, ta.dtype, tb.dtype)
    if pair is None:
        return TensorIdentity(key, role, layer, ta.n_rows, 0, 0, False, matrix, comparable=False), 0
    va, vb = pair  # (sampled rows, n_cols)
    same = np.array([np.array_equal(x, y, equal_nan=True) for x, y in zip(va, vb)], dtype=bool)
    informative = math.prod(ta.shape) >= MIN_ELEMENTS and np.unique(va).size >= MIN_DISTINCT
    distinct = np.unique(va[same]).size if same.any() else 0
    bits = distinct if informative and distinct >= MIN_DISTINCT else 0
    return TensorIdentity(key, role, layer, ta.n_rows, len(va), int(same.sum()), informative, matrix), bits


def compare_tensors(a: Checkpoint, b: Checkpoint, seed: int = 0) -> tuple[list[TensorIdentity], float]:
    """Every tensor held by both in one shape and a comparable dtype, and the bits its identical rows carry."""
    out, bits = [], 0.0
    roles = shared_roles(a, b)
    todo = [r for r in roles if a.tensors[r].shape == b.tensors[r].shape and _castable(a.tensors[r], b.tensors[r])]
    for ck in (a, b):  # the sampled rows, fetched concurrently when remote (cached on each tensor)
        ck.map_reads(lambda r: ck.tensors[r].sample_rows(ROWS_PER_TENSOR, seed), todo)
    for role in roles:
        ta, tb = a.tensors[role], b.tensors[role]
        if role.role == "lm_head" and (a.summary.tied_embeddings or b.summary.tied_embeddings):
            continue
        if ta.shape != tb.shape or not _castable(ta, tb):  # not identical, or not knowable by a cast: said so
            out.append(TensorIdentity(role.key, role.role, role.layer, tb.n_rows, 0, 0, False,
                                      len(tb.shape) == 2 and min(tb.shape) > 1, comparable=False))
            continue
        record, found_bits = _compare(ta, tb, ta.sample_rows(ROWS_PER_TENSOR, seed), tb.sample_rows(ROWS_PER_TENSOR, seed),
                                      role.key, role.role, role.layer)
        out.append(record)
        bits += found_bits  # one bit per distinct value in identical rows: very conservative
    return out, bits


def shared_roles(a: Checkpoint, b: Checkpoint) -> list:
    """The roles both checkpoints hold, by key; of routed experts only those the FFN tests read
    (`blocks.sampled_experts`), which stand for the rest (DeepSeek-V3 has 256 per layer, 44,000 tensors)."""
    experts = _experts_per_layer(b)
    return [r for r in sorted(set(a.tensors) & set(b.tensors), key=lambda r: r.key)
            if r.expert is None or r.expert in sampled_experts(experts.get((r.layer, r.role), 0))]


def _experts_per_layer(ck: Checkpoint) -> dict[tuple[int, str], int]:
    out: dict[tuple[int, str], int] = {}
    for r in ck.tensors:
        if r.expert is not None:
            out[(r.layer, r.role)] = max(out.get((r.layer, r.role), 0), r.expert + 1)
    return out


def _castable(ta: Tensor, tb: Tensor) -> bool:
    return ta.dtype == tb.dtype or (PRECISION.get(ta.dtype, 0) > 0 and PRECISION.get(tb.dtype, 0) > 0)


def layer_identity(a: Checkpoint, b: Checkpoint, i: int, j: int, seed: int = 0) -> list[TensorIdentity]:
    """A's layer i against B's layer j (a layer moved by insertions or removals): every role both hold in one
    shape, on the rows A's tensor samples, read from B at the same offsets. Records carry B's key and layer."""
    out = []
    experts = _experts_per_layer(b)
    for role in a.layer_roles(i):
        if role.expert is not None and role.expert not in sampled_experts(experts.get((j, role.role), 0)):
            continue
        ta, tb = a.tensors[role], b.get(role.role, j, role.expert, role.param)
        if tb is None or ta.shape != tb.shape:
            continue
        if not _castable(ta, tb):
            out.append(TensorIdentity(tb.role.key, role.role, j, tb.n_rows, 0, 0, False, len(tb.shape) == 2, False))
            continue
        spans = ta.sample_spans(ROWS_PER_TENSOR, seed)
        rows_b = np.concatenate([tb.read_rows(lo, hi) for lo, hi in spans])
        out.append(_compare(ta, tb, ta.sample_rows(ROWS_PER_TENSOR, seed), rows_b, tb.role.key, role.role, j)[0])
    return out


def identical_tensors(a: Checkpoint, b: Checkpoint, seed: int = 0) -> tuple[Evidence, list[TensorIdentity]]:
    all_records, bits = compare_tensors(a, b, seed)
    records = [r for r in all_records if r.comparable]
    identical = [r.key for r in records if r.all_identical and r.informative]
    low_info = [r.key for r in records if r.all_identical and not r.informative]
    partly = [r for r in records if 0 < r.identical < r.sampled and r.informative]
    log10_p = max(LOG10_P_FLOOR, -bits * math.log10(2)) if bits else 0.0
    n = len(records)
    if identical or partly:
        parts = []
        if identical:
            parts.append(f"{len(identical)} of {n} compared tensors are identical in every sampled row "
                         f"(e.g. {identical[0]})")
        if partly:
            r = partly[0]
            parts.append(f"{len(partly)} more {'is' if len(partly) == 1 else 'are'} identical in some sampled rows (e.g. {r.key}: {r.identical} of "
                         f"{r.sampled})")
        summary = "; ".join(parts)
    else:
        summary = f"none of {n} compared tensors has an identical informative row"
    return Evidence(
        name="identical_tensors",
        log10_p=log10_p,
        effect=len(identical) / n if n else None,
        counted=bool(n),
        summary=summary,
        details={"identical": identical, "identical_low_information": low_info,
                 "partly_identical": [r.to_dict() for r in partly], "n_compared": n,
                 "n_not_comparable": len(all_records) - n, "rows_per_tensor": ROWS_PER_TENSOR,
                 "blocks_per_tensor": SAMPLE_BLOCKS, "bits_counted": bits},
    ), all_records
