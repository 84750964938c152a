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
GGUF_MAX_ARRAY = 1 << 26  # elements in one metadata array
GGUF_MAX_STRING = 1 << 26  # bytes in one metadata string

# JSON side files (config.json, shard indexes, tokenizer_config.json) are small; refuse absurd ones.
JSON_MAX_BYTES = 64 * 1024 * 1024

ENV_CACHE = "PARENTAGE_CACHE"  # where demo fixtures and zoos are kept
ENV_HF_CACHE = "HF_HUB_CACHE"
ENV_HF_HOME = "HF_HOME"
ENV_HF_OFFLINE = "HF_HUB_OFFLINE"


def cache_dir() -> Path:
    """Parentage's own cache folder (demo checkpoints, zoos)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "parentage"


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
