"""Every error parentage raises on bad input.

One hierarchy, so that callers can catch `ParentageError` for "the input is wrong" and let anything else
surface as a bug. Each class is also the builtin a Python user would reach for (`FileNotFoundError`,
`ValueError`, `PermissionError`, `LookupError`), so `except FileNotFoundError` works as expected.

Every message names the file (or reference) first and then the problem, and where there is an obvious fix,
says it. The CLI prints `str(error)` as its one line on stderr.
"""

from __future__ import annotations

import os


class ParentageError(Exception):
    """Base class: bad input that we detected and explained."""

    def __init__(self, where: str | os.PathLike | None, problem: str):
        self.where = None if where is None else os.fspath(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}" if self.where else problem)


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


class UnsafePickleError(ParentageError, PermissionError):
    """A pickle asked for a global outside the allow-list; nothing was executed."""


class ArchitectureError(ParentageError, ValueError):
    """Tensor names or shapes do not fit the architecture they claim."""
