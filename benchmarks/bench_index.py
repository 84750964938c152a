"""The fingerprint index: identify over the zoo (every model but the query indexed), and at scale.

    python benchmarks/bench_index.py zoo ZOO_DIR            # the must-hold table for BENCHMARKS.md
    python benchmarks/bench_index.py scale --n 1000          # 1,000 synthetic fingerprints: sizes, add, identify
    python benchmarks/bench_index.py sizes [LAYOUT...]       # fingerprints and sketches of full-size layouts
    python benchmarks/bench_index.py sketch-scale --n 100000 # identify over 100,000 7B-layout sketches

Figures are measured in one run on this machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parentage.index import add_models, open_store
from parentage.index.identify import identify


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


DATES = ("truthful", "equal", "reversed")  # missing dates order exactly as equal ones (no information either way)


def _set_dates(folder: Path, models: dict, mode: str) -> None:
    """File dates of every model's files: in build order (parents first), all the same second, or reversed."""
    t0 = time.time() - 86400
    for i, m in enumerate(models.values()):
        t = {"truthful": t0 + 60 * i, "equal": t0, "reversed": t0 - 60 * i}[mode]
        path = folder / m["path"]
        for f in ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
            os.utime(f, (t, t))


def zoo(folder: Path, db: str | None, modes: list[str], exhaustive: bool, k: int | None) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    models = dict(manifest["models"]) if isinstance(manifest["models"], list) else manifest["models"]
    print(f"# identify over the {manifest['size']} zoo ({len(models)} models; each query against the other "
          f"{len(models) - 1}), {_machine()}")
    _identify_table(folder, models, db, modes, exhaustive, k)


def real(weights: Path, modes: list[str], exhaustive: bool, k: int | None) -> None:
    """The real-weight families (SmolLM2-135M and Gemma3-270M, each with every surgery of zoo/realfamily.py),
    all indexed together with models of their shapes trained from nothing: each model the query in turn."""
    from parentage.checkpoint import Checkpoint
    from parentage.zoo.realfamily import family, fresh, llama_state_dict, tokenizer_json, write_model

    work = Path(tempfile.mkdtemp(prefix="bench-real-identify-"))
    rng = np.random.default_rng(0)
    models: dict[str, dict] = {}
    for key, file in (("smollm", "SmolLM2-135M-Instruct.Q4_1.gguf"), ("gemma", "gemma-3-270m-q4_k_m.gguf")):
        with Checkpoint.open(weights / file) as ck:
            sd, config = llama_state_dict(ck)
            tokenizer = tokenizer_json(ck)
        for name, against, a, b, truth in family(work / key, sd, config, rng, tokenizer):
            models.setdefault(f"{key}-base", {"path": str(a if against is None else work / key / "base"),
                                              "recipe": "base", "parents": []})
            label = f"{key}: {name}"
            parent = f"{key}: {against}" if against else f"{key}-base"
            models[label] = {"path": str(b), "recipe": name[:40], "parents": [parent]}
        models[f"{key}-fresh"] = {"path": str(write_model(work / f"{key}-fresh", fresh(sd, rng), config)),
                                  "recipe": "base", "parents": []}
        del sd
    print(f"# the sketch over the real-weight families ({len(models)} models; each query against the other "
          f"{len(models) - 1}), {_machine()}")
    db = str(work / "index.sqlite")
    t0 = time.perf_counter()
    add_models([m["path"] for m in models.values()], db)
    print(f"\nindexed in {time.perf_counter() - t0:.0f} s\n")
    _sketch_ranks(models, db)
    if modes:
        _identify_table(Path("/"), models, db, modes, exhaustive, k)


