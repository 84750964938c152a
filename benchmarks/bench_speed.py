"""Wall time as a user sees it: one command per pair, in a fresh process, beside modelDNA on the same pairs.

    python benchmarks/bench_speed.py pairs ZOO [--modeldna PATH] [--serve] [--limit N]   # every pair of a zoo
    python benchmarks/bench_speed.py startup MODEL                             # --help, inspect
    python benchmarks/bench_speed.py parts A B                                 # where one compare's time goes

`pairs` runs `parentage compare A B --format json` and (with --modeldna, the path of modelDNA 0.1.0's
`modeldna` command, installed in a scratch venv: it is not a dependency) `modeldna compare B A --json` on each
pair, alternating which goes first, and reports each tool's median wall time, their ratio in this one run, and
how often each tool's call matches the zoo's truth (modelDNA's NO_MATCH read as unrelated, any other verdict as
a claim of kinship). With --serve, each pair is also timed through a `parentage serve` started for the run
(the client is still one process per pair: the `parentage` command, finding the server's socket). Use a zoo
the tests do not build (`parentage zoo build DIR --size full`): its families are held out.

Both tools are timed as installed: our sources are byte-compiled first (`compileall`), as pip does for an
installed package (an editable install with PYTHONDONTWRITEBYTECODE set would otherwise recompile every
module on every run, about 0.1 s).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PARENTAGE = [str(Path(sys.executable).parent / "parentage")]  # the console script users run


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()[-400:]}")
    return seconds, out.stdout


def _ours(a: Path, b: Path, env: dict) -> tuple[float, str]:
    seconds, out = _timed(PARENTAGE + ["compare", str(a), str(b), "--format", "json"], env)
    return seconds, json.loads(out)["verdict"]["label"]


def _modeldna(exe: str, a: Path, b: Path) -> tuple[float, str]:
    seconds, out = _timed([exe, "compare", str(b), str(a), "--json"])  # suspect B, alleged parent A
    verdict = json.loads(out)["verdict"]["verdict"]
    return seconds, "unrelated" if verdict == "NO_MATCH" else "related"


@contextlib.contextmanager
def _server():
    """A `parentage serve` on a socket of its own for the run: the environment that sends commands to it."""
    folder = tempfile.mkdtemp(prefix="pbench", dir="/tmp")
    env = {**os.environ, "PARENTAGE_SERVE": os.path.join(folder, "s.sock")}
    proc = subprocess.Popen(PARENTAGE + ["serve"], env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "serving on" not in line:
        raise RuntimeError(f"parentage serve did not start: {line}{proc.stderr.read()}")
    try:
        yield env
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def bench_pairs(zoo: Path, modeldna: str | None, limit: int | None, serve: bool) -> None:
    import parentage

    compileall.compile_dir(Path(parentage.__file__).parent, quiet=1)
    manifest = json.loads((zoo / "manifest.json").read_text())
    pairs = manifest["pairs"][:limit] if limit else manifest["pairs"]
    path = lambda name: zoo / manifest["models"][name]["path"]  # noqa: E731
    alone = {**os.environ, "PARENTAGE_SERVE": "off"}  # a fresh process per pair, whatever serves elsewhere
    with contextlib.ExitStack() as stack:
        served = stack.enter_context(_server()) if serve else None
        tools = {"parentage compare": lambda a, b: _ours(a, b, alone)}
        if served:
            tools["parentage compare, served"] = lambda a, b: _ours(a, b, served)
        if modeldna:
            tools["modelDNA 0.1.0 compare"] = lambda a, b: _modeldna(modeldna, a, b)
        for run in tools.values():  # warm the page cache and the bytecode once
            try:
                run(path(pairs[0]["a"]), path(pairs[0]["b"]))
            except RuntimeError:
                pass
        names = list(tools)
        seconds = {t: {} for t in names}  # tool -> pair index -> wall seconds
        right = {t: 0 for t in names}
        refused = 0
        for k, pair in enumerate(pairs):
            a, b = path(pair["a"]), path(pair["b"])
            for t in names[k % len(names):] + names[:k % len(names)]:  # rotate which tool goes first
                try:
                    sec, label = tools[t](a, b)
                except RuntimeError:  # modelDNA reads neither GGUF quantisations nor packed formats: not timed
                    if not t.startswith("modelDNA"):
                        raise
                    refused += 1
                    continue
                seconds[t][k] = sec
                right[t] += label == pair["truth"]
    n = len(pairs)
    common = sorted(set.intersection(*(set(v) for v in seconds.values())))  # pairs every tool read
    size = sum(f.stat().st_size for f in path(pairs[0]["a"]).rglob("*.safetensors")) if path(pairs[0]["a"]).is_dir() else 0
    print(f"## Wall time per pair: {zoo} ({manifest.get('size')} zoo, {n} pairs, about {size / 2**20:.1f} MiB per "
          f"model; {machine()})\n")
    print(f"`python benchmarks/bench_speed.py pairs {zoo}" + (" --modeldna MODELDNA" if modeldna else "")
          + (" --serve" if serve else "") + "`\n")
    print(f"One process per call; the tools take turns going first. Medians over every pair a tool read, and over "
          f"the {len(common)} pairs every tool read.\n")
    print("| tool | median s | p90 s | median s, common pairs | calls matching the truth |\n|---|---|---|---|---|")
    med = {}
    for t in names:
        xs = list(seconds[t].values())
        med[t] = statistics.median([seconds[t][k] for k in common])
        note = f" ({refused} refused: formats it does not read)" if t.startswith("modelDNA") else ""
        print(f"| {t} | {statistics.median(xs):.3f} | {np.quantile(xs, 0.9):.3f} | {med[t]:.3f} | "
              f"{right[t]} of {n}{note} |")
    if modeldna:
        theirs = med["modelDNA 0.1.0 compare"]
        for t in names[:-1]:
            print(f"\nratio of medians on the common pairs, {t} / modelDNA: {med[t] / theirs:.2f}")


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


PARTS_RUN = """
import json, sys, time
t0 = time.perf_counter()
from parentage.pair import compare
t1 = time.perf_counter()
compare(sys.argv[1], sys.argv[2])
t2 = time.perf_counter()
compare(sys.argv[1], sys.argv[2])
print(json.dumps([t2 - t1, time.perf_counter() - t2]))
"""


def bench_parts(a: str, b: str, runs: int = 9) -> None:
    """Where a fresh process's compare time goes: each stage timed as the difference of two medians, or inside
    one process (the compare's first and second call)."""
    import parentage

    compileall.compile_dir(Path(parentage.__file__).parent, quiet=1)
    py = [sys.executable]
    steps = {"the interpreter (`python -c pass`)": py + ["-c", "pass"],
             "the interpreter and numpy": py + ["-c", "import numpy"],
             "the interpreter, click and the CLI module (no numpy)": py + ["-c", "import parentage.cli"],
             "the interpreter, numpy, click and every module a compare imports": py + ["-c", "import parentage.cli, parentage.pair"],
             "`parentage compare A B --format json`": PARENTAGE + ["compare", a, b, "--format", "json"]}
    alone = {**os.environ, "PARENTAGE_SERVE": "off"}
    times = {k: [] for k in steps}
    calls = []
    for _ in range(runs):
        for k, cmd in steps.items():
            times[k].append(_timed(cmd, alone)[0])
        calls.append(json.loads(_timed(py + ["-c", PARTS_RUN, a, b], alone)[1]))
    print(f"## Where a compare's time goes: {a} ~ {b} ({machine()})\n\n`python benchmarks/bench_speed.py parts A B` "
          f"(medians of {runs} fresh processes each, the commands run in rounds)\n")
    print("| stage | median s |\n|---|---|")
    for k in steps:
        print(f"| {k} | {statistics.median(times[k]):.3f} |")
    first, warm = statistics.median(c[0] for c in calls), statistics.median(c[1] for c in calls)
    print(f"| the compare's first call in a process (in-process timer) | {first:.3f} |")
    print(f"| its second call (warm) | {warm:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("zoo", type=Path)
    p.add_argument("--modeldna", default=None, metavar="PATH")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--serve", action="store_true", help="Also time each pair through a running `parentage serve`.")
    s = sub.add_parser("startup")
    s.add_argument("model")
    q = sub.add_parser("parts")
    q.add_argument("a")
    q.add_argument("b")
    args = ap.parse_args()
    if args.what == "pairs":
        bench_pairs(args.zoo, args.modeldna, args.limit, args.serve)
    elif args.what == "parts":
        bench_parts(args.a, args.b)
    else:
        bench_startup(args.model)


if __name__ == "__main__":
    main()
