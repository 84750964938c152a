"""A hub on loopback: the endpoints parentage and huggingface_hub call, with faults on demand.

Two real HTTP servers on 127.0.0.1: the hub (model info with the file list, `resolve` URLs for every file) and a
"CDN" on another port, which `resolve` redirects large files to, as the real hub does; the token is therefore
never sent to the CDN, and huggingface_hub reads the file's metadata from the redirect itself (X-Repo-Commit,
X-Linked-Etag, X-Linked-Size). Errors carry the hub's X-Error-Code (RepoNotFound, RevisionNotFound,
EntryNotFound, GatedRepo). The CDN answers Range requests with 206 and Content-Range, and 416 past the end.

Faults (`Faults`) hit the CDN: a share of responses dropped mid-body, bursts of 503 with Retry-After, and a slow
trickle. A link (`Link`) stands between the client and both servers: a round-trip delay before every answer and
handshake round trips on every new connection (TCP, then TLS 1.3, as a real hub is reached), and one bandwidth
shared by every response body, so concurrency buys back latency but never bandwidth. Counters say what was
served, so a test or benchmark can check the bytes that crossed the wire.

A file is anything with `size` and `read(offset, n)`: a file on disk (`DiskFile`), or bytes generated on the fly
(`zoo.procedural`), so checkpoints of 100B+ parameters exist without disk.

    with HubEmulator() as hub:
        hub.add_folder("acme/tiny", "/path/to/model")
        os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

LFS_PATTERNS = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".onnx.data",
                ".pack")  # the hub's default .gitattributes, and a pack (binary: uploaded with LFS)
LFS_MIN_BYTES = 10 << 20  # the hub stores larger files in LFS whatever their name
CHUNK = 1 << 20


class File(Protocol):
    size: int

    def read(self, offset: int, n: int) -> bytes: ...


@dataclass
class DiskFile:
    path: Path

    def __post_init__(self) -> None:
        self.size = os.path.getsize(self.path)

    def read(self, offset: int, n: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)


@dataclass
class BytesFile:
    data: bytes

    def __post_init__(self) -> None:
        self.size = len(self.data)
        self.etag = hashlib.sha256(self.data).hexdigest()

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset: offset + n]


@dataclass
class Entry:
    file: File
    etag: str  # sha256-like for LFS files, a git blob id for the others
    lfs: bool


@dataclass
class Repo:
    commits: dict[str, dict[str, Entry]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    created: str | None = None  # the repository's creation date (ISO 8601, as the hub API writes it)
    dates: dict[str, str] = field(default_factory=dict)  # commit -> its date


@dataclass
class Faults:
    drop: float = 0.0  # share of CDN responses cut off mid-body
    burst: float = 0.0  # chance that a CDN request starts a burst of 503s
    burst_len: int = 3
    retry_after: str | None = "0"
    trickle_bps: float | None = None  # bytes per second, when set
    ignore_range: bool = False  # answer 200 with the whole file, as a server without Range support does
    shift_range: int = 0  # answer other bytes than asked (a broken proxy), with the Content-Range to match
    seed: int = 0


@dataclass
class Link:
    """The network between the client and the hub: what loopback lacks."""

    rtt: float = 0.0  # seconds per round trip: one before each answer, HANDSHAKE_TRIPS more per new connection
    bandwidth: float | None = None  # bytes per second, shared by all response bodies; None: loopback speed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _free_at: float = 0.0  # when the shared pipe has sent everything queued so far

    def delay(self, trips: float = 1) -> None:
        if self.rtt:
            time.sleep(self.rtt * trips)

    def send(self, nbytes: int) -> None:
        """Wait until `nbytes` more have crossed the pipe, queued behind every other response's bytes."""
        if not self.bandwidth:
            return
        with self._lock:
            start = max(time.monotonic(), self._free_at)
            self._free_at = start + nbytes / self.bandwidth
            done = self._free_at
        time.sleep(max(0.0, done - time.monotonic()))


HANDSHAKE_TRIPS = 2  # a TCP handshake, then TLS 1.3's one round trip


@dataclass
class Counters:
    cdn_bytes: int = 0  # body bytes of weight files served
    hub_bytes: int = 0  # body bytes of everything else (API JSON, small files)
    requests: int = 0
    ranges: int = 0
    dropped: int = 0
    errors_503: int = 0
    connections: int = 0


