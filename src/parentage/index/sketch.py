"""A sketch per model: a few kilobytes that rank an index of 100,000 models in seconds, before the full tests.

What it holds, all computed from rows a fingerprint keeps (no extra reads of an indexed model):

- anchors: the ANCHORS canonical tokens with the smallest byte-string digests (a subset of the fingerprint's
  canonical tokens, so two vocabularies sharing byte strings share most anchors), as their 64-bit digests;
- gram: the cosines between the anchors' embedding rows, centred on their mean, as float16 (the upper triangle).
  Cosines of embedding rows do not change under a rotation of the residual stream (E -> E Q, after the norm
  gains are folded into the next weights), a uniform rescaling, neuron or head permutations (they do not touch
  the embedding), layers inserted or removed, FFN widening or MoE upcycling; they survive continued training, a
  replaced tokenizer (for the byte strings both keep) and vocabulary pruning, and change little when residual
  dimensions are pruned;
- vector: the same cosines, standardised and feature-hashed by the anchor pair's digests into BUCKETS signed
  buckets (int8, unit norm). Two models' vectors meet where they share anchor pairs, so one matrix product over
  the whole index approximates every model's Gram correlation with the query, diluted by the share of anchor
  pairs they hold in common;
- minhash: MINHASH minimum hashes of the digests of every tensor's sampled rows (the identity test's prints,
  informative rows only): copied and frozen tensors, and casts of them, match here whatever happened to the
  embeddings.

Ranking (`Scan.shortlist`): hashed cosine and minhash over all sketches, the RERANK best of those re-scored by the
exact Gram correlation on the anchors both hold, then the top K. The sketch only ranks: verdicts and p-values
come from the full tests (index/identify.py), corrected for the whole index.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field

import numpy as np

from ..checkpoint import PLAN_SEED, Checkpoint
from ..evidence.hidden import centred_cosines
from ..errors import FormatError
from .fingerprint import FLOAT_TYPES, ID_ANCHORS
from ..safeio import parse_json

SKETCH_VERSION = 3  # bump when what a sketch holds or how it is computed changes: older ones are recomputed
ANCHORS = 384  # anchor tokens (the Gram's side): 73,536 pairs, 144 KB as float16
MIN_SHARED = 24  # anchors two sketches must share for a Gram correlation
BUCKETS = 1024  # hashed Gram features: the scan reads 1 KB per model
BASIS = 256  # count-sketch buckets of the leading FFN rows (distances within 9%: enough to tell sqrt(2) apart)
MINHASH = 32  # minimum hashes of the row digests
MIN_DISTINCT = 16  # a sampled row with fewer distinct values is a constant or a codebook: no evidence of copying
COPY_ROUNDINGS = ("native", "F16", "BF16")  # a cast copy meets its source in one of these
MAGIC = b"PARENTSK"
EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)  # a minhash slot with no digest (a model without informative rows)
_SEEDS = np.array([int.from_bytes(hashlib.blake2b(b"minhash%d" % i, digest_size=8).digest(), "little")
                   for i in range(MINHASH)], dtype=np.uint64)


@dataclass
class Sketch:
    anchors: np.ndarray  # (m,) uint64 token digests, ascending
    gram: np.ndarray  # (m (m - 1) / 2,) float16 cosines, upper triangle row by row
    vector: np.ndarray  # (BUCKETS,) int8, the hashed standardised cosines at unit norm * 127
    minhash: np.ndarray  # (MINHASH,) uint64
    basis: np.ndarray  # (BASIS,) float32 count sketch of the leading FFN rows, in the model's own basis
    basis_key: int  # what must match for two basis sketches to compare (the FFN rows' shapes), 0 for none
    meta: dict  # version and the model's shape (descriptive)
    # the ID_ANCHORS anchors of the no-tokenizer rule (digests of str(id)), for a model with a tokenizer: so it
    # can be paired by id with a copy shipped without one (empty when `anchors` follow that rule already)
    id_anchors: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    id_gram: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float16))

    def to_bytes(self) -> bytes:
        head = json.dumps({"version": SKETCH_VERSION, "m": len(self.anchors), "m_id": len(self.id_anchors),
                           "basis_key": self.basis_key, "meta": self.meta}).encode()
        return (MAGIC + struct.pack("<I", len(head)) + head + self.anchors.astype("<u8").tobytes()
                + self.gram.astype("<f2").tobytes() + self.id_anchors.astype("<u8").tobytes()
                + self.id_gram.astype("<f2").tobytes() + self.vector.astype(np.int8).tobytes()
                + self.minhash.astype("<u8").tobytes() + self.basis.astype("<f4").tobytes())

    def anchor_sets(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.anchors, self.gram)] + ([(self.id_anchors, self.id_gram)] if len(self.id_anchors) else [])

    @classmethod
    def from_bytes(cls, blob: bytes, where: str) -> "Sketch":
        """Parse and check a stored sketch: anything inconsistent is one FormatError naming `where`."""
        if len(blob) < 12 or blob[:8] != MAGIC:
            raise FormatError(where, "not a parentage sketch (bad magic)")
        (n,) = struct.unpack("<I", blob[8:12])
        head = parse_json(where, blob[12:12 + n], "the sketch's header")
        try:
            version, m, m_id, meta, basis_key = head["version"], head["m"], head["m_id"], head["meta"], head["basis_key"]
        except (KeyError, TypeError):
            raise FormatError(where, "sketch header is corrupt") from None
        if not isinstance(version, int) or version > SKETCH_VERSION:
            raise FormatError(where, f"sketch made by a newer parentage (version {version}; this one reads "
                                     f"{SKETCH_VERSION}): upgrade parentage")
        if version != SKETCH_VERSION:
            raise FormatError(where, f"sketch version {version} is not {SKETCH_VERSION}: it is recomputed")
        counts_ok = all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= ANCHORS for x in (m, m_id))
        if not counts_ok or not isinstance(meta, dict) or not isinstance(basis_key, int) or not 0 <= basis_key < 2 ** 63:
            raise FormatError(where, "sketch header is malformed")
        sizes = [8 * m, m * (m - 1), 8 * m_id, m_id * (m_id - 1), BUCKETS, 8 * MINHASH, 4 * BASIS]
        if len(blob) != 12 + n + sum(sizes):
            raise FormatError(where, f"sketch is {len(blob)} bytes, its header says {12 + n + sum(sizes)}")
        o = 12 + n
        parts = []
        for dtype, count, size in (("<u8", m, sizes[0]), ("<f2", m * (m - 1) // 2, sizes[1]), ("<u8", m_id, sizes[2]),
                                   ("<f2", m_id * (m_id - 1) // 2, sizes[3]), (np.int8, BUCKETS, sizes[4]),
                                   ("<u8", MINHASH, sizes[5]), ("<f4", BASIS, sizes[6])):
            parts.append(np.frombuffer(blob, dtype, count, o).copy())
            o += size
        anchors, gram, id_anchors, id_gram, vector, minhash, basis = parts
        for keys, g in ((anchors, gram), (id_anchors, id_gram)):
            if not np.isfinite(g).all() or (len(g) and np.abs(g).max() > 1.01):
                raise FormatError(where, "sketch values are out of range")
            if len(keys) and np.any(keys[1:] < keys[:-1]):
                raise FormatError(where, "sketch anchors are not in order")
        if not np.isfinite(basis).all():
            raise FormatError(where, "sketch values are out of range")
        return cls(anchors.astype(np.uint64), gram.astype(np.float16), vector, minhash.astype(np.uint64),
                   basis.astype(np.float32), basis_key, meta, id_anchors.astype(np.uint64), id_gram.astype(np.float16))

    @property
    def n_bytes(self) -> int:
        return len(self.to_bytes())


# -- taking a sketch ---------------------------------------------------------------------------------------------


def take_sketch(ck: Checkpoint) -> Sketch:
    """The sketch of a live checkpoint or of an opened fingerprint (the same rows either way)."""
    from ..tokenizers import checkpoint_vocab

    vocab = checkpoint_vocab(ck)
    # without a tokenizer, exactly the id anchors a model with one also keeps (the same rows, centred alike)
    keys, rows = _anchor_rows(ck, vocab, ANCHORS if vocab is not None else ID_ANCHORS)
    gram, z = _gram(keys, rows)
    id_keys, id_rows = _anchor_rows(ck, None, ID_ANCHORS) if vocab is not None else (np.zeros(0, np.uint64), None)
    id_gram, id_z = _gram(id_keys, id_rows) if len(id_keys) else (np.zeros(0, np.float16), None)
    vector = _hashed([(keys, z), (id_keys, id_z)])
    s = ck.summary
    w = ck.weights
    quantized = any(w.info(n).dtype not in FLOAT_TYPES for n in w.names() if len(w.info(n).shape) == 2)
    meta = {"n_layers": s.n_layers, "hidden_size": s.hidden_size, "vocab_size": s.vocab_size,
            "n_experts": s.n_experts, "family": s.family, "quantized": quantized}
    basis, basis_key = _basis(ck)
    return Sketch(keys, gram, vector, _minhash(ck), basis, basis_key, meta, id_keys, id_gram)


def _anchor_rows(ck: Checkpoint, vocab, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The first m anchors in the canonical order of index/fingerprint.keyed_tokens (rows every fingerprint
    holds): their digests (ascending) and embedding rows (m, d); empty without a readable embedding."""
    from .fingerprint import _compact, keyed_tokens

    embed = ck.find("embed") or ck.find("lm_head")
    if embed is None or len(embed.shape) != 2 or embed.piece.rows is not None or embed.piece.transposed:
        return np.zeros(0, np.uint64), np.zeros((0, 0), np.float32)
    keyed = sorted(keyed_tokens(vocab, embed.n_rows, m))
    if not keyed:
        return np.zeros(0, np.uint64), np.zeros((0, 0), np.float32)
    keys = np.array([k for k, _ in keyed], dtype=np.uint64)
    ids = np.array([i for _, i in keyed], dtype=np.int64)
    if not embed.has_at(ids).all():  # a fingerprint taken before the plan held these rows
        return np.zeros(0, np.uint64), np.zeros((0, 0), np.float32)
    # as a fingerprint keeps them (float16 where in range), so a live query and its fingerprint sketch alike
    return keys, _compact(embed.read_at(ids)).astype(np.float32)  # (m, d)


