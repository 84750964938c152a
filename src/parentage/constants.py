"""Limits and environment variables, in one place.

Environment variables are read when a function asks for them (not at import), so tests and long-lived
processes can change them.
"""

from __future__ import annotations

import os
from pathlib import Path

# A safetensors header is JSON describing tensors; 100 MB is what the reference implementation allows and far
# beyond any real model (a 1,000-shard MoE header is a few MB). Anything larger is hostile or corrupt.
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024

# A torch pickle (data.pkl) holds only the tensor table; real ones are well under 10 MB.
TORCH_MAX_PICKLE = 64 * 1024 * 1024

# GGUF headers carry the whole vocabulary (150k tokens, merges) but not tensor data; 256 MB is generous.
GGUF_MAX_HEADER = 256 * 1024 * 1024
GGUF_MAX_ARRAY = 1 << 22  # elements in one metadata array (the largest vocabularies hold about 2^18 tokens)
GGUF_MAX_STRING = 1 << 26  # bytes in one metadata string
GGUF_MAX_ITEMS = 1 << 23  # keys, array elements and tensor entries of one header, all told
GGUF_MAX_KEYS = 1 << 16  # metadata keys (real files: a few dozen)
GGUF_MAX_TENSORS = 1 << 18  # tensor entries (DeepSeek-V3 with unstacked experts: about 50,000)
GGUF_MAX_NESTING = 4  # arrays of arrays

# An ONNX model is parsed field by field; these bound what a small hostile file can make that cost.
ONNX_MAX_FIELDS = 1 << 24  # protobuf fields parsed in one model (a 7B export with its graph: about a million)
ONNX_MAX_NODES = 1 << 20  # graph nodes
ONNX_MAX_ATTRIBUTES = 64  # attributes of one node
ONNX_MAX_STRING = 1 << 16  # bytes of one name or attribute string
ONNX_MAX_SMALL_ELEMENTS = 1 << 22  # values of a tensor stored as varints (int32_data): decoded whole, so small only

# A torch pickle's tensor table: nested dicts are flattened with dots; shared references could make a few
# hundred bytes describe 2^60 paths, so the walk is capped (real state dicts: a few thousand tensors).
TORCH_MAX_ENTRIES = 1 << 20
TORCH_MAX_NESTING = 32
# A storage that is not a plain contiguous stored member is decoded whole; cap what that may cost.
TORCH_MAX_WHOLE_STORAGE = 1 << 30

# JSON side files (config.json, shard indexes, tokenizer.json) are small; refuse absurd ones.
JSON_MAX_BYTES = 64 * 1024 * 1024
JSON_MAX_DEPTH = 64  # real configs and tokenizers nest under 10 levels

# Numbers a real checkpoint never exceeds; beyond them a config value or a tensor name is hostile or corrupt.
MAX_LAYERS = 10_000  # layer indices and counts
MAX_EXPERTS = 1 << 16
MAX_WIDTH = 1 << 22  # hidden size, FFN width, head dim
MAX_HEADS = 1 << 16
MAX_VOCAB = 1 << 24  # embedding rows, token ids and ranks
MAX_TENSORS = 1 << 18  # tensors in one checkpoint (DeepSeek-V3 in safetensors: about 91,000)
MAX_JSON_VALUES = 1 << 24  # values in one JSON document (a 262k-token tokenizer.json holds about 2 million)
MAX_DIM = 1 << 40  # any one dimension of a stored tensor (a zero-size tensor could otherwise claim 2^62 rows)

# Side files read only for their top part (model card front matter, merge configs).
CARD_MAX_BYTES = 200_000
# Text files measured by `tokenizer --text`: the first this many bytes are enough for a rate per token.
TEXT_MAX_BYTES = 8 * 1024 * 1024
# Tokenizer files that are not JSON (sentencepiece, tiktoken, merges.txt, vocab.txt).
TOKENIZER_MAX_BYTES = 256 * 1024 * 1024

