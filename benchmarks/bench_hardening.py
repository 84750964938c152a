"""What the input hardening costs on the normal path: the same work with the code before and after, in one run.

    python benchmarks/bench_hardening.py ZOO_DIR OLD_SRC        # OLD_SRC: src/ of a checkout before the change

Each side runs in its own process (so each imports its own parentage): `compare` over every pair of a built zoo
(same seed), then `inspect` and `tokenizer` on every model; passes alternate old, new, old, new and the best
of each side is kept. Verdicts and combined p-values must come out the same.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

DRIVER = r"""
import json, sys, time
from pathlib import Path
from parentage.compare import compare
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


def run(src: Path, zoo: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", DRIVER, str(zoo)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    zoo, old = Path(sys.argv[1]), Path(sys.argv[2])
    new = Path(__file__).resolve().parent.parent / "src"
    results: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(2):
        for side, src in (("before", old), ("after", new)):
            results[side].append(run(src, zoo))
    best = {side: {k: min(r[k] for r in rs) for k in ("compare_s", "inspect_tokenizer_s")} for side, rs in results.items()}
    same = results["before"][0]["calls"] == results["after"][0]["calls"]
    n = len(results["after"][0]["calls"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"zoo: {zoo} ({n} pairs); best of 2 passes per side, passes alternating")
    for k, label in (("compare_s", f"compare, all {n} pairs"), ("inspect_tokenizer_s", "inspect + tokenizer, every model")):
        print(f"  {label}: before {best['before'][k]:.2f} s, after {best['after'][k]:.2f} s, "
              f"ratio {best['after'][k] / best['before'][k]:.3f}")
    print(f"  verdicts and combined log10 p identical on every pair: {same}")


if __name__ == "__main__":
    main()
