"""What the user typed -> the files of one checkpoint.

A reference is a model folder (config.json + weights + tokenizer files), a single weights file, a shard index
(`*.index.json`), a Hugging Face hub id `org/name[@revision]` or `hf://org/name[@revision]`, or an http(s) URL of
a weights file or shard index. A hub snapshot already holding the weights is read from disk; otherwise hub ids
and URLs are read remotely by range requests (remote/). With HF_HUB_OFFLINE=1 only the caches are consulted.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from .constants import hf_cache_dir, hf_offline
from .errors import CheckpointNotFoundError, FormatError, HubReferenceError, MissingShardError, NoWeightsError
from .safeio import is_inside, read_json, regular_file

# Weight files in order of preference: the first pattern that matches in a folder wins.
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_GLOBS = ("model.safetensors", "*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin", "consolidated*.pth", "*.gguf", "*.bin", "*.pt", "*.pth",
                "model.onnx", "*.onnx")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt", "vocab.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
)
_GGUF_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_HUB_ID = re.compile(r"^(?:hf://)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(@(?P<rev>.*))?$", re.ASCII | re.DOTALL)
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$", re.ASCII)
# A revision is a commit hash, a branch or a tag: git's ref-name rules, so it can never name a path.
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}$", re.ASCII)


@dataclass
class Resolved:
    ref: str  # as typed
    root: Path  # folder holding side files (config.json, tokenizer, README)
    weights: list[Path]
    index: Path | None = None
    hub: dict | None = None  # {"repo_id", "revision", "commit"} for hub references
    weight_map: dict[str, str] | None = None  # tensor -> shard, from the index
    side_bytes_read: int = 0  # JSON side files read while resolving and opening (index, config)
    confine: Path | None = None  # every file read must resolve inside this folder (a hub repo's cache)
    net: object = None  # remote.ranges.NetStats when the weights are read over the network
    url: str | None = None  # the URL typed, for URL references
    siblings: object = None  # (name, stats) -> byte source of another file of a remote checkpoint (ONNX external data)

    @property
    def source(self) -> str:
        return "url" if self.url else "hub" if self.hub else "path"

    def allowed(self, p: Path) -> bool:
        return self.confine is None or is_inside(p, self.confine)

    def side_file(self, name: str) -> Path | None:
        """A regular file beside the weights (a FIFO or device is never opened: it could block or never end)."""
        p = self.root / name
        return p if p.is_file() and self.allowed(p) else None

    def tokenizer_files(self) -> list[Path]:
        found = [p for p in (self.side_file(n) for n in TOKENIZER_FILES) if p is not None]
        return found + sorted(p for p in self.root.glob("*.tiktoken") if p.is_file() and self.allowed(p))


def _shards_from_index(index: Path) -> tuple[list[Path], dict[str, str]]:
    shards, weight_map = index_shards(index)
    paths = [index.parent / s for s in shards]
    for path in paths:
        if not path.is_file():
            raise MissingShardError(path, f"shard named by {index.name} is missing")
    return paths, weight_map


def index_shards(index: Path) -> tuple[list[str], dict[str, str]]:
    """The shard file names a `*.index.json` lists (each a plain file name), and its weight map."""
    data = read_json(index, max_depth=None)  # only weight_map's strings are used, each checked
    if not isinstance(data, dict) or not isinstance(data.get("weight_map"), dict):
        raise FormatError(index, "shard index has no 'weight_map' object")
    shards = []
    names = data["weight_map"].values()
    bad = [s for s in names if not isinstance(s, str)][:1]
    if bad:
        bad = bad[0]
        raise FormatError(index, f"weight_map names a shard by {type(bad).__name__} {str(bad)[:60]!r}, not a file name")
    for shard in dict.fromkeys(names):
        if "/" in shard or "\\" in shard or shard.startswith(".") or not shard:
            raise FormatError(index, f"shard name {shard!r} is not a plain file name")
        shards.append(shard)
    if not shards:
        raise FormatError(index, "shard index lists no tensors")
    return shards, data["weight_map"]


def _gguf_split_names(name: str, where) -> list[str]:
    """The names of every part of a GGUF split set `name` belongs to (just `name` when it is not split)."""
    m = _GGUF_SPLIT.match(name)
    if not m:
        return [name]
    i, n = int(m.group("i")), int(m.group("n"))
    if not 1 <= i <= n:
        raise FormatError(where, f"GGUF split name says part {i} of {n}; parts are numbered 1 to n")
    return [f"{m.group('stem')}-{k:05d}-of-{n:05d}.gguf" for k in range(1, n + 1)]


def _gguf_split_set(path: Path) -> list[Path]:
    parts = [path.parent / n for n in _gguf_split_names(path.name, path)]
    for p in parts:
        if not p.is_file():
            raise MissingShardError(p, f"GGUF split part missing (the set has {len(parts)} parts)")
    return parts


def choose_weights(names: list[str], where) -> tuple[str, list[str]]:
    """Which of a folder's (or repository's) top-level file names hold the weights: ("index", [index]) or
    ("files", [weight files]). The first pattern of INDEX_FILES, then WEIGHT_GLOBS, that matches wins."""
    names = sorted(n for n in names if not n.startswith("."))
    for name in INDEX_FILES:
        if name in names:
            return "index", [name]
    for pattern in WEIGHT_GLOBS:
        files = [n for n in names if fnmatch.fnmatchcase(n, pattern) and not n.startswith("adapter_model.")]
        if not files:
            continue
        if pattern == "*.onnx" and len(files) > 1:
            raise FormatError(where, f"holds {len(files)} ONNX models ({', '.join(files[:4])}); name the one to read")
        if pattern == "*.gguf":
            sets = {tuple(_gguf_split_names(n, where)) for n in files}
            if len(sets) > 1:
                raise FormatError(where, f"holds {len(sets)} different GGUF files ({', '.join(files[:4])}); name the one to read")
            parts = list(sets.pop())
            missing = [p for p in parts if p not in names]
            if missing:
                raise MissingShardError(f"{where}/{missing[0]}", f"GGUF split part missing (the set has {len(parts)} parts)")
            return "files", parts
        return "files", files
    if any(n.startswith("adapter_model.") for n in names):
        raise NoWeightsError(where, "holds a PEFT/LoRA adapter, not a full checkpoint; merge it into its base first")
    raise NoWeightsError(where, "holds no weights (looked for *.safetensors, pytorch_model*.bin, *.gguf, *.pth)")


def local_weights_in_folder(folder: Path, confine: Path | None = None) -> tuple[list[Path], Path | None, dict | None]:
    if confine is not None:  # a hub snapshot: a file linking out of the repository's cache is never opened
        outside = [p for p in folder.iterdir() if not is_inside(p, confine)]
        if outside:
            raise HubReferenceError(folder, f"cached file {outside[0].name} links outside the repository's cache "
                                            f"({confine}); nothing was read")
    names = [p.name for p in folder.iterdir() if p.is_file()]
    try:
        kind, chosen = choose_weights(names, folder)
    except NoWeightsError as e:
        if "adapter" in e.problem and (folder / "adapter_config.json").is_file():
            cfg = read_json(folder / "adapter_config.json")
            base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
            if base:
                raise NoWeightsError(folder, f"holds a PEFT/LoRA adapter, not a full checkpoint (its declared base is "
                                             f"{base}); merge it into the base first") from None
        raise
    if kind == "index":
        shards, weight_map = _shards_from_index(folder / chosen[0])
        return shards, folder / chosen[0], weight_map
    return [folder / n for n in chosen], None, None


_URL = re.compile(r"^https?://[^/\s]+/\S*$", re.ASCII)


def resolve(ref: str) -> Resolved:
    if _URL.match(ref):
        from .remote.hub import resolve_url

        return resolve_url(ref)
    path = Path(ref).expanduser()
    if path.exists() and not path.is_dir() and not path.is_file():
        regular_file(path)  # a FIFO, device or socket: one clear line, and never opened
    if path.is_dir():
        weights, index, weight_map = local_weights_in_folder(path)
        return Resolved(ref, path, weights, index, weight_map=weight_map)
    if path.is_file():
        if path.name.endswith(".index.json"):
            shards, weight_map = _shards_from_index(path)
            return Resolved(ref, path.parent, shards, path, weight_map=weight_map)
        weights = _gguf_split_set(path) if path.suffix == ".gguf" else [path]
        root = path.parent
        if path.suffix == ".onnx" and not (root / "config.json").is_file() and (root.parent / "config.json").is_file():
            root = root.parent  # optimum and transformers.js keep the ONNX files in onnx/, the config above them
        return Resolved(ref, root, weights)
    m = _HUB_ID.match(ref)
    if m and not ref.startswith((".", "/", "~")):
        return _resolve_hub(ref, m.group("repo"), m.group("rev"))
    raise CheckpointNotFoundError(path, "no such file or folder")


def _check_hub_id(ref: str, repo_id: str, revision: str | None) -> None:
    for part in repo_id.split("/"):
        if not _REPO_PART.match(part) or ".." in part or "--" in part or part.endswith("."):
            raise HubReferenceError(ref, f"{part!r} is not a valid hub organisation or repository name")
    if revision is not None and (not _REVISION.match(revision) or ".." in revision or "//" in revision
                                 or revision.endswith(("/", ".lock", ".")) or "/." in revision):
        raise HubReferenceError(ref, f"revision {revision!r} is not a commit, branch or tag name")


def _resolve_hub(ref: str, repo_id: str, revision: str | None) -> Resolved:
    """Online: the hub says which commit the revision is (remote/hub.py), and the weights are read from a
    complete snapshot if there is one, else by range requests. Offline: a complete snapshot in the hub cache,
    else the ranges an earlier online run cached."""
    _check_hub_id(ref, repo_id, revision)
    from .remote.hub import resolve_hub

    if hf_offline():
        local = _cached_snapshot(ref, repo_id, revision)
        if local is not None:
            return local
        try:
            return resolve_hub(ref, repo_id, revision)
        except HubReferenceError as e:
            raise HubReferenceError(
                ref, f"no local file or folder of that name, and as a hub id it is not in the Hugging Face cache at "
                     f"{hf_cache_dir()} nor in parentage's range cache (HF_HUB_OFFLINE is set; {e.problem})") from None
    return resolve_hub(ref, repo_id, revision)


def _cached_snapshot(ref: str, repo_id: str, revision: str | None) -> Resolved | None:
    """A snapshot of the hub cache that holds the weights, or None."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hf_cache_dir()
    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    folder = Path(folder)
    # The snapshot must be a folder of this repository's cache: a refs file holding '../..' or an absolute
    # path, or a snapshot that is a link elsewhere, would otherwise have us read any folder on the machine.
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    if not is_inside(folder, repo_dir / "snapshots") or Path(folder).resolve().parent != (repo_dir / "snapshots").resolve():
        raise HubReferenceError(ref, f"the hub cache resolves this revision to {folder}, outside {repo_dir / 'snapshots'} "
                                     "(a corrupt or hostile refs file); nothing was read")
    try:
        weights, index, weight_map = local_weights_in_folder(folder, confine=repo_dir)
    except CheckpointNotFoundError:  # side files only (an earlier remote run fetched them): not a local copy
        return None
    hub = {"repo_id": repo_id, "revision": revision or "main", "commit": folder.name}
    return Resolved(ref, folder, weights, index, hub=hub, weight_map=weight_map, confine=repo_dir)
