"""A fingerprint: the rows one checkpoint yields under the canonical plan, stored so it is never read again.

The compare tests choose their rows; on two live checkpoints they choose freely (a seeded block, a seeded set of
shared tokens, as much as the budget allows). The canonical plan fixes those choices so they depend on one model
alone and any two fingerprints line up:

- embedding rows of the canonical tokens: the `k` ordinary tokens whose byte strings have the smallest 64-bit
  BLAKE2b digests (a fixed order on all byte strings, so two vocabularies sharing tokens mostly share these);
- rows [0, FFN_ROWS) of every tested FFN unit, [0, FIRST_ROWS) of the first layers' (for the residual map the
  FFN test may fit outside its block), the norm gains folded into them;
- up to WHOLE_UNITS FFN units whole (the permutation-invariant test), when they fit WHOLE_BYTES;
- value rows [0, VALUE_ROWS) of the first head, and HEADS whole KV heads per layer when they fit HEAD_BYTES;
- the leading rows of each output projection, up to OUTPUT_ROWS within OUTPUT_BYTES (which of two tied layers
  is the inserted copy);
- digests of every tensor's sampled rows at PLAN_SEED (the identity test; values are not kept).

Opened (`Fingerprint.open`), it is a `Checkpoint` over `readers.stored.StoredWeights`, so `compare` runs on it
as on a live checkpoint; the tests see through `Tensor.has`/`prefix` which rows exist and keep to them.
Rows are kept as float16 (exact for bf16 weights in float16's range; float32 where a tensor leaves that range).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..checkpoint import PLAN_SEED, Checkpoint, _build
from ..pair import WEIGHT_ROW_LAYERS
from ..constants import MAX_DIM, MAX_TENSORS
from ..declared import declared_lineage
from ..errors import FormatError
from ..safeio import parse_json
from ..evidence.blocks import ffn_units, has_two_views, read_block, value_units
from ..evidence.heads import MIN_HEADS, head_layers
from ..evidence.identical import RowPrints, shared_roles, tensor_prints
from ..findings import OUTPUT_ROLES, OUTPUT_ROWS
from ..readers.base import TensorInfo, rows_cols
from ..readers.stored import StoredWeights
from ..refs import Resolved
from ..tokenizers import Vocab, checkpoint_vocab

PLAN_VERSION = 1  # bump when the plan records other rows: older fingerprints are then re-indexed
FFN_ROWS = 32  # leading rows of every FFN unit
FIRST_LAYERS = WEIGHT_ROW_LAYERS  # layers whose first unit keeps FIRST_ROWS (compare may fit a map on them)
FIRST_ROWS = 2 * FFN_ROWS  # a tested block [0, m) and a disjoint one [m, 2m) to fit a residual map on
MIN_TOKENS, MAX_TOKENS = 2048, 8192  # canonical tokens: 5/4 of the width (a rotation fit), within these
ID_ANCHORS = 192  # ... and the rows the no-tokenizer rule ranks first (index/sketch.py pairs them by id)
WHOLE_UNITS = 2  # FFN units kept whole, spread over depth
WHOLE_BYTES = 16 << 20  # ... when they fit this (as float16); a 7B model's FFN does not
VALUE_ROWS = 32
HEADS = MIN_HEADS  # whole KV heads per layer ...
HEAD_BYTES = 16 << 20  # ... when all layers' fit this
OUTPUT_BYTES = 16 << 20  # leading rows of every output projection, as many (up to OUTPUT_ROWS) as fit this
MIN_OUTPUT_ROWS = 8  # findings.output_kept compares no fewer
FLOAT_TYPES = {"F64", "F32", "F16", "BF16"}  # stored in any other type, a matrix is quantized
MAGIC = b"PARENTFP"
MAX_HEADER = 64 << 20


@dataclass
class Fingerprint:
    meta: dict  # ref, source, commit, format, config, declared, infos, ... (what `open` needs besides rows)
    spans: dict[str, list[tuple[int, np.ndarray]]]  # source tensor -> [(first row, rows)]
    prints: dict[str, RowPrints]  # role key -> digests of its sampled rows
    vocab: Vocab | None = None
    blob: bytes | None = field(default=None, repr=False)  # the serialised form, once made

    @property
    def ref(self) -> str:
        return self.meta["ref"]

    @property
    def commit(self) -> str:
        """What makes two fingerprints of one ref different: the hub commit, else the weight files' identity."""
        return self.meta["commit"]

    @property
    def n_bytes(self) -> int:
        return len(self.to_bytes())

    def open(self) -> Checkpoint:
        """A Checkpoint over the recorded rows: compare, identify and graph run their tests on it."""
        m = self.meta
        infos = {name: TensorInfo(name, dtype, tuple(shape), m["ref"], nbytes) for name, dtype, shape, nbytes in m["infos"]}
        weights = StoredWeights(m["ref"], m["format"], infos, self.spans, m["bytes_total"], m["files"], self.prints)
        resolved = StoredResolved(m["ref"], Path(m["root"]), [Path(m["ref"])], hub=m.get("hub"), vocab=self.vocab,
                                  declared=m["declared"])
        return _build(m["ref"], resolved, weights, m["config"], is_gguf=m["is_gguf"])

    # -- serialisation -------------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """MAGIC, a little-endian u64 header length, a JSON header (meta and the array table), then the arrays."""
        if self.blob is not None:
            return self.blob
        arrays: dict[str, np.ndarray] = {}
        span_table = {}
        for name, spans in self.spans.items():
            span_table[name] = []
            for start, rows in spans:
                key = f"r{len(arrays)}"
                arrays[key] = rows
                span_table[name].append([start, key])
        print_table = {}
        for role, p in self.prints.items():
            print_table[role] = {}
            for r in p.digests:
                kd, kn = f"d{len(arrays)}", f"n{len(arrays)}"
                arrays[kd], arrays[kn] = p.digests[r], p.distinct[r]
                print_table[role][r] = [kd, kn, p.distinct_all[r]]
        vocab = None
        if self.vocab is not None:
            v = self.vocab
            ids = np.array(sorted(v.tokens), dtype=np.int64)
            data = [v.tokens[int(i)] for i in ids]
            arrays["vocab_ids"] = ids
            arrays["vocab_ends"] = np.cumsum([len(t) for t in data], dtype=np.int64)
            arrays["vocab_bytes"] = np.frombuffer(b"".join(data), dtype=np.uint8)
            vocab = {"source": v.source, "format": v.format, "model": v.model, "style": v.style, "size": v.size,
                     "special": {str(k): s for k, s in v.special.items()}, "byte_ids": sorted(v.byte_ids),
                     "added_ids": sorted(v.added_ids), "defined_ids": sorted(v.defined_ids)}
        table, offset, chunks = {}, 0, []
        for key, a in arrays.items():
            a = np.ascontiguousarray(a)
            table[key] = [a.dtype.str, list(a.shape), offset]
            chunks.append(a.tobytes())
            offset += a.nbytes
        header = json.dumps({"meta": self.meta, "spans": span_table, "prints": print_table, "vocab": vocab,
                             "arrays": table}, separators=(",", ":")).encode()
        self.blob = MAGIC + struct.pack("<Q", len(header)) + header + b"".join(chunks)
        return self.blob

    @classmethod
    def from_bytes(cls, blob: bytes, where: str) -> "Fingerprint":
        """Parse and check a stored fingerprint; anything inconsistent is one FormatError naming `where`."""
        try:
            return _parse(blob, where)
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, struct.error) as e:
            raise FormatError(where, f"stored fingerprint is corrupt ({type(e).__name__}: {e})") from None


