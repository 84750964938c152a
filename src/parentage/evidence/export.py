"""Is one checkpoint the other's weights up to a cast, a re-export, a quantisation or a dequantisation?

Not a statistic with a null: an exact question with an exact answer, asked of every tensor the two hold in one
shape, on the rows the identity test samples (`identical.ROWS_PER_TENSOR` per tensor, in spread blocks):

- identical values (any two storages; the identity test's digests): a copy, a re-export in another container,
  or a cast that lost nothing;
- a cast: the finer float rounded to the coarser type gives the coarser bit for bit (the identity test);
- a dequantisation: the float side holds the quantised side's decoded values rounded to its own type, to half
  its spacing everywhere — the float file lies on the other's grid, so it is that file's child;
- a quantisation: the quantised side lies within its quantiser's error of the float side, measured in the
  quantiser's own step at each value (the distance to the next value its code could have taken):
  round-to-nearest stays within half a step (RMS 0.29 of a step); GPTQ's error compensation moves a value a
  step or two (rows' RMS 0.35-0.6 on the zoo); a tensor of another model, or one edited after quantising, lies
  3 to 100+ steps away (at 3 bits and more). AWQ's per-input-channel scales (folded into the norm before, or
  the up projection's rows) are fitted away first, and those norms are checked against the fitted scales.

A quantisation is the child of what it quantises; a dequantised export is the child of the quantised file; an
upcast (a float whose values all lie on a coarser type's grid) is the child of the coarser one. Lower precision
alone says nothing. A tensor beyond its quantiser's error in a checkpoint whose other tensors lie within is
named as altered, with its error in units of round-to-nearest's (0.29 of a step).

Only the sampled rows are checked: a tensor changed in most of its rows is found; a few edited rows are found
only when the sample meets them (`rows_checked` says how many of how many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..checkpoint import Checkpoint, Tensor
from ..dtypes import FLOAT_GRID, float_steps
from .identical import PRECISION, ROWS_PER_TENSOR, TensorIdentity, probing, shared_roles

WITHIN = 1.5  # largest row RMS error, in quantiser steps, of a tensor within its quantiser's error
NEAREST = 0.52  # largest |error| in steps of round-to-nearest (scales stored in 16 bits move the grid a little)
RTN_RMS = 1 / math.sqrt(12)  # RMS error of round-to-nearest: the unit "N x its error" is said in
MISMATCH = 2.0  # a tensor's error must also be this far below that of its rows paired with the wrong rows
EXPORT_SHARE = 0.8  # share of compared tensors that must hold for a checkpoint to be called the other's export
RESCALE_TOL = 0.1  # median |log| gap between a norm's change and the fitted input scales it should carry
RESCALE_SHARE = 0.25  # ... and at most this share of the change's own spread over channels
# GGUF block types on an affine grid (value = d * code + m per sub-block): the sub-block length
GGUF_SUB_BLOCK = {"Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32, "Q8_0": 32, "Q8_1": 32, "Q2_K": 16, "Q3_K": 16,
                  "Q4_K": 32, "Q5_K": 32, "Q6_K": 16, "Q8_K": 256}
MEASURABLE = 0.5  # share of a tensor's values whose step is known, below which it is not compared
GRID_BLOCKS = 0.9  # share of sub-blocks on one affine grid for float rows to be called a dequantised quantisation
ONNX_TYPES = {"ONNX-NBITS2": "MatMulNBits 2-bit", "ONNX-NBITS3": "MatMulNBits 3-bit", "ONNX-NBITS4": "MatMulNBits 4-bit",
              "ONNX-NBITS8": "MatMulNBits 8-bit", "ONNX-I8": "int8", "ONNX-U8": "uint8", "ONNX-I4": "int4",
              "ONNX-U4": "uint4"}
NORM_INPUTS = {"attn_norm": ("attn_q", "attn_k", "attn_v"), "mlp_norm": ("mlp_gate", "mlp_up")}


@dataclass
class TensorCheck:
    key: str  # B's canonical key
    role: str
    layer: int | None
    relation: str  # identical | cast | dequantized | quantized | rescaled | beyond | not_comparable
    quantized: str | None = None  # "A" or "B": the side whose storage grid the error is measured on
    error: float | None = None  # RMS error over the checked rows, in that side's steps
    worst_row: float | None = None
    nearest: bool | None = None  # every value within half a step: round-to-nearest
    fitted: bool = False  # per-input-channel scales fitted away first (AWQ)
    child: str | None = None  # for identical/cast records: the copy side (identity test)
    grid: tuple[int, int] | None = None  # a float side found on a quantisation grid: (block length, most codes used)
    matrix: bool = False
    difference: float | None = None  # two floats, neither a cast: |A - B| / |A| over the checked rows

    @property
    def ratio(self) -> float | None:
        """The error in units of round-to-nearest's."""
        return None if self.error is None else self.error / RTN_RMS

    def to_dict(self) -> dict:
        return {"tensor": self.key, "relation": self.relation, "error_steps": _r(self.error),
                "worst_row_steps": _r(self.worst_row), "times_rounding_error": _r(self.ratio)}


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


