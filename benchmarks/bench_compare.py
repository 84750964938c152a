"""`compare` on ground truth and at scale, for benchmarks/BENCHMARKS.md.

    python benchmarks/bench_compare.py zoo DIR        # every pair of a built zoo (parentage zoo build DIR)
    python benchmarks/bench_compare.py big [--workdir DIR]

zoo: the verdict and every counted test's log10 p per pair, the calls against the manifest's truth, and the
distribution of p-values over unrelated pairs (per test and per cell of the exact tests: they should spread
over (0, 1], not pile near 0).

big: a 7B-shaped pair (32 layers, hidden 4096, FFN 11008, vocab 32000, bf16) where B is A plus noise with two
layers inserted; reports bytes read against bytes held, wall time and peak RSS of the compare in a child process.
Targets: <= 1% of bytes, <= 20 s on 2 cores, <= 2 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parentage.pair import compare
from parentage.zoo.truth import explanation_errors, frozen_layers_of

SHAPE_7B = dict(n_layers=32, hidden=4096, ffn=11008, vocab=32000, n_heads=32, n_kv_heads=32)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


# -- zoo -----------------------------------------------------------------------------------------------------


def bench_zoo(zoo: Path) -> None:
    manifest = json.loads((zoo / "manifest.json").read_text())
    rows, unrelated_p, cell_p, wrong_how, notes_of = [], {}, {}, {}, {}
    t0 = time.perf_counter()
    for pair in manifest["pairs"]:
        a, b = (zoo / manifest["models"][x]["path"] for x in (pair["a"], pair["b"]))
        doc = compare(str(a), str(b))
        v = doc["verdict"]
        tests = {e["name"]: e["log10_p"] for e in doc["evidence"] if e["counted"]}
        rows.append((pair, v, tests, doc["cost"]))
        model = manifest["models"][pair["b"]]
        if pair["truth"] == "related" and manifest["models"][pair["a"]]["recipe"] == "base":
            layer_map = model["layer_map"] or list(range(model["model_config"]["n_layers"]))
            wrong_how[pair["b"]] = explanation_errors(doc, layer_map, frozen_layers_of(model))
            notes_of[pair["b"]] = doc["alignment"]["notes"]
        if pair["truth"] == "unrelated":
            for name, p in tests.items():
                unrelated_p.setdefault(name, []).append(p)
            for e in doc["evidence"]:
                for p in e["details"].get("cell_log10_p", []):
                    cell_p.setdefault(e["name"], []).append(p)
    seconds = time.perf_counter() - t0

    print(f"## compare on the zoo at {zoo} ({manifest.get('size')}; {len(rows)} pairs; {machine()})\n")
    print(f"`python benchmarks/bench_compare.py zoo {zoo}`: {seconds:.0f} s for all pairs\n")
    calls = {}
    for pair, v, _, _ in rows:
        calls.setdefault((pair["truth"], v["label"]), 0)
        calls[(pair["truth"], v["label"])] += 1
    print("| truth | called related | called unrelated | inconclusive |\n|---|---|---|---|")
    for truth in ("related", "unrelated"):
        print(f"| {truth} | " + " | ".join(str(calls.get((truth, lab), 0)) for lab in ("related", "unrelated", "inconclusive")) + " |")
    related = [v["log10_p"] for pair, v, _, _ in rows if pair["truth"] == "related"]
    if related:
        print(f"\nrelated pairs: combined log10 p at most {max(related):.1f} (the weakest related pair)")
    bad = {k: v for k, v in wrong_how.items() if v}
    print(f"\nexplanations of the pairs (base, derived) checked against the manifest's layer maps and frozen tensors "
          f"(`zoo.truth.explanation_errors`): {len(wrong_how) - len(bad)} of {len(wrong_how)} true")
    for name, errors in bad.items():
        print(f"- {name}: {'; '.join(errors)}")
    for name, notes in notes_of.items():
        if notes:
            print(f"- {name}: {' / '.join(notes)}")
    print("\nunrelated pairs, distribution of each counted test's p-value (a calibrated test spreads over (0, 1]):\n")
    print("| test | n | p < 0.001 | p < 0.01 | p < 0.1 | p < 0.5 | min log10 p |\n|---|---|---|---|---|---|---|")
    for name, ps in sorted(unrelated_p.items()):
        ps = np.array([p for p in ps if p is not None])
        frac = [f"{np.mean(ps < np.log10(x)):.2f}" for x in (0.001, 0.01, 0.1, 0.5)]
        print(f"| {name} | {len(ps)} | " + " | ".join(frac) + f" | {ps.min():.2f} |")
    print("\nunrelated pairs, per (layer of A, layer of B) cell of the neuron tests (each cell's own p-value; the test's "
          "p-value above is Bonferroni over its cells):\n")
    print("| test | cells | p < 0.001 | p < 0.01 | p < 0.1 | p < 0.5 | min log10 p |\n|---|---|---|---|---|---|---|")
    for name, ps in sorted(cell_p.items()):
        ps = np.array(ps)
        frac = [f"{np.mean(ps < np.log10(x)):.3f}" for x in (0.001, 0.01, 0.1, 0.5)]
        print(f"| {name} | {len(ps)} | " + " | ".join(frac) + f" | {ps.min():.2f} |")
    print("\nper pair (kind, verdict, combined log10 p, counted tests):\n")
    print("| a | b | truth | kind | verdict | log10 p | hidden | ffn order | ffn agreement | rank order | value order | "
          "head order | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = ("hidden_dimension_order", "ffn_neuron_order", "ffn_neuron_agreement", "ffn_neuron_rank_order", "value_row_order",
             "attention_head_order", "identical_tensors")
    for pair, v, tests, _ in rows:
        cells = [("" if tests.get(n) is None else f"{tests[n]:.1f}") for n in order]
        print(f"| {pair['a']} | {pair['b']} | {pair['truth']} | {pair.get('kind', '')} | {v['label']} | {v['log10_p']} | "
              + " | ".join(cells) + " |")


# -- big -----------------------------------------------------------------------------------------------------


def write_7b_pair(folder: Path) -> tuple[Path, Path]:
    """A: random bf16 weights of a 7B shape; B: A plus 1% noise, with two fresh layers inserted after 10 and 20.

    Written tensor by tensor so the writer's memory stays at one tensor."""
    s = SHAPE_7B
    rng = np.random.default_rng(0)
    names = _llama_names(s)
    a_dir, b_dir = folder / "a", folder / "b"
    for d in (a_dir, b_dir):
        d.mkdir(parents=True, exist_ok=True)
    inserted = {11, 22}  # B's layer indices that are new
    b_from_a = [i for i in range(s["n_layers"])]
    b_layers: list[int | None] = []
    for i in b_from_a:
        b_layers.append(i)
        if len(b_layers) in inserted:
            b_layers.append(None)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": s["hidden"],
              "intermediate_size": s["ffn"], "num_attention_heads": s["n_heads"], "num_key_value_heads": s["n_kv_heads"],
              "vocab_size": s["vocab"], "torch_dtype": "bfloat16", "tie_word_embeddings": False}
    _write_streaming(a_dir / "model.safetensors", names(range(s["n_layers"])), lambda name, shape: _init(rng, name, shape),
                     {**config, "num_hidden_layers": s["n_layers"]}, a_dir)
    from parentage.readers import open_file

    src = open_file(a_dir / "model.safetensors")

    def b_tensor(name: str, shape: tuple) -> np.ndarray:
        if ".layers." in name:
            j = int(name.split(".layers.")[1].split(".")[0])
            i = b_layers[j]
            if i is None:
                return _init(rng, name, shape)
            name = name.replace(f".layers.{j}.", f".layers.{i}.")
        x = src.read_rows(name, 0, shape[0])
        if x.ndim == 2:
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.01 * x.std())
        return x

    _write_streaming(b_dir / "model.safetensors", names(range(len(b_layers))), b_tensor,
                     {**config, "num_hidden_layers": len(b_layers)}, b_dir)
    src.close()
    return a_dir, b_dir