class StoredResolved(Resolved):
    """The resolution of a stored fingerprint: no side files (what they said is stored: vocabulary, declared)."""

    def __init__(self, ref, root, weights, hub=None, vocab=None, declared=None):
        super().__init__(ref, root, weights, hub=hub)
        self.vocab, self.declared = vocab, declared or {}

    @property
    def source(self) -> str:
        return "fingerprint"

    def side_file(self, name: str) -> None:
        return None

    def tokenizer_files(self) -> list:
        return []


ARRAY_DTYPES = {"<f2", "<f4", "<u8", "<i8", "|u1"}
# what `Fingerprint.open` and the store rely on, checked once where a stored fingerprint enters
META_TYPES = {"ref": str, "root": str, "commit": str, "format": str, "source": str, "tool_version": str,
              "is_gguf": bool, "files": list, "bytes_total": int, "infos": list, "config": dict, "declared": dict,
              "summary": dict}


def _parse(blob: bytes, where: str) -> Fingerprint:
    if len(blob) < 16 or blob[:8] != MAGIC:
        raise FormatError(where, "not a parentage fingerprint (bad magic)")
    (n,) = struct.unpack("<Q", blob[8:16])
    if n > min(MAX_HEADER, len(blob) - 16):
        raise FormatError(where, f"fingerprint header of {n} bytes runs past the data")
    head = parse_json(where, blob[16:16 + n], "the fingerprint's header", max_depth=None)  # fields checked below
    data = memoryview(blob)[16 + n:]
    arrays = {}
    for key, (dtype, shape, offset) in head["arrays"].items():
        if dtype not in ARRAY_DTYPES or not all(isinstance(x, int) and 0 <= x <= MAX_DIM for x in shape) \
                or not isinstance(offset, int) or offset < 0:
            raise FormatError(where, f"fingerprint array {key!r} has a bad dtype, shape or offset")
        dt = np.dtype(dtype)
        nbytes = math.prod(shape) * dt.itemsize
        if offset + nbytes > len(data):
            raise FormatError(where, f"fingerprint array {key!r} runs past the end of the data")
        arrays[key] = np.frombuffer(data, dtype=dt, count=math.prod(shape), offset=offset).reshape(shape)
    meta = head["meta"]
    if not isinstance(meta, dict) or meta.get("plan") != PLAN_VERSION:
        raise FormatError(where, f"fingerprint made by plan {meta.get('plan') if isinstance(meta, dict) else '?'}, "
                                 f"this parentage reads plan {PLAN_VERSION}: re-index the model")
    for key, kind in META_TYPES.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool) is not (kind is bool):
            raise FormatError(where, f"fingerprint field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    if meta["hub"] is not None and not (isinstance(meta["hub"], dict)
                                        and all(isinstance(v, (str, type(None))) for v in meta["hub"].values())):
        raise FormatError(where, "fingerprint field 'hub' is malformed")
    digests = meta.get("file_digests", {})
    if not (isinstance(digests, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in digests.items())):
        raise FormatError(where, "fingerprint field 'file_digests' is malformed")
    if not all(isinstance(f, str) for f in meta["files"]) or meta["bytes_total"] < 0:
        raise FormatError(where, "fingerprint file list or size is malformed")
    if not isinstance(meta["infos"], list) or len(meta["infos"]) > MAX_TENSORS:
        raise FormatError(where, "fingerprint tensor table is malformed")
    infos = {}
    for name, dtype, shape, nbytes in meta["infos"]:
        if not (isinstance(name, str) and isinstance(dtype, str) and isinstance(nbytes, int)
                and isinstance(shape, list) and all(isinstance(x, int) and 0 <= x <= MAX_DIM for x in shape)):
            raise FormatError(where, "fingerprint tensor table is malformed")
        infos[name] = tuple(shape)
    spans = {}
    for name, entries in head["spans"].items():
        if name not in infos:
            raise FormatError(where, f"fingerprint rows of {name!r}, a tensor its table does not list")
        n_rows, n_cols = rows_cols(infos[name])
        out = []
        for start, key in entries:
            rows = arrays[key]
            fits = rows.ndim == 1 if len(infos[name]) <= 1 else (rows.ndim == 2 and rows.shape[1] == n_cols)
            if not (isinstance(start, int) and fits and 0 <= start and start + rows.shape[0] <= n_rows):
                raise FormatError(where, f"fingerprint rows of {name!r} do not fit its shape {infos[name]}")
            if not np.isfinite(rows).all():
                raise FormatError(where, f"fingerprint rows of {name!r} hold NaN or Inf")
            out.append((start, rows))
        spans[name] = out
    prints = {}
    for role, per in head["prints"].items():
        digests, distinct, distinct_all = {}, {}, {}
        for r, (kd, kn, n_all) in per.items():
            digests[r], distinct[r], distinct_all[r] = arrays[kd], arrays[kn], int(n_all)
            if digests[r].shape != distinct[r].shape or digests[r].dtype != np.uint64:
                raise FormatError(where, f"fingerprint digests of {role!r} are malformed")
        prints[role] = RowPrints(digests, distinct, distinct_all)
    vocab = None
    if head["vocab"] is not None:
        v = head["vocab"]
        ids, ends, raw = arrays["vocab_ids"], arrays["vocab_ends"], arrays["vocab_bytes"].tobytes()
        if len(ids) != len(ends) or (len(ends) and (ends[-1] != len(raw) or np.any(np.diff(ends) < 0))):
            raise FormatError(where, "fingerprint vocabulary is malformed")
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        tokens = {int(i): raw[s:e] for i, s, e in zip(ids, starts, ends)}
        vocab = Vocab(str(v["source"]), str(v["format"]), str(v["model"]), str(v["style"]), int(v["size"]), tokens,
                      special={int(k): str(s) for k, s in v["special"].items()}, byte_ids=set(map(int, v["byte_ids"])),
                      added_ids=set(map(int, v["added_ids"])), defined_ids=set(map(int, v["defined_ids"])))
    if not isinstance(meta["config"], dict) or not isinstance(meta["declared"], dict):
        raise FormatError(where, "fingerprint config or declared lineage is not an object")
    return Fingerprint(meta, spans, prints, vocab, blob=bytes(blob))


