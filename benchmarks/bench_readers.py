"""Reader speed and cost, for benchmarks/BENCHMARKS.md.

    python benchmarks/bench_readers.py [--workdir DIR]

1. `inspect` of a sharded 70B-shaped checkpoint (80 layers, hidden 8192, FFN 28672, vocab 152064, bf16),
   written as sparse files: headers are real, tensor bytes are holes. Target: < 1 MB read, < 1 s.
2. Reading 16 contiguous rows of tensors in every format costs one contiguous read.
3. Reading a whole 4096x4096 bf16 tensor as float32, against np.fromfile of the same bytes. Target: >= 0.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from parentage.checkpoint import Checkpoint
from parentage.inspection import inspect_checkpoint
from parentage.readers import open_file
from parentage.synthetic import write_safetensors

SHAPE_70B = dict(n_layers=80, hidden=8192, ffn=28672, vocab=152064, n_heads=64, n_kv_heads=8)


def write_sparse_70b(folder: Path, layers_per_shard: int = 3) -> int:
    """Sharded safetensors with real headers and sparse (unallocated) data. Returns bytes held."""
    s = SHAPE_70B
    hd = s["hidden"] // s["n_heads"]
    layer = {
        "input_layernorm.weight": (s["hidden"],),
        "self_attn.q_proj.weight": (s["hidden"], s["hidden"]),
        "self_attn.k_proj.weight": (s["n_kv_heads"] * hd, s["hidden"]),
        "self_attn.v_proj.weight": (s["n_kv_heads"] * hd, s["hidden"]),
        "self_attn.o_proj.weight": (s["hidden"], s["hidden"]),
        "post_attention_layernorm.weight": (s["hidden"],),
        "mlp.gate_proj.weight": (s["ffn"], s["hidden"]),
        "mlp.up_proj.weight": (s["ffn"], s["hidden"]),
        "mlp.down_proj.weight": (s["hidden"], s["ffn"]),
    }
    groups = [{"model.embed_tokens.weight": (s["vocab"], s["hidden"])}]
    for start in range(0, s["n_layers"], layers_per_shard):
        groups.append({f"model.layers.{i}.{k}": v for i in range(start, min(start + layers_per_shard, s["n_layers"])) for k, v in layer.items()})
    groups.append({"model.norm.weight": (s["hidden"],), "lm_head.weight": (s["vocab"], s["hidden"])})
    folder.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        header, offset = {}, 0
        for tname, shape in group.items():
            n = int(np.prod(shape)) * 2
            header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[tname] = name
        head = json.dumps(header).encode()
        head += b" " * (-len(head) % 8)
        with open(folder / name, "wb") as f:
            f.write(len(head).to_bytes(8, "little") + head)
            f.truncate(8 + len(head) + offset)  # a hole: no disk blocks are allocated
        total += 8 + len(head) + offset
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": s["n_layers"],
           "hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_attention_heads": s["n_heads"],
           "num_key_value_heads": s["n_kv_heads"], "vocab_size": s["vocab"], "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(cfg))
    return total


def bench_inspect_70b(work: Path) -> list[str]:
    folder = work / "llama-70b-shaped"
    held = write_sparse_70b(folder)
    inspect_checkpoint(str(folder))  # warm the page cache for the headers, as a second run would
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        doc = inspect_checkpoint(str(folder))
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "parentage.cli", "inspect", str(folder), "--format", "json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    read = doc["cost"]["bytes_read"]
    return [
        f"inspect 70B-shaped ({doc['n_layers']} layers, hidden {doc['hidden_size']}, FFN {doc['intermediate_size']}, "
        f"vocab {doc['vocab_size']}, {len(doc['files']) - 2} shards, {doc['n_tensors']} tensors)",
        f"  bytes read: {read:,} of {held:,} held ({read / held:.2e} of the checkpoint; target < 1,000,000 bytes)",
        f"  in-process time: median {statistics.median(times) * 1000:.0f} ms over 5 runs (target < 1 s)",
        f"  whole command incl. Python start-up: {wall * 1000:.0f} ms",
    ]


def bench_gguf_vocab(work: Path) -> list[str]:
    """Opening a GGUF whose header carries a 152,064-token vocabulary and 151,387 merges."""
    import gguf

    path = work / "vocab.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i:06d}" for i in range(152064)])
    w.add_token_types([1] * 152064)
    w.add_token_merges([f"t{i} k{i}" for i in range(151387)])
    w.add_tensor("token_embd.weight", np.zeros((64, 32), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    ours, theirs = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        Checkpoint.open(path).close()
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gguf.GGUFReader(str(path))
        theirs.append(time.perf_counter() - t0)
    o, t = statistics.median(ours), statistics.median(theirs)
    return [
        f"open a GGUF with a 152,064-token vocabulary and 151,387 merges ({path.stat().st_size / 1e6:.1f} MB header):",
        f"  parentage Checkpoint.open: {o * 1000:.0f} ms; gguf.GGUFReader: {t * 1000:.0f} ms ({t / o:.1f}x slower)",
    ]


def bench_row_reads(work: Path) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import gguf

    from torchzip import write_torch_zip

    value = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    write_safetensors(work / "r.safetensors", {"w": value}, "BF16")
    write_torch_zip(work / "r.bin", {"w": value})
    w = gguf.GGUFWriter(str(work / "r.gguf"), "qwen2")
    q = gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("w", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    lines = ["16 contiguous rows of a 512x256 tensor:"]
    for name in ("r.safetensors", "r.gguf", "r.bin"):
        r = open_file(work / name)
        r.read_rows("w", 0, 1)  # the torch reader locates its storage once (one local-header read)
        n0, b0 = r.stats.n_reads, r.stats.bytes_read
        r.read_rows("w", 200, 216)
        lines.append(f"  {r.format:12s} {r.stats.n_reads - n0} read(s), {r.stats.bytes_read - b0:,} bytes")
    return lines


def bench_full_tensor(work: Path) -> list[str]:
    value = np.random.default_rng(1).standard_normal((4096, 4096)).astype(np.float32)
    write_safetensors(work / "big.safetensors", {"w": value}, "BF16")
    r = open_file(work / "big.safetensors")
    offset = 8 + int.from_bytes((work / "big.safetensors").read_bytes()[:8], "little")
    ours, theirs = [], []
    for _ in range(7):  # interleaved so both see the same page-cache state
        t0 = time.perf_counter()
        out = r.read_rows("w", 0, 4096)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw = np.fromfile(work / "big.safetensors", dtype=np.uint16, count=4096 * 4096, offset=offset)
        theirs.append(time.perf_counter() - t0)
    assert out.shape == (4096, 4096) and raw.size == 4096 * 4096
    o, t = statistics.median(ours), statistics.median(theirs)
    return [
        "whole 4096x4096 bf16 tensor (32 MiB on disk, 64 MiB as float32), page cache warm, median of 7:",
        f"  parentage read_rows -> float32: {o * 1000:.1f} ms; np.fromfile raw uint16: {t * 1000:.1f} ms",
        f"  speed ratio (ours / np.fromfile): {t / o:.2f} (target >= 0.5)",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="parentage-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}")
    for section in (bench_inspect_70b, bench_gguf_vocab, bench_row_reads, bench_full_tensor):
        for line in section(work):
            print(line)


if __name__ == "__main__":
    main()
