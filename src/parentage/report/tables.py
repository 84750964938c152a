"""Several pairs at once: the matrix `compare A B C ...` prints, and the CSV form of any compare."""

from __future__ import annotations

import csv
import io

from .words import shorten_path

MARK = {"related": "R", "unrelated": "U", "inconclusive": "?"}


def matrix_human(doc: dict) -> str:
    """A square table: R/U/? and the combined log10 p of each pair, models numbered in the order given."""
    refs, label, p = doc["models"], doc["matrix"]["label"], doc["matrix"]["log10_p"]
    n = len(refs)
    cell = lambda i, j: "-" if i == j else f"{MARK[label[i][j]]} {_p(p[i][j])}"  # noqa: E731
    width = max(9, *(len(cell(i, j)) for i in range(n) for j in range(n)))
    lines = ["      " + "".join(f"{f'[{j + 1}]':>{width + 2}}" for j in range(n))]
    lines += [f"  [{i + 1}] " + "".join(f"{cell(i, j):>{width + 2}}" for j in range(n)) for i in range(n)]
    lines += ["", "R related, U unrelated, ? inconclusive; the number is the combined log10 p", ""]
    lines += [f"  [{i + 1}] {shorten_path(r)}" for i, r in enumerate(refs)]
    related = [d for d in doc["pairs"] if d["verdict"]["label"] == "related"]
    if related:
        lines += ["", "related pairs"]
        for d in related:
            a, b = (refs.index(x["ref"]) + 1 for x in d["inputs"])
            notes = "; ".join(d["alignment"]["notes"][:3]) if d.get("alignment") else ""
            lines.append(f"  [{a}] ~ [{b}]  {_p(d['verdict']['log10_p'])}" + (f"  {notes}" if notes else ""))
    return "\n".join(lines)


def pairs_csv(docs: list[dict]) -> str:
    """One row per pair: a, b, label, log10_p, parent (A, B or empty), summary."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["a", "b", "label", "log10_p", "parent", "summary"])
    for d in docs:
        v = d["verdict"]
        w.writerow([d["inputs"][0]["ref"], d["inputs"][1]["ref"], v["label"],
                    "" if v["log10_p"] is None else v["log10_p"], d["direction"].get("parent") or "", v["summary"]])
    return out.getvalue().rstrip("\n")


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"
