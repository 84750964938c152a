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

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ..checkpoint import PROBE_BYTES, SAMPLE_BLOCKS, Checkpoint, Tensor
from ..dtypes import decode, round_to_bf16
from . import LOG10_P_FLOOR, Evidence
from .blocks import sampled_experts

MIN_ELEMENTS = 256  # smaller tensors are too easy to match by construction (e.g. a copied default)
MIN_DISTINCT = 16  # fewer distinct values than this: a constant or a tiny codebook, no evidence
ROWS_PER_TENSOR = 16  # in Tensor.sample_rows' spread blocks: the rows the baselines read too
# Two live checkpoints this large are first compared on a "probe" of each tensor, the leading rows of its first
# sampled block (about PROBE_BYTES: one row of a 110B model's FFN, the whole block of a narrow tensor; the 16 rows
# of every tensor of a 110B pair are 500 MB in 5,800 requests), and a tensor on all 16 rows only where a probe
# row is identical: an unrelated 110B pair reads a tenth of those bytes in a quarter of the requests, a frozen
# tensor is still read and reported on all 16. Embeddings are probed on every block (`sample_spans`).
PROBE_MIN_BYTES = 1 << 30
# bigger = finer; GGUF and FP8 types rank below all, and compare only with their own type
PRECISION = {"F64": 3, "F32": 2, "F16": 1, "BF16": 1}
ROUNDINGS = ("F16", "BF16")  # the coarser types a finer tensor may be rounded to (F64 -> F32 is decoding itself)
QUANTISED = ("Q8_0", "Q4_0")  # GGUF block types whose quantiser is a fixed function (gguf.quants), per row block


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
    child: str | None = None  # "A" or "B": whose values are the other's rounded onto its storage (identical rows)

    @property
    def whole(self) -> bool:
        return self.sampled == self.rows

    @property
    def all_identical(self) -> bool:
        return self.identical == self.sampled

    def to_dict(self) -> dict:
        return {"tensor": self.key, "rows_identical": self.identical, "rows_sampled": self.sampled, "rows": self.rows}


def _round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 values to a coarser storage dtype, so a bf16 export of an f32 model compares equal; for
    GGUF block types, quantise and decode again with gguf's reference quantiser (what exports are made with)."""
    if dtype in QUANTISED:
        import gguf

        qtype = gguf.GGMLQuantizationType[dtype]
        return gguf.quants.dequantize(gguf.quants.quantize(values.astype(np.float32), qtype), qtype).reshape(values.shape)
    if dtype == "F16":
        return values.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return decode("BF16", round_to_bf16(values).reshape(-1).view(np.uint8)).reshape(values.shape)
    return values


def comparisons(da: str, db: str) -> list[tuple[str, str]]:
    """How a tensor stored as `da` (in A) is compared with one stored as `db` (in B): the roundings (A's, B's) to
    try, in order, each "native" (as decoded) or a storage type the side's values are rounded to. Rounding the
    finer float to the coarser finds a cast; a float quantised by gguf's own quantiser finds a GGUF export; a
    quantised tensor's decoded values rounded to the other's float type find a dequantised export. Two different
    quantised storages have no comparison: equality is not defined by a cast."""
    if da == db:  # one storage type: decoding is a fixed function of the stored bytes (and scales)
        return [("native", "native")]
    p, q = PRECISION.get(da, 0), PRECISION.get(db, 0)
    if p and q:
        coarse = db if p > q else da
        r = coarse if coarse in ROUNDINGS else "native"
        return [(r, "native")] if p > q else [("native", r)]
    if not p and not q:
        return []
    swap = not p  # put the float side first
    f, qt = (db, da) if swap else (da, db)
    out = [(qt, "native")] if qt in QUANTISED else []  # f quantised by gguf's quantiser: a GGUF export
    out.append(("native", f if f in ROUNDINGS else "native"))  # q decoded, rounded to f's type: a dequantised export
    return [(y, x) for x, y in out] if swap else out


