"""Hub ids and URLs -> a `Resolved` whose weights are `RangeFile`s.

huggingface_hub does what it already does: the endpoint (HF_ENDPOINT), the token (HF_TOKEN or a stored login),
the repository listing, URL building, redirects, its HTTP session, and the hub cache for side files
(config.json, tokenizer files, the shard index, the model card, code that is parsed but never run). Weights are
never downloaded whole: a `RangeFile` reads their headers, then the row blocks the tests ask for.

The revision is resolved to a commit once; every later request names the commit, so one run judges one set of
bytes and the JSON says which. Each online resolution is remembered in a small manifest beside the range cache
(revision -> commit, file sizes and ETags), which is what HF_HUB_OFFLINE=1 resolves against.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..constants import (CARD_MAX_BYTES, HTTP_RETRIES, HTTP_TIMEOUT, JSON_MAX_BYTES, TOKENIZER_MAX_BYTES, cache_dir,
                         hf_cache_dir, hf_endpoint, hf_offline, http_backoff)
from ..errors import CheckpointNotFoundError, HubReferenceError, NotCachedError, ParentageError, RemoteError
from ..safeio import read_json
from .cache import range_cache
from .ranges import RETRY_STATUS, Location, NetStats, RangeFile, _first_line, _normal_etag, _origin

# Side files fetched whole, and the most each may hold (larger ones are refused: they would be anyway).
SIDE_FILES = {"config.json": JSON_MAX_BYTES, "params.json": JSON_MAX_BYTES, "generation_config.json": JSON_MAX_BYTES,
              "README.md": 64 << 20, "mergekit_config.yml": CARD_MAX_BYTES * 50, "adapter_config.json": JSON_MAX_BYTES,
              "quantize_config.json": JSON_MAX_BYTES, "quant_config.json": JSON_MAX_BYTES}
SIDE_GLOBS = (("*.tiktoken", TOKENIZER_MAX_BYTES), ("*.py", 8 << 20))
URL_SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def _side_cap(name: str) -> int | None:
    from ..refs import TOKENIZER_FILES

    if name in SIDE_FILES:
        return SIDE_FILES[name]
    if name in TOKENIZER_FILES:
        return TOKENIZER_MAX_BYTES
    if name.endswith(".index.json"):
        return JSON_MAX_BYTES
    return next((cap for pattern, cap in SIDE_GLOBS if fnmatch.fnmatch(name, pattern)), None)


# -- the manifest: what an online run learned, for offline runs ------------------------------------------------


DATE_KEYS = ("repo_created", "commit_date")


def _manifest_path(repo_id: str) -> Path:
    return cache_dir() / "remote" / (repo_id.replace("/", "--") + ".json")


def _load_manifest(repo_id: str) -> dict:
    """What an online run learned of a repository (refs, commits, file listings), or an empty one when there
    is none or it is damaged: bounded in size and depth like any JSON parentage reads (a cache file can be
    edited by anyone who can write the cache)."""
    empty = {"refs": {}, "commits": {}}
    try:
        data = read_json(_manifest_path(repo_id))
    except (OSError, ParentageError):
        return empty
    if not (isinstance(data, dict) and isinstance(data.get("refs"), dict) and isinstance(data.get("commits"), dict)):
        return empty
    return data


def _save_manifest(repo_id: str, revision: str, commit: str, files: dict, dates: dict) -> None:
    data = _load_manifest(repo_id)
    data["refs"][revision] = commit
    data["commits"][commit] = {"files": files, "dates": dates}
    path = _manifest_path(repo_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass  # only offline runs need it, and they say so when it is missing


# -- hub ids ---------------------------------------------------------------------------------------------------


def _hub_error(ref: str, e: BaseException, endpoint: str) -> ParentageError:
    """One line for whatever huggingface_hub or the network raised."""
    from huggingface_hub import errors as hf

    if isinstance(e, hf.GatedRepoError):
        return HubReferenceError(ref, "the repository is gated and this token has no access: accept its terms on the "
                                      "hub, then set HF_TOKEN (or log in: hf auth login)")
    if isinstance(e, hf.RepositoryNotFoundError):
        return HubReferenceError(ref, f"no such repository at {endpoint} (or it is private: set HF_TOKEN)")
    if isinstance(e, hf.RevisionNotFoundError):
        return HubReferenceError(ref, "no such revision (branch, tag or commit) in the repository")
    if isinstance(e, hf.RemoteEntryNotFoundError):
        return HubReferenceError(ref, f"a file the listing named is missing on the hub ({_first_line(e)})")
    if isinstance(e, hf.OfflineModeIsEnabled):
        return NotCachedError(ref, "HF_HUB_OFFLINE is set and this is not cached")
    if isinstance(e, hf.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        return RemoteError(ref, f"the hub at {endpoint} answered HTTP {status} ({_first_line(e)})")
    return RemoteError(ref, f"cannot reach the hub at {endpoint} ({type(e).__name__}: {_first_line(e)})")


def _iso(value) -> str | None:
    """A hub date (a datetime from huggingface_hub, or a string from the manifest) as UTC ISO 8601, else None."""
    import datetime

    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _listing(ref: str, repo_id: str, revision: str | None, endpoint: str) -> tuple[str, dict[str, list], dict]:
    """(commit, {file: [size, etag]}, {"repo_created", "commit_date"}) for the revision, from the hub, or
    offline from the manifest."""
    rev = revision or "main"
    if hf_offline():
        manifest = _load_manifest(repo_id)
        commit = rev if rev in manifest["commits"] else manifest["refs"].get(rev)
        entry = manifest["commits"].get(commit) if isinstance(commit, str) else None
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict):
            raise NotCachedError(ref, f"HF_HUB_OFFLINE is set and revision {rev!r} of this repository was never "
                                      f"resolved online (no entry in {_manifest_path(repo_id)})")
        # the listing is a cache file: keep only entries of the shape an online run writes
        saved = entry.get("dates") if isinstance(entry.get("dates"), dict) else {}
        return commit, {name: v for name, v in files.items() if isinstance(name, str) and isinstance(v, list)
                        and len(v) == 2 and isinstance(v[0], int) and not isinstance(v[0], bool) and v[0] >= 0
                        and (v[1] is None or isinstance(v[1], str))}, {k: _iso(saved.get(k)) for k in DATE_KEYS}
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:  # every failure of the call becomes one line naming the repo
        raise _hub_error(ref, e, endpoint) from None
    if not isinstance(info.sha, str) or len(info.sha) != 40:
        raise RemoteError(ref, f"the hub at {endpoint} resolved the revision to {info.sha!r}, not a commit hash")
    files = {}
    for s in info.siblings or []:
        etag = (s.lfs.sha256 if s.lfs else None) or s.blob_id
        files[s.rfilename] = [s.size, etag]
    # the hub's dates: when the repository was made and when this revision was committed (circumstantial)
    dates = {"repo_created": _iso(getattr(info, "created_at", None)), "commit_date": _iso(getattr(info, "last_modified", None))}
    _save_manifest(repo_id, rev, info.sha, files, dates)
    return info.sha, files, dates


def _download_side(ref: str, repo_id: str, commit: str, name: str, size: int | None, endpoint: str,
                   net: NetStats) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cap = _side_cap(name)
    if cap is not None and size is not None and size > cap:
        raise HubReferenceError(ref, f"side file {name} is {size:,} bytes, beyond the {cap:,}-byte cap for it")
    cache = hf_cache_dir()
    cached = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=commit)
    if isinstance(cached, str):
        return Path(cached)
    if hf_offline():
        raise NotCachedError(ref, f"{name} is not in the hub cache at {cache} and HF_HUB_OFFLINE is set")
    try:
        path = Path(hf_hub_download(repo_id, name, revision=commit, cache_dir=cache, endpoint=endpoint))
    except Exception as e:
        raise _hub_error(ref, e, endpoint) from None
    net.add(path.stat().st_size, requests=2)  # HEAD and GET
    return path


def _locator(ref: str, repo_id: str, commit: str, name: str, endpoint: str):
    def locate() -> Location:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo_id, name, revision=commit, endpoint=endpoint)
        try:
            meta = get_hf_file_metadata(url, headers=None, endpoint=endpoint, retry_on_errors=True)
        except Exception as e:
            raise _hub_error(ref, e, endpoint) from None
        return Location(meta.location, _headers_for(meta.location, endpoint), _normal_etag(meta.etag))
    return locate


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _headers_for(url: str, endpoint: str) -> dict:
    """huggingface_hub's headers; the token only to the hub's own origin (a CDN address is signed)."""
    from huggingface_hub.utils import build_hf_headers

    same = _origin(url) == _origin(endpoint)
    return build_hf_headers() if same else build_hf_headers(token=False)


def resolve_hub(ref: str, repo_id: str, revision: str | None):
    from ..refs import Resolved, choose_weights, index_shards, local_weights_in_folder

    endpoint = hf_endpoint()
    commit, files, dates = _listing(ref, repo_id, revision, endpoint)
    top = sorted(n for n in files if "/" not in n)
    cache = hf_cache_dir()
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    hub = {"repo_id": repo_id, "revision": revision or "main", "commit": commit, **dates}
    kind, chosen = choose_weights(top, ref)

    # A snapshot that already holds every weight file is read from disk, as before.
    if snapshot.is_dir() and all((snapshot / n).is_file() for n in chosen) and kind != "index":
        weights, index, weight_map = local_weights_in_folder(snapshot, confine=repo_dir)
        return Resolved(ref, snapshot, weights, index, hub=hub, weight_map=weight_map, confine=repo_dir)

    net = NetStats()
    side = [n for n in top if _side_cap(n) is not None and n not in chosen] + ([chosen[0]] if kind == "index" else [])
    root = snapshot
    for name in side:
        path = _download_side(ref, repo_id, commit, name, files[name][0], endpoint, net)
        root = path.parent
    index = weight_map = None
    if kind == "index":
        index = root / chosen[0]
        shards, weight_map = index_shards(index)
        if all((root / s).is_file() for s in shards):
            weights = [root / s for s in shards]
            return Resolved(ref, root, weights, index, hub=hub, weight_map=weight_map, confine=repo_dir)
        missing = [s for s in shards if s not in files]
        if missing:
            raise HubReferenceError(ref, f"{chosen[0]} names shard {missing[0]}, which the repository does not hold")
        chosen = shards
    def remote_file(name: str, stats=None) -> RangeFile:
        size, etag = files[name]
        if not isinstance(size, int):
            raise RemoteError(ref, f"the hub's listing gives no size for {name}")
        key = "\0".join(("hub", endpoint, repo_id, commit, name, str(etag)))
        return RangeFile(f"hf://{repo_id}@{commit[:10]}/{name}", size, key, range_cache(), net, stats=stats,
                         locate=None if hf_offline() else _locator(ref, repo_id, commit, name, endpoint),
                         content_sha256=etag if _is_sha256(etag) else None)

    def sibling(name: str, stats) -> RangeFile | None:  # an ONNX model's external data, beside it in the repository
        folder = posixpath.dirname(chosen[0]) if chosen else ""
        full = posixpath.join(folder, name) if folder else name
        return remote_file(full, stats) if full in files else None

    weights = [remote_file(name) for name in chosen]
    return Resolved(ref, root, weights, index, hub=hub, weight_map=weight_map, confine=repo_dir, net=net,
                    siblings=sibling)


# -- URLs ------------------------------------------------------------------------------------------------------


def _http_get_small(url: str, cap: int, headers: dict, net: NetStats, missing_ok: bool = False) -> bytes | None:
    """A whole small file (an index, a config), retried like a range; None for a 404 when `missing_ok`."""
    import httpx2 as httpx
    from huggingface_hub.utils import get_session

    last = ""
    for attempt in range(HTTP_RETRIES + 1):
        try:
            with get_session().stream("GET", url, headers=headers, timeout=HTTP_TIMEOUT, follow_redirects=True) as r:
                if r.status_code == 404 and missing_ok:
                    net.add(0)
                    return None
                if r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code}"
                elif r.status_code != 200:
                    net.add(0)
                    raise _url_status_error(url, r.status_code)
                else:
                    body = bytearray()
                    for chunk in r.iter_bytes():
                        body += chunk
                        if len(body) > cap:
                            raise RemoteError(url, f"is larger than the {cap:,}-byte cap for it")
                    length = r.headers.get("Content-Length")
                    if length is None or not length.isdigit() or int(length) == len(body):
                        net.add(len(body))
                        return bytes(body)
                    last = f"short body: {len(body):,} of {length} bytes"
                    net.add(len(body))
        except (httpx.TransportError, httpx.StreamError) as e:
            if isinstance(e, httpx.ConnectError) and attempt >= 2:
                raise RemoteError(url, f"cannot connect to {_origin(url)} ({type(e).__name__}: {_first_line(e)})") from None
            last = f"{type(e).__name__}: {_first_line(e)}"
        if attempt < HTTP_RETRIES:
            net.retry()
            time.sleep(http_backoff() * 2 ** attempt)
    raise RemoteError(url, f"could not be fetched in {HTTP_RETRIES + 1} attempts (last: {last})")


def _url_status_error(url: str, status: int) -> ParentageError:
    if status == 404:
        return CheckpointNotFoundError(url, "HTTP 404: no such file on the server")
    if status in (401, 403):
        return HubReferenceError(url, f"HTTP {status}: access refused (a gated or private file needs HF_TOKEN)")
    return RemoteError(url, f"the server answered HTTP {status}")


def _head(url: str, endpoint: str, net: NetStats) -> tuple[int, str | None, str]:
    """(size, etag, final url) of a remote file, following redirects."""
    import httpx2 as httpx
    from huggingface_hub.utils import get_session

    headers = {**_headers_for(url, endpoint), "Accept-Encoding": "identity"}
    for attempt in range(HTTP_RETRIES + 1):
        try:
            r = get_session().head(url, headers=headers, timeout=HTTP_TIMEOUT, follow_redirects=True)
        except httpx.TransportError as e:
            if attempt >= 2:
                raise RemoteError(url, f"cannot reach {_origin(url)} ({type(e).__name__}: {_first_line(e)})") from None
        else:
            net.add(0)
            if r.status_code not in RETRY_STATUS or attempt == HTTP_RETRIES:
                break
        net.retry()
        time.sleep(http_backoff() * 2 ** attempt)
    if r.status_code != 200:
        raise _url_status_error(url, r.status_code)
    size = r.headers.get("X-Linked-Size") or r.headers.get("Content-Length")
    if size is None or not size.isdigit():
        raise RemoteError(url, "the server does not say how large the file is (no Content-Length)")
    etag = _normal_etag(r.headers.get("X-Linked-Etag") or r.headers.get("ETag")) or r.headers.get("Last-Modified")
    return int(size), etag, str(r.url)


def open_remote_file(ref: str, default_name: str) -> RangeFile:
    """One file read by range requests (through the range cache and the retries weights use): a URL, or
    `hf://datasets/org/name[@revision][/path]` (`default_name` when it names no file)."""
    endpoint = hf_endpoint()
    if hf_offline():
        raise NotCachedError(ref, "HF_HUB_OFFLINE is set; a remote pack is read online only (import it first)")
    if ref.startswith("hf://"):
        parts = ref[len("hf://"):].split("/")
        if len(parts) < 3 or parts[0] != "datasets" or not all(_SAFE_PART.match(p) for p in parts[1:3]):
            raise HubReferenceError(ref, "a pack on the hub is named hf://datasets/org/name[@revision][/file]")
        name, _, revision = parts[2].partition("@")
        path = "/".join(parts[3:]) or default_name
        if any(p in ("", ".", "..") for p in path.split("/")):
            raise HubReferenceError(ref, "the file inside the dataset is not a plain relative path")
        url = f"{endpoint}/datasets/{parts[1]}/{name}/resolve/{quote(revision or 'main', safe='')}/{quote(path)}"
    else:
        url = ref
    net = NetStats()
    size, etag, final = _head(url, endpoint, net)
    key = "\0".join(("file", url, str(etag), str(size)))
    loc = Location(final, _headers_for(final, endpoint), None)
    return RangeFile(ref, size, key, range_cache(), net, locate=lambda: loc)


_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?$")


def resolve_url(ref: str):
    from ..refs import Resolved, choose_weights, index_shards

    if hf_offline():
        raise NotCachedError(ref, "HF_HUB_OFFLINE is set; a URL is read online only (use a hub id for offline runs)")
    endpoint = hf_endpoint()
    net = NetStats()
    name = unquote(posixpath.basename(urlsplit(ref).path))
    if not name:
        raise CheckpointNotFoundError(ref, "the URL names no file (expected a .safetensors, .gguf or .onnx file, or a "
                                           "*.index.json shard index)")
    folder = cache_dir() / "urls" / hashlib.sha256(urljoin(ref, ".").encode()).hexdigest()[:32]
    folder.mkdir(parents=True, exist_ok=True)
    headers = _headers_for(ref, endpoint)
    for side in URL_SIDE_FILES:
        data = _http_get_small(urljoin(ref, side), JSON_MAX_BYTES, headers, net, missing_ok=True)
        if data is not None:
            _write_atomic(folder / side, data)
    index = weight_map = None
    if name.endswith(".index.json"):
        data = _http_get_small(ref, JSON_MAX_BYTES, headers, net)
        index = folder / name
        _write_atomic(index, data)
        shards, weight_map = index_shards(index)
        urls = [urljoin(ref, s) for s in shards]
    else:
        choose_weights([name], ref)  # refuses what is not a weights file by name
        urls = [ref]
    def remote_file(url: str, stats=None) -> RangeFile:
        size, etag, final = _head(url, endpoint, net)
        key = "\0".join(("url", url, str(etag), str(size)))
        loc = Location(final, _headers_for(final, endpoint), None)
        return RangeFile(url, size, key, range_cache(), net, stats=stats, locate=lambda loc=loc: loc)

    def sibling(name: str, stats) -> RangeFile:  # an ONNX model's external data, beside it on the server
        return remote_file(urljoin(ref, quote(name)), stats)

    weights = [remote_file(url) for url in urls]
    return Resolved(ref, folder, weights, index, weight_map=weight_map, net=net, url=ref, siblings=sibling)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