def _etag_of(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class HubEmulator:
    def __init__(self, faults: Faults | None = None, tokens: set[str] | None = None, link: Link | None = None):
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, File] = {}
        self.faults = faults or Faults()
        self.link = link or Link()
        self.tokens = tokens or set()
        self.counters = Counters()
        self.log: list[dict] = []  # every request, as the server saw it
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._burst_left = 0
        self.hub = _Server(("127.0.0.1", 0), _handler(self, cdn=False))
        self.cdn = _Server(("127.0.0.1", 0), _handler(self, cdn=True))
        for server in (self.hub, self.cdn):
            server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"
        self._threads = []

    # -- content --------------------------------------------------------------------------------------------

    def add_files(self, repo_id: str, files: dict[str, File], revision: str = "main", gated: bool = False,
                  date: str | None = None) -> str:
        """A commit of `files` at `revision` of `repo_id` (made at `date`, ISO 8601, if given); returns the
        commit hash."""
        repo = self.repos.setdefault(repo_id, Repo())
        repo.gated = repo.gated or gated
        entries = {}
        for name, f in files.items():
            lfs = name.endswith(LFS_PATTERNS) or f.size >= LFS_MIN_BYTES
            tag = getattr(f, "etag", None) or _etag_of(repo_id, name, str(f.size))
            etag = tag if lfs else tag[:40]
            entries[name] = Entry(f, etag, lfs)
            self.blobs[etag] = f
        commit = hashlib.sha1(json.dumps(sorted((n, e.etag) for n, e in entries.items())).encode()
                              + repo_id.encode() + str(len(repo.commits)).encode()).hexdigest()
        repo.commits[commit] = entries
        repo.refs[revision] = commit
        if date is not None:
            repo.dates[commit] = date
            repo.created = repo.created or date
        return commit

    def add_folder(self, repo_id: str, folder: str | Path, revision: str = "main", gated: bool = False,
                   date: str | None = None) -> str:
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): DiskFile(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        for name, f in files.items():
            st = f.path.stat()
            f.etag = _etag_of(str(f.path), str(st.st_size), str(st.st_mtime_ns))
        return self.add_files(repo_id, files, revision, gated, date)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> "HubEmulator":
        for server in (self.hub, self.cdn):
            t = threading.Thread(target=server.serve_forever, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "HubEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- fault decisions ------------------------------------------------------------------------------------

    def _fault(self) -> str | None:
        with self._lock:
            f = self.faults
            if self._burst_left > 0:
                self._burst_left -= 1
                return "503"
            if f.burst and self._rng.random() < f.burst:
                self._burst_left = f.burst_len - 1
                return "503"
            if f.drop and self._rng.random() < f.drop:
                return "drop"
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a connection the fault injection (or a client) cut: not worth a traceback on stderr


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _handler(hub: HubEmulator, cdn: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real hub and CDN speak
        disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stall

        def log_message(self, *args) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with hub._lock:
                hub.counters.connections += 1
            hub.link.delay(HANDSHAKE_TRIPS)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        # -- plumbing ---------------------------------------------------------------------------------------

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False,
                  counter: str = "hub_bytes") -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head and body:
                hub.link.send(len(body))
                self.wfile.write(body)
                with hub._lock:
                    setattr(hub.counters, counter, getattr(hub.counters, counter) + len(body))

        def _error(self, status: int, code: str | None, message: str, head: bool) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers, head)

        def _token_ok(self) -> bool:
            auth = self.headers.get("Authorization", "")
            return auth.startswith("Bearer ") and auth[7:] in hub.tokens

        def _serve(self, head: bool) -> None:
            with hub._lock:
                hub.counters.requests += 1
                # what a server operator sees of each request (the privacy tests read it)
                hub.log.append({"method": "HEAD" if head else "GET", "path": self.path,
                                "range": self.headers.get("Range"), "headers": dict(self.headers)})
            path = unquote(urlsplit(self.path).path)
            if not path.startswith("/_emulator/"):
                hub.link.delay()
            try:
                if cdn:
                    return self._cdn(path, head)
                if path == "/_emulator/counters":  # for benchmarks running the emulator in another process
                    return self._send(200, json.dumps(hub.counters.__dict__).encode(), {}, head)
                m = re.match(r"^/api/models/([^/]+/[^/]+?)(?:/revision/(.+))?$", path)
                if m:
                    return self._model_info(m.group(1), m.group(2), head)
                m = re.match(r"^/((?:datasets/)?[^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    return self._resolve(m.group(1), unquote(m.group(2)), m.group(3), head)
                self._error(404, None, "Not Found", head)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _repo_commit(self, repo_id: str, revision: str, head: bool):
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404 if self._token_ok() else 401, "RepoNotFound", "Repository not found", head)
                return None, None
            commit = revision if revision in repo.commits else repo.refs.get(revision)
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                return None, None
            return repo, commit

        def _model_info(self, repo_id: str, revision: str | None, head: bool) -> None:
            repo, commit = self._repo_commit(repo_id, revision or "main", head)
            if repo is None:
                return
            siblings = []
            for name, e in sorted(repo.commits[commit].items()):
                s = {"rfilename": name, "size": e.file.size, "blobId": e.etag[:40]}
                if e.lfs:
                    s["lfs"] = {"sha256": e.etag, "size": e.file.size, "pointerSize": 134}
                siblings.append(s)
            doc = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                   "gated": "manual" if repo.gated else False, "siblings": siblings}
            if repo.created:
                doc["createdAt"] = repo.created
            if commit in repo.dates:
                doc["lastModified"] = repo.dates[commit]
            self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"}, head)

        def _resolve(self, repo_id: str, revision: str, name: str, head: bool) -> None:
            repo, commit = self._repo_commit(repo_id, revision, head)
            if repo is None:
                return
            if repo.gated and not self._token_ok():
                return self._error(401, "GatedRepo", "Access to this repository is restricted", head)
            entry = repo.commits[commit].get(name)
            if entry is None:
                return self._error(404, "EntryNotFound", f"{name} does not exist at this revision", head)
            meta = {"X-Repo-Commit": commit, "ETag": f'"{entry.etag}"'}
            if entry.lfs:
                meta |= {"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.file.size),
                         "Location": f"{hub.cdn_url}/blobs/{entry.etag}?name={quote(name)}"}
                return self._send(302, b"", meta, head=True)
            self._send(200, entry.file.read(0, entry.file.size), meta, head)

        def _cdn(self, path: str, head: bool) -> None:
            m = re.match(r"^/blobs/([0-9a-f]+)$", path)
            f = hub.blobs.get(m.group(1)) if m else None
            if f is None:
                return self._error(404, None, "NoSuchKey", head)
            fault = None if head else hub._fault()
            if fault == "503":
                with hub._lock:
                    hub.counters.errors_503 += 1
                headers = {"Retry-After": hub.faults.retry_after} if hub.faults.retry_after is not None else {}
                return self._send(503, b"Slow Down", headers, head)
            etag = {"ETag": f'"{m.group(1)}"', "Accept-Ranges": "bytes"}
            r = None if hub.faults.ignore_range else self.headers.get("Range")
            if r is None:
                lo, hi, status = 0, f.size, 200
            else:
                rm = _RANGE.match(r.strip())
                if rm is None or (not rm.group(1) and not rm.group(2)):
                    return self._send(416, b"", {"Content-Range": f"bytes */{f.size}"}, head)
                if rm.group(1):
                    lo = int(rm.group(1))
                    hi = min(f.size, int(rm.group(2)) + 1) if rm.group(2) else f.size
                else:
                    lo, hi = max(0, f.size - int(rm.group(2))), f.size
                if lo >= f.size or hi <= lo:
                    return self._send(416, b"", {"Content-Range": f"bytes */{f.size}"}, head)
                status = 206
                lo, hi = min(lo + hub.faults.shift_range, f.size - 1), min(hi + hub.faults.shift_range, f.size)
                etag["Content-Range"] = f"bytes {lo}-{hi - 1}/{f.size}"
            self.send_response(status)
            for k, v in etag.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(hi - lo))
            self.end_headers()
            if head:
                return
            with hub._lock:
                hub.counters.ranges += status == 206
            cut = lo + (hi - lo) // 2 if fault == "drop" else None
            pos = lo
            while pos < hi:
                if cut is not None and pos >= cut:
                    with hub._lock:
                        hub.counters.dropped += 1
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-body: the client sees the connection end early
                    return
                n = min(CHUNK, hi - pos, (cut - pos) if cut is not None else CHUNK)
                if hub.faults.trickle_bps:
                    n = min(n, max(1, int(hub.faults.trickle_bps / 20)))
                    time.sleep(n / hub.faults.trickle_bps)
                data = f.read(pos, n)
                hub.link.send(len(data))
                self.wfile.write(data)
                with hub._lock:
                    hub.counters.cdn_bytes += len(data)
                pos += n

    return Handler