def child_of(ra: str, rb: str, pa: "RowPrints", pb: "RowPrints", da: str, db: str) -> str | None:
    """For rows identical under roundings (ra, rb): which side is the other's values on its own storage. The
    rounded side lost nothing when it already lay on the target's grid (a float upcast of the other): then it is
    the child; otherwise its rounding is what the other holds, and the other is the child. Lower precision alone
    is no direction."""
    if ra == rb == "native":  # equal values in two storages: the finer (a float beside a quantised grid) is the copy
        if da == db:
            return None
        return "A" if PRECISION.get(da, 0) > PRECISION.get(db, 0) else "B"
    side, r, prints, dtype = ("A", ra, pa, da) if ra != "native" else ("B", rb, pb, db)
    other = "B" if side == "A" else "A"
    already = PRECISION.get(dtype, 0) > 0 and "native" in prints.digests and np.array_equal(
        prints.digests["native"], prints.digests[r])
    return side if already else other


@dataclass(frozen=True)
class RowPrints:
    """One tensor's sampled rows, as digests: what the identity test compares, live or from a fingerprint.

    Per rounding ("native", and for finer float types each coarser one): one 64-bit digest per row, the distinct
    values per row, and the distinct values over all sampled rows."""

    digests: dict[str, np.ndarray]  # rounding -> (k,) uint64
    distinct: dict[str, np.ndarray]  # rounding -> (k,) int64
    distinct_all: dict[str, int]

    @property
    def sampled(self) -> int:
        return len(next(iter(self.digests.values())))


def _digest(row: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b((row + np.float32(0)).tobytes(), digest_size=8).digest(), "little")  # -0 == 0


def roundings_of(dtype: str, n_cols: int) -> tuple[str, ...]:
    """Every rounding a tensor stored as `dtype` with rows of n_cols values may be compared in: a float in each
    coarser float type and in gguf's block types; a quantised tensor's decoded values in the 16-bit floats (what a
    dequantised export holds)."""
    p = PRECISION.get(dtype, 0)
    if not p:
        return ("native",) + ROUNDINGS
    quantisable = n_cols % 32 == 0  # both block types work on runs of 32 values along a row
    return ("native",) + tuple(x for x in ROUNDINGS if p > PRECISION[x]) + (QUANTISED if quantisable else ())


def prints_of_rows(rows: np.ndarray, dtype: str, roundings: tuple[str, ...] | None = None,
                   into: RowPrints | None = None) -> RowPrints:
    """(k, n_cols) or (k,) decoded rows of a tensor stored as `dtype` -> its prints in `roundings` (default:
    every rounding it may be compared in), added to `into` when given."""
    rows = rows.reshape(len(rows), -1).astype(np.float32, copy=False)
    out = into or RowPrints({}, {}, {})
    possible = roundings_of(dtype, rows.shape[1])
    for r in possible if roundings is None else [r for r in roundings if r in possible]:
        v = _round_to(rows, r) if r != "native" else rows
        out.digests[r] = np.array([_digest(x) for x in v], dtype=np.uint64)
        out.distinct[r] = _distinct_per_row(v)
        out.distinct_all[r] = int(np.unique(v).size)
    return out


def _distinct_per_row(v: np.ndarray) -> np.ndarray:
    """np.unique(row).size for each row of v (k, n), sorted once instead of k unique calls (NaNs count once)."""
    s = np.sort(v, axis=1)  # NaNs sort last
    nan = np.isnan(s)
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]  # -0 == 0, as in np.unique
    return (new & ~nan).sum(axis=1).astype(np.int64) + nan.any(axis=1)


