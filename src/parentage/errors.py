"""Every error parentage raises on bad input.

One hierarchy, so that callers can catch `ParentageError` for "the input is wrong" and let anything else
surface as a bug. Each class is also the builtin a Python user would reach for (`FileNotFoundError`,
`ValueError`, `PermissionError`, `LookupError`), so `except FileNotFoundError` works as expected.

Every message names the file (or reference) first and then the problem, and where there is an obvious fix,
says it. The CLI prints `str(error)` as its one line on stderr.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(s: str) -> str:
    """A string that can be printed and written as UTF-8: lone surrogates (hostile JSON escapes, undecodable
    file names) become U+FFFD."""
    if not any("\ud800" <= c <= "\udfff" for c in s):
        return s
    return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def one_line(text: str) -> str:
    """A message fit for one line of a terminal: control characters (a pickled name may hold a newline) are
    escaped, and lone surrogates replaced."""
    return clean_text(_CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text))


class ParentageError(Exception):
    """Base class: bad input that we detected and explained."""

    def __init__(self, where: str | os.PathLike | None, problem: str):
        self.where = None if where is None else one_line(os.fspath(where))
        self.problem = one_line(str(problem))
        super().__init__(f"{self.where}: {self.problem}" if self.where else self.problem)


class CheckpointNotFoundError(ParentageError, FileNotFoundError):
    """The reference does not point at anything we can open."""


class NoWeightsError(CheckpointNotFoundError):
    """A folder exists but holds no weight file we know."""


class MissingShardError(CheckpointNotFoundError):
    """An index names a shard that is not on disk."""


class HubReferenceError(ParentageError, LookupError):
    """A hub id could not be resolved (unknown, or not cached while offline)."""


class FolderNotEmptyError(ParentageError, FileExistsError):
    """An output folder already holds something we must not overwrite."""


class FormatError(ParentageError, ValueError):
    """A file is malformed: truncated, inconsistent header, out-of-range offsets."""


class UnsupportedDtypeError(FormatError):
    """A tensor is stored in a dtype we cannot decode."""


class UnsupportedQuantizationError(FormatError):
    """Weights are quantised by a method (or a layout of one) that parentage does not decode."""


class UnsafePickleError(ParentageError, PermissionError):
    """A pickle asked for a global outside the allow-list; nothing was executed."""


class ArchitectureError(ParentageError, ValueError):
    """Tensor names or shapes do not fit the architecture they claim."""


class OutputPathError(ParentageError, IsADirectoryError):
    """An output path holds something other than a regular file (a link, FIFO, device or folder)."""


class LimitError(FormatError):
    """A small input asks for unbounded work (a cap in constants.py that no real checkpoint reaches)."""


class RemoteError(ParentageError, ConnectionError):
    """A remote file could not be fetched: host unreachable, retries spent, or the server broke the protocol
    (ignored a Range header, answered other bytes than asked, changed the file mid-run)."""


class NotCachedError(HubReferenceError):
    """Offline (HF_HUB_OFFLINE), a byte range or file the job needs is not in the local caches."""


class NotInFingerprintError(ParentageError, LookupError):
    """A test asked a stored fingerprint for rows it did not record (made by an older plan)."""


class IndexStoreError(ParentageError, OSError):
    """The fingerprint index cannot be used: not a parentage database, corrupt, from a newer version, or its
    server unreachable."""


class ServeError(ParentageError, OSError):
    """`parentage serve` cannot listen where asked (a server already answers there, or the path is taken)."""