# -- taking a fingerprint ----------------------------------------------------------------------------------------


def keyed_tokens(vocab: Vocab | None, n_rows: int, k: int) -> list[tuple[int, int]]:
    """The canonical order: (64-bit digest, id) of ordinary tokens by the BLAKE2b digest of their byte strings,
    smallest first, the first k; without a tokenizer, ids by the digest of the id (str(i)), so two same-size
    vocabularies are paired by id."""
    if vocab is not None:
        items = [(s, i) for s, i in vocab.by_bytes().items() if i < n_rows]
    else:
        items = [(str(i).encode(), i) for i in range(n_rows)]
    keyed = sorted((hashlib.blake2b(s, digest_size=8).digest(), i) for s, i in items)[:k]
    return [(int.from_bytes(d, "big"), i) for d, i in keyed]


def canonical_tokens(ck: Checkpoint, vocab: Vocab | None, n_rows: int, k: int) -> np.ndarray:
    """The k canonical token ids of this checkpoint (sorted): `keyed_tokens`' first k, and the ID_ANCHORS ids
    the no-tokenizer rule puts first (so a model with a tokenizer can still be paired by id with one without)."""
    ids = {i for _, i in keyed_tokens(vocab, n_rows, k)}
    if vocab is not None:
        ids |= {i for _, i in keyed_tokens(None, n_rows, ID_ANCHORS)}
    return np.array(sorted(ids), dtype=np.int64)


