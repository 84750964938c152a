"""Terminal text for the index commands (identify, verify, graph)."""

from __future__ import annotations


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def identify_human(doc: dict) -> str:
    head = doc.get("answer") or ("none: no indexed model is a significant ancestor or relative" if doc["best"] is None
                                 else f"shares weight ancestry with {doc['best']}")
    lines = [f"{doc['query']}: {head}",
             f"  {doc['n_candidates']} candidates; {doc['correction']}"]
    if doc.get("stage"):
        lines.append(f"  {doc['stage']}")
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


def graph_human(doc: dict) -> str:
    lines = [f"{len(doc['nodes'])} models, {len(doc['families'])} families; {doc['n_related_pairs']} related pairs of "
             f"{doc['n_pairs']} ({doc['correction']})"]
    if doc.get("stage"):
        lines.append(f"{doc['stage']}; {doc.get('n_pairs_cached', 0)} of them read from the cache")
    for family in doc["families"]:
        if len(family) == 1:
            continue
        lines.append(f"family of {len(family)}: " + ", ".join(family))
    for e in doc["edges"]:
        arrow = (f"{e['parent']} -> {e['b'] if e['parent'] == e['a'] else e['a']}" if e["parent"]
                 else f"{e['a']} -- {e['b']}")
        lines.append(f"  {arrow}  log10 p {_p(e['log10_p'])}; {e['basis']}")
        lines += [f"      {n}" for n in e["notes"][:3]]
    alone = [f[0] for f in doc["families"] if len(f) == 1]
    if alone:
        lines.append(f"unrelated to every other indexed model: {', '.join(alone)}")
    return "\n".join(lines)


NODE_W, NODE_H, GAP_X, GAP_Y = 220, 44, 30, 90


def _short(ref: str, n: int = 30) -> str:
    tail = ref.rstrip("/").split("/")[-1] if "/" in ref and not ref.count("/") == 1 else ref
    return tail if len(tail) <= n else tail[: n - 1] + "…"


def _tree_layout(family: list[str], edges: list[dict]) -> dict[str, tuple[float, float]]:
    """Levels by breadth-first depth from the family's root (a node that is a parent and never a child, else the
    best-connected one); siblings side by side."""
    adj: dict[str, list[str]] = {n: [] for n in family}
    children = set()
    for e in edges:
        if e["a"] in adj and e["b"] in adj:
            adj[e["a"]].append(e["b"])
            adj[e["b"]].append(e["a"])
            if e["parent"]:
                children.add(e["b"] if e["parent"] == e["a"] else e["a"])
    parents = [n for n in family if n not in children and any(e["parent"] == n for e in edges)]
    root = parents[0] if parents else max(family, key=lambda n: (len(adj[n]), n))
    depth, order = {root: 0}, [root]
    for n in order:
        for m in sorted(adj[n]):
            if m not in depth:
                depth[m] = depth[n] + 1
                order.append(m)
    for n in family:  # disconnected within the list (should not happen): put them last
        depth.setdefault(n, max(depth.values()) + 1)
    levels: dict[int, list[str]] = {}
    for n in sorted(family, key=lambda n: (depth[n], order.index(n) if n in order else 0)):
        levels.setdefault(depth[n], []).append(n)
    return {n: (k * (NODE_W + GAP_X), d * (NODE_H + GAP_Y)) for d, ns in levels.items() for k, n in enumerate(ns)}


def graph_html(doc: dict) -> str:
    """A self-contained page: one SVG tree per family (arrows where a direction is known), then the edge table."""
    from html import escape

    parts = []
    for family in [f for f in doc["families"] if len(f) > 1]:
        pos = _tree_layout(family, doc["edges"])
        width = max(x for x, _ in pos.values()) + NODE_W + 20
        height = max(y for _, y in pos.values()) + NODE_H + 20
        svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
               '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
               'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>']
        for e in doc["edges"]:
            if e["a"] not in pos or e["b"] not in pos:
                continue
            src, dst = (e["a"], e["b"]) if e["parent"] in (None, e["a"]) else (e["b"], e["a"])
            (x1, y1), (x2, y2) = pos[src], pos[dst]
            x1, y1, x2, y2 = x1 + NODE_W / 2 + 10, y1 + NODE_H + 10, x2 + NODE_W / 2 + 10, y2 + 10
            if y1 > y2 + NODE_H:  # drawn upwards: leave from the top, arrive at the bottom
                y1, y2 = y1 - NODE_H, y2 + NODE_H
            marker = {"weights": ' marker-end="url(#arrow)"', "dates": ' marker-end="url(#arrow)" stroke-dasharray="2,3"'
                      }.get(e.get("direction_from"), ' stroke-dasharray="6,4"')
            svg.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#444" stroke-width="1.5"{marker}/>')
            svg.append(f'<text x="{(x1 + x2) / 2 + 6}" y="{(y1 + y2) / 2}" font-size="11" fill="#a33">'
                       f'log10 p {escape(_p(e["log10_p"]))}</text>')
        for n, (x, y) in pos.items():
            svg.append(f'<g><title>{escape(n)}</title><rect x="{x + 10}" y="{y + 10}" width="{NODE_W}" height="{NODE_H}" '
                       f'rx="6" fill="#eef4fb" stroke="#3b6ea5"/><text x="{x + 10 + NODE_W / 2}" y="{y + 10 + NODE_H / 2 + 4}" '
                       f'font-size="13" text-anchor="middle">{escape(_short(n))}</text></g>')
        svg.append("</svg>")
        parts.append(f"<h2>Family of {len(family)}</h2>\n" + "\n".join(svg))
    rows = []
    for e in doc["edges"]:
        by = {"weights": "", "dates": " (file dates: circumstantial)"}.get(e.get("direction_from"), "")
        direction = f"{escape(_short(e['parent']))} came first{by}" if e["parent"] else "not determined"
        notes = "<br>".join(escape(n) for n in e["notes"][:6])
        rows.append(f"<tr><td>{escape(e['a'])}</td><td>{escape(e['b'])}</td><td>{escape(_p(e['log10_p']))}</td>"
                    f"<td>{direction}<br><small>{escape(e['basis'])}</small></td><td>{notes}</td></tr>")
    alone = [f[0] for f in doc["families"] if len(f) == 1]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>parentage graph</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}} th{{background:#f3f3f3}}
.lead{{font-size:15px}}</style></head><body>
<h1>Family tree of the index</h1>
<p class="lead">{len(doc['nodes'])} models, {len([f for f in doc['families'] if len(f) > 1])} families of related models;
{doc['n_related_pairs']} of {doc['n_pairs']} pairs related at log10 p &le; -6 after {escape(doc['correction'])}.
Solid arrows point from the model the weights say came first (an export, inserted layers, upcycled experts,
an extended vocabulary, a merge); dotted arrows from the one whose files were written first (circumstantial);
dashed lines join kin whose order neither gives.</p>
{''.join(parts)}
<h2>Edges</h2>
<table><tr><th>A</th><th>B</th><th>log10 p</th><th>direction</th><th>what changed</th></tr>
{''.join(rows)}</table>
<h2>Unrelated to every other indexed model</h2><p>{escape(', '.join(alone)) or 'none'}</p>
</body></html>
"""
