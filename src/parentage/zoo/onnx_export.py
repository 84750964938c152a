"""ONNX exports of llama-style state dicts, written with our own protobuf encoder (numpy only).

The graph has the shape exporters give it: Gather for the embedding; per layer a normalisation, the q, k and v
MatMuls reading its output, an attention op, the o MatMul, a second normalisation, the gate and up MatMuls, the
activation and product, the down MatMul; the final norm and the LM head. Weights are stored as MatMul wants
them, (in, out), in float32 or float16, or quantised: int8 through DequantizeLinear (one scale per output
channel), or 4-bit through com.microsoft's MatMulNBits (blocks along the input). Names follow one of three
exporters: torch.onnx (`/model/layers.0/self_attn/q_proj/MatMul`, initializers `onnx::MatMul_12`),
onnxruntime-genai (`/model/layers.0/attn/q_proj/MatMul`, `model.layers.0.attn.q_proj.MatMul.weight`), or none
(`MatMul_12`, `onnx::MatMul_12`: roles only from the graph). Tensor data lies in the model file or in an
external data file beside it. The graph is not meant to run (its attention op is a placeholder); onnx's
checker accepts it, and its weights are what onnx's numpy helpers and onnxruntime read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..readers.packed import pack

DTYPE_CODES = {"F32": 1, "U8": 2, "I8": 3, "F16": 10, "I64": 7}
NUMPY = {"F32": "<f4", "U8": "<u1", "I8": "<i1", "F16": "<f2", "I64": "<i8"}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def f_int(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def f_bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _key(number, 2) + _varint(len(data)) + data


def f_float(number: int, value: float) -> bytes:
    return _key(number, 5) + struct.pack("<f", value)


def tensor_proto(name: str, dtype: str, dims: tuple[int, ...], raw: bytes, external: tuple[str, int] | None = None) -> bytes:
    out = b"".join(f_int(1, d) for d in dims) + f_int(2, DTYPE_CODES[dtype]) + f_bytes(8, name)
    if external is None:
        return out + f_bytes(9, raw)
    location, offset = external
    entries = [("location", location), ("offset", str(offset)), ("length", str(len(raw)))]
    return out + b"".join(f_bytes(13, f_bytes(1, k) + f_bytes(2, v)) for k, v in entries) + f_int(14, 1)


def attribute(name: str, value) -> bytes:
    if isinstance(value, list):
        return f_bytes(1, name) + b"".join(f_int(8, v) for v in value) + f_int(20, 7)
    if isinstance(value, float):
        return f_bytes(1, name) + f_float(2, value) + f_int(20, 1)
    if isinstance(value, str):
        return f_bytes(1, name) + f_bytes(4, value) + f_int(20, 3)
    return f_bytes(1, name) + f_int(3, value) + f_int(20, 2)


@dataclass
class Graph:
    nodes: list[bytes] = field(default_factory=list)
    initializers: list[tuple[str, str, tuple[int, ...], bytes]] = field(default_factory=list)
    counter: int = 0

    def node(self, op: str, inputs: list[str], name: str, attrs: dict | None = None, domain: str = "") -> str:
        self.counter += 1
        out = f"{name or op}_out_{self.counter}"
        body = b"".join(f_bytes(1, x) for x in inputs) + f_bytes(2, out) + f_bytes(3, name or f"{op}_{self.counter}") \
            + f_bytes(4, op) + b"".join(f_bytes(5, attribute(k, v)) for k, v in (attrs or {}).items())
        if domain:
            body += f_bytes(7, domain)
        self.nodes.append(body)
        return out

    def init(self, name: str, dtype: str, values: np.ndarray) -> str:
        self.initializers.append((name, dtype, tuple(values.shape), np.ascontiguousarray(values, NUMPY[dtype]).tobytes()))
        return name


def _model(g: Graph, inputs: list[str], outputs: list[str], external: str | None, folder: Path) -> bytes:
    blobs, offset = [], 0
    tensors = []
    for name, dtype, dims, raw in g.initializers:
        if external and len(raw) >= 64:
            pad = -offset % 64  # tensors aligned, as onnx's saver does
            blobs.append(b"\0" * pad)
            offset += pad
            tensors.append(tensor_proto(name, dtype, dims, raw, (external, offset)))
            blobs.append(raw)
            offset += len(raw)
        else:
            tensors.append(tensor_proto(name, dtype, dims, raw))
    if external:
        (folder / external).write_bytes(b"".join(blobs))
    def value_info(name: str, elem_type: int) -> bytes:  # a name and a tensor type: (batch, sequence[, vocab])
        dims = b"".join(f_bytes(1, f_bytes(2, d)) for d in ("batch", "sequence"))  # symbolic dimensions
        return f_bytes(1, name) + f_bytes(2, f_bytes(1, f_int(1, elem_type) + f_bytes(2, dims)))

    graph = b"".join(f_bytes(1, n) for n in g.nodes) + f_bytes(2, "main") + b"".join(f_bytes(5, t) for t in tensors) \
        + b"".join(f_bytes(11, value_info(n, 7)) for n in inputs) + b"".join(f_bytes(12, value_info(n, 1)) for n in outputs)
    opsets = f_bytes(8, f_bytes(1, "") + f_int(2, 23)) + f_bytes(8, f_bytes(1, "com.microsoft") + f_int(2, 1))
    return f_int(1, 10) + f_bytes(2, "parentage-zoo") + f_bytes(3, "1") + f_bytes(7, graph) + opsets


def _q8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(q (in, out) uint8, scale (out,), zero (out,) uint8, values (out, in)): asymmetric per output channel."""
    lo, hi = np.minimum(w.min(axis=1), 0), np.maximum(w.max(axis=1), 0)
    scale = (np.maximum(hi - lo, 1e-8) / 255).astype(np.float32)
    zero = np.clip(np.round(-lo / scale), 0, 255)
    q = np.clip(np.round(w / scale[:, None]) + zero[:, None], 0, 255)
    return q.T.astype(np.uint8), scale, zero.astype(np.uint8), ((q - zero[:, None]) * scale[:, None]).astype(np.float32)


