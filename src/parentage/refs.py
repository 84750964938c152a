"""What the user typed -> the files of one checkpoint.

A reference is a model folder (config.json + weights + tokenizer files), a single weights file, a shard index
(`*.index.json`), or a Hugging Face hub id `org/name[@revision]`. Hub ids resolve through huggingface_hub and
its cache; with HF_HUB_OFFLINE=1 only the cache is consulted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .constants import JSON_MAX_BYTES, hf_cache_dir, hf_offline
from .errors import CheckpointNotFoundError, FormatError, HubReferenceError, MissingShardError, NoWeightsError

# Weight files in order of preference: the first pattern that matches in a folder wins.
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_GLOBS = ("model.safetensors", "*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin", "consolidated*.pth", "*.gguf", "*.bin", "*.pt", "*.pth")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt", "vocab.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
)
_GGUF_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(@(?P<rev>[\w./-]+))?$")


@dataclass
class Resolved:
    ref: str  # as typed
    root: Path  # folder holding side files (config.json, tokenizer, README)
    weights: list[Path]
    index: Path | None = None
    hub: dict | None = None  # {"repo_id", "revision", "commit"} for hub references
    weight_map: dict[str, str] | None = None  # tensor -> shard, from the index
    side_bytes_read: int = 0  # JSON side files read while resolving and opening (index, config)

    def side_file(self, name: str) -> Path | None:
        p = self.root / name
        return p if p.is_file() else None

    def tokenizer_files(self) -> list[Path]:
        found = [self.root / n for n in TOKENIZER_FILES if (self.root / n).is_file()]
        return found + sorted(p for p in self.root.glob("*.tiktoken") if p.is_file())


def read_json(path: Path) -> object:
    """A small JSON side file, or a one-line FormatError naming it."""
    try:
        size = path.stat().st_size
        if size > JSON_MAX_BYTES:
            raise FormatError(path, f"{size} bytes is too large for a JSON side file")
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(path, f"not valid JSON ({e})") from None


def _shards_from_index(index: Path) -> tuple[list[Path], dict[str, str]]:
    data = read_json(index)
    if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
        raise FormatError(index, "shard index has no 'weight_map' object")
    shards = []
    for shard in dict.fromkeys(data["weight_map"].values()):
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith("."):
            raise FormatError(index, f"shard name {shard!r} is not a plain file name")
        path = index.parent / shard
        if not path.is_file():
            raise MissingShardError(path, f"shard named by {index.name} is missing")
        shards.append(path)
    if not shards:
        raise FormatError(index, "shard index lists no tensors")
    return shards, data["weight_map"]


def _gguf_split_set(path: Path) -> list[Path]:
    m = _GGUF_SPLIT.match(path.name)
    if not m:
        return [path]
    n = int(m.group("n"))
    parts = [path.parent / f"{m.group('stem')}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    for p in parts:
        if not p.is_file():
            raise MissingShardError(p, f"GGUF split part missing (the set has {n} parts)")
    return parts


def _weights_in_folder(folder: Path) -> tuple[list[Path], Path | None, dict | None]:
    for name in INDEX_FILES:
        if (folder / name).is_file():
            shards, weight_map = _shards_from_index(folder / name)
            return shards, folder / name, weight_map
    for pattern in WEIGHT_GLOBS:
        files = sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("adapter_model."))
        if not files:
            continue
        if pattern == "*.gguf":
            sets = {tuple(_gguf_split_set(p)) for p in files}
            if len(sets) > 1:
                names = ", ".join(sorted(p.name for p in files)[:4])
                raise FormatError(folder, f"holds {len(sets)} different GGUF files ({names}); name the one to read")
            return list(sets.pop()), None, None
        return files, None, None
    if any(folder.glob("adapter_model.*")):
        base = None
        if (folder / "adapter_config.json").is_file():
            cfg = read_json(folder / "adapter_config.json")
            base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
        raise NoWeightsError(folder, "holds a PEFT/LoRA adapter, not a full checkpoint"
                             + (f" (its declared base is {base}); merge it into the base first" if base else ""))
    raise NoWeightsError(folder, "folder holds no weights (looked for *.safetensors, pytorch_model*.bin, *.gguf, *.pth)")


def resolve(ref: str) -> Resolved:
    path = Path(ref).expanduser()
    if path.is_dir():
        weights, index, weight_map = _weights_in_folder(path)
        return Resolved(ref, path, weights, index, weight_map=weight_map)
    if path.is_file():
        if path.name.endswith(".index.json"):
            shards, weight_map = _shards_from_index(path)
            return Resolved(ref, path.parent, shards, path, weight_map=weight_map)
        weights = _gguf_split_set(path) if path.suffix == ".gguf" else [path]
        return Resolved(ref, path.parent, weights)
    m = _HUB_ID.match(ref)
    if m and not ref.startswith((".", "/", "~")):
        return _resolve_hub(ref, m.group("repo"), m.group("rev"))
    raise CheckpointNotFoundError(path, "no such file or folder")


def _resolve_hub(ref: str, repo_id: str, revision: str | None) -> Resolved:
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    cache = hf_cache_dir()
    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        if hf_offline():
            raise HubReferenceError(
                ref,
                f"no local file or folder of that name, and as a hub id it is not in the Hugging Face cache at {cache} "
                "(HF_HUB_OFFLINE is set); download it or pass a local folder",
            ) from None
        try:
            folder = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache)
        except RepositoryNotFoundError:
            raise HubReferenceError(ref, "no such repository on the hub (or it is private)") from None
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
            raise HubReferenceError(ref, f"could not be fetched ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    folder = Path(folder)
    weights, index, weight_map = _weights_in_folder(folder)
    hub = {"repo_id": repo_id, "revision": revision or "main", "commit": folder.name}
    return Resolved(ref, folder, weights, index, hub=hub, weight_map=weight_map)
