"""Progress on stderr where people wait: shown on a terminal, never in a pipe or a log, never with --quiet.

One switch for the whole process (the CLI sets it from --quiet); each display asks `wanted()`.
"""

from __future__ import annotations

import sys
import time

_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def quiet() -> bool:
    return _QUIET


def wanted() -> bool:
    """Progress goes to stderr only when a person watches it: a terminal, and no --quiet."""
    return not _QUIET and sys.stderr.isatty()


def bar(total: int | None, desc: str, unit: str, **kw):
    """A tqdm bar on stderr when `wanted()`, else None (callers skip their updates)."""
    if not wanted():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, **kw)


def duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class StatusLine:
    """One line rewritten in place on a terminal (at most `every` seconds apart), or nothing elsewhere."""

    def __init__(self, every: float = 0.2):
        self.on, self.every, self.last, self.width = wanted(), every, 0.0, 0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self.on or (not force and now - self.last < self.every):
            return
        self.last = now
        pad = max(0, self.width - len(text))
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.on and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0
