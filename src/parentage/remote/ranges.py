"""A remote weights file read by HTTP Range requests, with the verbs of the local mmap reader.

`RangeFile.read(offset, n)` returns the bytes as a uint8 array, as `readers.base.MappedFile.read` does, so the
format readers cannot tell a remote file from a local one. Underneath: the range cache first (cache.py), then
the network for what is missing, with nearby gaps coalesced into one request, a bounded number of requests in
flight, keep-alive (huggingface_hub's shared HTTP session), and retries with backoff on 429 and 5xx answers,
dropped connections and short bodies, honouring Retry-After. Every answer is checked: a 206 must carry a
Content-Range naming exactly the bytes asked for and the file size we were told, and the same ETag; a server
that ignores Range is refused rather than let us stream a 40 GB shard.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..constants import (COALESCE_GAP, HTTP_MAX_WAIT, HTTP_PARALLEL, HTTP_RETRIES, HTTP_TIMEOUT, SLOW_LINK_PARALLEL,
                         SLOW_LINK_SECONDS, http_backoff)
from ..errors import FormatError, NotCachedError, RemoteError
from .cache import RangeCache

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass
class NetStats:
    """What one checkpoint cost the network: reported in the JSON `cost` beside bytes read and held."""

    bytes_transferred: int = 0
    n_requests: int = 0
    n_retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, nbytes: int, requests: int = 1) -> None:
        with self._lock:
            self.bytes_transferred += nbytes
            self.n_requests += requests
            _progress_add(nbytes)

    def retry(self) -> None:
        with self._lock:
            self.n_retries += 1


@dataclass
class Location:
    """Where a file's bytes are asked for: the URL after the hub's redirect (a CDN path), with the headers that
    may go there (the token only to the hub's own origin) and the ETag that pins the contents."""

    url: str
    headers: dict
    etag: str | None


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """The range requests' workers: more of them once the link has shown itself slow (`slow_link`)."""
    n = SLOW_LINK_PARALLEL if slow_link() else HTTP_PARALLEL
    with _POOL_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="parentage-range")
        return _POOLS[n]


# -- the link, as the answers so far show it -----------------------------------------------------------------

_WAIT = {"seconds": 0.0, "n": 0}  # running mean of the wait for an answer's first byte (headers)


def _waited(seconds: float) -> None:
    with _POOL_LOCK:
        _WAIT["n"] = min(_WAIT["n"] + 1, 64)  # a mean over about the last 64 answers
        _WAIT["seconds"] += (seconds - _WAIT["seconds"]) / _WAIT["n"]


def slow_link() -> bool:
    """Whether answers take SLOW_LINK_SECONDS or more to start: then more requests go in flight at once."""
    return _WAIT["n"] >= 4 and _WAIT["seconds"] >= SLOW_LINK_SECONDS


# -- progress on stderr, in bytes fetched --------------------------------------------------------------------

_BAR = None


def show_progress(on: bool) -> None:
    """A byte counter on stderr while ranges are fetched (the CLI turns it on for a terminal)."""
    global _BAR
    if on and _BAR is None:
        from .. import progress

        _BAR = progress.bar(None, "fetched", "B", unit_scale=True, delay=0.5)
    elif not on and _BAR is not None:
        _BAR.close()
        _BAR = None


def _progress_add(nbytes: int) -> None:
    if _BAR is not None and nbytes:
        _BAR.update(nbytes)


