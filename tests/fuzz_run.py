"""The fuzz harness: hostile inputs (tests/hostile.py) through the real CLI, with a time and memory limit.

    python -m tests.fuzz_run --seed 0 --per-format 200          # from the project root; prints a summary
    python -m tests.fuzz_run --seed 0 --per-format 20 --only gguf --show

A child process runs the cases one after another in-process (click's test runner, so each case costs
milliseconds, not an interpreter start) under an address-space limit; the parent gives each case a wall-clock
limit and, when one hangs, kills the child, records the hang and starts a new child at the next case.

What each case must show (the promise of issue 10): exit status 0 or 1; on 1 exactly one line on stderr,
`parentage: error: ...`, never an internal error or a traceback; on 0 nothing on stderr and, for JSON output,
a strict JSON document (no NaN or Infinity); no file of the input changed, none created beside it (nothing
half-written), no link, FIFO or device replaced; nothing executed; nothing outside the model's place read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADDRESS_SPACE = 3 << 30
TIMEOUT = 20.0


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under folder: its type, link target, and a digest of small regular files."""
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            st = os.lstat(p)
            kind = st.st_mode & 0o170000
            extra = None
            if os.path.islink(p):
                extra = os.readlink(p)
            elif kind == 0o100000 and st.st_size <= 1 << 20:
                extra = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(folder))] = (kind, extra)
    return out


def _strict_json(text: str) -> str | None:
    def reject(name):
        raise ValueError(f"non-standard constant {name}")

    try:
        json.loads(text, parse_constant=reject)
    except ValueError as e:
        return str(e)[:200]
    return None


def check(argv: list[str], code: int, out: str, err: str, before: dict, after: dict, folder: Path) -> list[str]:
    problems = []
    lines = [line for line in err.splitlines() if line.strip()]
    if code not in (0, 1):
        problems.append(f"exit status {code}")
    if code == 1:
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if not lines or not lines[-1].startswith("parentage: error: "):
            problems.append("no 'parentage: error:' line")
    if code == 0 and lines:
        problems.append("stderr on success")
    for bad in ("internal error", "Traceback", "MemoryError", "RecursionError"):
        if bad in err:
            problems.append(bad)
    if code == 0 and "json" in argv:
        why = _strict_json(out)
        if why:
            problems.append(f"invalid JSON ({why})")
    if (folder / "PWNED").exists():
        problems.append("pickle executed")
    if "SECRET-OUTSIDE-THE-CACHE" in out or (code == 0 and str(folder / "secret") in out):
        problems.append("read outside the hub cache")
    for name, (kind, extra) in before.items():
        now = after.get(name)
        if now is None:
            problems.append(f"{name} removed")
        elif now[0] != kind or (kind != 0o100000 and now[1] != extra):
            problems.append(f"{name} replaced ({oct(kind)} -> {oct(now[0])})")
        elif kind == 0o100000 and extra is not None and now[1] != extra and not name.endswith(".sqlite"):
            problems.append(f"{name} modified")  # an index is a database the commands keep (migrate, sketch)
    new = [n for n in after if n not in before and not n.startswith(("hub/.locks", "cache/"))
           and not n.endswith((".sqlite-wal", ".sqlite-shm"))]
    # what a command that succeeds is asked to write: an HTML page, the index an import fills
    outputs = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--html" or (a == "--db" and "import" in argv)}
    new = [n for n in new if code != 0 or str(folder / n) not in outputs]
    if new:
        problems.append(f"left behind: {new[:3]}")
    return problems


