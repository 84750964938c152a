"""`compare` for a terminal: the verdict, the evidence table, what changed (alignment, ties, components), cost."""

from __future__ import annotations

from ..inspection import format_bytes
from .words import p_value, shorten_path


def format_human(doc: dict) -> str:
    v = doc["verdict"]
    p = "n/a" if v["log10_p"] is None else f"{v['log10_p']:.1f}"
    a, b = doc["inputs"]
    same = doc.get("same_checkpoint") or a["ref"] == b["ref"]
    lines = [f"{v['label'].upper()}  (combined log10 p = {p}, {_bound(v['log10_p'])})", f"  {v['summary']}",
             f"  A: {shorten_path(a['ref'])}  ({a['arch']}, {a['n_layers']} layers, hidden {a['hidden_size']})",
             f"  B: {shorten_path(b['ref'])}  ({b['arch']}, {b['n_layers']} layers, hidden {b['hidden_size']})"
             + ("  [the same checkpoint as A]" if same else "")]
    d = doc["direction"]
    if d["parent"]:
        lines.append(f"  parent: {d['parent']} ({d['basis']})")
    lines += ["", "evidence                          log10 p  counted  summary"]
    for e in doc["evidence"]:
        lp = "    -" if e["log10_p"] is None else f"{e['log10_p']:8.1f}"
        lines.append(f"  {e['name']:<30} {lp:>8}  {'yes' if e['counted'] else 'no':<7}  {e['summary']}")
    said = doc.get("circumstantial", {}).get("declared_vs_observed", [])
    if said:
        lines += [""] + [f"  {line}" for line in said]
    al = doc["alignment"]
    if al.get("layers"):
        matched = [f"{i}->{j}" for i, j in al["layers"] if i is not None and j is not None]
        lines += ["", f"layer alignment (A->B): {' '.join(matched)}"]
    if al["notes"]:
        lines += ["", "notes"] + [f"  - {n}" for n in al["notes"]]
    lines += [f"  - {line}" for line in _unit_lines(al.get("units", []))]
    comp = al.get("components")
    if comp:
        lines += ["", "components"] + [f"  - {comp[k]['component']}: {comp[k]['status']} ({comp[k]['basis']})"
                                        for k in ("embeddings", "lm_head")]
        lines += [f"  - {run}" for run in comp["runs"]]
    c = doc["cost"]
    frac = c["bytes_read"] / c["bytes_total"] if c["bytes_total"] else 0.0
    lines.append("")
    for side, i in zip("AB", doc["inputs"]):
        if i.get("commit"):
            lines.append(f"{side} = {i['ref']} at commit {i['commit']}")
    if any(i.get("source") in ("hub", "url") for i in doc["inputs"]):
        lines.append(f"fetched {format_bytes(c.get('bytes_transferred', 0))} over the network "
                     "(the rest of what was read came from the range cache)")
    lines.append(f"read {format_bytes(c['bytes_read'])} of {format_bytes(c['bytes_total'])} ({100 * frac:.2f}%) in "
                 f"{c['seconds']:.1f} s, seed {doc['seed']}")
    return "\n".join(lines)


def _unit_lines(units: list[dict], limit: int = 6) -> list[str]:
    """'layer 2: expert 0, expert 1 of B <- layer 2 ffn of A', one line per (B layer, A unit)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for u in units:
        layer_b, name_b = u["b"].split(" ", 2)[1], u["b"].split(" ", 2)[2]
        groups.setdefault((layer_b, u["a"]), []).append(name_b)
    lines = [f"layer {lb} {', '.join(names)} of B <- {a} of A" for (lb, a), names in groups.items()]
    return lines[:limit] + ([f"... {len(lines) - limit} more in the JSON output"] if len(lines) > limit else [])




def _bound(log10_p: float | None) -> str:
    """'p ≤ 10⁻⁸⁸', or 'p = 0.74' near 1, or 'p n/a'."""
    text = p_value(log10_p)
    return text if text.startswith("p =") else f"p {text}" if text == "n/a" else f"p \u2264 {text}"
