"""The fingerprint index: identify over the zoo (every model but the query indexed), and at scale.

    python benchmarks/bench_index.py zoo ZOO_DIR            # the must-hold table for BENCHMARKS.md
    python benchmarks/bench_index.py scale --n 1000          # 1,000 synthetic fingerprints: sizes, add, identify
    python benchmarks/bench_index.py sizes [LAYOUT...]       # fingerprints of full-size procedural checkpoints

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


def zoo(folder: Path, db: str | None) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    models = dict(manifest["models"]) if isinstance(manifest["models"], list) else manifest["models"]
    db = db or str(Path(tempfile.mkdtemp()) / "zoo.sqlite")
    t0 = time.perf_counter()
    results = add_models([str(folder / m["path"]) for m in models.values()], db)
    t_add = time.perf_counter() - t0
    sizes = [r["n_bytes"] for r in results if r.get("n_bytes")]
    print(f"# identify over the {manifest['size']} zoo ({len(models)} models; each query against the other "
          f"{len(models) - 1}), {_machine()}")
    print(f"indexed in {t_add:.1f} s; fingerprint {min(sizes) / 1e3:.0f}-{max(sizes) / 1e3:.0f} kB\n")
    print("| query | recipe | parent (truth) | best | truth's rank | top log10 p | top relation | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    n_ok = 0
    for name, m in models.items():
        t = time.perf_counter()
        doc = identify(str(folder / m["path"]), db, top=len(models))
        seconds = time.perf_counter() - t
        refs = [c["ref"].rstrip("/").split("/")[-1] for c in doc["candidates"]]
        best = doc["best"].rstrip("/").split("/")[-1] if doc["best"] else None
        want = [] if m["recipe"] in ("base", "distill") else m["parents"]
        ok = (best in want) if want else best is None
        n_ok += ok
        rank = min((refs.index(p) + 1 for p in want if p in refs), default=None) if want else None
        top = doc["candidates"][0]
        print(f"| {name} | {m['recipe']} | {', '.join(want) or 'none'} | {best or 'none'} | "
              f"{rank if rank else '-'} | {top['log10_p']} | {top.get('relation') or '-'} | {seconds:.2f} |"
              + ("" if ok else " **wrong**"))
    print(f"\n{n_ok} of {len(models)} right (parent named first, or `none` for bases and distilled students)")


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    z = sub.add_parser("zoo")
    z.add_argument("folder", type=Path)
    z.add_argument("--db", default=None)
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--workers", type=int, default=None)
    z = sub.add_parser("sizes")
    z.add_argument("layouts", nargs="*", default=["llama-7b", "llama-3-70b", "qwen1.5-110b", "deepseek-v3"])
    a = p.parse_args(argv)
    if a.cmd == "zoo":
        zoo(a.folder, a.db)
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
    print("| layout | held | fingerprint | of which rows | read to take it | seconds |")
    print("|---|---|---|---|---|---|")
    for layout in layouts:
        code = f"""
import json, os, sys, time
from parentage.zoo import procedural as P
from parentage.zoo.hub_emulator import HubEmulator
from parentage.checkpoint import Checkpoint
from parentage.index.fingerprint import take
hub = HubEmulator().start()
m = P.LAYOUTS[{layout!r}](1) if {layout!r} in P.LAYOUTS else P.deepseek_v3(1)
hub.add_files("acme/m", m.files())
os.environ["HF_ENDPOINT"] = hub.url
t = time.perf_counter()
with Checkpoint.open("acme/m") as ck:
    fp = take(ck)
    cost = ck.cost()
rows = sum(r.nbytes for spans in fp.spans.values() for _, r in spans)
print(json.dumps({{"held": cost["bytes_total"], "size": fp.n_bytes, "rows": rows, "read": cost["bytes_read"],
                  "seconds": time.perf_counter() - t}}))
"""
        work = Path(tempfile.mkdtemp(prefix="bench-fp-"))
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        env |= {"PARENTAGE_CACHE": str(work / "cache"), "HF_HUB_CACHE": str(work / "hf")}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if r.returncode:
            print(f"| {layout} | failed: {r.stderr.strip().splitlines()[-1][:200]} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {layout} | {d['held'] / 1e9:,.1f} GB | {d['size'] / 1e6:,.1f} MB | {d['rows'] / 1e6:,.1f} MB | "
              f"{d['read'] / 1e6:,.0f} MB ({100 * d['read'] / d['held']:.2f}%) | {d['seconds']:.0f} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