def _case_rng(seed: int, fmt: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{fmt}:{index}")


def child(seed: int, cases: list[tuple[str, int]], scratch: Path) -> None:
    """Run cases in this process; one JSON line per case on stdout (the CLI's own output is captured)."""
    import warnings

    from click.testing import CliRunner

    from parentage.cli import cli

    from .hostile import GENERATORS, good_model

    good = str(good_model(scratch / "good"))
    report = sys.stdout
    for fmt, index in cases:
        folder = scratch / f"{fmt}-{index}"
        folder.mkdir()
        print(json.dumps({"start": [fmt, index]}), file=report, flush=True)
        rng = _case_rng(seed, fmt, index)
        try:
            argv = GENERATORS[fmt](rng, folder, good)
        except Exception as e:  # a generator bug, not a parentage bug
            print(json.dumps({"case": [fmt, index], "skipped": f"generator: {type(e).__name__}: {e}"}), file=report, flush=True)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        os.environ["HF_HUB_CACHE"] = str(folder / "hub")
        os.environ["PARENTAGE_CACHE"] = str(folder / "cache")
        before = _snapshot(folder)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            result = CliRunner().invoke(cli, argv)
        seconds = time.perf_counter() - t0
        after = _snapshot(folder)
        problems = check(argv, result.exit_code, result.stdout, result.stderr, before, after, folder)
        print(json.dumps({"case": [fmt, index], "argv": [a.replace(str(folder), "$CASE") for a in argv],
                          "exit": result.exit_code, "stderr": result.stderr[-2000:], "seconds": round(seconds, 3),
                          "problems": problems}), file=report, flush=True)
        shutil.rmtree(folder, ignore_errors=True)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run(seed: int, per_format: int, only: list[str] | None = None, timeout: float = TIMEOUT,
        log=lambda line: None) -> list[dict]:
    """Every case's record; records with `problems` are failures."""
    from .hostile import GENERATORS

    formats = only or list(GENERATORS)
    pending = [(f, i) for i in range(per_format) for f in formats]
    results: list[dict] = []
    root = Path(__file__).resolve().parent.parent
    while pending:
        scratch = Path(tempfile.mkdtemp(prefix="parentage-fuzz-"))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
        proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz_run", "--child", str(seed), str(scratch)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=root, env=env, preexec_fn=_limit_memory)
        proc.stdin.write(json.dumps(pending))
        proc.stdin.close()
        current, started = None, time.monotonic()
        done: set = set()
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                rec = json.loads(line)
                if "start" in rec:
                    current, started = tuple(rec["start"]), time.monotonic()
                    continue
                done.add(tuple(rec["case"]))
                results.append(rec)
                current = None
                if rec.get("problems"):
                    log(json.dumps(rec))
            elif current is not None and time.monotonic() - started > timeout:
                proc.kill()
                results.append({"case": list(current), "problems": [f"hung past {timeout:.0f} s"]})
                done.add(current)
                log(json.dumps(results[-1]))
                break
        proc.wait()
        if current is not None and current not in done:  # the child died inside a case (memory limit, crash)
            tail = proc.stderr.read()[-1500:]
            results.append({"case": list(current), "problems": [f"child died ({proc.returncode})"], "stderr": tail})
            done.add(current)
            log(json.dumps(results[-1]))
        shutil.rmtree(scratch, ignore_errors=True)
        pending = [c for c in pending if c not in done]
        if not ready and current is None and pending and proc.returncode not in (0, None):
            break
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        cases = [tuple(c) for c in json.loads(sys.stdin.read())]
        child(int(sys.argv[2]), cases, Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-format", type=int, default=100)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--timeout", type=float, default=TIMEOUT)
    ap.add_argument("--show", action="store_true", help="print every failing case as it happens")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = run(args.seed, args.per_format, args.only, args.timeout, log=print if args.show else lambda _: None)
    failing = [r for r in results if r.get("problems")]
    by_problem: dict[str, int] = {}
    for r in failing:
        for p in r["problems"]:
            key = p.split(" (")[0]
            by_problem[key] = by_problem.get(key, 0) + 1
    ran = [r for r in results if "skipped" not in r]
    print(f"{len(ran)} cases ({len(results) - len(ran)} skipped), {len(failing)} failing, "
          f"{time.perf_counter() - t0:.0f} s; slowest {max((r.get('seconds', 0) for r in ran), default=0):.1f} s")
    for p, n in sorted(by_problem.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {p}")


if __name__ == "__main__":
    main()