class _Recorder:
    """Every row block the plan reads, by source tensor (thread-safe: remote reads run in a pool)."""

    def __init__(self):
        self.rows: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.lock = threading.Lock()

    def __call__(self, name: str, start: int, rows: np.ndarray) -> None:
        with self.lock:
            self.rows.setdefault(name, []).append((start, np.array(rows, dtype=np.float32)))


def _merged(spans: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
    """Overlapping or touching spans joined into one: [(start, rows)] sorted, disjoint."""
    out: list[tuple[int, list[np.ndarray], int]] = []
    for start, rows in sorted(spans, key=lambda x: (x[0], -x[1].shape[0])):
        stop = start + rows.shape[0]
        if out and start <= out[-1][2]:
            s0, parts, end = out[-1]
            if stop > end:
                parts.append(rows[end - start:])
                out[-1] = (s0, parts, stop)
        else:
            out.append((start, [rows], stop))
    return [(s, np.concatenate(parts)) for s, parts, _ in out]


def _exact(spans: list[tuple[int, np.ndarray]], ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Only rows `ids` of the recorded spans, as runs of consecutive ids (read_at bridges gaps; keep none of them)."""
    lookup = {}
    for start, rows in spans:
        for k in range(rows.shape[0]):
            lookup[start + k] = rows[k]
    ids = np.unique(ids)
    runs = np.split(ids, np.flatnonzero(np.diff(ids) > 1) + 1) if len(ids) else []
    return [(int(r[0]), np.stack([lookup[int(i)] for i in r])) for r in runs if len(r)]


def _compact(rows: np.ndarray) -> np.ndarray:
    """float16 where that keeps the values in range, else float32."""
    if rows.size and np.abs(rows).max() >= 65000:
        return rows.astype(np.float32)
    return rows.astype(np.float16)


def take(ck: Checkpoint) -> Fingerprint:
    """Read the canonical plan's rows of a live checkpoint: its fingerprint."""
    rec = _Recorder()
    ck.weights.recorder = rec
    try:
        vocab = checkpoint_vocab(ck)
        embed_source, token_ids = _read_plan(ck, vocab)
    finally:
        ck.weights.recorder = None
    # the sampled rows are kept as digests only (read after recording stops, so their values are not stored)
    roles = shared_roles(ck, ck)
    ck.map_reads(lambda r: tensor_prints(ck.tensors[r], PLAN_SEED), roles)
    prints = {r.key: p for r in roles if (p := tensor_prints(ck.tensors[r], PLAN_SEED)) is not None}
    spans = {name: _merged(v) for name, v in rec.rows.items()}
    if embed_source is not None:
        spans[embed_source] = _exact(spans.get(embed_source, []), token_ids)
    spans = {name: [(s, _compact(r)) for s, r in v] for name, v in spans.items() if v}
    return Fingerprint(source_meta(ck), spans, prints, vocab)


def _read_plan(ck: Checkpoint, vocab: Vocab | None) -> tuple[str | None, np.ndarray]:
    """The plan's reads; returns the embedding's source tensor and the canonical token ids read from it."""
    embed = ck.find("embed") or ck.find("lm_head")
    embed_source, ids = None, np.zeros(0, dtype=np.int64)
    if embed is not None and len(embed.shape) == 2:
        k = int(min(MAX_TOKENS, max(MIN_TOKENS, math.ceil(1.25 * embed.shape[-1]))))
        ids = canonical_tokens(ck, vocab, embed.n_rows, k)
        if len(ids) and embed.piece.rows is None and not embed.piece.transposed:
            embed.read_at(ids)
            embed_source = embed.piece.source
    units = ffn_units(ck)
    flat = [u for us in units.values() for u in us]
    first = {id(u) for u in [u for u in flat if u.name in ("ffn", "expert 0")][:FIRST_LAYERS]}
    first |= {id(us[0]) for _, us in sorted(units.items())[:FIRST_LAYERS]}
    ck.map_reads(lambda u: read_block(ck, u, 0, min(u.n_rows, FIRST_ROWS if id(u) in first else FFN_ROWS)), flat)
    for u in _whole_plan(ck, flat):
        read_block(ck, u, 0, u.n_rows)
        if len(u.matrices) == 1 and u.down is not None:
            u.down.read()
    hd = ck.summary.head_dim
    for us in value_units(ck).values():
        for u in us:
            read_block(ck, u, 0, min(VALUE_ROWS, hd))
    layers = head_layers(ck)
    n = min(ck.summary.n_kv_heads or 0, HEADS)
    d = ck.summary.hidden_size or 0
    if layers and n >= MIN_HEADS and 2 * n * hd * d * 2 * len(layers) <= HEAD_BYTES:
        for i in layers:
            norm = ck.find("attn_norm", i)
            if norm is not None:
                norm.read()
            for role in ("attn_k", "attn_v"):
                ck.find(role, i).read_rows(0, n * hd)
    writers = [t for i in range(ck.summary.n_layers or 0) for role in OUTPUT_ROLES
               if (t := ck.find(role, i)) is not None and len(t.shape) == 2]
    per_row = sum(2 * t.shape[-1] for t in writers)  # float16 bytes of one row of every writer
    n_out = min(OUTPUT_ROWS, OUTPUT_BYTES // max(per_row, 1))
    if n_out >= MIN_OUTPUT_ROWS:
        for t in writers:
            t.read_rows(0, min(n_out, t.n_rows))
    return embed_source, ids


def _whole_plan(ck: Checkpoint, units: list) -> list:
    """The FFN units kept whole: WHOLE_UNITS spread over depth past the first layer, if they fit WHOLE_BYTES."""
    if not units:
        return []
    first = min(u.layer for u in units)
    candidates = [u for u in units if u.layer != first and has_two_views(u)]
    if not candidates:
        return []
    idx = np.unique(np.linspace(0, len(candidates) - 1, min(WHOLE_UNITS, len(candidates))).round().astype(int))
    chosen = [candidates[i] for i in idx]
    size = sum(2 * u.n_rows * t.shape[-1] for u in chosen for t in u.matrices + ([u.down] if len(u.matrices) == 1 else []))
    return chosen if size <= WHOLE_BYTES else []


def source_meta(ck: Checkpoint) -> dict:
    """What identifies and describes a checkpoint apart from its rows (no row is read): ref, commit, file date,
    format, tensor table, config, declared lineage, summary."""
    w = ck.weights
    hub = ck.resolved.hub or None
    files = w.file_names()
    commit = (hub or {}).get("commit") or hashlib.sha256(json.dumps(
        [files, [[n, w.info(n).dtype, list(w.info(n).shape)] for n in w.names()], w.bytes_total]).encode()).hexdigest()[:40]
    config = {k: v for k, v in ck.config.items() if _jsonable(v)}
    # the content digests the hub lists for its LFS files (a local file is not hashed whole just for this)
    digests = {w.name: w.content_sha256 for w in ck.resolved.weights if isinstance(getattr(w, "content_sha256", None), str)}
    return {
        "created": _created(ck), "file_digests": digests,
        "plan": PLAN_VERSION, "tool_version": __version__, "ref": ck.ref, "source": ck.resolved.source,
        "root": str(ck.resolved.root), "hub": hub, "commit": commit, "format": ck.format,
        "is_gguf": any(r.format == "gguf" for r in w.readers), "files": files, "bytes_total": w.bytes_total,
        "infos": [[n, w.info(n).dtype, list(w.info(n).shape), w.info(n).nbytes] for n in w.names()],
        "config": config, "declared": _plain(declared_lineage(ck)),
        "summary": {k: v for k, v in vars(ck.summary).items()},
    }


def _created(ck: Checkpoint) -> str | None:
    """When the weights were written, as far as the files or the hub say (the earliest modification time of a
    local weight file, or the date of the hub commit, UTC): circumstantial, easily faked, and only used to order
    relatives whose direction the weights do not give. None when neither is known."""
    import datetime

    hub = ck.resolved.hub or {}
    if isinstance(hub.get("commit_date"), str):
        return hub["commit_date"]
    times = [os.stat(p).st_mtime for p in ck.resolved.weights if isinstance(p, Path) and p.is_file()]
    if not times or ck.resolved.source != "path":
        return None
    return datetime.datetime.fromtimestamp(min(times), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _plain(x):
    """JSON-safe: numpy scalars as Python numbers, anything else unserialisable as its string."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x if _jsonable(x) else str(x)


def describe(fp: Fingerprint) -> dict:
    """What a stored fingerprint holds, for `index show`."""
    m, s = fp.meta, fp.meta["summary"]
    rows = sum(r.shape[0] for spans in fp.spans.values() for _, r in spans)
    values = sum(r.size for spans in fp.spans.values() for _, r in spans)
    summary_line = (f"{s.get('family')} {s.get('n_layers')} layers, d={s.get('hidden_size')}, "
                    f"ffn={s.get('intermediate_size')}, experts={s.get('n_experts') or 'none'}, "
                    f"vocab={s.get('vocab_size')}, {s.get('n_params'):,} parameters, {m['format']}")
    holds_line = (f"{rows:,} rows ({values:,} values) of {len(fp.spans)} tensors, digests of {len(fp.prints)} "
                  f"tensors' sampled rows, {'a vocabulary of ' + format(len(fp.vocab.tokens), ',') + ' tokens' if fp.vocab else 'no vocabulary'}")
    return {"plan": m["plan"], "source": m["source"], "format": m["format"], "summary": s, "declared": m["declared"],
            "n_tensors_with_rows": len(fp.spans), "n_rows": rows, "n_values": values, "n_prints": len(fp.prints),
            "vocab_tokens": len(fp.vocab.tokens) if fp.vocab else None, "summary_line": summary_line,
            "holds_line": holds_line}
