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