def _sketch_ranks(models: dict, db: str) -> None:
    """Where each query's parent comes in its sketch's order of the rest of the index (the first stage alone)."""
    from parentage.checkpoint import Checkpoint
    from parentage.index.sketch import ScanTable, rank, take_sketch

    with open_store(db) as store:
        entries = store.entries()
        by_ref = {e.ref: e for e in entries}
        rows = store.scan_rows(entries)
        print("| query | parent (truth) | parent's sketch rank | Gram correlation | copied | nearness | "
              "best unrelated Gram |")
        print("|---|---|---|---|---|---|---|")
        worst = 0
        for name, m in models.items():
            if not m["parents"]:
                continue
            own = by_ref[m["path"]]
            others = {e.digest: e for e in entries if e.digest != own.digest}
            table = ScanTable.from_rows({d: rows[d] for d in others}, store.where)
            with Checkpoint.open(m["path"]) as ck:
                q = take_sketch(ck)
            ranked = rank(q, table, lambda d: store.sketch(others[d]))
            names = {e.ref: n for n, e in ((n, by_ref[v["path"]]) for n, v in models.items())}
            order = [names[others[r.digest].ref] for r in ranked]
            parent = m["parents"][0]
            i = order.index(parent)
            worst = max(worst, i + 1)
            family = name.split(":")[0].split("-")[0]
            unrelated = [r.gram for r, n in zip(ranked, order) if not n.startswith(family) and r.gram is not None]
            r = ranked[i]
            fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            print(f"| {name} | {parent} | {i + 1} | {fmt(r.gram)} | {fmt(r.copied)} | {fmt(r.nearness)} | "
                  f"{fmt(max(unrelated) if unrelated else None)} |")
        print(f"\nworst rank of a parent: {worst} (of {len(models) - 1})")


