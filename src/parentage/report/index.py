"""Terminal text for the index commands (identify, verify, graph)."""

from __future__ import annotations


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def identify_human(doc: dict) -> str:
    best = doc["best"]
    lines = [f"{doc['query']}: " + (f"descends from {best}" if best else "none: no indexed model is a significant ancestor"),
             f"  {doc['n_candidates']} candidates; {doc['correction']}"]
    for r in doc["candidates"]:
        rel = f", {r['relation']}" if r.get("relation") else ""
        close = f", closeness {r['closeness']:.3f}" if r.get("closeness") is not None else ""
        lines.append(f"  {r['label']:<12} log10 p {_p(r['log10_p']):>7}  {r['ref']}{rel}{close}")
        if r.get("basis"):
            lines.append(f"{'':>16}{r['basis']}")
    notes = (doc.get("best_alignment") or {}).get("notes") or []
    if notes:
        lines.append("  how the best candidate became the query:")
        lines += [f"    - {n}" for n in notes]
    lines += [f"  note: {n}" for n in doc.get("notes", [])]
    c = doc["cost"]
    lines.append(f"  read {c['bytes_read']:,} of {c['bytes_total']:,} bytes of the query in {c['seconds']:.1f} s")
    return "\n".join(lines)