def _gram(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The anchors' cosines (upper triangle, float16) and the same standardised (float64, for hashing)."""
    m = len(keys)
    if m < 2:
        return np.zeros(0, np.float16), None
    cos = centred_cosines(rows)  # (m (m - 1) / 2,)
    gram = cos.astype(np.float16)  # fine enough to tell a parent from its siblings by their embedding drift
    z = cos - cos.mean()
    return gram, z / max(float(z.std()), 1e-12)


def _hashed(sets: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """The standardised cosines of every anchor set, feature-hashed by their pairs' digests into BUCKETS signed
    buckets (the same pair lands in the same bucket in any model), at unit norm, as int8."""
    v = np.zeros(BUCKETS)
    for keys, z in sets:
        if z is None:
            continue
        iu = np.triu_indices(len(keys), 1)
        bucket, sign = _pair_hash(keys[iu[0]], keys[iu[1]])
        np.add.at(v, bucket, sign * z)
    v /= max(float(np.linalg.norm(v)), 1e-12)
    return np.clip(np.round(v * 127 / max(float(np.abs(v).max()), 1e-12)), -127, 127).astype(np.int8)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays: a well-spread hash of a 64-bit key."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _pair_hash(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bucket and sign of each anchor pair (a < b by digest, so the pair's key does not depend on the ids)."""
    with np.errstate(over="ignore"):
        h = _mix(_mix(a) ^ (b * np.uint64(0x9E3779B97F4A7C15)))
    return (h % np.uint64(BUCKETS)).astype(np.int64), np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)


def _basis(ck: Checkpoint) -> tuple[np.ndarray, int]:
    """A count sketch of the leading FFN rows of every unit (the rows index/direction.ffn_vector takes, norm
    gains folded in), a unit at a time so a DeepSeek-V3 query never holds them all, and the key of their
    shapes. Not invariant: it orders relatives in one basis (a parent is nearer its child than the child's
    siblings are, their updates being independent), where the invariant parts tie."""
    from ..evidence.blocks import ffn_units, read_block
    from .direction import MERGE_ROWS

    units = [u for us in ffn_units(ck).values() for u in us]
    if not units or any(t.prefix() < min(MERGE_ROWS, t.n_rows) for u in units for t in u.matrices):
        return np.zeros(BASIS, np.float32), 0
    out = np.zeros(BASIS)
    offset = 0
    for u in units:
        for rows in read_block(ck, u, 0, min(MERGE_ROWS, u.n_rows)):
            v = rows.ravel().astype(np.float64)
            h = _mix(np.arange(offset, offset + len(v), dtype=np.uint64) ^ np.uint64(0x5BD1E9955BD1E995))
            sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
            out += np.bincount((h % np.uint64(BASIS)).astype(np.int64), weights=sign * v, minlength=BASIS)
            offset += len(v)
    return out.astype(np.float32), basis_key(offset, ck.summary.hidden_size)


def basis_key(length: int, hidden: int | None) -> int:
    """What two basis sketches must share to be compared: the length of the FFN rows sketched and the width."""
    return int.from_bytes(hashlib.blake2b(str(length).encode() + repr(hidden).encode(), digest_size=8).digest(),
                          "little") >> 1


def basis_nearness(q: Sketch, basis: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """1 - |q - c| / (|q| + |c|) on the basis sketches where the keys match (same FFN row shapes), else nan:
    near 1 for a close relative in q's basis, about 0.3 for unrelated weights. basis: (n, BASIS), keys: (n,)."""
    out = np.full(len(basis), np.nan, dtype=np.float32)
    if not q.basis_key:
        return out
    same = keys == q.basis_key
    if same.any():
        b = basis[same].astype(np.float64)
        qb = q.basis.astype(np.float64)
        d = np.linalg.norm(b - qb[None, :], axis=1)
        out[same] = 1 - d / np.maximum(np.linalg.norm(b, axis=1) + np.linalg.norm(qb), 1e-30)
    return out


def _minhash(ck: Checkpoint) -> np.ndarray:
    from ..evidence.identical import shared_roles, tensor_prints

    digests = []
    roles = shared_roles(ck, ck)
    live = ck.weights.complete
    if live:  # the prints read 16 rows of every tensor; in parallel where the reads are remote
        ck.map_reads(lambda r: tensor_prints(ck.tensors[r], PLAN_SEED, _roundings(ck.tensors[r])), roles)
    for r in roles:
        p = tensor_prints(ck.tensors[r], PLAN_SEED, _roundings(ck.tensors[r]) if live else None)
        if p is None:
            continue
        for rounding in COPY_ROUNDINGS:
            if rounding in p.digests:
                digests.append(p.digests[rounding][p.distinct[rounding] >= MIN_DISTINCT])
    d = np.unique(np.concatenate(digests)) if digests else np.zeros(0, np.uint64)
    if not len(d):
        return np.full(MINHASH, EMPTY, dtype=np.uint64)
    return _mix(d[None, :] ^ _SEEDS[:, None]).min(axis=1)  # (MINHASH,)


def _roundings(t) -> tuple[str, ...]:
    from ..evidence.identical import roundings_of

    shape = t.shape
    return tuple(r for r in roundings_of(t.dtype, shape[-1] if len(shape) > 1 else 1) if r in COPY_ROUNDINGS)


# -- comparing and scanning --------------------------------------------------------------------------------------


def copy_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The share of minhash slots that agree: an estimate of the Jaccard index of the informative row digests.
    a: (MINHASH,), b: (n, MINHASH) -> (n,)."""
    return ((b == a[None, :]) & (b != EMPTY)).mean(axis=1)


def gram_correlation(q: Sketch, c: Sketch) -> tuple[float | None, int]:
    """The correlation of the two Grams on the anchors both hold, and how many they share (None below
    MIN_SHARED), in whichever of their anchor sets share the most (by byte string, or by id when one of the
    two has no tokenizer)."""
    best = None
    for qa, qg in q.anchor_sets():
        for ca, cg in c.anchor_sets():
            if len(qa) == len(ca) and np.array_equal(qa, ca):
                shared = (len(qa), None, None)
            else:
                _, iq, ic = np.intersect1d(qa, ca, assume_unique=True, return_indices=True)
                shared = (len(iq), iq, ic)
            if best is None or shared[0] > best[0][0]:
                best = (shared, qa, qg, ca, cg)
    (n, iq, ic), qa, qg, ca, cg = best
    if n < MIN_SHARED:
        return None, n
    if iq is None:  # one tokenizer: no reindexing
        x, y = qg.astype(np.float32), cg.astype(np.float32)
    else:
        iu = np.triu_indices(n, 1)
        x, y = _square(qg, len(qa))[np.ix_(iq, iq)][iu], _square(cg, len(ca))[np.ix_(ic, ic)][iu]
    if x.std() == 0 or y.std() == 0:
        return None, n
    return float(np.corrcoef(x, y)[0, 1]), n


def _square(tri: np.ndarray, m: int) -> np.ndarray:
    out = np.zeros((m, m), dtype=np.float32)
    iu = np.triu_indices(m, 1)
    out[iu] = tri
    out.T[iu] = tri
    return out


def similarity(q: Sketch, c: Sketch) -> float:
    """The rank score of candidate c for query q: the larger of the Gram correlation and the copied share."""
    corr, _ = gram_correlation(q, c)
    return max(corr if corr is not None else 0.0, float(copy_share(q.minhash, c.minhash[None, :])[0]))


def scan_scores(q: Sketch, vectors: np.ndarray, minhashes: np.ndarray) -> np.ndarray:
    """First-stage scores of n candidates from their vectors (n, BUCKETS) int8 and minhashes (n, MINHASH):
    hashed Gram cosine or copied share, whichever is larger."""
    qv = q.vector.astype(np.float32)
    qv /= max(float(np.linalg.norm(qv)), 1e-12)
    out = np.empty(len(vectors), dtype=np.float32)
    for s in range(0, len(vectors), 16384):  # bounded memory: int8 -> float32 a block at a time
        block = vectors[s:s + 16384].astype(np.float32)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
        out[s:s + 16384] = block @ qv / norms
    return np.maximum(out, copy_share(q.minhash, minhashes).astype(np.float32))


# -- the scan's part of a sketch, one fixed-size row per model -----------------------------------------------------

SCAN_ROW = BUCKETS + 8 * MINHASH + 4 * BASIS + 8 + 1  # vector, minhash, basis, basis key, flags


def scan_row(sk: Sketch) -> bytes:
    flags = 1 if sk.meta.get("quantized") else 0
    return (sk.vector.astype(np.int8).tobytes() + sk.minhash.astype("<u8").tobytes() + sk.basis.astype("<f4").tobytes()
            + struct.pack("<Q", sk.basis_key) + bytes([flags]))


@dataclass
class ScanTable:
    """Every indexed model's scan row, stacked: what the first stage reads (SCAN_ROW bytes a model)."""

    digests: list[str]
    vectors: np.ndarray  # (n, BUCKETS) int8
    minhashes: np.ndarray  # (n, MINHASH) uint64
    basis: np.ndarray  # (n, BASIS) float32
    keys: np.ndarray  # (n,) uint64
    quantized: np.ndarray  # (n,) bool

    @classmethod
    def from_rows(cls, rows: dict[str, bytes], where: str) -> "ScanTable":
        digests = sorted(rows)
        bad = next((d for d in digests if len(rows[d]) != SCAN_ROW), None)
        if bad is not None:
            raise FormatError(where, f"the sketch of fingerprint {bad[:12]} is {len(rows[bad])} bytes, not {SCAN_ROW}: "
                                     f"the index is damaged; re-add that model")
        raw = np.frombuffer(b"".join(rows[d] for d in digests), np.uint8).reshape(len(digests), SCAN_ROW)
        o = [0, BUCKETS, BUCKETS + 8 * MINHASH, BUCKETS + 8 * MINHASH + 4 * BASIS, SCAN_ROW - 1]
        table = cls(digests, raw[:, :o[1]].view(np.int8), np.ascontiguousarray(raw[:, o[1]:o[2]]).view("<u8").astype(np.uint64),
                    np.ascontiguousarray(raw[:, o[2]:o[3]]).view("<f4").astype(np.float32),
                    np.ascontiguousarray(raw[:, o[3]:o[4]]).view("<u8")[:, 0].astype(np.uint64), raw[:, -1] == 1)
        if not np.isfinite(table.basis).all():
            raise FormatError(where, "a sketch in the index holds NaN or Inf: the index is damaged; re-add the model")
        return table


# -- the first stage: a shortlist for the full tests ---------------------------------------------------------------

RERANK = 128  # candidates of each first-stage list re-scored by the exact Gram correlation


@dataclass
class Ranked:
    digest: str
    gram: float | None  # exact Gram correlation on shared anchors (None: too few shared, or not re-scored)
    copied: float  # share of minhash slots in common
    nearness: float | None  # basis nearness (None: not comparable)
    quantized: bool


def rank(q: Sketch, table: ScanTable, load, rerank: int = RERANK) -> list[Ranked]:
    """Every indexed model in the order the full tests should see them: two lists interleaved, by the
    invariant evidence (the exact Gram correlation or the copied share, ties broken by basis nearness) and by
    nearness in the query's own basis; quantized models after the rest (they are nearly always leaves: a cue
    for the order of the shortlist, never evidence). `load(digest)` gives a candidate's whole sketch."""
    n = len(table.digests)
    if not n:
        return []
    scan = scan_scores(q, table.vectors, table.minhashes)  # (n,)
    near = basis_nearness(q, table.basis, table.keys)  # (n,), nan where not comparable
    copied = copy_share(q.minhash, table.minhashes)
    by_scan = np.argsort(-scan, kind="stable")
    near_ok = np.flatnonzero(~np.isnan(near))
    by_near = near_ok[np.argsort(-near[near_ok], kind="stable")]
    pool = list(dict.fromkeys([*by_scan[:rerank].tolist(), *by_near[:rerank].tolist()]))
    gram = {}
    for i in pool:
        corr, _ = gram_correlation(q, load(table.digests[i]))
        gram[i] = corr
    inv = {i: max(gram[i] if gram[i] is not None else -1.0, float(copied[i])) for i in pool}
    nearness = lambda i: -1.0 if np.isnan(near[i]) else float(near[i])  # noqa: E731
    first = sorted(pool, key=lambda i: (-round(inv[i], 4), -nearness(i)))
    second = [i for i in by_near.tolist() if i in inv]
    order: list[int] = []
    for pair in zip(first, second + [None] * len(first)):
        for i in pair:
            if i is not None and i not in order:
                order.append(i)
    seen = set(order)
    order += [i for i in by_scan.tolist() if i not in seen]  # the rest, by the scan alone
    order = sorted(order, key=lambda i: bool(table.quantized[i]))  # stable: quantized ones last
    return [Ranked(table.digests[i], gram.get(i), float(copied[i]), None if np.isnan(near[i]) else float(near[i]),
                   bool(table.quantized[i])) for i in order]
