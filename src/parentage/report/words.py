"""How numbers and lists read in every output: one place, so the terminal, JSON notes and HTML agree.

No Python repr ever reaches a reader: lists are joined, None is "none", p-values are powers of ten.
"""

from __future__ import annotations

import math

SUPERSCRIPT = str.maketrans("-0123456789.", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹·")


def spans(xs: list[int]) -> list[tuple[int, int]]:
    """Sorted integers as maximal runs: [0, 1, 2, 5, 7, 8] -> [(0, 2), (5, 5), (7, 8)]."""
    out: list[tuple[int, int]] = []
    for x in sorted(set(xs)):
        if out and x == out[-1][1] + 1:
            out[-1] = (out[-1][0], x)
        else:
            out.append((x, x))
    return out


def join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def layers(xs: list[int], noun: str = "layer") -> str:
    """'layer 3', 'layers 3 and 5', 'layers 0-14 and 20'."""
    runs = spans(xs)
    if not runs:
        return f"no {noun}s"
    plural = len(runs) > 1 or runs[0][0] != runs[0][1]
    parts = []
    for lo, hi in runs:  # a run of two reads better as "3 and 4"
        parts += [str(lo)] if lo == hi else [str(lo), str(hi)] if hi == lo + 1 else [f"{lo}\u2013{hi}"]
    text = join(parts)
    return f"{noun}{'s' if plural else ''} {text}"


def budget(n_bytes: float) -> str:
    """A byte count as `--budget` reads it back (MB = 2^20 bytes), rounded up so it stays enough: '131MB'."""
    mb = math.ceil(n_bytes / (1 << 20))
    return f"{mb / 1024:.1f}GB".replace(".0GB", "GB") if mb >= 10 * 1024 else f"{mb}MB"


def format_bytes(n: float) -> str:
    """'746 KB', '41 MB', '1.4 GB' (powers of 1024, as --budget reads them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if n >= 10 or unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} TB"


def value(x) -> str:
    """A config or metadata value as a reader expects it: lists joined, None as 'none', floats trimmed."""
    if x is None:
        return "none"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(value(v) for v in x) or "none"
    if isinstance(x, dict):
        return "; ".join(f"{k} {value(v)}" for k, v in x.items()) or "none"
    return str(x)


def shape_value(x, field: str) -> str:
    """An architecture number of `ArchSummary`: a dense model's missing expert count reads 'none (dense)'."""
    return "none (dense)" if x is None and field == "n_experts" else value(x)


def p_value(log10_p: float | None) -> str:
    """log10 p -> '10⁻⁸⁸', rounded towards 1 so it stays a bound (or 'p = 0.03' near 1)."""
    if log10_p is None or not math.isfinite(log10_p):
        return "n/a"
    if log10_p > -2:
        return f"p = {10 ** log10_p:.2g}"
    return "10" + str(int(math.ceil(log10_p - 1e-9))).translate(SUPERSCRIPT)


def shorten_path(path: str, limit: int = 60) -> str:
    """Long paths cut from the left, where the shared prefix is: '…/models/p0-insert'."""
    return path if len(path) <= limit else "\u2026" + path[-(limit - 1):]