# -- one remote file ------------------------------------------------------------------------------------------


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # rare (a Retry-After given as a date), and 20 ms of start-up

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """'bytes 10-19/100' -> (10, 20, 100); None when absent or malformed."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/")
        first, last = span.split("-")
        return int(first), int(last) + 1, None if total == "*" else int(total)
    except ValueError:
        return None


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None):
        self.why, self.wait = why, wait


class RangeFile:
    """One remote file: `size`, `read(offset, n)`, `close()`, like `MappedFile`; `path` names it in errors."""

    def __init__(self, name: str, size: int, key: str, cache: RangeCache, net: NetStats, stats=None,
                 locate: Callable[[], Location] | None = None, offline_hint: str = "",
                 content_sha256: str | None = None):
        from ..readers.base import ReadStats

        self.path, self.size, self.key = name, size, key
        self.cache, self.net = cache, net
        self.stats = stats if stats is not None else ReadStats()
        self._locate, self._location = locate, None
        self._located = threading.Lock()
        self._flight = threading.Lock()
        self._inflight: dict[tuple[int, int], threading.Event] = {}  # spans being fetched now
        self._seen_etag: str | None = None
        self.offline_hint = offline_hint
        self.content_sha256 = content_sha256  # as the hub lists it (LFS), None when unknown

    def __repr__(self) -> str:
        return f"RangeFile({self.path!r}, {self.size} bytes)"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise FormatError(self.path, f"read of {nbytes} bytes at offset {offset} runs past the end of the file "
                                         f"({self.size} bytes)")
        self.stats.add(nbytes)
        out = np.empty(nbytes, dtype=np.uint8)
        gaps = self._fill_from_cache(out, offset, offset + nbytes)  # a piece deleted under us is a gap
        if gaps:
            self._fetch_gaps(out, offset, gaps)
        return out

    def read_strided(self, offset: int, seg: int, stride: int, count: int) -> np.ndarray:
        """(count, seg) bytes: `count` runs of `seg` bytes, `stride` apart (`MappedFile.read_strided`). Runs closer
        than COALESCE_GAP are fetched in one request, as any nearby ranges are; only the runs count as read."""
        from ..readers.base import check_strided

        check_strided(self.path, self.size, offset, seg, stride, count)
        self.stats.add(seg * count)
        out = np.empty((count, seg), dtype=np.uint8)
        if seg == 0 or count == 0:
            return out
        if stride - seg <= COALESCE_GAP:  # one span: fetched as one request, then cut into runs
            span = np.empty(stride * (count - 1) + seg, dtype=np.uint8)
            gaps = self._fill_from_cache(span, offset, offset + span.size)
            if gaps:
                self._fetch_gaps(span, offset, gaps)
            out[:] = np.lib.stride_tricks.as_strided(span, shape=(count, seg), strides=(stride, 1))
            return out
        # far apart: each run its own request, all of them in flight together
        gaps = [g for k in range(count) for g in self._fill_from_cache(out[k], offset + k * stride,
                                                                        offset + k * stride + seg)]
        if not gaps:
            return out
        requests = _merge(gaps, COALESCE_GAP)
        flat = out.reshape(-1)
        for (a, b), data in zip(requests, self._fetch_all(requests)):
            for k in range(max(0, (a - offset - seg) // stride), min(count, (b - offset) // stride + 1)):
                lo, hi = max(a, offset + k * stride), min(b, offset + k * stride + seg)
                if hi > lo:
                    flat[k * seg + lo - offset - k * stride: k * seg + hi - offset - k * stride] = \
                        np.frombuffer(data, dtype=np.uint8)[lo - a: hi - a]
        return out

    def close(self) -> None:
        pass

    # -- cache --------------------------------------------------------------------------------------------------

    def _fill_from_cache(self, out: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
        """Copy cached bytes of [lo, hi) into `out`; return the gaps, in order."""
        gaps, cursor = [], lo
        for start, end in sorted(self.cache.pieces(self.key)):
            if end <= cursor or start >= hi:
                continue
            if start > cursor:
                gaps.append((cursor, min(start, hi)))
                cursor = min(start, hi)
            take_hi = min(end, hi)
            if take_hi <= cursor:
                continue
            data = self.cache.read(self.key, (start, end), cursor, take_hi)
            if data is None:
                continue  # gone: left as a gap below
            out[cursor - lo: take_hi - lo] = np.frombuffer(data, dtype=np.uint8)
            cursor = take_hi
            if cursor >= hi:
                break
        if cursor < hi:
            gaps.append((cursor, hi))
        return _merge(gaps, 0)

    def _uncached(self, lo: int, hi: int) -> bool:
        """Whether some byte of [lo, hi) is in no cached piece (a piece may still go before it is read)."""
        cursor = lo
        for start, end in sorted(self.cache.pieces(self.key)):
            if start > cursor:
                break
            cursor = max(cursor, end)
            if cursor >= hi:
                return False
        return cursor < hi

    # -- network ------------------------------------------------------------------------------------------------

    def _fetch_gaps(self, out: np.ndarray, lo: int, gaps: list[tuple[int, int]]) -> None:
        requests = _merge(gaps, COALESCE_GAP)
        for (a, b), data in zip(requests, self._fetch_all(requests)):
            s, e = max(a, lo), min(b, lo + len(out))
            out[s - lo: e - lo] = np.frombuffer(data, dtype=np.uint8)[s - a: e - a]

    def _fetch_all(self, requests: list[tuple[int, int]]) -> list[bytes]:
        """Each span's bytes, fetched (concurrently) and cached; a span overlapping one another thread is already
        fetching is taken from the cache once that fetch ends (single flight: the blocks of a strided tensor,
        read at once, each cover the whole tensor and would otherwise all fetch it)."""
        if self._locate is None:
            a, b = requests[0]
            raise NotCachedError(self.path, f"bytes {a:,}-{b - 1:,} are not in the range cache and HF_HUB_OFFLINE is "
                                            f"set{self.offline_hint}; run once online to fetch them")
        mine, waits = [], []
        with self._flight:  # what is neither cached nor being fetched by now is ours to fetch
            for r in requests:
                busy = next((ev for span, ev in self._inflight.items() if span[0] < r[1] and r[0] < span[1]), None)
                if busy is not None or not self._uncached(*r):
                    waits.append((r, busy))
                else:
                    self._inflight[r] = threading.Event()
                    mine.append(r)
        results: dict[tuple[int, int], bytes] = {}
        try:
            fetched = [self._fetch(*mine[0])] if len(mine) == 1 else list(pool().map(lambda r: self._fetch(*r), mine))
            for r, data in zip(mine, fetched):
                self.cache.store(self.key, r[0], data)
                results[r] = data
        finally:
            with self._flight:
                for r in mine:
                    self._inflight.pop(r).set()
        for (a, b), busy in waits:
            if busy is not None:
                busy.wait()
            buf = np.empty(b - a, dtype=np.uint8)
            missing = self._fill_from_cache(buf, a, b)
            if missing:  # the other fetch failed, or its bytes were trimmed since: fetch what is missing here
                for (x, y), data in zip(missing, self._fetch_all(missing)):
                    buf[x - a: y - a] = np.frombuffer(data, dtype=np.uint8)
            results[(a, b)] = buf.tobytes()
        return [results[r] for r in requests]

    def location(self, refresh: bool = False) -> Location:
        with self._located:
            if self._location is None or refresh:
                self._location = self._locate()
            return self._location

    def _fetch(self, a: int, b: int) -> bytes:
        """Bytes [a, b) from the server, retried on what a retry can mend."""
        import httpx2 as httpx  # huggingface_hub's HTTP client
        from huggingface_hub.errors import OfflineModeIsEnabled
        from huggingface_hub.utils import get_session

        refreshed, last = False, ""
        for attempt in range(HTTP_RETRIES + 1):
            loc = self.location()
            try:
                return self._get(get_session(), loc, a, b)
            except _Retry as r:
                last, wait = r.why, r.wait
            except (httpx.TransportError, httpx.StreamError) as e:  # dropped, reset, timed out, refused
                if isinstance(e, httpx.ConnectError) and attempt >= 2:
                    raise RemoteError(self.path, f"cannot connect to {_origin(loc.url)} "
                                                 f"({type(e).__name__}: {_first_line(e)})") from None
                last, wait = f"{type(e).__name__}: {_first_line(e)}", None
            except OfflineModeIsEnabled:
                raise NotCachedError(self.path, f"bytes {a:,}-{b - 1:,} are not in the range cache and "
                                                "huggingface_hub is in offline mode (HF_HUB_OFFLINE)") from None
            except RemoteError as e:
                if e.problem.startswith(("HTTP 401", "HTTP 403")) and not refreshed and self._locate is not None:
                    refreshed = True  # a signed CDN address that expired: ask the hub for a fresh one
                    self.location(refresh=True)
                    continue
                raise
            if attempt == HTTP_RETRIES:
                break
            self.net.retry()
            time.sleep(min(HTTP_MAX_WAIT, wait if wait is not None else http_backoff() * 2 ** attempt))
        raise RemoteError(self.path, f"bytes {a:,}-{b - 1:,} could not be fetched in {HTTP_RETRIES + 1} attempts "
                                     f"(last: {last})")

    def _get(self, session, loc: Location, a: int, b: int) -> bytes:
        headers = {**loc.headers, "Range": f"bytes={a}-{b - 1}", "Accept-Encoding": "identity"}
        sent = time.perf_counter()
        with session.stream("GET", loc.url, headers=headers, timeout=HTTP_TIMEOUT, follow_redirects=True) as r:
            _waited(time.perf_counter() - sent)
            status = r.status_code
            if status in RETRY_STATUS:
                self.net.add(0)
                raise _Retry(f"HTTP {status}", _retry_after(r.headers))
            if status == 416:
                self.net.add(0)
                raise RemoteError(self.path, f"the server says bytes {a:,}-{b - 1:,} lie past the end of the file "
                                             f"(listed as {self.size:,} bytes; changed since it was listed?)")
            if status == 200 and not (a == 0 and b == self.size):
                self.net.add(0)
                raise RemoteError(self.path, "the server ignored the Range header and would send the whole file; "
                                             "parentage reads remote weights only by range requests")
            if status not in (200, 206):
                self.net.add(0)
                raise RemoteError(self.path, f"HTTP {status} for bytes {a:,}-{b - 1:,} of {_origin(loc.url)}")
            if status == 206:
                got = _content_range(r.headers.get("Content-Range"))
                if got is None or got[:2] != (a, b) or (got[2] is not None and got[2] != self.size):
                    self.net.add(0)
                    raise RemoteError(self.path, f"asked for bytes {a}-{b - 1} of {self.size}, the server answered "
                                                 f"Content-Range {r.headers.get('Content-Range')!r}")
            # The storage's ETag need not be the hub's (an S3 multipart tag is not the LFS sha256), so ranges are
            # held to the first ETag the storage itself gave.
            etag = _normal_etag(r.headers.get("ETag"))
            if etag and self._seen_etag is None:
                self._seen_etag = etag
            if etag and etag != self._seen_etag:
                self.net.add(0)
                raise RemoteError(self.path, f"the file changed on the server during the run (ETag {etag} where it "
                                             f"was {self._seen_etag}); run again")
            chunks, got_bytes = [], 0
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                got_bytes += len(chunk)
                _progress_add(0)
                if got_bytes > b - a:
                    break
        data = b"".join(chunks)
        self.net.add(len(data))
        if len(data) < b - a:
            raise _Retry(f"short body: {len(data):,} of {b - a:,} bytes")
        return data[: b - a]


def _normal_etag(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"')


def _merge(spans: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Sorted spans joined where they overlap or lie closer than `gap` bytes."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