def _nbits(w: np.ndarray, block: int = 32, bits: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(B (out, blocks, blob) uint8, scales (out * blocks,), zero points packed (out * ceil(blocks * b / 8),),
    values (out, in)): asymmetric blocks along the input, codes low bits first."""
    out, n_in = w.shape
    blocks = -(-n_in // block)
    padded = np.zeros((out, blocks * block), np.float32)
    padded[:, :n_in] = w
    g = padded.reshape(out, blocks, block)
    maxq = (1 << bits) - 1
    lo, hi = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
    scale = (np.maximum(hi - lo, 1e-8) / maxq).astype(np.float32)
    zero = np.clip(np.round(-lo / scale), 0, maxq)
    q = np.clip(np.round(g / scale[..., None]) + zero[..., None], 0, maxq).astype(np.int64)
    values = ((q - zero[..., None]) * scale[..., None]).reshape(out, -1)[:, :n_in]
    b = pack(q.reshape(out * blocks, block), bits, 1).reshape(out, blocks, block * bits // 8)
    zp = pack(zero.astype(np.int64), bits, 1).reshape(-1)
    return b.astype(np.uint8), scale.reshape(-1), zp.astype(np.uint8), values.astype(np.float32)


NAMING = ("torch", "genai", "anonymous")


def export_onnx(folder: Path, sd: dict[str, np.ndarray], n_layers: int, weights: str = "F32", naming: str = "torch",
                external: bool = True) -> dict[str, np.ndarray]:
    """folder/model.onnx (and model.onnx_data) holding sd; weights "F32", "F16", "int8" (DequantizeLinear) or
    "nbits4" (MatMulNBits); returns what each exported weight decodes to, by its Hugging Face name."""
    folder.mkdir(parents=True, exist_ok=True)
    if "lm_head.weight" not in sd:  # tied: the exporter writes the embedding again as the head's weight
        sd = {**sd, "lm_head.weight": sd["model.embed_tokens.weight"]}
    g = Graph()
    truth: dict[str, np.ndarray] = {}
    float_type = "F16" if weights == "F16" else "F32"

    def fl(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float16).astype(np.float32) if float_type == "F16" else values.astype(np.float32)

    def node_name(path: str, op: str) -> str:
        if naming == "anonymous":
            return ""
        if naming == "genai":
            path = path.replace("self_attn.", "attn.")
        return "/" + path.replace(".", "/").replace("/layers/", "/layers.") + "/" + op

    def init_name(path: str, suffix: str) -> str:
        if naming == "genai":
            return path.replace("self_attn.", "attn.") + suffix
        return f"onnx::{suffix.strip('.').replace('.', '_')}_{len(g.initializers)}"

    def linear(x: str, hf: str) -> str:
        w = sd[hf + ".weight"]
        if weights == "nbits4":
            b, scales, zp, values = _nbits(w)
            ins = [x, g.init(init_name(hf, ".MatMulNBits.qweight"), "U8", b),
                   g.init(init_name(hf, ".MatMulNBits.scales"), "F32", scales),
                   g.init(init_name(hf, ".MatMulNBits.qzeros"), "U8", zp)]
            truth[hf + ".weight"] = values
            return g.node("MatMulNBits", ins, node_name(hf, "MatMulNBits"),
                          {"K": w.shape[1], "N": w.shape[0], "bits": 4, "block_size": 32}, "com.microsoft")
        if weights == "int8":
            q, scale, zero, values = _q8(w)
            deq = g.node("DequantizeLinear", [g.init(init_name(hf, ".MatMul.weight_quantized"), "U8", q),
                                              g.init(init_name(hf, ".MatMul.weight_scale"), "F32", scale),
                                              g.init(init_name(hf, ".MatMul.weight_zero_point"), "U8", zero)],
                         node_name(hf, "DequantizeLinear"), {"axis": 1})
            truth[hf + ".weight"] = values
            return g.node("MatMul", [x, deq], node_name(hf, "MatMul"))
        truth[hf + ".weight"] = fl(w)
        return g.node("MatMul", [x, g.init(init_name(hf, ".MatMul.weight"), float_type, fl(w).T.copy())],
                      node_name(hf, "MatMul"))

    def norm(x: str, hf: str) -> str:
        truth[hf + ".weight"] = fl(sd[hf + ".weight"])
        return g.node("RMSNormalization", [x, g.init(init_name(hf, ".weight"), float_type, fl(sd[hf + ".weight"]))],
                      node_name(hf, "LayerNorm"), {"epsilon": 1e-5, "axis": -1})

    truth["model.embed_tokens.weight"] = fl(sd["model.embed_tokens.weight"])
    x = g.node("Gather", [g.init("model.embed_tokens.weight" if naming != "anonymous" else "onnx::Gather_0", float_type,
                                 fl(sd["model.embed_tokens.weight"])), "input_ids"], node_name("model.embed_tokens", "Gather"))
    for i in range(n_layers):
        p = f"model.layers.{i}."
        h = norm(x, p + "input_layernorm")
        q, k, v = (linear(h, p + f"self_attn.{m}_proj") for m in "qkv")
        a = g.node("GroupQueryAttention", [q, k, v], node_name(p + "self_attn", "GroupQueryAttention"), {"num_heads": 4},
                   "com.microsoft")
        x2 = g.node("Add", [x, linear(a, p + "self_attn.o_proj")], node_name(p + "residual", "Add"))
        h2 = norm(x2, p + "post_attention_layernorm")
        gate, up = linear(h2, p + "mlp.gate_proj"), linear(h2, p + "mlp.up_proj")
        act = g.node("Mul", [gate, g.node("Sigmoid", [gate], node_name(p + "mlp.act_fn", "Sigmoid"))],
                     node_name(p + "mlp.act_fn", "Mul"))
        x = g.node("Add", [x2, linear(g.node("Mul", [act, up], node_name(p + "mlp", "Mul")), p + "mlp.down_proj")],
                   node_name(p + "residual2", "Add"))
    x = norm(x, "model.norm")
    logits = linear(x, "lm_head")
    data = _model(g, ["input_ids"], [logits], "model.onnx_data" if external else None, folder)
    (folder / "model.onnx").write_bytes(data)
    return truth
