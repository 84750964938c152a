"""Files made by each quantised format's own library, with what that library decodes them to.

Run in a child process (`python -m tests.reference_formats ROOT CASE:ARG ...`): importing bitsandbytes or
compressed-tensors imports transformers, which changes which CPU kernels torch picks in the importing process
and would break the zoo's bit-for-bit reproducibility that other tests check. Each case writes ROOT/CASE_ARG/
model.safetensors (and config.json), and expected.npz beside them: {weight name: the library's decoded values}.
Prints "skip: reason" and exits 0 when the library is not installed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # bitsandbytes may look for kernels on the hub at import


def _save(folder: Path, tensors: dict, config: dict, expected: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    np.savez(folder / "expected.npz", **expected)


def mlx(folder: Path, bits: str, group: str) -> None:
    import mlx.core as mx

    bits, group = int(bits), int(group)
    w = np.random.default_rng(3).standard_normal((96, 256)).astype(np.float32)
    q, s, b = mx.quantize(mx.array(w), group_size=group, bits=bits)
    mx.save_safetensors(str(folder / "model.safetensors"),
                        {"model.layers.0.mlp.up_proj.weight": q, "model.layers.0.mlp.up_proj.scales": s,
                         "model.layers.0.mlp.up_proj.biases": b, "model.embed_tokens.weight": mx.array(w[:, :64])})
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "quantization": {"group_size": group,
                                                                                            "bits": bits}}))
    np.savez(folder / "expected.npz", **{"model.layers.0.mlp.up_proj.weight": np.array(
        mx.dequantize(q, s, b, group_size=group, bits=bits))})


def bnb4(folder: Path, quant_type: str, nested: str) -> None:
    import torch
    import bitsandbytes.functional as F

    torch.manual_seed(0)
    # 25,600 values: 400 blocks of 64, so the nests of 256 blocks are uneven. (Rows of 96 values would let blocks
    # straddle rows, which bitsandbytes 0.50's compiled CPU dequantiser gets wrong; its torch path and we do not.)
    w = torch.randn(200, 128, dtype=torch.bfloat16)
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type=quant_type, compress_statistics=nested == "nested")
    name = "model.layers.0.mlp.up_proj.weight"
    parts = {name: packed} | {f"{name}.{k}": v for k, v in state.as_dict(packed=True).items()}
    _save(folder, parts, {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}},
          {name: F.dequantize_4bit(packed, state).float().numpy()})


def bnb8(folder: Path) -> None:
    import torch
    import bitsandbytes.functional as F

    torch.manual_seed(1)
    cb, scb, _ = F.int8_vectorwise_quant(torch.randn(64, 48).half())
    _save(folder, {"l.weight": cb, "l.SCB": scb, "l.weight_format": torch.tensor(0, dtype=torch.uint8)},
          {"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}},
          {"l.weight": cb.float().numpy() * scb.float().numpy()[:, None] / 127})


def compressed(folder: Path, strategy: str, sym: str, bits: str) -> None:
    import torch
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from compressed_tensors.quantization.utils import calculate_qparams

    torch.manual_seed(2)
    w = torch.randn(48, 256)
    args = QuantizationArgs(num_bits=int(bits), symmetric=sym == "sym", strategy=strategy,
                            group_size=64 if strategy == "group" else None)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    cols = w.reshape(48, -1, 64) if strategy == "group" else w.reshape(48, 1, -1)
    scale, zero = calculate_qparams(cols.amin(-1), cols.amax(-1), args)
    stored = PackedQuantizationCompressor.compress({"weight": w, "weight_scale": scale, "weight_zero_point": zero}, scheme)
    expected = PackedQuantizationCompressor.decompress(dict(stored), scheme)["weight"].float().numpy()
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized",
          "config_groups": {"g": {"targets": ["Linear"], "weights": json.loads(args.model_dump_json())}}}
    _save(folder, {f"l.{k}": v for k, v in stored.items()}, {"quantization_config": qc}, {"l.weight": expected})


def _float_matmul(k: int, n: int, seed: int):
    """An onnx.helper model: one MatMul by a (k, n) float32 initializer, named as torch.onnx names it."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["y"], name="/model/layers.0/mlp/up_proj/MatMul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
                              [numpy_helper.from_array(w, "onnx::MatMul_7")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), w