def write_7b_independent(folder: Path) -> Path:
    """C: an independent model of A's shape (other seed): the unrelated case, where the order tests find
    nothing and the permutation-invariant test must read some of C's FFNs whole."""
    s = SHAPE_7B
    rng = np.random.default_rng(1)
    c_dir = folder / "c"
    c_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": s["hidden"],
              "intermediate_size": s["ffn"], "num_attention_heads": s["n_heads"], "num_key_value_heads": s["n_kv_heads"],
              "vocab_size": s["vocab"], "torch_dtype": "bfloat16", "tie_word_embeddings": False,
              "num_hidden_layers": s["n_layers"]}
    _write_streaming(c_dir / "model.safetensors", _llama_names(s)(range(s["n_layers"])),
                     lambda name, shape: _init(rng, name, shape), config, c_dir)
    return c_dir


def _llama_names(s: dict):
    hd = s["hidden"] // s["n_heads"]

    def names(layers) -> dict[str, tuple]:
        out = {"model.embed_tokens.weight": (s["vocab"], s["hidden"])}
        for i in layers:
            p = f"model.layers.{i}."
            out |= {p + "input_layernorm.weight": (s["hidden"],), p + "post_attention_layernorm.weight": (s["hidden"],),
                    p + "self_attn.q_proj.weight": (s["hidden"], s["hidden"]),
                    p + "self_attn.k_proj.weight": (s["n_kv_heads"] * hd, s["hidden"]),
                    p + "self_attn.v_proj.weight": (s["n_kv_heads"] * hd, s["hidden"]),
                    p + "self_attn.o_proj.weight": (s["hidden"], s["hidden"]),
                    p + "mlp.gate_proj.weight": (s["ffn"], s["hidden"]), p + "mlp.up_proj.weight": (s["ffn"], s["hidden"]),
                    p + "mlp.down_proj.weight": (s["hidden"], s["ffn"])}
        out |= {"model.norm.weight": (s["hidden"],), "lm_head.weight": (s["vocab"], s["hidden"])}
        return out

    return names


