"""`parentage bench MANIFEST`: every method on every pair of a manifest, scored against its truth.

A manifest is a zoo's `manifest.json` or any JSON of the minimal form

    {"models": [{"name": "base", "path": "models/base"}, ...],
     "pairs":  [{"a": "base", "b": "ft", "truth": "related", "kind": "finetune"}, ...]}

(paths relative to the manifest's folder). For each method and derivation kind: detection power at the method's
own rule (or at a threshold learnt from the manifest's unrelated pairs only, which it says), false positives on
unrelated pairs, ROC AUC of its score (related pairs of that kind against every unrelated pair), and the median
seconds and bytes read per pair. Per-pair results are cached beside the manifest, so an interrupted run resumes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from .. import progress as _progress
from ..checkpoint import Checkpoint
from ..errors import FormatError, ParentageError
from ..pair import compare_checkpoints
from ..safeio import read_json
from ..verdict import RELATED_LEVEL
from .methods import Method, all_methods, calibrate, ours, plugin

TRUTHS = ("related", "unrelated")
CACHE_VERSION = 3  # bump when a cached pair's fields or scores change (3: the exact rank-order test)


def load_manifest(path: str | Path) -> tuple[Path, list[dict], dict[str, Path], dict[str, dict]]:
    """(folder, pairs, model name -> path, model name -> its entry), checked: every pair names known models
    and a truth."""
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, dict) or "pairs" not in doc or "models" not in doc:
        raise FormatError(path, "a bench manifest is a JSON object with 'models' and 'pairs'")
    models = doc["models"]
    if isinstance(models, dict):  # a zoo's manifest: name -> {path, ...}
        models = [{"name": k, **v} for k, v in models.items() if isinstance(v, dict)]
    paths, entries = {}, {}
    for m in models if isinstance(models, list) else []:
        if not (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("path"), str)):
            raise FormatError(path, "every model needs a 'name' and a 'path' (strings)")
        paths[m["name"]] = (path.parent / m["path"]).resolve()
        entries[m["name"]] = m
    pairs = []
    for k, p in enumerate(doc["pairs"] if isinstance(doc["pairs"], list) else []):
        if not (isinstance(p, dict) and p.get("a") in paths and p.get("b") in paths and p.get("truth") in TRUTHS):
            raise FormatError(path, f"pair {k} needs 'a' and 'b' naming listed models and 'truth' related|unrelated")
        pairs.append({"a": p["a"], "b": p["b"], "truth": p["truth"], "kind": str(p.get("kind") or p["truth"])})
    if not pairs:
        raise FormatError(path, "lists no pairs")
    return path.parent, pairs, paths, entries


def _cache_key(pair: dict, paths: dict, methods: list[str]) -> str:
    """A pair's cache entry is valid while its two models' files and the method list are unchanged."""
    stamp = []
    for side in ("a", "b"):
        folder = paths[pair[side]]
        files = sorted(folder.rglob("*")) if folder.is_dir() else [folder]
        stamp.append([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()])
    raw = json.dumps([CACHE_VERSION, pair, stamp, sorted(methods)]).encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def run_pair(pair: dict, paths: dict, methods: dict[str, Method], seed: int = 0) -> dict:
    """Every method on one pair: scores, our decisions, and what the pair cost."""
    t0 = time.perf_counter()
    with Checkpoint.open(paths[pair["a"]]) as a, Checkpoint.open(paths[pair["b"]]) as b:
        doc = compare_checkpoints(a, b, seed)
        seconds_ours = time.perf_counter() - t0
        compare_bytes = doc["cost"]["bytes_read"]
        scores, decisions, seconds, bytes_read = {}, {}, {}, {}
        computed: dict = {}  # score function -> (value, seconds, bytes): two rules on one score compute it once
        for name, m in methods.items():
            t = time.perf_counter()
            before = a.cost()["bytes_read"] + b.cost()["bytes_read"]
            if m.score is None:
                scores[name], decisions[name] = ours(doc, name)
                seconds[name], bytes_read[name] = seconds_ours, compare_bytes
            else:
                if m.score not in computed:
                    value = m.score(a, b, doc)
                    computed[m.score] = (value, time.perf_counter() - t,
                                         a.cost()["bytes_read"] + b.cost()["bytes_read"] - before)
                value, spent, read = computed[m.score]
                scores[name] = None if value is None or not np.isfinite(value) else float(value)
                s = scores[name]
                if s is None or m.rule != "own":
                    decisions[name] = None  # a learnt threshold is applied in `summarise`
                else:  # its own rule: a decide function, else -log10 p at our level
                    decisions[name] = bool(m.decide(s)) if m.decide else s >= -RELATED_LEVEL
                seconds[name] = spent + (seconds_ours if m.in_compare else 0.0)
                bytes_read[name] = compare_bytes if m.in_compare else read
    return {**pair, "scores": scores, "decisions": decisions, "seconds": seconds, "bytes_read": bytes_read,
            "verdict": doc["verdict"]["label"]}


def auc(related: list[float], unrelated: list[float]) -> float | None:
    """ROC AUC (Mann-Whitney): the chance a related pair scores above an unrelated one, ties half."""
    r = np.array([x for x in related if x is not None], dtype=float)
    u = np.array([x for x in unrelated if x is not None], dtype=float)
    if r.size == 0 or u.size == 0:
        return None
    greater = (r[:, None] > u[None, :]).sum() + 0.5 * (r[:, None] == u[None, :]).sum()
    return round(float(greater / (r.size * u.size)), 4)


def summarise(rows: list[dict], methods: dict[str, Method]) -> list[dict]:
    out = []
    unrelated = [r for r in rows if r["truth"] == "unrelated"]
    kinds = sorted({r["kind"] for r in rows if r["truth"] == "related"})
    for name, m in methods.items():
        threshold = calibrate(m, [r["scores"].get(name) for r in unrelated])

        def called(r) -> bool:
            s = r["scores"].get(name)
            if m.rule == "own":
                return bool(r["decisions"].get(name))
            return s is not None and threshold is not None and s > threshold

        related = [r for r in rows if r["truth"] == "related"]
        per_kind = []
        for kind in kinds:
            of = [r for r in related if r["kind"] == kind]
            per_kind.append({"kind": kind, "n_related": len(of), "detected": sum(map(called, of)),
                             "n_unrelated": len(unrelated), "false_positives": sum(map(called, unrelated)),
                             "auc": auc([r["scores"].get(name) for r in of], [r["scores"].get(name) for r in unrelated])})
        for kind in sorted({r["kind"] for r in unrelated}):  # the unrelated kinds (independent bases, distilled)
            of = [r for r in unrelated if r["kind"] == kind]
            per_kind.append({"kind": kind, "n_related": 0, "detected": 0, "n_unrelated": len(of),
                             "false_positives": sum(map(called, of)), "auc": None})
        overall = {
            "power": round(sum(map(called, related)) / len(related), 4) if related else None,
            "false_positive_rate": round(sum(map(called, unrelated)) / len(unrelated), 4) if unrelated else None,
            "auc": auc([r["scores"].get(name) for r in related], [r["scores"].get(name) for r in unrelated]),
            "median_seconds": round(float(np.median([r["seconds"][name] for r in rows])), 4),
            "median_bytes_read": int(np.median([r["bytes_read"].get(name, 0) for r in rows])),
        }
        out.append({"name": name, "baseline": m.baseline, "rule": m.rule, "threshold": threshold,
                    "describe": m.describe, "overall": overall, "per_kind": per_kind})
    return out


def curves(rows: list[dict], methods: dict[str, Method], entries: dict[str, dict]) -> list[dict]:
    """Detection and median score against continued-training compute, clean and with junk batches, over the
    related pairs whose derived model is a rung of the zoo's compute ladder (entry `ladder`, `compute`, `junk`).
    Empty when the manifest has no ladder."""
    rungs: dict[tuple[float, bool], list[dict]] = {}
    for r in rows:
        e = entries.get(r["b"], {})
        if r["truth"] == "related" and e.get("ladder") and isinstance(e.get("compute"), (int, float)):
            rungs.setdefault((float(e["compute"]), bool(e.get("junk"))), []).append(r)
    if not rungs:
        return []
    unrelated = [r for r in rows if r["truth"] == "unrelated"]
    out = []
    for name, m in methods.items():
        threshold = calibrate(m, [r["scores"].get(name) for r in unrelated])
        points = []
        for (compute, junk), of in sorted(rungs.items()):
            scores = [r["scores"].get(name) for r in of if r["scores"].get(name) is not None]
            hit = [bool(r["decisions"].get(name)) if m.rule == "own" else
                   (r["scores"].get(name) is not None and threshold is not None and r["scores"][name] > threshold)
                   for r in of]
            points.append({"compute": compute, "junk": junk, "n": len(of), "detected": sum(hit),
                           "median_score": round(float(np.median(scores)), 4) if scores else None})
        out.append({"name": name, "score": "-log10 p" if name.startswith("parentage") or name == "phi_match"
                    else "raw score", "points": points})
    return out


def read_scores(path: str | Path) -> dict[tuple[str, str], tuple[float, bool | None]]:
    """An outside method's scores: CSV with a header a,b,score[,decision] (decision 1/0, true/false)."""
    path = Path(path)
    out = {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"a", "b", "score"} <= set(reader.fieldnames or []):
                raise FormatError(path, "a scores file is CSV with the columns a, b, score (and optionally decision)")
            for k, row in enumerate(reader, start=2):
                try:
                    score = float(row["score"])
                except ValueError:
                    raise FormatError(path, f"line {k}: score {row['score']!r} is not a number") from None
                d = (row.get("decision") or "").strip().lower()
                out[(row["a"], row["b"])] = (score, None if d == "" else d in ("1", "true", "yes", "related"))
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(path, f"cannot read the scores file ({e})") from None
    return out