def _identify_table(folder: Path, models: dict, db: str | None, modes: list[str], exhaustive: bool,
                    k: int | None) -> None:
    summary = []
    for mode in modes:
        _set_dates(folder, models, mode)
        db_mode = db or str(Path(tempfile.mkdtemp()) / "zoo.sqlite")
        t0 = time.perf_counter()
        results = add_models([str(folder / m["path"]) for m in models.values()], db_mode)
        t_add = time.perf_counter() - t0
        sizes = [r["n_bytes"] for r in results if r.get("n_bytes")]
        print(f"\n## file dates {mode}\n\nindexed in {t_add:.1f} s; fingerprint {min(sizes) / 1e3:.0f}-"
              f"{max(sizes) / 1e3:.0f} kB\n")
        print("| query | recipe | parent (truth) | best | or | direction from | sketch rank of parent | shortlist | "
              "same as exhaustive | seconds |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        n_ok = n_named = n_derived = n_same = n_none = n_best = n_named_derived = n_between = n_between_ok = 0
        named_counts = []
        worst = 0
        for name, m in models.items():
            t = time.perf_counter()
            doc = identify(str(folder / m["path"]), db_mode, top=len(models), k=k)
            seconds = time.perf_counter() - t
            by_path = {str(folder / v["path"]): n for n, v in models.items()}
            short = lambda r: by_path.get(r, r.rstrip("/").split("/")[-1]) if r else None  # noqa: E731
            want = [] if m["recipe"] in ("base", "distill") else m["parents"]
            best, alts = short(doc["best"]), [short(r) for r in doc.get("best_or") or []]
            # the sketch's own order of the whole index (k = every model): where the parent came
            order = [short(c["ref"]) for c in sorted(doc["candidates"], key=lambda c: c["sketch"]["rank"])]
            rank = min((order.index(p) + 1 for p in want if p in order), default=None)
            worst = max(worst, rank or 0)
            default = doc
            full = identify(str(folder / m["path"]), db_mode, top=len(models), exhaustive=True) \
                if exhaustive and mode == modes[0] else None
            same = full is None or full["best"] == default["best"]
            # a base (or a distilled student) may be named with a relative, never as descending from one
            ok = (best in want) if want else (best is None or (doc["best_relation"] != "ancestor"
                                                               and doc["best_direction_from"] != "dates"))
            named = ok or (bool(want) and any(x in want for x in alts))
            n_ok += ok
            n_named += named
            n_best += bool(want) and ok
            if doc["best_direction_from"] == "weights" and doc["best_relation"] == "relative":  # `between` fired
                n_between += 1
                n_between_ok += ok
            n_named_derived += bool(want) and named
            n_derived += bool(want)
            n_same += same
            n_none += bool(want) and best is None
            named_counts.append(1 + len(alts) if best else 0)
            print(f"| {name} | {m['recipe']} | {', '.join(want) or 'none'} | {best or 'none'} | {', '.join(alts[:3]) + (f' +{len(alts) - 3}' if len(alts) > 3 else '') or '-'} | "
                  f"{doc.get('best_direction_from') or '-'} | {rank or '-'} | {default['shortlist']['k']} | "
                  f"{'yes' if same else 'NO'} | {seconds:.2f} |" + ("" if named else " **wrong**"))
        line = (f"{mode}: parent best for {n_best} of {n_derived} derived models, named (best or best_or) for "
                f"{n_named_derived}; none for a derived model {n_none} times; {n_ok} of {len(models)} right overall "
                f"(bases and students: no relative named as their ancestor); worst sketch rank of a parent {worst}")
        if exhaustive and mode == modes[0]:
            line += f"; best = exhaustive best for {n_same} of {len(models)}"
        line += (f"; median models named with best {np.median(named_counts):.0f}, most {max(named_counts)}; the "
                 f"relative between the query and the others named first {n_between} times, right {n_between_ok}")
        print("\n" + line)
        summary.append(line)
    print("\n" + "\n".join(summary))


def scale(n: int, workers: int | None) -> None:
    from parentage.synthetic import Shape, random_state_dict
    from tests.test_compare import _noisy, _write

    shape = Shape(n_layers=4, hidden=64, n_heads=4, n_kv_heads=2, ffn=192, vocab=384)
    root = Path(tempfile.mkdtemp(prefix="bench-index-"))
    t0 = time.perf_counter()
    refs = [str(_write(root / f"m{i:05d}", random_state_dict("llama", shape, seed=1000 + i), shape=shape))
            for i in range(n)]
    t_write = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    parent = n // 2
    child = _write(root / "child", _noisy(random_state_dict("llama", shape, seed=1000 + parent), rng), shape=shape)
    lone = _write(root / "lone", random_state_dict("llama", shape, seed=99), shape=shape)
    db = str(root / "index.sqlite")
    t0 = time.perf_counter()
    results = add_models(refs, db, workers=workers)
    t_add = time.perf_counter() - t0
    sizes = np.array([r["n_bytes"] for r in results])
    print(f"# index of {n} synthetic models (llama, 4 layers, d=64, ffn=192), {_machine()}")
    print(f"- models written in {t_write:.1f} s; indexed in {t_add:.1f} s ({n / t_add:.0f} models/s, "
          f"{workers or os.cpu_count()} processes)")
    print(f"- fingerprint size: median {np.median(sizes) / 1e3:.0f} kB, max {sizes.max() / 1e3:.0f} kB; "
          f"database {os.path.getsize(db) / 1e6:.0f} MB")
    for label, query, want in (("derived", child, refs[parent]), ("unrelated", lone, None)):
        t0 = time.perf_counter()
        doc = identify(str(query), db, workers=workers)
        t = time.perf_counter() - t0
        top = doc["candidates"][0]
        print(f"- identify a {label} query: {t:.1f} s; best {doc['best'] and Path(doc['best']).name} "
              f"(want {want and Path(want).name}); top log10 p {top['log10_p']} after the correction for {n} "
              f"candidates; {'right' if doc['best'] == want else 'WRONG'}")
    with open_store(db) as s:
        assert len(s.entries()) == n
    from parentage.index.graph import family_graph

    add_models([str(child)], db, workers=workers)
    for label in ("first run", "again (pair cache)"):
        t0 = time.perf_counter()
        g = family_graph(db)
        t = time.perf_counter() - t0
        print(f"- graph over {n + 1} models, {label}: {t:.0f} s; {g['n_pairs_compared']:,} pairs compared of "
              f"{g['n_pairs']:,} ({g['n_pairs_cached']:,} from the cache); {g['n_related_pairs']} related; families "
              f"of two or more: {[len(f) for f in g['families'] if len(f) > 1]}")


SEVEN_B = {"ffn_values": 32 * 2 * 32 * 4096, "hidden": 4096, "fingerprint": 87_000_000}  # llama-7b (`sizes`)


def sketch_scale(n: int, anchors: int) -> None:
    """identify against an index of n synthetic 7B-layout sketches plus a small real family, in a fresh process
    (wall time, peak memory, bytes read per query)."""
    import hashlib
    import sqlite3
    import subprocess

    from parentage.checkpoint import Checkpoint
    from parentage.index import take
    from parentage.index.sketch import BASIS, BUCKETS, MINHASH, SCAN_ROW, SKETCH_VERSION, Sketch, basis_key, scan_row
    from parentage.synthetic import Shape, random_state_dict
    from tests.test_compare import SHAPE, _noisy, _obfuscate, _write

    root = Path(tempfile.mkdtemp(prefix="bench-sketch-"))
    rng = np.random.default_rng(0)
    base = random_state_dict("llama", SHAPE, seed=30)
    real = {"base": _write(root / "base", base), "child": _write(root / "child", _noisy(base, rng)),
            "hidden": _write(root / "hidden", _obfuscate(_noisy(base, rng), rng)),
            "stranger": _write(root / "stranger", random_state_dict("llama", SHAPE, seed=31))}
    db = root / "index.sqlite"
    add_models([str(real[k]) for k in ("base", "stranger")], str(db))
    micro = Shape(n_layers=1, hidden=16, n_heads=2, n_kv_heads=1, ffn=32, vocab=64)
    with Checkpoint.open(_write(root / "micro", random_state_dict("llama", micro, seed=5), shape=micro)) as ck:
        fp = take(ck)
    key = basis_key(SEVEN_B["ffn_values"], SEVEN_B["hidden"])
    gram = (rng.standard_normal(anchors * (anchors - 1) // 2) * 0.1).astype(np.float16)
    t0 = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for i in range(n):
        fp.meta["ref"], fp.meta["commit"], fp.blob = f"synthetic/m{i:06d}", f"{i:040x}", None
        blob = fp.to_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        sk = Sketch(np.sort(rng.integers(0, 2 ** 63, anchors, dtype=np.uint64)), gram,
                    rng.integers(-127, 128, BUCKETS, dtype=np.int8), rng.integers(0, 2 ** 63, MINHASH, dtype=np.uint64),
                    (rng.standard_normal(BASIS) * 30).astype(np.float32), key, {"synthetic": True})
        conn.execute("INSERT INTO blobs (digest, data) VALUES (?, ?)", (digest, blob))
        conn.execute("INSERT INTO sketches (digest, version, scan, data) VALUES (?, ?, ?, ?)",
                     (digest, SKETCH_VERSION, scan_row(sk), sk.to_bytes()))
        conn.execute("INSERT INTO fingerprints (ref, commit_id, digest, arch, n_layers, hidden_size, n_params, n_bytes,"
                     " declared, added_at, tool_version, source) VALUES (?, ?, ?, 'llama', 32, 4096, 6738415616, ?, "
                     "'{}', '2026-12-06T00:00:00Z', '0', 'synthetic')",
                     (fp.meta["ref"], fp.meta["commit"], digest, len(blob)))
        if i % 10000 == 9999:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    conn.execute("COMMIT")
    conn.close()
    t_build = time.perf_counter() - t0
    print(f"# identify over {n:,} synthetic 7B-layout sketches and a small real family, {_machine()}")
    print(f"- index built in {t_build:.0f} s; {os.path.getsize(db) / 1e9:.1f} GB on disk; scan row {SCAN_ROW:,} bytes, "
          f"synthetic sketch {Sketch.from_bytes(sk.to_bytes(), 'x').n_bytes / 1e3:.0f} kB ({anchors} anchors)")
    code = """
import json, resource, sys, time
from parentage.index.identify import identify
t = time.perf_counter()
doc = identify(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "best": doc["best"], "k": doc["shortlist"]["k"], "sketch_bytes": doc["shortlist"]["sketch_bytes"],
                  "fingerprint_bytes": doc["shortlist"]["fingerprint_bytes"], "query_bytes": doc["cost"]["bytes_read"],
                  "n": doc["n_candidates"], "top": doc["candidates"][0]["log10_p"]}))
"""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    print("\n| query | want | best | K | identify wall | peak RSS | sketch bytes read | fingerprint bytes read | "
          "query bytes read | top log10 p (corrected) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, want in (("child", "base"), ("hidden", "base"), ("child", "base")):
        r = subprocess.run([sys.executable, "-c", code, str(real[name]), str(db)], capture_output=True, text=True,
                           env=env)
        if r.returncode:
            print(f"| {name} | failed: {r.stderr.strip().splitlines()[-1][:300]} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        ok = d["best"] == str(real[want])
        print(f"| {name} | {want} | {Path(d['best']).name if d['best'] else None}{'' if ok else ' **wrong**'} | "
              f"{d['k']} | {d['seconds']:.2f} s | {d['rss'] / 1024:.0f} MB | {d['sketch_bytes'] / 1e6:.1f} MB | "
              f"{d['fingerprint_bytes'] / 1e6:.1f} MB | {d['query_bytes'] / 1e6:.2f} MB | {d['top']} |")
    # 1,000 7B-size fingerprints: the shortlist is bounded by the bytes the entries say they hold
    with sqlite3.connect(db) as c:
        c.execute("UPDATE fingerprints SET n_bytes = ? WHERE source = 'synthetic'", (SEVEN_B["fingerprint"],))
    r = subprocess.run([sys.executable, "-c", code, str(real["child"]), str(db)], capture_output=True, text=True,
                       env=env)
    d = json.loads(r.stdout.strip().splitlines()[-1]) if not r.returncode else None
    if d:
        total = d["sketch_bytes"] + d["fingerprint_bytes"]
        print(f"\n- with every synthetic entry a 7B-size fingerprint ({SEVEN_B['fingerprint'] / 1e6:.0f} MB, as "
              f"`sizes` measures): K = {d['k']}, fingerprints {d['fingerprint_bytes'] / 1e6:.0f} MB + sketches "
              f"{d['sketch_bytes'] / 1e6:.0f} MB = {total / 1e9:.2f} GB per query, {d['seconds']:.1f} s")
    print(f"\n(x86_64 build machine: {_machine()}; one query per process, as a user runs it.)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    z = sub.add_parser("zoo")
    z.add_argument("folder", type=Path)
    z.add_argument("--db", default=None)
    z.add_argument("--dates", nargs="*", choices=DATES, default=list(DATES))
    z.add_argument("--exhaustive", action="store_true", help="also run every query exhaustively (first date mode)")
    z.add_argument("--k", type=int, default=None, help="shortlist size (default: identify's)")
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--workers", type=int, default=None)
    r = sub.add_parser("real")
    r.add_argument("weights", type=Path, help="the folder holding the real GGUF files (PARENTAGE_REAL_WEIGHTS)")
    r.add_argument("--dates", nargs="*", choices=DATES, default=[], help="also run identify under these dates")
    r.add_argument("--exhaustive", action="store_true")
    r.add_argument("--k", type=int, default=None)
    k = sub.add_parser("sketch-scale")
    k.add_argument("--n", type=int, default=100_000)
    k.add_argument("--anchors", type=int, default=384)
    z = sub.add_parser("sizes")
    z.add_argument("layouts", nargs="*", default=["smollm2-135m", "llama-7b", "llama-3-70b", "qwen1.5-110b", "deepseek-v3"])
    a = p.parse_args(argv)
    if a.cmd == "zoo":
        zoo(a.folder, a.db, a.dates, a.exhaustive, a.k)
    elif a.cmd == "real":
        real(a.weights, a.dates, a.exhaustive, a.k)
    elif a.cmd == "sketch-scale":
        sketch_scale(a.n, a.anchors)
    elif a.cmd == "sizes":
        sizes(a.layouts)
    else:
        scale(a.n, a.workers)
    return 0



def sizes(layouts: list[str]) -> None:
    """Fingerprints of full-size procedural checkpoints served by the loopback hub: size, bytes read, time."""
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(f"# fingerprint sizes at full scale (procedural weights on the loopback hub), {_machine()}")
    measured: dict[str, dict] = {}
    print("| layout | held | fingerprint | of which rows | sketch (of which scanned) | read to take it | seconds |")
    print("|---|---|---|---|---|---|---|")
    for layout in layouts:
        code = f"""
import json, os, sys, time
from parentage.zoo import procedural as P
from parentage.zoo.hub_emulator import HubEmulator
from parentage.checkpoint import Checkpoint
from parentage.index.fingerprint import take
from parentage.index.sketch import SCAN_ROW, take_sketch
hub = HubEmulator().start()
m = P.LAYOUTS[{layout!r}](1) if {layout!r} in P.LAYOUTS else P.deepseek_v3(1)
hub.add_files("acme/m", m.files())
os.environ["HF_ENDPOINT"] = hub.url
t = time.perf_counter()
with Checkpoint.open("acme/m") as ck:
    fp = take(ck)
    cost = ck.cost()
rows = sum(r.nbytes for spans in fp.spans.values() for _, r in spans)
seconds = time.perf_counter() - t
with fp.open() as stored:
    sk = take_sketch(stored)
print(json.dumps({{"held": cost["bytes_total"], "size": fp.n_bytes, "rows": rows, "read": cost["bytes_read"],
                  "seconds": seconds, "sketch": sk.n_bytes, "scan": SCAN_ROW}}))
"""
        work = Path(tempfile.mkdtemp(prefix="bench-fp-"))
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        env |= {"PARENTAGE_CACHE": str(work / "cache"), "HF_HUB_CACHE": str(work / "hf")}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if r.returncode:
            print(f"| {layout} | failed: {r.stderr.strip().splitlines()[-1][:200]} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        measured[layout] = d
        print(f"| {layout} | {d['held'] / 1e9:,.1f} GB | {d['size'] / 1e6:,.1f} MB | {d['rows'] / 1e6:,.1f} MB | "
              f"{d['sketch'] / 1e3:,.0f} kB ({d['scan'] / 1e3:.1f} kB) | "
              f"{d['read'] / 1e6:,.0f} MB ({100 * d['read'] / d['held']:.2f}%) | {d['seconds']:.0f} |")
    bases_estimate(measured)


PARAMS_B = {"smollm2-135m": 0.135, "llama-7b": 6.7, "llama-3-70b": 70.6, "qwen1.5-110b": 111.0, "deepseek-v3": 671.0}


def bases_estimate(measured: dict[str, dict]) -> None:
    """What indexing the shipped list takes, each base costed as the measured layout nearest in size."""
    import math

    from parentage.index import shipped_bases

    if not measured:
        return
    total = {"size": 0, "read": 0, "seconds": 0.0}
    for b in shipped_bases():
        near = min(measured, key=lambda k: abs(math.log(PARAMS_B[k] / b["params_b"])))
        for key in total:
            total[key] += measured[near][key]
    n = len(shipped_bases())
    print(f"\nthe shipped list ({n} bases), each costed as the measured layout nearest in parameters: "
          f"{total['read'] / 1e9:,.0f} GB read through range requests, a pack of {total['size'] / 1e9:,.1f} GB, "
          f"{total['seconds'] / 3600:.1f} hours on one process at loopback speed (a real link adds its latency "
          f"and bandwidth: at 100 MB/s the reads alone take {total['read'] / 1e8 / 3600:.1f} hours)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
