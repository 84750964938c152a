"""What the input hardening costs on the normal path: the same work with the code before and after, in one run.

    python benchmarks/bench_hardening.py ZOO_DIR OLD_SRC [NEW_SRC]   # *_SRC: src/ of checkouts before and after

Each side runs in its own process (so each imports its own parentage): `compare` over every pair of a built zoo
(same seed), then `inspect` and `tokenizer` on every model, and `inspect` of the sparse 70B-shaped checkpoint of
bench_readers.py; passes alternate old, new five times and the best
of each side is kept. Verdicts and combined p-values must come out the same.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSPECT_DRIVER = r"""
import json, sys, time
from parentage.inspection import inspect_checkpoint
from parentage.checkpoint import Checkpoint
inspect_checkpoint(sys.argv[1])  # warm the page cache and imports
times = []
for _ in range(9):
    t0 = time.perf_counter()
    inspect_checkpoint(sys.argv[1])
    times.append(time.perf_counter() - t0)
print(json.dumps({"inspect_70b_s": sorted(times)[len(times) // 2]}))
"""

DRIVER = r"""
import json, sys, time
from pathlib import Path
from parentage.pair import compare
from parentage.inspection import inspect_checkpoint
from parentage.tokenizers.report import tokenizer_report
zoo = Path(sys.argv[1])
m = json.loads((zoo / "manifest.json").read_text())
paths = {k: str(zoo / v["path"]) for k, v in m["models"].items()}
t0 = time.perf_counter()
calls = [(p["a"], p["b"], (d := compare(paths[p["a"]], paths[p["b"]]))["verdict"]["label"], d["verdict"]["log10_p"])
         for p in m["pairs"]]
t1 = time.perf_counter()
for path in paths.values():
    inspect_checkpoint(path)
    tokenizer_report([path])
t2 = time.perf_counter()
print(json.dumps({"compare_s": t1 - t0, "inspect_tokenizer_s": t2 - t1, "calls": calls}))
"""


def run(src: Path, zoo: Path, big: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    out = {}
    for driver, arg in ((DRIVER, zoo), (INSPECT_DRIVER, big)):
        proc = subprocess.run([sys.executable, "-c", driver, str(arg)], env=env, capture_output=True, text=True, check=True)
        out.update(json.loads(proc.stdout.splitlines()[-1]))
    return out


def main() -> None:
    zoo, old = Path(sys.argv[1]), Path(sys.argv[2])
    new = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).resolve().parent.parent / "src"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_readers import write_sparse_70b

    big = Path(tempfile.mkdtemp(prefix="parentage-bench-70b-"))
    write_sparse_70b(big)
    keys = ("compare_s", "inspect_tokenizer_s", "inspect_70b_s")
    results: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(5):
        for side, src in (("before", old), ("after", new)):
            results[side].append(run(src, zoo, big))
    best = {side: {k: min(r[k] for r in rs) for k in keys} for side, rs in results.items()}
    # the whole command, interpreter start-up included, alternating sides: median of 12
    whole: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(12):
        for side, src in (("before", old), ("after", new)):
            env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "parentage.cli", "inspect", str(big)], env=env, capture_output=True,
                           check=True)
            whole[side].append(time.perf_counter() - t0)
    for side in whole:
        best[side]["inspect_command_s"] = sorted(whole[side])[len(whole[side]) // 2]
    before, after = results["before"][0]["calls"], results["after"][0]["calls"]
    same_labels = [c[:3] for c in before] == [c[:3] for c in after]
    same = before == after
    n = len(results["after"][0]["calls"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"zoo: {zoo} ({n} pairs); best of 5 passes per side, passes alternating")
    for k, label in (("compare_s", f"compare, all {n} pairs"), ("inspect_tokenizer_s", "inspect + tokenizer, every model"),
                     ("inspect_70b_s", "inspect of a sparse 70B-shaped sharded checkpoint (median of 9)"),
                     ("inspect_command_s", "the same `parentage inspect` as a whole command (median of 12)")):
        print(f"  {label}: before {best['before'][k]:.2f} s, after {best['after'][k]:.2f} s, "
              f"ratio {best['after'][k] / best['before'][k]:.3f}")
    print(f"  verdicts identical on every pair: {same_labels}; combined log10 p identical too: {same}")


if __name__ == "__main__":
    main()