def _run_identity(model_path: Path, k: int) -> np.ndarray:
    """What onnxruntime computes for x = I (k, k): the weight the graph multiplies by, as (k, n)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.eye(k, dtype=np.float32)})[0]


def onnx_nbits(folder: Path, bits: str, block: str, sym: str) -> None:
    """onnxruntime's own MatMulNBits quantiser, saved with external data; its dequantised weight by running it."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model, _ = _float_matmul(256, 96, 5)
    q = MatMulNBitsQuantizer(model, bits=int(bits), block_size=int(block), is_symmetric=sym == "sym")
    q.process()
    onnx.save_model(q.model.model, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=0)
    np.savez(folder / "expected.npz", **{"model.layers.0.mlp.up_proj.weight": _run_identity(folder / "model.onnx", 256).T})
    (folder / "config.json").write_text("{}")


def onnx_qdq(folder: Path, signed: str) -> None:
    """int8 weights through DequantizeLinear (one scale and zero point per output channel), run by onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    k, n = 128, 48
    dtype = np.int8 if signed == "int8" else np.uint8
    lo, hi = (-128, 127) if signed == "int8" else (0, 255)
    q = rng.integers(lo, hi + 1, size=(k, n)).astype(dtype)
    scale = rng.uniform(0.001, 0.02, size=n).astype(np.float32)
    zero = rng.integers(lo, hi + 1, size=n).astype(dtype)
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1,
                              name="/model/layers.0/self_attn/v_proj/DequantizeLinear"),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="/model/layers.0/self_attn/v_proj/MatMul")]
    inits = [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(scale, "w_scale"), numpy_helper.from_array(zero, "w_zero")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(folder / "model.onnx"))
    np.savez(folder / "expected.npz", **{"model.layers.0.self_attn.v_proj.weight": _run_identity(folder / "model.onnx", k).T})
    (folder / "config.json").write_text("{}")


def onnx_float(folder: Path, dtype: str) -> None:
    """A float MatMul weight saved by onnx with external data; what onnx's numpy helpers load, transposed."""
    import onnx
    from onnx import numpy_helper

    model, w = _float_matmul(64, 80, 7)
    if dtype == "f16":
        init = model.graph.initializer[0]
        init.CopyFrom(numpy_helper.from_array(w.astype(np.float16), init.name))
        model.graph.node.insert(0, onnx.helper.make_node("Cast", [init.name], ["w16"], to=1, name="/cast"))
        model.graph.node[1].input[1] = "w16"
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    loaded = onnx.load(str(folder / "model.onnx"), load_external_data=True)
    values = numpy_helper.to_array(loaded.graph.initializer[0]).astype(np.float32)
    np.savez(folder / "expected.npz", **{"model.layers.0.mlp.up_proj.weight": values.T})
    (folder / "config.json").write_text("{}")


CASES = {"mlx": ("mlx.core", mlx), "bnb4": ("bitsandbytes", bnb4), "bnb8": ("bitsandbytes", bnb8),
         "compressed": ("compressed_tensors", compressed), "onnx_nbits": ("onnxruntime", onnx_nbits),
         "onnx_qdq": ("onnxruntime", onnx_qdq), "onnx_float": ("onnx", onnx_float)}


def main() -> None:
    """ROOT CASE:ARG:ARG ...: each case into ROOT/CASE_ARG_ARG (one process per library: imports cost seconds)."""
    import importlib.util

    root, *specs = sys.argv[1:]
    for spec in specs:
        case, *args = spec.split(":")
        module, make = CASES[case]
        if importlib.util.find_spec(module.split(".")[0]) is None or (
                module in ("bitsandbytes", "compressed_tensors") and importlib.util.find_spec("torch") is None):
            print(f"skip: {module} not installed (the formats extra)")
            return
        folder = Path(root) / "_".join([case, *args])
        folder.mkdir(parents=True, exist_ok=True)
        make(folder, *args)


if __name__ == "__main__":
    main()
