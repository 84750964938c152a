"""What a quantised checkpoint costs to compare, against the same weights in bf16, for benchmarks/BENCHMARKS.md.

    python benchmarks/bench_quantized.py [--workdir DIR] [--layers 8] [--hidden 2048] [--ffn 5632] [--vocab 32000]

A source A and a related B (A plus 2% noise) are written in bf16; B is also written in every quantised format
parentage reads (with the project's writers: round-to-nearest GPTQ, AWQ, NF4, MLX, compressed-tensors INT4 and
FP8, ONNX int8 and MatMulNBits). For each format, in one run:
1. compare(A, B in that format) at the default budget: the bytes read from B against the bytes read from B in
   bf16 (target: at most 2x), the seconds, the verdict;
2. compare(B in bf16, B in that format): the export relation and its seconds;
3. the same pair through the loopback hub for GPTQ and ONNX (packed along the input: strided range reads), the
   bytes transferred against bf16's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parentage.pair import compare
from parentage.synthetic import Shape, config_for, random_state_dict, write_tensors
from parentage.zoo.onnx_export import export_onnx
from parentage.zoo.quantize import Export, export_model

FORMATS = {"gptq": Export("gptq", 4, 128), "awq": Export("awq", 4, 128), "nf4": Export("nf4"),
           "mlx": Export("mlx", 4, 64), "ct-int4": Export("compressed", 4, 128), "fp8": Export("fp8"),
           "onnx-int8": "int8", "onnx-nbits4": "nbits4"}


def write_bf16(folder: Path, sd: dict, shape: Shape) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(folder / "model.safetensors", {k: ("BF16", v) for k, v in sd.items()})
    (folder / "config.json").write_text(json.dumps(config_for("llama", shape)))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    args = ap.parse_args()
    shape = Shape(n_layers=args.layers, hidden=args.hidden, n_heads=args.hidden // 64, n_kv_heads=args.hidden // 256,
                  ffn=args.ffn, vocab=args.vocab)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-quantized-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"shape: {shape.n_layers} layers, hidden {shape.hidden}, FFN {shape.ffn}, vocab {shape.vocab}; workdir {work}")
    t0 = time.perf_counter()
    sd = random_state_dict("llama", shape, seed=1)
    rng = np.random.default_rng(2)
    derived = {k: (v + 0.02 * v.std() * rng.standard_normal(v.shape)).astype(np.float32) for k, v in sd.items()}
    a = write_bf16(work / "a-bf16", sd, shape)
    b = write_bf16(work / "b-bf16", derived, shape)
    folders = {}
    for name, spec in FORMATS.items():
        folder = work / f"b-{name}"
        if not (folder / "config.json").exists():
            if isinstance(spec, Export):
                export_model(b, folder, spec, derived)
            else:
                export_onnx(folder, derived, shape.n_layers, spec, "torch", external=True)
                shutil.copy2(b / "config.json", folder / "config.json")
        folders[name] = folder
    print(f"written in {time.perf_counter() - t0:.0f} s\n")

    base = compare(str(a), str(b))
    base_read = base["cost"]["per_input"][1]["bytes_read"]
    print("| B stored as | B's bytes | read from B | vs bf16 | seconds | verdict | export relation (B bf16 vs B) | seconds |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    print(f"| bf16 | {base['cost']['per_input'][1]['bytes_total'] / 1e6:,.0f} MB | {base_read / 1e6:,.1f} MB | 1.00x | "
          f"{base['cost']['seconds']:.1f} | {base['verdict']['label']} | | |")
    for name, folder in folders.items():
        doc = compare(str(a), str(folder))
        c = doc["cost"]["per_input"][1]
        own = compare(str(b), str(folder))
        ex = own["alignment"]["export"] or {}
        relation = f"{ex.get('relation')}, {ex.get('n_within')} of {ex.get('n_compared')} within, child {ex.get('child')}"
        print(f"| {name} | {c['bytes_total'] / 1e6:,.0f} MB | {c['bytes_read'] / 1e6:,.1f} MB | "
              f"{c['bytes_read'] / base_read:.2f}x | {doc['cost']['seconds']:.1f} | {doc['verdict']['label']} | "
              f"{relation} | {own['cost']['seconds']:.1f} |")

    remote(a, b, folders, work)


def remote(a: Path, b: Path, folders: dict, work: Path) -> None:
    """The packed-along-the-input formats through the loopback hub: bytes transferred against bf16's."""
    import huggingface_hub.constants

    from parentage.zoo.hub_emulator import HubEmulator

    os.environ.pop("HF_HUB_OFFLINE", None)
    huggingface_hub.constants.HF_HUB_OFFLINE = False
    print("\n| B on the loopback hub | transferred from B | read from B | of B's bytes | seconds | verdict |")
    print("|---|---:|---:|---:|---:|---|")
    for name, folder in (("bf16", b), ("gptq", folders["gptq"]), ("onnx-int8", folders["onnx-int8"])):
        os.environ["PARENTAGE_CACHE"] = str(work / f"cache-{name}")  # a cold range cache each
        shutil.rmtree(work / f"cache-{name}", ignore_errors=True)
        with HubEmulator() as hub:
            hub.add_folder("acme/b", folder)
            os.environ["HF_ENDPOINT"] = hub.url
            os.environ["HF_HUB_CACHE"] = str(work / f"hf-{name}")
            doc = compare(str(a), "acme/b")
        c = doc["cost"]["per_input"][1]
        print(f"| {name} | {c['bytes_transferred'] / 1e6:,.1f} MB | {c['bytes_read'] / 1e6:,.1f} MB | "
              f"{100 * c['bytes_transferred'] / c['bytes_total']:.1f}% | {doc['cost']['seconds']:.1f} | "
              f"{doc['verdict']['label']} |")


if __name__ == "__main__":
    sys.exit(main())