def _init(rng, name: str, shape: tuple) -> np.ndarray:
    if len(shape) == 1:
        return np.ones(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


def _write_streaming(path: Path, shapes: dict[str, tuple], make, config: dict, folder: Path) -> None:
    from parentage.dtypes import round_to_bf16

    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for name, shape in shapes.items():
            f.write(round_to_bf16(make(name, shape).astype(np.float32)).tobytes())
    (folder / "config.json").write_text(json.dumps(config))


def _drop_page_cache() -> bool:
    """Cold-cache timing when allowed (root on Linux); otherwise the files may still be cached from writing."""
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _measure(a: Path, b: Path) -> dict:
    """compare in a fresh child process, cold page cache when allowed."""
    subprocess.run(["sync"], check=False)
    cold = _drop_page_cache()
    # VmHWM, not ru_maxrss: the latter survives exec and would report the writer's memory if forked from it.
    code = ("import json, time; from parentage.pair import compare; t=time.perf_counter(); "
            f"d=compare({str(a)!r}, {str(b)!r}); d['wall']=time.perf_counter()-t; "
            "s=open('/proc/self/status').read(); d['rss_kb']=int(s.split('VmHWM:')[1].split()[0]); print(json.dumps(d))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    doc["cold"] = cold
    return doc


def bench_big(workdir: Path) -> None:
    a, b, c = workdir / "a", workdir / "b", workdir / "c"
    t0 = time.perf_counter()
    if not (b / "config.json").exists():
        write_7b_pair(workdir)
    if not (c / "config.json").exists():
        write_7b_independent(workdir)
    print(f"(checkpoints ready in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    runs = [("B = A + noise, 2 layers inserted", _measure(a, b)), ("C independent of A", _measure(a, c))]
    print(f"## compare, 7B-shaped bf16 pairs (32 layers, hidden 4096, FFN 11008, vocab 32000); {machine()}\n")
    print("`python benchmarks/bench_compare.py big` (default budget; each run in a fresh process"
          f"{', cold page cache' if runs[0][1]['cold'] else ''})\n")
    print("| pair | bytes read / held | wall time | peak RSS | verdict | notes |\n|---|---|---|---|---|---|")
    for title, doc in runs:
        c_ = doc["cost"]
        print(f"| {title} | {c_['bytes_read'] / c_['bytes_total']:.4f} ({c_['bytes_read'] / 2**20:.0f} MiB of "
              f"{c_['bytes_total'] / 2**30:.1f} GiB) | {doc['wall']:.1f} s | {doc['rss_kb'] / 2**20:.2f} GiB | "
              f"{doc['verdict']['label']} (log10 p {doc['verdict']['log10_p']}) | {'; '.join(doc['alignment']['notes'])} |")
    print("\ntargets for the derived pair: <= 0.01 of bytes, <= 20 s, <= 2 GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    z = sub.add_parser("zoo")
    z.add_argument("dir", type=Path)
    g = sub.add_parser("big")
    g.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if args.what == "zoo":
        bench_zoo(args.dir)
    else:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            bench_big(args.workdir)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                bench_big(Path(tmp))


if __name__ == "__main__":
    main()