def tensor_prints(t: Tensor, seed: int, roundings: tuple[str, ...] | None = None, probe: bool = False
                  ) -> RowPrints | None:
    """The prints of a tensor's sampled rows (Tensor.sample_rows; `probe`: their probe rows) in `roundings`
    (default: all): computed from a live checkpoint, only those asked for (the quantisers are the costly part),
    or looked up in a fingerprint (None when it did not record them)."""
    if not t.weights.complete:
        return t.weights.prints.get(t.role.key)
    key = (ROWS_PER_TENSOR, seed)
    cache = "_probe_prints" if probe else "_prints"
    if getattr(t, cache + "_key", None) != key:
        setattr(t, cache + "_key", key)
        setattr(t, cache, RowPrints({}, {}, {}))
    prints = getattr(t, cache)
    want = roundings_of(t.dtype, t.shape[-1] if len(t.shape) > 1 else 1) if roundings is None else roundings
    missing = tuple(r for r in want if r not in prints.digests)
    if missing:  # rows are not kept: a 100B model samples thousands of tensors
        prints_of_rows(t.sample_rows(ROWS_PER_TENSOR, seed, probe), t.dtype, missing, into=prints)
    return prints


def probing(a: Checkpoint, b: Checkpoint) -> bool:
    """Whether this pair's sampled rows are read in two stages (PROBE_MIN_BYTES)."""
    return a.weights.complete and b.weights.complete and \
        max(a.weights.bytes_total, b.weights.bytes_total) >= PROBE_MIN_BYTES


def _compare(ta: Tensor, tb: Tensor, pa: RowPrints | None, pb: RowPrints | None, key: str, role, layer
             ) -> tuple[TensorIdentity, int]:
    """One tensor pair on the same sampled rows: its identity record and the distinct values its identical rows
    carry (0 unless informative). Of several ways to compare (`comparisons`), the first that makes every row
    identical, else the one that makes most rows identical."""
    matrix = len(ta.shape) == 2 and min(ta.shape) > 1
    tried = [(ra, rb) for ra, rb in comparisons(ta.dtype, tb.dtype)
             if pa is not None and pb is not None and ra in pa.digests and rb in pb.digests and pa.sampled == pb.sampled]
    if not tried:
        return TensorIdentity(key, role, layer, ta.n_rows, 0, 0, False, matrix, comparable=False), 0
    ra, rb = max(tried, key=lambda r: int((pa.digests[r[0]] == pb.digests[r[1]]).sum()))
    same = pa.digests[ra] == pb.digests[rb]  # (sampled,)
    informative = math.prod(ta.shape) >= MIN_ELEMENTS and pa.distinct_all[ra] >= MIN_DISTINCT
    # distinct values the identical rows carry: over all rows when all agree, else (a lower bound) the most in one
    distinct = pa.distinct_all[ra] if same.all() else int(pa.distinct[ra][same].max()) if same.any() else 0
    bits = distinct if informative and distinct >= MIN_DISTINCT else 0
    child = child_of(ra, rb, pa, pb, ta.dtype, tb.dtype) if same.all() else None
    return TensorIdentity(key, role, layer, ta.n_rows, pa.sampled, int(same.sum()), informative, matrix,
                          child=child), bits


