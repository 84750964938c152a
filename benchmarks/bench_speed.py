"""Wall time as a user sees it: one command per pair, in a fresh process, beside modelDNA on the same pairs.

    python benchmarks/bench_speed.py pairs ZOO [--modeldna PATH] [--limit N]   # every pair of a built zoo
    python benchmarks/bench_speed.py startup MODEL                             # --help, inspect

`pairs` runs `parentage compare A B --format json` and (with --modeldna, the path of modelDNA 0.1.0's
`modeldna` command, installed in a scratch venv: it is not a dependency) `modeldna compare B A --json` on each
pair, alternating which goes first, and reports each tool's median wall time, their ratio in this one run, and
how often each tool's call matches the zoo's truth (modelDNA's NO_MATCH read as unrelated, any other verdict as
a claim of kinship). Use a zoo the tests do not build (`parentage zoo build DIR --size full`): its families are
held out.

Both tools are timed as installed: our sources are byte-compiled first (`compileall`), as pip does for an
installed package (an editable install with PYTHONDONTWRITEBYTECODE set would otherwise recompile every
module on every run, about 0.1 s).
"""

from __future__ import annotations

import argparse
import compileall
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PARENTAGE = [str(Path(sys.executable).parent / "parentage")]  # the console script users run


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()[-400:]}")
    return seconds, out.stdout


def _ours(a: Path, b: Path) -> tuple[float, str]:
    seconds, out = _timed(PARENTAGE + ["compare", str(a), str(b), "--format", "json"])
    return seconds, json.loads(out)["verdict"]["label"]


def _modeldna(exe: str, a: Path, b: Path) -> tuple[float, str]:
    seconds, out = _timed([exe, "compare", str(b), str(a), "--json"])  # suspect B, alleged parent A
    verdict = json.loads(out)["verdict"]["verdict"]
    return seconds, "unrelated" if verdict == "NO_MATCH" else "related"


def bench_pairs(zoo: Path, modeldna: str | None, limit: int | None) -> None:
    import parentage

    compileall.compile_dir(Path(parentage.__file__).parent, quiet=1)
    manifest = json.loads((zoo / "manifest.json").read_text())
    pairs = manifest["pairs"][:limit] if limit else manifest["pairs"]
    path = lambda name: zoo / manifest["models"][name]["path"]  # noqa: E731
    _ours(path(pairs[0]["a"]), path(pairs[0]["b"]))  # warm the page cache and the bytecode once
    ours_t, theirs_t, ours_ok, theirs_ok, theirs_failed = [], [], 0, 0, 0
    for k, pair in enumerate(pairs):
        a, b = path(pair["a"]), path(pair["b"])
        runs = [("ours", lambda: _ours(a, b))] + ([("modeldna", lambda: _modeldna(modeldna, a, b))] if modeldna else [])
        for who, run in (runs if k % 2 == 0 else runs[::-1]):  # alternate which tool goes first
            try:
                seconds, label = run()
            except RuntimeError:  # modelDNA reads neither GGUF quantisations nor packed formats: not timed
                theirs_failed += who != "ours"
                if who == "ours":
                    raise
                continue
            if who == "ours":
                ours_t.append(seconds)
                ours_ok += label == pair["truth"]
            else:
                theirs_t.append(seconds)
                theirs_ok += label == pair["truth"]
    n = len(pairs)
    size = sum(f.stat().st_size for f in path(pairs[0]["a"]).rglob("*.safetensors")) if path(pairs[0]["a"]).is_dir() else 0
    print(f"## Wall time per pair: {zoo} ({manifest.get('size')} zoo, {n} pairs, about {size / 2**20:.1f} MiB per "
          f"model; {machine()})\n")
    print(f"`python benchmarks/bench_speed.py pairs {zoo}" + (" --modeldna MODELDNA" if modeldna else "") + "`\n")
    print("| tool | median s | p90 s | calls matching the truth |\n|---|---|---|---|")
    print(f"| parentage compare | {statistics.median(ours_t):.3f} | {np.quantile(ours_t, 0.9):.3f} | {ours_ok} of {n} |")
    if modeldna:
        print(f"| modelDNA 0.1.0 compare | {statistics.median(theirs_t):.3f} | {np.quantile(theirs_t, 0.9):.3f} | "
              f"{theirs_ok} of {n} ({theirs_failed} refused: formats it does not read) |")
        print(f"\nratio of medians, parentage / modelDNA: {statistics.median(ours_t) / statistics.median(theirs_t):.2f}")


def bench_startup(model: str) -> None:
    import parentage

    compileall.compile_dir(Path(parentage.__file__).parent, quiet=1)
    rows = []
    for title, args in (("parentage --help", ["--help"]), ("parentage compare --help", ["compare", "--help"]),
                        ("parentage inspect MODEL", ["inspect", model]),
                        ("parentage inspect MODEL --format json", ["inspect", model, "--format", "json"])):
        _timed(PARENTAGE + args)
        times = [_timed(PARENTAGE + args)[0] for _ in range(7)]
        rows.append((title, statistics.median(times), max(times)))
    print(f"## Start-up: {model} ({machine()})\n\n`python benchmarks/bench_speed.py startup {model}` "
          "(7 runs each after one warm-up)\n")
    print("| command | median s | slowest s |\n|---|---|---|")
    for title, med, worst in rows:
        print(f"| `{title}` | {med:.3f} | {worst:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("zoo", type=Path)
    p.add_argument("--modeldna", default=None, metavar="PATH")
    p.add_argument("--limit", type=int, default=None)
    s = sub.add_parser("startup")
    s.add_argument("model")
    args = ap.parse_args()
    if args.what == "pairs":
        bench_pairs(args.zoo, args.modeldna, args.limit)
    else:
        bench_startup(args.model)


if __name__ == "__main__":
    main()
