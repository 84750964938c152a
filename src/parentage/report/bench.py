"""Tables for `parentage bench`: one row per method (overall), then detections per derivation kind."""

from __future__ import annotations


def _f(x, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}" if isinstance(x, float) else str(x)


def bench_markdown(doc: dict) -> str:
    methods = doc["methods"]
    lines = [f"bench of {doc['manifest']}: {len(doc['pairs'])} pairs", "",
             "| method | baseline | rule | power | false positives | AUC | median s | median bytes read |",
             "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        o = m["overall"]
        rule = {"own": "own", "quantile": "95th pct of unrelated", "z": "z >= 3 vs unrelated"}[m["rule"]]
        lines.append(f"| {m['name']} | {'yes' if m['baseline'] else 'no'} | {rule} | {_f(o['power'], True)} | "
                     f"{_f(o['false_positive_rate'], True)} | {_f(o['auc'])} | {o['median_seconds']:.3f} | "
                     f"{o['median_bytes_read']:,} |")
    kinds = [k["kind"] for k in methods[0]["per_kind"]] if methods else []
    lines += ["", "detected of related (false positives of unrelated) per kind:", "",
              "| kind | " + " | ".join(m["name"] for m in methods) + " |",
              "|---|" + "---|" * len(methods)]
    for i, kind in enumerate(kinds):
        cells = []
        for m in methods:
            k = m["per_kind"][i]
            cells.append(f"{k['detected']}/{k['n_related']}" if k["n_related"] else f"FP {k['false_positives']}/{k['n_unrelated']}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_html(doc: dict) -> str:
    """A self-contained page: the methods table, detections per kind, and the power curves (inline SVG)."""
    from html import escape

    from .plots import power_curves

    methods = doc["methods"]
    rule_text = {"own": "its own", "quantile": "95th percentile of the unrelated pairs", "z": "z >= 3 against the unrelated pairs"}
    rows = "".join(
        f"<tr><td>{escape(m['name'])}</td><td>{'baseline' if m['baseline'] else 'ours'}</td>"
        f"<td>{escape(rule_text[m['rule']])}</td><td>{_f(m['overall']['power'], True)}</td>"
        f"<td>{_f(m['overall']['false_positive_rate'], True)}</td><td>{_f(m['overall']['auc'])}</td>"
        f"<td>{m['overall']['median_seconds']:.3f}</td><td>{m['overall']['median_bytes_read']:,}</td>"
        f"<td><small>{escape(m['describe'])}</small></td></tr>" for m in methods)
    kinds = [k["kind"] for k in methods[0]["per_kind"]] if methods else []
    head = "".join(f"<th>{escape(m['name'])}</th>" for m in methods)
    body = ""
    for i, kind in enumerate(kinds):
        cells = ""
        for m in methods:
            k = m["per_kind"][i]
            if k["n_related"]:
                bad = k["detected"] < k["n_related"]
                cells += f"<td class=\"{'miss' if bad else 'hit'}\">{k['detected']}/{k['n_related']}</td>"
            else:
                cells += f"<td class=\"{'miss' if k['false_positives'] else 'hit'}\">FP {k['false_positives']}/{k['n_unrelated']}</td>"
        body += f"<tr><td>{escape(kind)}</td>{cells}</tr>"
    if doc.get("curves"):
        # the verdict and the baselines; each of our tests alone is in the tables (eight more lines would hide these)
        shown = {c["name"] for c in doc["curves"] if not c["name"].startswith("parentage:")}
        p_methods = {c["name"] for c in doc["curves"] if c["score"] == "-log10 p"}
        plots = (f"<h2>Power against continued-training compute</h2>"
                 f"{power_curves(doc['curves'], 'detected', 'share detected', shown)}"
                 f"<h2>Evidence against compute (-log10 p, methods with p-values)</h2>"
                 f"{power_curves(doc['curves'], 'median_score', '-log10 p (median)', p_methods)}")
    else:
        plots = "<p>This manifest has no compute ladder (build one with <code>parentage zoo build DIR --size ladder</code>).</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>parentage bench</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:3px 7px;font-size:12px;vertical-align:top}} th{{background:#f3f3f3}}
td.hit{{background:#e8f5e9}} td.miss{{background:#fdecea}}</style></head><body>
<h1>Lineage methods on {escape(doc['manifest'])}</h1>
<p>{len(doc['pairs'])} pairs. Power is measured at each method's own decision rule; a rule learnt from data uses the
manifest's unrelated pairs only (so its false-positive rate there is in-sample). AUC: the chance a related pair of
the kind scores above an unrelated one.</p>
<table><tr><th>method</th><th></th><th>rule</th><th>power</th><th>false positives</th><th>AUC</th><th>median s</th>
<th>median bytes read</th><th>what it is</th></tr>{rows}</table>
<h2>Detected of related pairs (false positives of unrelated ones) per kind</h2>
<table><tr><th>kind</th>{head}</tr>{body}</table>
{plots}
</body></html>
"""