def bench(manifest: str | Path, methods: list[str] | None = None, scores: list[str] | None = None,
          cache: str | Path | None = None, seed: int = 0, progress: bool = False) -> dict:
    folder, pairs, paths, entries = load_manifest(manifest)
    table = all_methods()
    chosen: dict[str, Method] = {}
    for name in methods or list(table):
        if name in table:
            chosen[name] = table[name]
        elif ":" in name and not name.startswith("parentage:"):
            try:
                chosen[name] = plugin(name)
            except (ImportError, AttributeError, ValueError) as e:
                raise ParentageError(name, f"cannot load the plug-in method ({e})") from None
        else:
            raise ParentageError(name, f"no such method; known: {', '.join(table)} (or module:function)")
    cache_dir = Path(cache) if cache else folder / ".bench-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    bar = _progress.bar(len(pairs), "bench", "pair") if progress else None
    for pair in pairs:
        key = _cache_key(pair, paths, list(chosen))
        entry = cache_dir / f"{key}.json"
        if entry.is_file():
            try:
                rows.append(json.loads(entry.read_text()))
                bar and bar.update(1)
                continue
            except ValueError:
                pass  # a torn entry from a killed run: computed again
        row = run_pair(pair, paths, chosen, seed)
        tmp = entry.with_suffix(".tmp")
        tmp.write_text(json.dumps(row))
        os.replace(tmp, entry)  # atomic: a killed run leaves whole entries only
        rows.append(row)
        bar and bar.update(1)
    if bar:
        bar.close()
    for spec in scores or []:
        outside = read_scores(spec)
        name = f"scores:{Path(spec).name}"
        m = Method(name, True, "own" if all(d is not None for _, d in outside.values()) else "quantile",
                   f"scores from {spec}")
        chosen[name] = m
        for r in rows:
            s, d = outside.get((r["a"], r["b"]), (None, None))
            r["scores"][name], r["decisions"][name], r["seconds"][name], r["bytes_read"][name] = s, d, 0.0, 0
    return {"schema_version": 1, "manifest": str(Path(manifest)), "methods": summarise(rows, chosen),
            "curves": curves(rows, chosen, entries),
            "pairs": [{k: r[k] for k in ("a", "b", "truth", "kind", "scores", "decisions", "bytes_read")} for r in rows]}