def compare_tensors(a: Checkpoint, b: Checkpoint, seed: int = 0) -> tuple[list[TensorIdentity], float]:
    """Every tensor held by both in one shape and a comparable dtype, and the bits its identical rows carry."""
    out, bits = [], 0.0
    roles = shared_roles(a, b)
    todo = [r for r in roles if a.tensors[r].shape == b.tensors[r].shape and _castable(a.tensors[r], b.tensors[r])]
    probe = probing(a, b)
    for ck, other in ((a, b), (b, a)):  # the sampled rows, fetched concurrently when remote (prints cached)
        ck.map_reads(lambda r: tensor_prints(ck.tensors[r], seed, _wanted(ck.tensors[r], other.tensors[r], ck is a),
                                             probe), todo)
    if probe:  # the whole sample of each tensor a probe row found identical in, fetched the same way
        todo = [r for r in todo if _compare(a.tensors[r], b.tensors[r], *_prints_pair(a.tensors[r], b.tensors[r], seed, True),
                                            r.key, r.role, r.layer)[0].identical]
        for ck, other in ((a, b), (b, a)):
            ck.map_reads(lambda r: tensor_prints(ck.tensors[r], seed, _wanted(ck.tensors[r], other.tensors[r], ck is a)),
                         todo)
    for role in roles:
        ta, tb = a.tensors[role], b.tensors[role]
        if role.role == "lm_head" and (a.summary.tied_embeddings or b.summary.tied_embeddings):
            continue
        if ta.shape != tb.shape or not _castable(ta, tb):  # not identical, or not knowable by a cast: said so
            out.append(TensorIdentity(role.key, role.role, role.layer, tb.n_rows, 0, 0, False,
                                      len(tb.shape) == 2 and min(tb.shape) > 1, comparable=False))
            continue
        record, found_bits = _staged(ta, tb, seed, probe, role.key, role.role, role.layer)
        out.append(record)
        bits += found_bits  # one bit per distinct value in identical rows: very conservative
    return out, bits


def _prints_pair(ta: Tensor, tb: Tensor, seed: int, probe: bool = False) -> tuple:
    return tensor_prints(ta, seed, _wanted(ta, tb, True), probe), tensor_prints(tb, seed, _wanted(tb, ta, False), probe)


def _staged(ta: Tensor, tb: Tensor, seed: int, probe: bool, key: str, role, layer) -> tuple[TensorIdentity, int]:
    """`_compare` on the probe rows, and on the whole sample where one of them is identical (or `probe` is off)."""
    if probe:
        record, found = _compare(ta, tb, *_prints_pair(ta, tb, seed, True), key, role, layer)
        if record.comparable and not record.identical:
            return record, found
    return _compare(ta, tb, *_prints_pair(ta, tb, seed), key, role, layer)


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


def _wanted(t: Tensor, other: Tensor, first: bool) -> tuple[str, ...]:
    """The roundings t is compared in against `other` (`first`: t is A's), and native for a float (whether it
    already lies on a coarser grid says which side of an identical pair is the copy)."""
    pairs = comparisons(t.dtype, other.dtype) if first else [(b, a) for a, b in comparisons(other.dtype, t.dtype)]
    want = {r for r, _ in pairs}
    if want and PRECISION.get(t.dtype, 0):
        want.add("native")
    return tuple(sorted(want))


def _castable(ta: Tensor, tb: Tensor) -> bool:
    return bool(comparisons(ta.dtype, tb.dtype))


def layer_identity(a: Checkpoint, b: Checkpoint, i: int, j: int, seed: int = 0) -> list[TensorIdentity]:
    """A's layer i against B's layer j (a layer moved by insertions or removals): every role both hold in one
    shape, on the same sampled rows (`Tensor.sample_spans` does not depend on the layer). Records carry B's key
    and layer."""
    out, probe = [], probing(a, b)
    experts = _experts_per_layer(b)
    for role in a.layer_roles(i):
        if role.expert is not None and role.expert not in sampled_experts(experts.get((j, role.role), 0)):
            continue
        ta, tb = a.tensors[role], b.find(role.role, j, role.expert, role.param)
        if tb is None or ta.shape != tb.shape:
            continue
        out.append(_staged(ta, tb, seed, probe, tb.role.key, role.role, j)[0])
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
                 # a large pair: tensors with no identical row among their probe rows were read no further
                 "probe_bytes": PROBE_BYTES if probing(a, b) else None,
                 # informative identical tensors whose copy side the storages say (a cast, a GGUF export, a
                 # dequantised export: index/direction.py orders relatives by it)
                 "copies": {side: sum(1 for r in records if r.all_identical and r.informative and r.child == side)
                            for side in ("A", "B")},
                 "blocks_per_tensor": SAMPLE_BLOCKS, "bits_counted": bits},
    ), all_records
