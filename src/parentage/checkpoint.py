"""Checkpoint: one model's config, architecture summary, tensors by canonical role, and read accounting.

    ckpt = Checkpoint.open("path/or/org/name")
    ckpt.summary.n_layers, ckpt.summary.hidden_size
    ckpt.tensor(Role("attn_q", layer=3)).read_rows(0, 16)   # (16, hidden) float32, one contiguous read
    ckpt.cost()                                             # bytes read vs bytes held

Nothing is read beyond headers and small JSON files until a caller asks for rows.
"""

from __future__ import annotations

import math
import os
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import names as N
from .constants import (CONCURRENT_LOCAL_BYTES, MAX_EXPERTS, MAX_HEADS, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH, READ_PARALLEL,
                        SLOW_LINK_PARALLEL)
from .errors import ArchitectureError, FormatError, LimitError, NoWeightsError
from .readers import GGUFFile, WeightSet, open_file
from .readers.base import background_reads, in_background, rows_cols
from .readers.gguf import LazyStrings
from .readers.quantization import attach as attach_quantization
from .refs import Resolved, resolve
from .safeio import read_json

# config.json spellings of the numbers we summarise, first found wins.
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "hidden_dim"),
    "moe_intermediate_size": ("moe_intermediate_size", "expert_intermediate_size"),
    "n_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "n_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "n_kv_heads", "multi_query_group_num"),
    "head_dim": ("head_dim",),
    "n_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "n_shared_experts": ("n_shared_experts",),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
}
MAX_GAP_ROWS = 32  # rows this close are read in one span (Tensor.read_at)
SAMPLE_BLOCKS = 4  # contiguous blocks a tensor's row sample is spread over (Tensor.sample_rows)
# A probe (identical.PROBE_MIN_BYTES) reads the leading rows of a tensor's first sampled block, about this many
# bytes and at least one row: a request costs a round trip more than its bytes, so a narrow tensor's block is read
# whole (a frozen one then costs no second request for it), and one row of a 110B model's FFN says "differs".
PROBE_BYTES = 32 << 10
PLAN_SEED = 0  # the seed of the rows a fingerprint samples (Tensor.sample_rows): tests on one use it too
# The same numbers in GGUF metadata, under "{arch}.".
GGUF_KEYS: dict[str, str] = {
    "n_layers": "block_count",
    "hidden_size": "embedding_length",
    "intermediate_size": "feed_forward_length",
    "moe_intermediate_size": "expert_feed_forward_length",
    "n_heads": "attention.head_count",
    "n_kv_heads": "attention.head_count_kv",
    "head_dim": "attention.key_length",
    "n_experts": "expert_count",
    "n_shared_experts": "expert_shared_count",
    "vocab_size": "vocab_size",
}
# The range each summarised number must lie in: a config may hold anything (inf, a list, -1, 10^300).
CONFIG_RANGES: dict[str, tuple[int, int]] = {
    "n_layers": (1, MAX_LAYERS), "hidden_size": (1, MAX_WIDTH), "intermediate_size": (1, MAX_WIDTH),
    "moe_intermediate_size": (1, MAX_WIDTH), "n_heads": (1, MAX_HEADS), "n_kv_heads": (1, MAX_HEADS),
    "head_dim": (1, MAX_WIDTH), "n_experts": (1, MAX_EXPERTS), "n_shared_experts": (0, MAX_EXPERTS),
    "vocab_size": (1, MAX_VOCAB),
}
# Further GGUF metadata under "{arch}." that config.json spells otherwise (shown in the circumstantial comparison).
GGUF_CONFIG_FIELDS: dict[str, str] = {
    "rope_theta": "rope.freq_base", "max_position_embeddings": "context_length",
    "rms_norm_eps": "attention.layer_norm_rms_epsilon", "layer_norm_eps": "attention.layer_norm_epsilon",
}
# GGUF `general.architecture` -> the family name we report (the tensor names are GGUF's own either way).
GGUF_ARCH_FAMILY = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe",
                    "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3", "phi3": "phi3", "gptneox": "gpt_neox",
                    "falcon": "falcon", "gpt2": "gpt2", "bert": "bert", "deepseek2": "deepseek_v2"}


