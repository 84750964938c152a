"""Zoo build budgets and how far each derivation moved the weights, for benchmarks/BENCHMARKS.md.

    python benchmarks/bench_zoo.py [--sizes ci,full] [--workdir DIR]

Targets: `--size ci` builds every derivation kind in <= 5 minutes on 2 cores; `--size full` has >= 8
independent bases and builds in <= 60 minutes. Continued-training cases must move the FFN and attention
matrices at least as far from the parent as the parent moved from its own initialisation (ratio >= 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from parentage.zoo.build import build_zoo

CONTINUED = ("continued", "frozen", "replace_tokenizer", "combined")


def report(size: str, work: Path) -> list[str]:
    folder = work / f"zoo-{size}"
    t0 = time.perf_counter()
    m = build_zoo(folder, size=size, seed=0, log=lambda _: None)
    seconds = time.perf_counter() - t0
    bases = sum(e["recipe"] == "base" for e in m["models"].values())
    related = sum(p["truth"] == "related" for p in m["pairs"])
    lines = [
        f"--size {size}: {len(m['models'])} models ({bases} independent bases), {len(m['pairs'])} pairs "
        f"({related} related, {len(m['pairs']) - related} unrelated), built in {seconds / 60:.1f} min",
        f"  1x compute = {m['compute_unit']}",
        "  model            recipe             steps  loss   attn: rel, vs pretraining   ffn: rel, vs pretraining",
    ]
    for name, e in m["models"].items():
        mv = e.get("movement") or {}
        cells = []
        for g in ("attn", "ffn"):
            if g in mv:
                vs = mv[g].get("vs_parent_pretraining")
                cells.append(f"{mv[g]['rel_change']:6.3f}, {vs:6.3f}" if vs is not None else f"{mv[g]['rel_change']:6.3f},    -  ")
            else:
                cells.append("     -        ")
        loss = e.get("final_loss")
        loss_s = f"{loss:.3f}" if loss is not None else "-"
        lines.append(f"  {name:16s} {e['recipe']:18s} {e.get('steps', 0):5d}  {loss_s:>5}   "
                     f"{cells[0]:>22s}      {cells[1]:>22s}")
    short = [n for n, e in m["models"].items() if e["recipe"] in CONTINUED and e.get("movement")
             and min(e["movement"][g].get("vs_parent_pretraining", 0) for g in ("attn", "ffn")) < 1.0]
    lines.append(f"  continued-training cases below ratio 1 in attn or ffn: {short or 'none'}")
    obf = [e["function_check"] for e in m["models"].values() if "function_check" in e]
    lines += [f"  obfuscation without training: max |logit difference| {f['max_abs_logit_diff']:.2e} "
              f"(logits up to {f['max_abs_logit']:.2f})" for f in obf]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="ci,full")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="parentage-zoo-bench-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    for size in args.sizes.split(","):
        for line in report(size, work):
            print(line, flush=True)


if __name__ == "__main__":
    main()
