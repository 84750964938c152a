"""`parentage tokenizer A [B ...]`: the JSON document and the terminal summary.

One tokenizer: efficiency and health. Two: their lineage first. Three or more: every pair's lineage, which
tokenizers are stitched from two of the others, and (with --efficiency) one table across all.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from .. import __version__
from ..report.words import value
from .efficiency import efficiency, load_texts
from .formats import Vocab, load_tokenizer
from .health import health
from .lineage import lineage


def info(ref: str, v: Vocab) -> dict:
    return {"ref": ref, "source": v.source, "format": v.format, "model": v.model, "style": v.style, "size": v.size,
            "ordinary_tokens": len(v.tokens), "special_tokens": len(v.special)}


def _stitched(refs: list[str], pairs: dict[tuple[int, int], dict]) -> list[dict]:
    """Tokenizers whose id space holds two others' copied cores in disjoint spans."""
    out = []
    for x in range(len(refs)):
        spans = []
        for p in range(len(refs)):
            doc = pairs.get((p, x))
            if p == x or doc is None or doc["relation"] != "derived":
                continue
            runs = doc["core"]["runs"]
            lo, hi = min(r[0] + r[2] for r in runs), max(r[1] + r[2] for r in runs)
            spans.append((lo, hi, p, doc["core"]["size"]))
        spans.sort()
        for (lo1, hi1, p1, n1), (lo2, hi2, p2, n2) in itertools.combinations(spans, 2):
            if hi1 < lo2 or hi2 < lo1:
                out.append({"tokenizer": refs[x], "parents": [refs[p1], refs[p2]], "spans": [[lo1, hi1], [lo2, hi2]],
                            "copied": [n1, n2]})
    return out


def tokenizer_report(refs: list[str], with_efficiency: bool = False, files: list[Path] = ()) -> dict:
    texts = load_texts(list(files))
    vocabs = [load_tokenizer(r) for r in refs]
    doc: dict = {"schema_version": 1, "tool": {"name": "parentage", "version": __version__},
                 "tokenizers": [info(r, v) for r, v in zip(refs, vocabs)]}
    if len(vocabs) == 2:
        doc = {**doc, **lineage(vocabs[0], vocabs[1])}
    elif len(vocabs) > 2:
        pairs = {(i, j): lineage(vocabs[i], vocabs[j]) for i, j in itertools.permutations(range(len(vocabs)), 2)}
        doc["pairs"] = [{"a": refs[i], "b": refs[j], **{k: pairs[i, j][k] for k in ("relation", "kind", "score", "notes")}}
                        for i, j in itertools.combinations(range(len(vocabs)), 2)]
        doc["stitched"] = _stitched(refs, pairs)
    else:
        doc["relation"] = doc["kind"] = doc["score"] = None
        doc["notes"] = []
    doc["health"] = [health(v) for v in vocabs]
    if with_efficiency or len(vocabs) == 1 or files:
        doc["efficiency"] = [{"ref": r, "samples": efficiency(v, texts=texts)} for r, v in zip(refs, vocabs)]
    return doc


def format_human(doc: dict) -> str:
    lines: list[str] = []
    toks = doc["tokenizers"]
    if len(toks) == 2:
        kind = f" ({doc['kind']})" if doc["kind"] else ""
        lines.append(f"{doc['relation'].upper()}{kind}")
        for label, t in zip("AB", toks):
            lines.append(f"  {label}: {t['ref']}  ({t['format']}, {t['model']}, {t['size']:,} ids, {t['special_tokens']} special)")
        lines += [f"  {n}" for n in doc["notes"]]
        s = doc["score"]
        lines.append(f"  preserved id gaps: {s['preserved']:,} of {s['pairs']:,} consecutive shared multi-byte tokens "
                     f"(coincidences expected: {s['null']['expected']}; log10 p {s['log10_p']})")
        lines.append(f"  shared tokens: {doc['shared_tokens']:,} ({100 * doc['overlap_a']:.0f}% of A, "
                     f"{100 * doc['overlap_b']:.0f}% of B), rank correlation {doc['rank_spearman']}: overlap and rank "
                     "correlation are not evidence (independent vocabularies share most short tokens)")
    elif len(toks) > 2:
        lines.append("lineage of every pair")
        for p in doc["pairs"]:
            kind = f" ({p['kind']})" if p["kind"] else ""
            lines.append(f"  {p['a']} ~ {p['b']}: {p['relation']}{kind}")
        for s in doc["stitched"]:
            lines.append(f"  {s['tokenizer']} is stitched from {s['parents'][0]} (ids {s['spans'][0][0]}-{s['spans'][0][1]}) "
                         f"and {s['parents'][1]} (ids {s['spans'][1][0]}-{s['spans'][1][1]})")
    else:
        t = toks[0]
        lines.append(f"{t['ref']}: {t['format']}, {t['model']} ({t['style']}), {t['size']:,} ids, "
                     f"{t['ordinary_tokens']:,} ordinary, {t['special_tokens']} special")
    if "efficiency" in doc:
        names = [r["sample"] for r in doc["efficiency"][0]["samples"]]
        lines += ["", "characters per token (* = a token or more per character: 0.33 is 3 tokens per character)",
                  "  " + "tokenizer".ljust(28) + "".join(n[:10].rjust(11) for n in names)]
        for e in doc["efficiency"]:
            cells = [f"{r['chars_per_token']:.2f}{'*' if r['about_one_token_per_char'] else ' '}" for r in e["samples"]]
            lines.append("  " + _short(e["ref"]).ljust(28) + "".join(c.rjust(11) for c in cells))
    lines += ["", "health"]
    for t, h in zip(toks, doc["health"]):
        if h["ok"]:
            lines.append(f"  {_short(t['ref'])}: no problems found")
            continue
        for name, f in h["findings"].items():
            if f.get("count"):
                ex = f.get("examples") or []
                lines.append(f"  {_short(t['ref'])}: {f['count']:,} {name.replace('_', ' ')}"
                             + (f" (e.g. {value(ex[:3])})" if ex else "") + (f" [{f['note']}]" if f.get("note") else ""))
    return "\n".join(lines)


def _short(ref: str) -> str:
    return ref if len(ref) <= 27 else "..." + ref[-24:]


__all__ = ["format_human", "tokenizer_report"]