# Remote weights (remote/): range requests, their retries, and the disk cache of fetched ranges.
HTTP_PARALLEL = 8  # range requests in flight at once per checkpoint
READ_PARALLEL = 8  # reads in flight at once on a remote or large local checkpoint (each may be several range requests)
# On a slow link (answers take SLOW_LINK_SECONDS or more to start) round trips, not bytes, bound a compare: 7,000
# requests at 50 ms are 44 s at 8 in flight, 11 s at 32. On loopback more threads only contend for the GIL.
SLOW_LINK_SECONDS = 0.01
SLOW_LINK_PARALLEL = 32
CONCURRENT_LOCAL_BYTES = 1 << 30  # local checkpoints past this size are read concurrently (page-cache misses wait on disk)
HTTP_RETRIES = 10  # attempts after the first, on 429, 5xx, dropped connections and short bodies
HTTP_BACKOFF = 0.5  # seconds before the first retry, doubled each time (a Retry-After header wins)
HTTP_MAX_WAIT = 30.0  # longest single wait, whatever Retry-After asks
HTTP_TIMEOUT = 60.0  # seconds without a byte before a request counts as dropped
COALESCE_GAP = 64 * 1024  # two wanted ranges closer than this are fetched as one request
GGUF_REMOTE_HEAD = 4 << 20  # first bytes of a remote GGUF fetched for its header, doubled until it fits
RANGE_CACHE_BYTES = 20 << 30  # the fetched-range cache is trimmed (least recently used first) past this

ENV_CACHE = "PARENTAGE_CACHE"  # where demo fixtures and zoos are kept
ENV_INDEX = "PARENTAGE_INDEX"  # the fingerprint index: a SQLite path or a postgresql:// URL (--db wins)
ENV_DATA = "PARENTAGE_DATA"  # parentage's data folder (the default index lives there)
ENV_RANGE_CACHE_BYTES = "PARENTAGE_RANGE_CACHE_BYTES"
ENV_HTTP_BACKOFF = "PARENTAGE_HTTP_BACKOFF"  # tests shorten the waits
ENV_SERVE = "PARENTAGE_SERVE"  # the socket of a `parentage serve` commands go to; "off": every command in-process
ENV_HF_ENDPOINT = "HF_ENDPOINT"
ENV_HF_CACHE = "HF_HUB_CACHE"
ENV_HF_HOME = "HF_HOME"
ENV_HF_OFFLINE = "HF_HUB_OFFLINE"


def cache_dir() -> Path:
    """Parentage's own cache folder (demo checkpoints, zoos)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "parentage"


def serve_socket() -> Path | None:
    """Where `parentage serve` listens and commands look for it: PARENTAGE_SERVE, else serve.sock in the cache
    folder; None when PARENTAGE_SERVE says off."""
    value = os.environ.get(ENV_SERVE, "").strip()
    if value.lower() in {"off", "0", "no", "false"}:
        return None
    return Path(value) if value else cache_dir() / "serve.sock"


# `parentage serve` (serve.py)
SERVE_MAX_REQUEST = 1 << 20  # bytes of one request (arguments, folder, environment): real ones are a few kB
SERVE_REQUEST_SECONDS = 10.0  # a client that has not sent its whole request by then is dropped
SERVE_STOP_GRACE = 5.0  # a worker asked to stop (its client left, or the server stops) is killed after this


def data_dir() -> Path:
    """Parentage's data folder (what the user keeps: the default fingerprint index)."""
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "parentage"


def index_url(given: str | None = None) -> str:
    """The index to use: --db, else PARENTAGE_INDEX, else index.sqlite in the data folder."""
    return given or os.environ.get(ENV_INDEX) or str(data_dir() / "index.sqlite")


# The fingerprint index (index/): bounds on what one stored entry may claim
INDEX_MAX_BLOB = 2 << 30  # bytes of one stored fingerprint
INDEX_BUSY_SECONDS = 30.0  # a writer waits this long for another writer's transaction


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring the same variables huggingface_hub does."""
    if os.environ.get(ENV_HF_CACHE):
        return Path(os.environ[ENV_HF_CACHE])
    home = os.environ.get(ENV_HF_HOME) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(home) / "hub"


def hf_offline() -> bool:
    return os.environ.get(ENV_HF_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def hf_endpoint() -> str:
    """The hub's base URL, read when asked (huggingface_hub reads HF_ENDPOINT once, at its import)."""
    from huggingface_hub import constants

    return (os.environ.get(ENV_HF_ENDPOINT) or constants.ENDPOINT).rstrip("/")


def range_cache_dir() -> Path:
    return cache_dir() / "ranges"


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ[name])
    except (KeyError, ValueError):
        return default
    return value if value >= 0 else default


def range_cache_bytes() -> int:
    return int(_env_number(ENV_RANGE_CACHE_BYTES, RANGE_CACHE_BYTES))


def http_backoff() -> float:
    return _env_number(ENV_HTTP_BACKOFF, HTTP_BACKOFF)