@dataclass
class ArchSummary:
    family: str
    family_confidence: str  # "declared" (config agrees with names), "names" (detected from names), "inferred"
    n_layers: int | None
    hidden_size: int | None
    intermediate_size: int | None
    n_heads: int | None
    n_kv_heads: int | None
    head_dim: int | None
    n_experts: int | None  # None for dense models
    n_shared_experts: int | None
    moe_intermediate_size: int | None
    vocab_size: int | None
    tied_embeddings: bool
    n_params: int


class Tensor:
    """One canonical tensor: a view on a stored tensor (all of it, some rows, or transposed columns)."""

    def __init__(self, weights: WeightSet, piece: N.Piece):
        self.weights, self.piece = weights, piece
        self.role, self.shape = piece.role, piece.shape
        self.dtype = weights.info(piece.source).dtype

    def __repr__(self) -> str:
        return f"Tensor({self.role.key}, {self.shape}, {self.dtype}, from {self.piece.source!r})"

    @property
    def n_rows(self) -> int:
        return rows_cols(self.shape)[0]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Canonical rows [start, stop) as float32: (stop-start, in_features), or (stop-start,) for vectors.

        Every read of every test passes here, so this is the one place NaN and Inf are refused: no statistic
        downstream has to wonder about them."""
        rows = self._read_rows(start, stop)
        # NaN and Inf propagate through a sum, and float32 values cannot overflow a float64 sum, so one reduction
        # is an exact check (no boolean array the size of a whole FFN)
        if not np.isfinite(rows.sum(dtype=np.float64)):
            raise FormatError(self.weights.info(self.piece.source).file,
                              f"tensor {self.piece.source!r} holds NaN or Inf values (rows {start}-{stop})")
        return rows

    def _read_rows(self, start: int, stop: int, read=None) -> np.ndarray:
        """Canonical rows [start, stop) through `read(stored name, start, stop)` (default: the decoded values)."""
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"rows [{start}, {stop}) out of range for {self.role.key} with {self.n_rows} rows")
        p, w = self.piece, self.weights
        read = read or w.read_rows
        if p.transposed:
            # Stored (in, out): canonical rows are stored columns, so the whole tensor is read (GPT-2 sizes only).
            stored_in = w.info(p.source).shape[0]
            cols = np.arange(start, stop) if p.rows is None else p.rows[start:stop]
            return np.ascontiguousarray(read(p.source, 0, stored_in)[:, cols].T)
        if p.rows is None:
            return read(p.source, start, stop)
        src = p.rows[start:stop]
        if src.size == 0:
            return read(p.source, 0, 0)
        lo, hi = int(src.min()), int(src.max()) + 1
        block = read(p.source, lo, hi)  # one contiguous read spanning the rows we need
        return block if hi - lo == src.size and src[0] == lo and np.all(np.diff(src) == 1) else block[src - lo]

    def sample_steps(self, k: int, seed: int, probe: bool = False) -> np.ndarray | None:
        """The quantiser's step at each value of `sample_rows(k, seed)` for a quantised weight (`packed.Packed`),
        else None (a float type's spacing follows from the values: `dtypes.float_steps`)."""
        if not (hasattr(self.weights, "has_steps") and self.weights.has_steps(self.piece.source)):
            return None
        parts = map_reads(self.weights, lambda s: self._read_rows(*s, read=self.weights.steps),
                          self.sample_spans(k, seed, probe))
        return np.concatenate(parts)

    def read_steps(self, start: int, stop: int) -> np.ndarray | None:
        """The quantiser's step at each value of rows [start, stop), or None (as `sample_steps`)."""
        if not (hasattr(self.weights, "has_steps") and self.weights.has_steps(self.piece.source)):
            return None
        return self._read_rows(start, stop, read=self.weights.steps)

    def read(self) -> np.ndarray:
        return self.read_rows(0, self.n_rows)

    # -- what can be read: everything on a live checkpoint, the recorded rows on a stored fingerprint ----------

    def _source_span(self, start: int, stop: int) -> tuple[int, int]:
        """The stored rows `_read_rows` reads for canonical rows [start, stop)."""
        p = self.piece
        if p.transposed:
            return 0, self.weights.info(p.source).shape[0]
        if p.rows is None or stop <= start:
            return start, stop
        src = p.rows[start:stop]
        return int(src.min()), int(src.max()) + 1

    def has(self, start: int, stop: int) -> bool:
        """Whether rows [start, stop) can be read (always, unless the weights are a fingerprint's)."""
        return self.weights.complete or self.weights.holds(self.piece.source, *self._source_span(start, stop))

    def has_at(self, ids: np.ndarray) -> np.ndarray:
        """Which of rows `ids` can be read one by one: a bool mask."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.weights.complete:
            return np.ones(len(ids), dtype=bool)
        return np.array([self.has(int(i), int(i) + 1) for i in ids], dtype=bool)

    def prefix(self) -> int:
        """How many leading rows [0, k) can be read: all of them on a live checkpoint."""
        if self.weights.complete or self.has(0, self.n_rows):
            return self.n_rows
        lo, hi = 0, self.n_rows  # has(0, lo) holds, has(0, hi) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.has(0, mid) else (lo, mid)
        return lo

    def read_at(self, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` (any order), read as a few contiguous spans: (len(ids), n_cols)."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        # a fingerprint holds exactly the rows it recorded, so its runs are never bridged
        gap = MAX_GAP_ROWS if self.weights.complete else 1
        breaks = np.flatnonzero(np.diff(sorted_ids) > gap) + 1
        spans = np.split(sorted_ids, breaks)
        # the spans are independent reads: in flight together on a remote file (a round trip each otherwise)
        parts = map_reads(self.weights, lambda span: self.read_rows(int(span[0]), int(span[-1]) + 1)[span - span[0]],
                          spans)
        out = np.empty((len(ids), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return out

    def sample_rows(self, k: int, seed: int, probe: bool = False) -> np.ndarray:
        """k rows in SAMPLE_BLOCKS contiguous blocks, one at a seeded offset inside each stratum of the rows (all
        rows when there are at most k). The offsets depend on (seed, kind of role, shape) only, not on the layer or
        expert, so every test sampling this tensor gets the same rows (read once), and a same-shaped tensor of
        another layer or model is sampled alike (a layer moved by insertions is compared on the same rows); spread
        blocks, so rows that training left untouched in one region (rare tokens) do not stand for the tensor."""
        key = (k, seed, probe)
        if getattr(self, "_sample_key", None) != key:
            spans, head = self.sample_spans(k, seed, probe), []
            if not probe and getattr(self, "_sample_key", None) == (k, seed, True):
                probed = self.sample_spans(k, seed, True)  # the probe rows just read lead the sample: not again
                if len(probed) == 1 and spans[0][0] == probed[0][0] < probed[0][1] < spans[0][1]:
                    spans, head = [(probed[0][1], spans[0][1])] + spans[1:], [self._sample]
            blocks = map_reads(self.weights, lambda s: self.read_rows(*s), spans)
            self._sample_key, self._sample = key, np.concatenate(head + blocks)
        return self._sample

    def sample_spans(self, k: int, seed: int, probe: bool = False) -> list[tuple[int, int]]:
        """`probe`: the leading rows of the first block only, PROBE_BYTES of them (see identical.PROBE_MIN_BYTES),
        except for the embeddings, whose rows training leaves untouched in places (rare tokens), so they are probed
        on every block."""
        n = self.n_rows
        if n <= k:
            return [(0, n)]
        blocks = min(SAMPLE_BLOCKS, k)
        per = k // blocks
        rng = np.random.default_rng([zlib.crc32(f"{self.role.role}.{self.role.param}".encode()), seed])
        edges = np.linspace(0, n, blocks + 1).astype(int)
        spans = [(s, s + per) for s in (int(rng.integers(lo, hi - per + 1)) for lo, hi in zip(edges, edges[1:]))]
        if probe and self.role.role not in ("embed", "lm_head"):
            info = self.weights.info(self.piece.source)
            rows = int(min(per, max(1, PROBE_BYTES * info.n_rows // max(info.nbytes, 1))))
            return [(spans[0][0], spans[0][0] + rows)]
        return spans


_READ_POOLS: dict = {}  # (workers, background) -> pool


def map_reads(weights: WeightSet, fn, items: list) -> list:
    """[fn(x) for x in items], in order, run concurrently when reads wait: a remote read on the network (one
    round trip per read would dominate), a large local file's on the disk whenever the page cache lacks its
    pages, which a virtual disk serves several at once (the cold 7B pair: 14-16 s sequential, 10 s with 8 in
    flight). A small local checkpoint is read in order: its reads are memory copies, and threads only add
    waiting on the GIL."""
    nested = threading.current_thread().name.startswith("parentage-read")  # a worker waiting on its own pool deadlocks
    waits = weights.remote or weights.bytes_total > CONCURRENT_LOCAL_BYTES
    if len(items) < 2 or nested or not waits:
        return [fn(x) for x in items]
    n = READ_PARALLEL
    if weights.remote:
        from .remote.ranges import slow_link

        n = SLOW_LINK_PARALLEL if slow_link() else READ_PARALLEL
    # A background test (the identity test's thousands of sampled rows) has workers of its own: in one pool the
    # foreground's few reads would queue behind all of them (a 110B pair's hidden stage waited 40 s so).
    key = (n, in_background())
    if key not in _READ_POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _READ_POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="parentage-read")
    if key[1]:  # the workers read on behalf of a background test: counted as its reads
        task = fn

        def fn(x):
            with background_reads():
                return task(x)
    return list(_READ_POOLS[key].map(fn, items))


@dataclass
class Checkpoint:
    ref: str
    resolved: Resolved
    weights: WeightSet
    config: dict
    family: N.Family
    tensors: dict[N.Role, Tensor]
    summary: ArchSummary
    unmapped: list[str] = field(default_factory=list)  # stored names no table accounts for
    extra_layers: list[int] = field(default_factory=list)  # layer indices past n_layers (e.g. DeepSeek MTP)
    warnings: list[str] = field(default_factory=list)
    opened_seconds: float = 0.0
    opened_bytes: int = 0  # weight bytes opening it read (headers): counted in every comparison's budget

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, ref: str | Path) -> "Checkpoint":
        t0 = time.perf_counter()
        resolved = resolve(str(ref))
        readers = []
        try:
            for path in resolved.weights:
                readers.append(open_file(path, resolved.siblings))
            weights = WeightSet(readers)
        except BaseException:
            for r in readers:
                r.close()
            raise
        try:
            if resolved.index is not None:
                _check_index(resolved, weights)
                resolved.side_bytes_read += resolved.index.stat().st_size
            config = _load_config(resolved, weights)
            weights.scheme = attach_quantization(weights, config, resolved.side_file)
            ckpt = _build(str(ref), resolved, weights, config)
        except BaseException:
            weights.close()
            raise
        ckpt.opened_seconds = time.perf_counter() - t0
        ckpt.opened_bytes = weights.foreground_bytes()
        return ckpt

    def close(self) -> None:
        self.weights.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- access -------------------------------------------------------------------------------------------------

    @property
    def format(self) -> str:
        return self.weights.format

    def tensor(self, role: N.Role) -> Tensor:
        return self.tensors[role]

    def find(self, role: str, layer: int | None = None, expert: int | None = None, param: str = "weight") -> Tensor | None:
        """The tensor of a canonical role, or None when the checkpoint has none."""
        return self.tensors.get(N.Role(role, layer, expert, param))

    def get(self, role: str, layer: int | None = None, expert: int | None = None, param: str = "weight") -> Tensor:
        """The tensor of a canonical role (`get("mlp_up", 3)`); KeyError naming what exists when there is none."""
        found = self.find(role, layer, expert, param)
        if found is None:
            raise KeyError(self._missing(N.Role(role, layer, expert, param)))
        return found

    def _missing(self, want: N.Role) -> str:
        roles = sorted({r.role for r in self.tensors})
        if want.role not in roles:
            return f"{self.ref}: no tensor of role {want.role!r}; roles held: {', '.join(roles)}"
        same = [r for r in self.tensors if r.role == want.role]
        layers = sorted({r.layer for r in same if r.layer is not None})
        if want.layer is not None and want.layer not in layers:
            span = f"layers {layers[0]}-{layers[-1]}" if layers else "no layer"
            return f"{self.ref}: no {want.role!r} in layer {want.layer}; it is held in {span}"
        experts = sorted({r.expert for r in same if r.layer == want.layer and r.expert is not None})
        if want.expert is not None and want.expert not in experts:
            held = f"experts {experts[0]}-{experts[-1]}" if experts else "no experts (a dense layer)"
            return f"{self.ref}: no expert {want.expert} of {want.role!r} in layer {want.layer}; it has {held}"
        params = sorted({r.param for r in same if r.layer == want.layer and r.expert == want.expert})
        return f"{self.ref}: no {want.param!r} of {want.role!r} here; params held: {', '.join(params) or 'none'}"

    def layer_roles(self, layer: int) -> list[N.Role]:
        return sorted(r for r in self.tensors if r.layer == layer)

    def tokenizer_files(self) -> list[Path]:
        return self.resolved.tokenizer_files()

    def map_reads(self, fn, items: list) -> list:
        return map_reads(self.weights, fn, items)

    def cost(self) -> dict:
        """Bytes read so far (weight headers and rows, plus the JSON side files) against the weights held, and
        what crossed the network for them (0 for local files; for remote ones, what the range cache lacked)."""
        net = self.resolved.net
        return {
            "bytes_read": self.weights.bytes_read + self.resolved.side_bytes_read,
            "bytes_total": self.weights.bytes_total,
            "n_reads": self.weights.n_reads,
            "bytes_transferred": net.bytes_transferred if net else 0,
            "n_requests": net.n_requests if net else 0,
        }


def _check_index(resolved: Resolved, weights: WeightSet) -> None:
    for name, shard in resolved.weight_map.items():
        if name not in weights or os.path.basename(weights.info(name).file) != shard:
            raise FormatError(resolved.index, f"names tensor {name!r} in {shard}, but that shard does not hold it")


def _load_config(resolved: Resolved, weights: WeightSet) -> dict:
    # config.json (Hugging Face), else params.json (Meta's and Mistral's native releases: dim, n_heads, ...)
    path = resolved.side_file("config.json") or resolved.side_file("params.json")
    if path is not None:
        config = read_json(path)
        resolved.side_bytes_read += path.stat().st_size
        if not isinstance(config, dict):
            raise FormatError(path, f"{path.name} is not a JSON object")
        # Multimodal wrappers keep the language model's numbers in text_config.
        text = config.get("text_config")
        return {**config, **text, "_source": path.name} if isinstance(text, dict) else {**config, "_source": path.name}
    gguf = next((r for r in weights.readers if isinstance(r, GGUFFile)), None)
    if gguf is not None:
        return _config_from_gguf(gguf)
    return {}


def _config_from_gguf(r: GGUFFile) -> dict:
    """A config.json-like dict from GGUF metadata, so the summary code has one input shape."""
    arch = r.arch
    config: dict = {"model_type": GGUF_ARCH_FAMILY.get(arch, arch), "_gguf_arch": arch, "_source": "GGUF metadata"}
    for ours, key in GGUF_KEYS.items():
        value = r.metadata.get(f"{arch}.{key}")
        if isinstance(value, np.ndarray):  # per-layer values (some archs): report the largest
            value = value.max().item() if value.size and np.issubdtype(value.dtype, np.number) else None
        if value is not None:
            config[CONFIG_KEYS[ours][0]] = value  # validated with the config.json numbers, in config_numbers
    for field_name, key in GGUF_CONFIG_FIELDS.items():
        value = r.metadata.get(f"{arch}.{key}")
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value):
            config[field_name] = float(value) if isinstance(value, (float, np.floating)) else int(value)
    tokens = r.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, LazyStrings) and "vocab_size" not in config:
        config["vocab_size"] = len(tokens)
    return config


def _as_int(v) -> int | None:
    """An integer, or a float holding one; anything else (bool, inf, nan, 1.5, a list, a string) is None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    return None


def config_numbers(config: dict, warnings: list[str] | None = None) -> dict[str, int | None]:
    """The config's numbers as validated integers in range, the one place untrusted config values enter.

    A value of the wrong type or out of range is dropped with a warning naming it (the tensors' own shapes
    then stand in for it); a KV head count that does not divide the head count likewise."""
    out: dict[str, int | None] = {}
    source = config.get("_source", "config")
    for key, spellings in CONFIG_KEYS.items():
        out[key] = None
        lo, hi = CONFIG_RANGES[key]
        for k in spellings:
            if k not in config or config[k] is None:
                continue
            v = _as_int(config[k])
            if v is None or not lo <= v <= hi:
                if warnings is not None:
                    warnings.append(f"{source}: {k} = {_short_repr(config[k])} is not an integer in [{lo}, {hi:,}]; ignored")
                continue
            out[key] = v
            break
    if out["n_heads"] and out["n_kv_heads"] and out["n_heads"] % out["n_kv_heads"]:
        if warnings is not None:
            warnings.append(f"{source}: num_key_value_heads = {out['n_kv_heads']} does not divide "
                            f"{out['n_heads']} attention heads; ignored")
        out["n_kv_heads"] = None
    return out


def _short_repr(v) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else f"a {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."




def _choose_family(config: dict, names: list[str], is_gguf: bool) -> tuple[N.Family, str, str]:
    """(name table, reported family, confidence). The config's word is checked against the names."""
    declared = config.get("model_type")
    declared = declared if isinstance(declared, str) and 0 < len(declared) <= 64 else None  # a list, a number: no word
    if is_gguf:
        return N.FAMILIES["gguf"], declared or "unknown", "declared"
    table = N.MODEL_TYPE_TABLE.get(declared) if declared else None
    if table and N.coverage(N.FAMILIES[table], names) >= 0.9:
        return N.FAMILIES[table], declared, "declared"
    # Best coverage wins; on a tie the smaller table (qwen3 over qwen3_moe for a dense model), then table order.
    scored = sorted(
        (-N.coverage(f, names), len(f.layer) + len(f.globals), i, f.name)
        for i, f in enumerate(N.FAMILIES.values())
        if f.name != "gguf"
    )
    if scored and -scored[0][0] >= 0.9:
        name = scored[0][3]
        return N.FAMILIES[name], declared or name, "names"
    inferred = N.infer_family(names)
    if inferred is None:
        raise ArchitectureError(None, "tensor names fit no known family and show no repeated layer block")
    return inferred, declared or "unknown", "inferred"


def _dims(config: dict, nums: dict[str, int | None]) -> N.Dims:
    if config.get("new_decoder_architecture") is True:
        layout = "grouped"
    elif config.get("multi_query") is True:
        layout = "multi_query"
    else:
        layout = "interleaved"
    return N.Dims(nums["n_heads"], nums["n_kv_heads"] or (1 if layout == "multi_query" else None), nums["head_dim"],
                  nums["hidden_size"], layout)


def _split(weights: WeightSet, name: str, target: str, n: int, dims: N.Dims) -> list[tuple[str, np.ndarray]]:
    """A fused tensor's rows per role; head counts that do not fit its shape are one clear error."""
    try:
        parts = N.SPLITS[target](n, dims)
    except (ValueError, ZeroDivisionError, IndexError):
        parts = None
    if parts is None or any(len(rows) == 0 or rows.min() < 0 or rows.max() >= n for _, rows in parts):
        raise ArchitectureError(weights.info(name).file, f"fused tensor {name!r} with {n} rows cannot be split by "
                                                         f"the config's head counts ({dims.n_heads} heads, "
                                                         f"{dims.n_kv_heads} KV heads)")
    return parts


def _pieces(family: N.Family, weights: WeightSet, dims: N.Dims) -> tuple[list[N.Piece], list[str], list[str]]:
    """(canonical pieces, stored names no table accounts for, stored tensors with a zero-size dimension)."""
    pieces, unmapped, empty = [], [], []
    for name in weights.names():
        m = N.match_name(family, name)
        if m == "drop":
            continue
        if m is None:
            unmapped.append(name)
            continue
        if (m.layer or 0) >= MAX_LAYERS or (m.expert or 0) >= MAX_EXPERTS:
            raise LimitError(weights.info(name).file, f"tensor {name!r} names layer {m.layer} or expert {m.expert}, "
                                                      f"beyond any real model ({MAX_LAYERS:,} layers, {MAX_EXPERTS:,} experts)")
        shape = weights.info(name).shape
        if 0 in shape:  # a tensor with no values says nothing, and every test would have to guard against it
            empty.append(name)
            continue
        transposed = m.transposed and len(shape) == 2
        canon = (shape[1], shape[0]) if transposed else shape
        if m.target.startswith("split:"):
            if not canon:
                raise ArchitectureError(weights.info(name).file, f"fused tensor {name!r} is a scalar")
            for role, rows in _split(weights, name, m.target[6:], canon[0], dims):
                pieces.append(N.Piece(N.Role(role, m.layer, m.expert, m.param), name, (len(rows),) + canon[1:], rows, transposed))
        elif m.target.startswith("experts:"):
            if len(shape) != 3:
                raise FormatError(weights.info(name).file, f"expert stack {name!r} should be 3-D, is {shape}")
            n_exp, rows_per = shape[0], shape[1]
            if n_exp > MAX_EXPERTS:
                raise LimitError(weights.info(name).file, f"expert stack {name!r} holds {n_exp:,} experts, beyond "
                                                          f"any real model ({MAX_EXPERTS:,})")
            for e in range(n_exp):
                rows = np.arange(e * rows_per, (e + 1) * rows_per)
                pieces.append(N.Piece(N.Role(m.target[8:], m.layer, e, m.param), name, shape[1:], rows))
        else:
            pieces.append(N.Piece(N.Role(m.target, m.layer, m.expert, m.param), name, canon, None, transposed))
    return pieces, unmapped, empty


def _build(ref: str, resolved: Resolved, weights: WeightSet, config: dict, is_gguf: bool | None = None) -> Checkpoint:
    """The checkpoint over its weights; `is_gguf` for weights without readers (a fingerprint's)."""
    names = weights.names()
    if not names:
        raise NoWeightsError(resolved.weights[0], "holds no tensors")
    if is_gguf is None:
        is_gguf = any(isinstance(r, GGUFFile) for r in weights.readers)
    try:
        family, family_name, confidence = _choose_family(config, names, is_gguf)
    except ArchitectureError as e:
        raise ArchitectureError(resolved.weights[0], e.problem) from None
    warnings: list[str] = []
    nums = config_numbers(config, warnings)
    pieces, unmapped, empty = _pieces(family, weights, _dims(config, nums))
    if empty:
        warnings.append(f"{len(empty)} tensors have a zero-size dimension and are left out (e.g. {empty[0]!r} "
                        f"{list(weights.info(empty[0]).shape)})")
    tensors: dict[N.Role, Tensor] = {}
    for p in pieces:
        if p.role in tensors:
            raise FormatError(resolved.weights[0], f"two tensors map to {p.role.key}: {tensors[p.role].piece.source!r} and {p.source!r}")
        tensors[p.role] = Tensor(weights, p)

    n_layers_cfg = nums["n_layers"]
    layers = sorted({r.layer for r in tensors if r.layer is not None})
    # DeepSeek-V3 ships its multi-token-prediction block as layer n_layers; it is not part of the stack. Only
    # layers the config declares as such are set aside: any other surplus is reported, not hidden.
    raw_mtp = config.get("num_nextn_predict_layers")
    n_mtp = _as_int(raw_mtp)
    if raw_mtp is not None and (n_mtp is None or not 0 <= n_mtp <= MAX_LAYERS):
        warnings.append(f"{config.get('_source', 'config')}: num_nextn_predict_layers = {_short_repr(raw_mtp)} is not "
                        "a layer count; ignored")
    n_mtp = n_mtp if n_mtp is not None and 0 <= n_mtp <= MAX_LAYERS else 0
    extra = [l for l in layers if n_layers_cfg is not None and n_layers_cfg <= l < n_layers_cfg + n_mtp]
    if extra:
        for role in [r for r in tensors if r.layer in extra]:
            del tensors[role]
        warnings.append(f"layers {extra} lie past num_hidden_layers={n_layers_cfg} (e.g. multi-token prediction) and are set aside")
        layers = [l for l in layers if l not in extra]

    embed = tensors.get(N.Role("embed"))
    lm_head_role = N.Role("lm_head")
    tied = embed is not None and lm_head_role not in tensors
    if tied:
        tensors[lm_head_role] = Tensor(weights, N.Piece(lm_head_role, embed.piece.source, embed.shape, embed.piece.rows, embed.piece.transposed))

    summary = _summarise(nums, tensors, layers, family_name, confidence, tied, weights)
    warnings += _cross_check(nums, summary, tensors, layers)
    if family.name == "meta_llama" and not nums["n_heads"]:
        warnings.append("Meta-layout Q/K rows need the head count (params.json) to be put in Hugging Face order; none found")
    if confidence == "inferred":
        warnings.append("family not recognised: layer roles were inferred from tensor names (low confidence)")
    if unmapped:
        warnings.append(f"{len(unmapped)} tensors have no role (e.g. {unmapped[0]!r})")
    return Checkpoint(ref, resolved, weights, config, family, tensors, summary, unmapped, extra, warnings)


def _first(tensors: dict[N.Role, Tensor], role: str, expert: bool) -> Tensor | None:
    for r in sorted(tensors, key=lambda r: (r.layer if r.layer is not None else -1, r.expert or 0)):
        if r.role == role and r.param == "weight" and (r.expert is not None) == expert:
            return tensors[r]
    return None


def _summarise(cfg, tensors, layers, family_name, confidence, tied, weights) -> ArchSummary:
    embed = tensors.get(N.Role("embed"))
    dense_up = _first(tensors, "mlp_up", expert=False) or _first(tensors, "mlp_gate", expert=False)
    expert_up = _first(tensors, "mlp_up", expert=True) or _first(tensors, "mlp_gate", expert=True)
    experts = {r.expert for r in tensors if r.expert is not None}
    n_params = sum(math.prod(weights.info(n).shape) for n in weights.names())
    hidden = cfg["hidden_size"] or (embed.shape[1] if embed is not None and len(embed.shape) == 2 else None)
    if not hidden:
        hidden = None  # a 0-column embedding says nothing; the tests then find nothing to compare
    return ArchSummary(
        family=family_name,
        family_confidence=confidence,
        n_layers=len(layers) if layers else cfg["n_layers"],
        hidden_size=hidden,
        intermediate_size=(dense_up.shape[0] if dense_up is not None else None) or cfg["intermediate_size"]
        or (expert_up.shape[0] if expert_up is not None else None),
        n_heads=cfg["n_heads"],
        n_kv_heads=cfg["n_kv_heads"] or cfg["n_heads"],
        head_dim=cfg["head_dim"] or (hidden // cfg["n_heads"] if hidden and cfg["n_heads"] else None),
        n_experts=(max(experts) + 1 if experts else None) or cfg["n_experts"] or None,
        n_shared_experts=cfg["n_shared_experts"],
        moe_intermediate_size=(expert_up.shape[0] if expert_up is not None else None) or cfg["moe_intermediate_size"],
        vocab_size=(embed.shape[0] if embed is not None else None) or cfg["vocab_size"],
        tied_embeddings=tied,
        n_params=n_params,
    )


def _cross_check(cfg: dict, s: ArchSummary, tensors, layers) -> list[str]:
    """Where the config and the tensors disagree, say so (a renamed or edited checkpoint shows here)."""
    out = []
    n_cfg = cfg["n_layers"]
    if n_cfg is not None and layers and n_cfg != len(layers):
        out.append(f"config says {n_cfg} layers, tensors hold {len(layers)}")
    if layers and layers != list(range(len(layers))):
        present = set(layers)  # layer indices are capped at MAX_LAYERS, so this range is bounded
        missing = [i for i in range(max(layers) + 1) if i not in present][:8]
        out.append(f"layer indices are not contiguous (missing {', '.join(map(str, missing))})")
    v_cfg = cfg["vocab_size"]
    if v_cfg is not None and s.vocab_size is not None and v_cfg != s.vocab_size:
        out.append(f"config vocab_size {v_cfg} differs from the embedding's {s.vocab_size} rows")
    h_cfg = cfg["hidden_size"]
    embed = tensors.get(N.Role("embed"))
    if h_cfg is not None and embed is not None and len(embed.shape) == 2 and embed.shape[1] != h_cfg:
        out.append(f"config hidden_size {h_cfg} differs from the embedding's {embed.shape[1]} columns")
    return out


def summary_dict(ckpt: Checkpoint) -> dict:
    return asdict(ckpt.summary)