def quantised(dtype: str) -> bool:
    return PRECISION.get(dtype, 0) == 0


def grid_steps(values: np.ndarray, sub: int, tol: float = 0.02) -> np.ndarray:
    """The step of an affine grid at each value (rows (k, n), sub-blocks of `sub` values along the rows holding
    d * code + m): the largest spacing that every gap between a sub-block's distinct values is a whole multiple
    of (d, to within `tol` of a step), found as the smallest gap divided by the least k <= 8 that makes all gaps
    whole. NaN where a sub-block holds one value only (nothing to tell), or where no such spacing exists."""
    k, n = values.shape
    blocks = np.sort(values.reshape(k, n // sub, sub).astype(np.float64), axis=-1)  # (k, blocks, sub)
    gaps = np.diff(blocks, axis=-1)
    scale = np.maximum(np.abs(blocks).max(axis=-1, keepdims=True), 1e-30)
    gaps = np.where(gaps > scale * 1e-6, gaps, np.nan)  # equal codes: no gap
    empty = np.isnan(gaps).all(-1)  # one distinct value: nothing to tell
    smallest = np.where(empty, np.nan, np.where(np.isnan(gaps), np.inf, gaps).min(axis=-1, initial=np.inf))
    step = np.full_like(smallest, np.nan)
    for div in range(8, 0, -1):  # the least divisor that works wins: go from large to small, keep overwriting
        cand = smallest / div
        ratio = gaps / cand[..., None]
        off = np.abs(ratio - np.round(ratio))  # how far each gap is from a whole number of candidate steps
        whole = np.where(np.isnan(off), 0.0, off).max(axis=-1, initial=0.0) < tol
        step = np.where(whole, cand, step)
    return np.repeat(step, sub, axis=-1).reshape(k, n).astype(np.float32)


def detect_grid(values: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """Whether float rows (k, n) hold a dequantised quantisation: in sub-blocks of g values along the rows, at
    most a quarter as many distinct values as g, spaced on one affine grid (to a tenth of a step: a 16-bit float
    rounds d * code by up to 2^-8 of it) in at least GRID_BLOCKS of them. The smallest g of 32..256 that shows
    it, then the largest that keeps one grid with no more codes (a group of 128 seen through blocks of 64).
    Returns (the grid's step at each value, g, the most codes a block uses), or None. Values drawn from a
    continuous distribution fail at once: g distinct values in every block. Groups that are not contiguous
    (GPTQ's act-order) and codebooks (NF4) leave no such blocks: they are not found, and nothing is claimed."""
    k, n = values.shape

    def grid(g: int) -> tuple[np.ndarray, int] | None:
        if n % g:
            return None
        blocks = np.sort(values.reshape(k, n // g, g), axis=-1)
        distinct = 1 + (np.diff(blocks, axis=-1) != 0).sum(-1)  # (k, blocks)
        if np.median(distinct) > min(g // 4, 256):
            return None
        steps = grid_steps(values, g, tol=0.1)
        ok = np.isfinite(steps).reshape(k, n // g, g)[..., 0].mean() >= GRID_BLOCKS
        return (steps, int(distinct.max())) if ok else None

    sizes = [g for g in (32, 64, 128, 256) if g <= n]
    for i, g in enumerate(sizes):
        found = grid(g)
        if found is None:
            continue
        best = (found[0], g, found[1])
        for wider in sizes[i + 1:]:
            more = grid(wider)
            if more is None or more[1] > found[1]:
                break
            best = (more[0], wider, more[1])
        return best
    return None


def _steps(t: Tensor, values: np.ndarray, seed: int, held: int | None = None, probe: bool = False) -> np.ndarray | None:
    """The storage step at each sampled value (or at each of the leading `held` rows): the quantiser's, or the
    float type's spacing; None: unknown."""
    packed = t.sample_steps(ROWS_PER_TENSOR, seed, probe) if held is None else t.read_steps(0, held)
    if packed is not None:
        return packed.reshape(values.shape)
    if t.dtype in FLOAT_GRID:
        return float_steps(t.dtype, values)
    sub = GGUF_SUB_BLOCK.get(t.dtype)
    if sub and values.shape[-1] % sub == 0:
        return grid_steps(values, sub)
    return None


def _rank_one_fit(f: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f scaled per row (r) and per column (c) to match q (least squares, alternating): AWQ multiplies a layer's
    input channels by s and the rows feeding them by 1/s. Returns (r f c, c, the relative standard error of
    each c_j from the fit's residuals)."""
    f64, q64 = f.astype(np.float64), q.astype(np.float64)
    r, c = np.ones(f.shape[0]), np.ones(f.shape[1])
    for _ in range(3):
        fr = f64 * r[:, None]
        c = (fr * q64).sum(0) / np.maximum((fr * fr).sum(0), 1e-30)
        fc = f64 * c[None, :]
        r = (fc * q64).sum(1) / np.maximum((fc * fc).sum(1), 1e-30)
    fitted = f64 * r[:, None] * c[None, :]
    fr = f64 * r[:, None]
    se = np.sqrt(((q64 - fitted) ** 2).sum(0) / max(len(f) - 1, 1) / np.maximum((fr * fr).sum(0), 1e-30))
    return fitted.astype(np.float32), c, se / np.maximum(np.abs(c), 1e-30)


def _errors(f: np.ndarray, q: np.ndarray, steps: np.ndarray) -> tuple[float, float, float, float]:
    """(RMS error, worst row's RMS, max |error|, the RMS when rows are paired one off), in steps."""
    ok = np.isfinite(steps) & (steps > 0)
    safe = np.where(ok, steps, 1).astype(np.float64)
    e = np.where(ok, (q.astype(np.float64) - f) / safe, 0.0)
    count = np.maximum(ok.sum(axis=1), 1)
    rows = np.sqrt((e * e).sum(axis=1) / count)
    shifted = np.where(ok, (q.astype(np.float64) - np.roll(f, 1, axis=0)) / safe, 0.0)
    mismatch = float(np.sqrt((shifted * shifted).sum() / max(ok.sum(), 1))) if len(f) > 1 else math.inf
    return float(np.sqrt((e * e).sum() / max(ok.sum(), 1))), float(rows.max()), float(np.abs(e).max()), mismatch


def _check(ta: Tensor, tb: Tensor, key: str, seed: int, held: int | None = None, probe: bool = False
           ) -> tuple[TensorCheck, np.ndarray | None]:
    """One tensor pair whose sampled rows (or leading `held` rows, on a fingerprint; `probe`: the probe rows) are
    not identical in any comparison of the identity test: (its check, the input scales fitted on it or None)."""
    qa, qb = quantised(ta.dtype), quantised(tb.dtype)
    role, layer = tb.role.role, tb.role.layer
    if qa and qb:
        return TensorCheck(key, role, layer, "not_comparable"), None
    if held is None:
        va, vb = ta.sample_rows(ROWS_PER_TENSOR, seed, probe), tb.sample_rows(ROWS_PER_TENSOR, seed, probe)
    else:
        va, vb = ta.read_rows(0, held), tb.read_rows(0, held)
    va, vb = va.reshape(len(va), -1), vb.reshape(len(vb), -1)
    if not (qa or qb):  # two floats: a cast rounds to within half the coarser type's spacing (one, other modes)
        coarse, fine = (vb, va) if PRECISION[tb.dtype] <= PRECISION[ta.dtype] else (va, vb)
        dtype = tb.dtype if coarse is vb else ta.dtype
        cast = PRECISION[ta.dtype] != PRECISION[tb.dtype] and bool(np.all(
            np.abs(fine.astype(np.float64) - coarse) <= float_steps(dtype, coarse).astype(np.float64)))
        if cast:
            return TensorCheck(key, role, layer, "cast", child="B" if coarse is vb else "A"), None
        for side, vq, vf in (("B", vb, va), ("A", va, vb)):  # a dequantised quantisation, held as floats
            grid = detect_grid(vq) if vq.ndim == 2 and vq.shape[1] > 1 else None
            if grid is not None:
                rms, worst, biggest, mismatch = _errors(vf, vq, grid[0])
                if worst <= WITHIN and rms * MISMATCH <= max(mismatch, WITHIN):
                    return TensorCheck(key, role, layer, "quantized", side, rms, worst, biggest <= NEAREST,
                                       grid=grid[1:]), None
        gap = float(np.linalg.norm(va.astype(np.float64) - vb) / max(np.linalg.norm(va.astype(np.float64)), 1e-30))
        return TensorCheck(key, role, layer, "beyond", difference=gap), None
    side = "A" if qa else "B"
    tq, vq, vf, tf = (ta, va, vb, tb) if qa else (tb, vb, va, ta)
    steps = _steps(tq, vq, seed, held, probe)
    if steps is None and held is not None and vq.ndim == 2 and vq.shape[1] > 1:
        grid = detect_grid(vq)  # a fingerprint keeps decoded values, not the quantiser's scales: find its grid
        steps = grid[0] if grid is not None else None
    if steps is None or np.isfinite(steps).mean() < MEASURABLE:  # no grid to measure on (a codebook GGUF type)
        return TensorCheck(key, role, layer, "not_comparable"), None
    if tf.dtype in FLOAT_GRID and np.all(np.abs(vf.astype(np.float64) - vq) <= 0.5 * float_steps(tf.dtype, vq)):
        return TensorCheck(key, role, layer, "dequantized", side, 0.0, 0.0, True), None
    rms, worst, biggest, mismatch = _errors(vf, vq, steps)
    fitted, scales = False, None
    if vf.shape[1] > 1:  # AWQ's input scales: fitted on every matrix (its norms are checked against them)
        f2, c, se = _rank_one_fit(vf, vq)
        scales = np.stack([c, se])
        if worst > WITHIN:
            rms2, worst2, biggest2, mismatch2 = _errors(f2, vq, steps)
            if worst2 <= WITHIN:
                rms, worst, biggest, mismatch, fitted = rms2, worst2, biggest2, mismatch2, True
    within = worst <= WITHIN and rms * MISMATCH <= max(mismatch, WITHIN)
    return TensorCheck(key, role, layer, "quantized" if within else "beyond", side, rms, worst,
                       biggest <= NEAREST, fitted), scales


HELD_ROWS = 32  # on a fingerprint, the export is checked on the leading rows both sides hold (FFN, value, output)
MIN_HELD = 8


def export_check(a: Checkpoint, b: Checkpoint, seed: int, identity: list[TensorIdentity]) -> dict | None:
    """The export relation between A and B (alignment.export), or None when neither checkpoint is stored
    otherwise than the other in any way that matters. A fingerprint keeps digests of the sampled rows, not their
    values: against one, the tensors whose sampled rows differ are checked on the leading rows both hold."""
    fingerprint = not (a.weights.complete and b.weights.complete)
    probe = probing(a, b)  # a relation that fails on the probe rows fails on all: each bounds the worst row
    ident = {r.key: r for r in identity}
    checks: list[TensorCheck] = []
    scales: dict[tuple[int | None, str], np.ndarray] = {}
    tied = a.summary.tied_embeddings or b.summary.tied_embeddings
    for role in shared_roles(a, b):
        ta, tb = a.tensors[role], b.tensors[role]
        if (role.role == "lm_head" and tied) or ta.shape != tb.shape:
            continue
        rec = ident.get(role.key)
        if rec is not None and rec.comparable and rec.sampled and rec.all_identical:
            checks.append(_identical(rec, ta.dtype, tb.dtype))
            continue
        held = None
        if fingerprint:
            held = min(ta.prefix(), tb.prefix(), HELD_ROWS)
            if held < min(MIN_HELD, ta.n_rows):
                continue
        check, fitted = _check(ta, tb, role.key, seed, held, probe)
        if probe and check.relation not in ("beyond", "not_comparable"):  # a relation the probe rows allow: all rows
            check, fitted = _check(ta, tb, role.key, seed, held)
        check.matrix = len(tb.shape) == 2 and min(tb.shape) > 1
        checks.append(check)
        if fitted is not None:
            scales[(role.layer, role.role)] = fitted
    # AWQ always rescales input channels (the norms carry the inverse), even where the rows checked stay within
    # the quantiser's error without a fit: so its norms are checked against the scales fitted anyway
    awq = any(t.dtype.startswith("AWQ") for ck in (a, b) for t in ck.tensors.values())
    _rescaled_norms(a, b, checks, scales, awq)
    return _summarise(a, b, checks)


def _identical(rec: TensorIdentity, da: str, db: str) -> TensorCheck:
    """A tensor whose sampled rows the identity test found identical, in whatever comparison: a copy, a cast, a
    quantisation gguf's own quantiser reproduces bit for bit, or a dequantised export."""
    child = rec.child if rec.informative else None  # a tensor of ones says nothing about who copied whom
    if da == db or (quantised(da) and quantised(db)):
        return TensorCheck(rec.key, rec.role, rec.layer, "identical", child=child)
    if quantised(da) or quantised(db):
        qside = "A" if quantised(da) else "B"
        relation = "quantized" if rec.child == qside else "dequantized"
        return TensorCheck(rec.key, rec.role, rec.layer, relation, qside, 0.0, 0.0, True, child=child)
    return TensorCheck(rec.key, rec.role, rec.layer, "cast", child=child)


def _rescaled_norms(a: Checkpoint, b: Checkpoint, checks: list[TensorCheck], scales: dict, awq: bool = False) -> None:
    """A norm gain that changed by the input scales fitted on the layers it feeds (AWQ divides the gain by them)
    is `rescaled`, not altered. Only asked when some matrix of the pair lay within its quantiser's error only
    after such scales were fitted (the quantiser did rescale channels), and the change's profile over channels
    must be the scales' (up to one constant, which a per-row and per-column fit cannot tell apart), to within
    a quarter of its own spread or three standard errors of the fitted scales, and at most RESCALE_TOL."""
    if not (awq or any(c.fitted for c in checks)):
        return
    for c in checks:
        if c.relation != "beyond" or c.role not in NORM_INPUTS:
            continue
        fits = [scales[(c.layer, r)] for r in NORM_INPUTS[c.role] if (c.layer, r) in scales]
        if not fits:
            continue
        na, nb = a.get(c.role, c.layer), b.get(c.role, c.layer)
        if not (na.has(0, na.n_rows) and nb.has(0, nb.n_rows)):
            continue  # a fingerprint that does not hold the gain
        ga = na.read().astype(np.float64)
        gb = b.get(c.role, c.layer).read().astype(np.float64)
        s = np.median(np.stack([f[0] for f in fits]), axis=0)
        se = np.median(np.stack([f[1] for f in fits]), axis=0) / np.sqrt(len(fits))
        ok = (np.abs(gb) > 0) & (s > 0) & (np.abs(ga) > 0) & np.isfinite(se)
        if ok.sum() < 2:
            continue
        change = np.log(np.abs(ga[ok] / gb[ok]))  # what the gain lost, per channel
        residual = change - np.log(s[ok])
        residual -= np.median(residual)
        spread = np.median(np.abs(change - np.median(change)))
        allowed = min(RESCALE_TOL, max(RESCALE_SHARE * spread, 3 * float(np.median(se[ok]))))
        if np.median(np.abs(residual)) <= allowed:
            c.relation = "rescaled"


def _method(ck: Checkpoint, relation: str) -> tuple[str, str]:
    """(format key, a short phrase: "GPTQ 4-bit", "GGUF Q4_K/Q6_K", "BF16") of the storage a relation is about."""
    scheme = ck.weights.scheme
    if scheme is not None:
        return scheme.method, scheme.short()
    matrices = [t.dtype for t in ck.tensors.values() if len(t.shape) == 2]
    types = sorted({d for d in matrices if quantised(d)} or set(matrices))
    if ck.format == "gguf":
        return "gguf", f"GGUF {'/'.join(types)}"
    if ck.format == "onnx":
        return "onnx", "ONNX " + "/".join(ONNX_TYPES.get(t, t) for t in types)
    return ck.format, "/".join(types)


def _summarise(a: Checkpoint, b: Checkpoint, checks: list[TensorCheck]) -> dict | None:
    """The checkpoint-level relation: which kind, which side is the copy, what holds and what does not."""
    compared = [c for c in checks if c.relation != "not_comparable"]
    stored_q = {side for side, ck in (("A", a), ("B", b))
                if any(quantised(t.dtype) for t in ck.tensors.values() if len(t.shape) == 2)}
    grid = [c for c in compared if c.grid]
    quant_checks = [c for c in compared if c.quantized is not None]  # measured on a quantiser's grid
    float_checks = [c for c in compared if c.quantized is None]
    if len(stored_q) == 1 and quant_checks:
        qside = next(iter(stored_q))
        deq = sum(c.relation == "dequantized" for c in quant_checks)
        quant = sum(c.relation == "quantized" for c in quant_checks)
        relation = "dequantization" if deq > quant else "quantization"
        child = qside if relation == "quantization" else ("B" if qside == "A" else "A")
    elif not stored_q and grid:  # a quantisation stored dequantised: floats on a quantiser's grid
        sides = [c.quantized for c in grid]
        relation, child = "quantization", max(set(sides), key=sides.count)
        quant_checks = [c for c in compared if c.grid or (c.matrix and c.relation == "beyond")]
        float_checks = [c for c in compared if c not in quant_checks]
    elif not stored_q and any(c.relation == "cast" for c in compared):  # (quantised matrices unmeasured: no claim)
        sides = [c.child for c in compared if c.relation == "cast" and c.child]
        relation, child = "cast", (max(set(sides), key=sides.count) if sides else None)
    elif compared and a.format != b.format and all(c.relation == "identical" for c in compared):
        relation, child = "re_export", None
    else:
        return None  # the same storage on both sides: the identity test says what is shared
    parent = None if child is None else ("B" if child == "A" else "A")
    holds = [c for c in compared if c.relation != "beyond"]
    shares = [sum(c.relation != "beyond" for c in group) / len(group) for group in (quant_checks, float_checks)
              if group]
    found = all(x >= EXPORT_SHARE for x in shares)
    holder = {"quantization": child, "dequantization": parent, "cast": child}.get(relation) or "B"
    fmt, method = _method(a if holder == "A" else b, relation)
    if relation == "quantization" and not stored_q:
        bits = max(1, math.ceil(math.log2(max(g.grid[1] for g in grid))))
        sizes = sorted({g.grid[0] for g in grid})
        method = f"{bits}-bit (groups of {'/'.join(map(str, sizes))}, stored dequantized as {method})"
    beyond = [c for c in compared if c.relation == "beyond"]
    doc = {"relation": relation if found else None, "format": fmt, "method": method,
           "child": child if found else None, "parent": parent if found else None,
           "n_compared": len(compared), "n_within": len(holds), "n_not_comparable": len(checks) - len(compared),
           "rounding": _rounding([c for c in quant_checks if c.relation == "quantized"]),
           "rescaled": [c.key for c in checks if c.relation == "rescaled"],
           "fitted_scales": sum(c.fitted for c in quant_checks),
           "altered": [c.to_dict() for c in sorted(beyond, key=lambda c: -(c.ratio or 0))],
           "rows_checked": ROWS_PER_TENSOR}
    gaps = [c.difference for c in beyond if c.difference is not None and c.matrix]
    doc["difference"] = round(float(np.median(gaps)), 5) if gaps else None
    doc["summary"] = _sentence(doc, relation, child or "B", method)
    return doc


def _rounding(quant: list[TensorCheck]) -> str | None:
    if not quant:
        return None
    if all(c.nearest for c in quant):
        return "round-to-nearest"
    return "error-compensating (values moved up to a step or two, as GPTQ does)"


def _sentence(doc: dict, relation: str, who: str, method: str) -> str:
    n, k, altered = doc["n_compared"], doc["n_within"], doc["altered"]
    other = "B" if who == "A" else "A"
    article = "an" if method[:1] in "AEFHILMNORSX" else "a"
    if doc["relation"] is None:  # only what was measured: not this relation to these weights
        what = {"quantization": f"{article} {method} quantization", "dequantization": "a dequantized export",
                "cast": f"{article} {method} cast", "re_export": "a re-export"}[relation]
        text = (f"{who} is not {what} of {other}: {n - k} of {n} compared tensors differ beyond "
                f"{'the quantiser' if relation in ('quantization', 'dequantization') else 'the rounding'}'s error")
        if doc.get("difference") is not None:
            text += f" (the matrices differ by {100 * doc['difference']:.2g}% of their size, median)"
        return text
    text = {
        "quantization": f"{who} is {article} {method} quantization of {other}: {k} of {n} compared tensors within the "
                        "quantiser's error",
        "dequantization": f"{who} is a dequantized export of {other} ({method}): {k} of {n} compared tensors hold "
                          f"{other}'s values rounded to {who}'s type",
        "cast": f"{who} is {article} {method} cast of {other}: {k} of {n} compared tensors are {other}'s rounded",
        "re_export": f"{who} is a re-export of {other}: {k} of {n} compared tensors hold the same values",
    }[relation]
    if altered:
        worst = altered[0]
        ratio = worst["times_rounding_error"]
        text += (f"; {worst['tensor']} differs by {ratio:.0f}x its rounding error (altered)" if ratio else
                 f"; {worst['tensor']} differs (altered)")
        if len(altered) > 1:
            text += f", and {len(altered) - 1} more"
    return text
