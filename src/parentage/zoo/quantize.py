"""Quantised exports written from each format's specification, in numpy: what the zoo and the tests read back.

Each `quantize_*` takes one weight W (out, in) as float32 and returns a `Quantised`: the stored parts (name
suffix -> array, or (dtype, array) for BF16 and FP8) and the values they decode to. Each follows its method's
own rule, so that what the readers decode, and what the export check measures, is what that tool would write:
- GPTQ: the GPTQ algorithm (columns quantised in order, each one's rounding error spread over the columns not
  yet quantised through the inverse Hessian of the layer's inputs) when a Hessian is given, round-to-nearest
  otherwise; act-order (columns by falling Hessian diagonal, groups in that order, `g_idx`); v1 (zero - 1) or v2
  zero points; 2/3/4/8 bits in 8/16/32/64-bit words.
- AWQ: round-to-nearest of W * s (s a scale per input channel, found by the export from the layer's input
  magnitudes and folded back into the norm before), asymmetric groups, GEMM or GEMV layout.
- bitsandbytes: NF4/FP4 codes in blocks of 64 (nested absmax optional); LLM.int8 rows.
- MLX: affine groups, 2-8 bits.
- compressed-tensors: pack-quantized or int-quantized integers; float-quantized FP8 per row.
`export_model` writes a whole checkpoint folder in one of them, with the config the method's tools write.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dtypes import decode, encode_float8
from ..readers.awq import GEMM_ORDER
from ..readers.packed import pack
from ..synthetic import write_tensors

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)  # the normal-quantile code of QLoRA
FP4 = np.array([0.0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5, 0.1666666716337204,
                0.25, 0.0, -0.0052083334885537624, -0.6666666865348816, -1.0, -0.3333333432674408, -0.5,
                -0.1666666716337204, -0.25], dtype=np.float32)  # bitsandbytes' FP4 (E2M1, normalised) code


@dataclass
class Quantised:
    parts: dict[str, object]  # suffix after the module's name (`X` of `X.weight`) -> array or (dtype, array);
    # bitsandbytes 4-bit suffixes follow the weight's name (`X.weight` + ".absmax")
    values: np.ndarray  # (out, in) what the parts decode to


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def _group_params(w: np.ndarray, bits: int, sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ's scale and zero for each row of w (rows, n): the range through zero, split into 2^b - 1 steps."""
    maxq = (1 << bits) - 1
    lo, hi = np.minimum(w.min(axis=1), 0), np.maximum(w.max(axis=1), 0)
    if sym:
        hi = np.maximum(np.abs(lo), hi)
        lo = np.where(lo < 0, -hi, lo)
    flat = (lo == 0) & (hi == 0)
    lo, hi = np.where(flat, -1, lo), np.where(flat, 1, hi)
    scale = _f16((hi - lo) / maxq)
    zero = np.full_like(scale, (maxq + 1) // 2) if sym else np.round(-lo / scale)
    return scale, np.clip(zero, 0, maxq)


def quantize_gptq(w: np.ndarray, bits: int = 4, group_size: int = 128, sym: bool = True, act_order: bool = False,
                  v1: bool = True, itemsize: int = 4, hessian: np.ndarray | None = None, damp: float = 0.01) -> Quantised:
    out, n_in = w.shape
    maxq = (1 << bits) - 1
    group = n_in if group_size <= 0 else group_size
    work = w.astype(np.float64).copy()
    perm = np.arange(n_in)
    upper = None
    if hessian is not None:
        h = hessian.astype(np.float64).copy()
        dead = np.diag(h) == 0
        h[dead, dead] = 1
        work[:, dead] = 0
        if act_order:
            perm = np.argsort(-np.diag(h), kind="stable")
            work, h = work[:, perm], h[perm][:, perm]
        h[np.diag_indices(n_in)] += damp * np.mean(np.diag(h))
        upper = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1
    n_groups = -(-n_in // group)
    scales, zeros = np.zeros((n_groups, out), np.float32), np.zeros((n_groups, out), np.float32)
    codes = np.zeros((out, n_in), np.int64)
    for i in range(n_in):  # in the (possibly permuted) order; group k holds positions k*group .. (k+1)*group-1
        k = i // group
        if i % group == 0:
            scales[k], zeros[k] = _group_params(work[:, i:i + group], bits, sym)
        q = np.clip(np.round(work[:, i] / scales[k]) + zeros[k], 0, maxq)
        codes[:, i] = q
        if upper is not None:
            err = (work[:, i] - scales[k] * (q - zeros[k])) / upper[i, i]
            work[:, i + 1:] -= np.outer(err, upper[i, i + 1:])
    inverse = np.argsort(perm)
    codes = codes[:, inverse]  # back to the stored column order
    g_idx = (np.arange(n_in) // group)[inverse].astype(np.int32)  # the group of each original input channel
    values = (codes - zeros[g_idx].T) * scales[g_idx].T
    stored_zeros = ((zeros.astype(np.int64) - 1) & maxq) if v1 else zeros.astype(np.int64)
    words = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}[itemsize]
    parts = {".qweight": pack(codes, bits, itemsize).T.copy().view(words),
             ".qzeros": pack(stored_zeros, bits, itemsize).view(words),
             ".scales": scales.astype(np.float16), ".g_idx": g_idx}
    return Quantised(parts, values.astype(np.float32))


def _awq_params(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """AutoAWQ's asymmetric group parameters for each row of w (rows, n)."""
    maxq = (1 << bits) - 1
    lo, hi = w.min(axis=1), w.max(axis=1)
    scale = _f16(np.maximum(hi - lo, 1e-5) / maxq)
    zero = np.clip(-np.round(lo / scale), 0, maxq)
    return scale, zero


def quantize_awq(w: np.ndarray, group_size: int = 128, version: str = "gemm", input_scale: np.ndarray | None = None
                 ) -> Quantised:
    """W * s quantised (s: AWQ's per-input-channel scale, ones when not given); values are of W * s."""
    out, n_in = w.shape
    ws = w * (input_scale[None, :] if input_scale is not None else 1.0)
    n_groups = n_in // group_size
    g = ws.reshape(out, n_groups, group_size)
    scale, zero = _awq_params(g.reshape(-1, group_size), 4)
    scale, zero = scale.reshape(out, n_groups), zero.reshape(out, n_groups)
    codes = np.clip(np.round(g / scale[..., None]) + zero[..., None], 0, 15).reshape(out, n_in).astype(np.int64)
    values = ((codes.reshape(out, n_groups, group_size) - zero[..., None]) * scale[..., None]).reshape(out, n_in)
    if version == "gemm":
        def gemm(c):  # (rows, cols) codes -> (rows, cols / 8) words, nibble j = channel 8c + GEMM_ORDER[j]
            return pack(c.reshape(c.shape[0], -1, 8)[:, :, GEMM_ORDER].reshape(c.shape[0], -1), 4).view(np.int32)
        parts = {".qweight": gemm(codes.T), ".qzeros": gemm(zero.T.astype(np.int64)),
                 ".scales": scale.T.astype(np.float16)}
    else:
        multiple = {128: 1, 64: 2, 32: 4}.get(min(group_size, 128), 4)  # AutoAWQ pads the groups' words so
        width_words = -(-(-(-n_groups // 8)) // multiple) * multiple   # its kernel can read them in whole tiles
        padded_zero = np.zeros((out, width_words * 8), np.int64)
        padded_zero[:, :n_groups] = zero
        padded_scale = np.zeros((out, width_words * 8), np.float16)
        padded_scale[:, :n_groups] = scale
        parts = {".qweight": pack(codes, 4).view(np.int32), ".qzeros": pack(padded_zero, 4).view(np.int32),
                 ".scales": padded_scale}
    return Quantised(parts, values.astype(np.float32))


def quantize_nf4(w: np.ndarray, quant_type: str = "nf4", blocksize: int = 64, nested: bool = False,
                 dtype: str = "bfloat16") -> Quantised:
    code = NF4 if quant_type == "nf4" else FP4
    flat = w.reshape(-1).astype(np.float32)
    n = flat.size
    n_blocks = -(-n // blocksize)
    padded = np.zeros(n_blocks * blocksize, np.float32)
    padded[:n] = flat
    absmax = np.maximum(np.abs(padded.reshape(n_blocks, blocksize)).max(axis=1), 1e-38)
    scaled = padded.reshape(n_blocks, blocksize) / absmax[:, None]
    codes = np.abs(scaled[..., None] - code).argmin(axis=-1).reshape(-1)[:n].astype(np.uint8)
    if n % 2:
        codes = np.concatenate([codes, [0]]).astype(np.uint8)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    parts: dict[str, object] = {"": packed.reshape(-1, 1), ".quant_map": code.copy()}
    state = {"quant_type": quant_type, "blocksize": blocksize, "dtype": dtype, "shape": list(w.shape)}
    used = absmax
    if nested:
        offset = float(absmax.mean())
        dyn = np.linspace(-1, 1, 256).astype(np.float32)  # a 256-level code (bitsandbytes' is its dynamic map)
        centred = absmax - offset
        nb = 256
        n_outer = -(-n_blocks // nb)
        pad = np.zeros(n_outer * nb, np.float32)
        pad[:n_blocks] = centred
        outer = np.maximum(np.abs(pad.reshape(n_outer, nb)).max(axis=1), 1e-38)
        inner = np.abs((pad.reshape(n_outer, nb) / outer[:, None])[..., None] - dyn).argmin(axis=-1).reshape(-1)[:n_blocks]
        parts |= {".absmax": inner.astype(np.uint8), ".nested_absmax": outer.astype(np.float32), ".nested_quant_map": dyn}
        used = dyn[inner] * outer[np.arange(n_blocks) // nb] + offset
        state |= {"nested_blocksize": nb, "nested_dtype": "float32", "nested_offset": offset}
    else:
        parts[".absmax"] = absmax.astype(np.float32)
    parts[f".quant_state.bitsandbytes__{quant_type}"] = np.frombuffer(json.dumps(state).encode(), np.uint8).copy()
    values = (code[codes[:n]] * np.repeat(used, blocksize)[:n]).reshape(w.shape)
    return Quantised(parts, values.astype(np.float32))


def quantize_int8(w: np.ndarray) -> Quantised:
    scb = np.maximum(np.abs(w).max(axis=1), 1e-12).astype(np.float32)
    q = np.clip(np.round(w * (127.0 / scb[:, None])), -127, 127).astype(np.int8)
    return Quantised({".weight": q, ".SCB": scb, ".weight_format": np.zeros((), np.uint8)},
                     (q * (scb[:, None] / 127.0)).astype(np.float32))


def quantize_mlx(w: np.ndarray, bits: int = 4, group_size: int = 64) -> Quantised:
    lead, n_in = w.shape[:-1], w.shape[-1]
    g = w.reshape(-1, n_in // group_size, group_size)
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    scale = _f16(np.maximum(hi - lo, 1e-8) / ((1 << bits) - 1))
    bias = _f16(lo)
    codes = np.clip(np.round((g - bias[..., None]) / scale[..., None]), 0, (1 << bits) - 1).astype(np.int64)
    values = (codes * scale[..., None] + bias[..., None]).reshape(w.shape)
    return Quantised({".weight": pack(codes.reshape(-1, n_in), bits).reshape(*lead, -1),
                      ".scales": scale.reshape(*lead, -1).astype(np.float16),
                      ".biases": bias.reshape(*lead, -1).astype(np.float16)}, values.astype(np.float32))


def quantize_compressed(w: np.ndarray, bits: int = 4, group_size: int = 128, sym: bool = True,
                        packed: bool = True) -> Quantised:
    """pack-quantized (bits <= 8, packed) or int-quantized (8 bits, int8 values); group_size 0: one per row."""
    out, n_in = w.shape
    group = n_in if group_size <= 0 else group_size
    g = w.reshape(out, n_in // group, group)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if sym:
        scale = _f16(np.maximum(np.abs(g).max(axis=-1), 1e-8) / ((qmax - qmin) / 2))
        zero = np.zeros_like(scale)
    else:
        lo, hi = np.minimum(g.min(axis=-1), 0), np.maximum(g.max(axis=-1), 0)
        scale = _f16(np.maximum(hi - lo, 1e-8) / (qmax - qmin))
        zero = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    q = np.clip(np.round(g / scale[..., None]) + zero[..., None], qmin, qmax)
    values = ((q - zero[..., None]) * scale[..., None]).reshape(out, n_in)
    q = q.reshape(out, n_in).astype(np.int64)
    if packed:
        parts = {".weight_packed": pack(q - qmin, bits).view(np.int32), ".weight_shape": np.array([out, n_in], np.int64)}
    else:
        parts = {".weight": q.astype(np.int8)}
    parts[".weight_scale"] = scale.astype(np.float16)
    if not sym:
        parts[".weight_zero_point"] = (pack((zero.astype(np.int64) - qmin).T, bits).T.view(np.int32).copy()
                                       if packed else zero.astype(np.int8))
    return Quantised(parts, values.astype(np.float32))


def quantize_fp8(w: np.ndarray) -> Quantised:
    """FP8 E4M3 with one scale per row (compressed-tensors' float-quantized, channel strategy)."""
    scale = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) / 448.0
    scale = _f16(scale)
    codes = encode_float8(w / scale, "F8_E4M3")
    return Quantised({".weight": ("F8_E4M3", codes), ".weight_scale": scale.astype(np.float16)},
                     decode("F8_E4M3", codes.reshape(-1)).reshape(w.shape) * scale)


def awq_scales(sd: dict[str, np.ndarray], stats: dict[str, dict], group_size: int, grid: int = 10
               ) -> dict[str, np.ndarray]:
    """AWQ's activation-aware scaling, applied: for each group of linear layers that read one input (q, k, v
    after the attention norm; gate and up after the FFN norm; down after up), the scale s = mean|x|^alpha per
    input channel whose quantised W * s gives the least output error on the calibration inputs (alpha on a
    grid), multiplied into the layers' columns and divided out of what feeds them (the norm's gain, or up's
    rows). The function is unchanged; the weights a quantiser then sees are W * s."""
    out = {k: v.astype(np.float32).copy() for k, v in sd.items()}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("model.layers.")})
    for i in layers:
        p = f"model.layers.{i}."
        groups = [([p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"],
                   p + "input_layernorm.weight", "gain"),
                  ([p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"], p + "post_attention_layernorm.weight", "gain"),
                  ([p + "mlp.down_proj.weight"], p + "mlp.up_proj.weight", "rows")]
        for linears, before, how in groups:
            if not all(n in out and n in stats for n in linears) or before not in out:
                continue
            x = stats[linears[0]]["sample"].astype(np.float64)  # (n, in) what the group reads
            mean_abs = np.maximum(stats[linears[0]]["mean_abs"], 1e-8)
            best = None
            for alpha in np.arange(grid) / grid:
                s = mean_abs ** alpha
                s = s / np.sqrt(s.max() * s.min())
                err = sum(float(np.square(x @ (quantize_awq(out[n], group_size, input_scale=s).values / s - out[n]).T).sum())
                          for n in linears)
                if best is None or err < best[0]:
                    best = (err, s.astype(np.float32))
            s = best[1]
            for n in linears:
                out[n] = out[n] * s[None, :]
            out[before] = out[before] / (s if how == "gain" else s[:, None])
    return out


def quantize_q4_k(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GGUF Q4_K, round-to-nearest (gguf-py only dequantises K-quants): rows of 256-value super-blocks of 144
    bytes, d and dmin (f16), twelve bytes of 6-bit scales and mins for eight sub-blocks of 32, and 128 bytes of
    codes (sub-blocks 2c and 2c + 1 in the low and high nibbles of the same 32 bytes). value = d * sc * q -
    dmin * m. Returns (the raw blocks (rows, n / 256 * 144) uint8, the values they decode to)."""
    rows, n = w.shape
    if n % 256:
        raise ValueError("Q4_K quantises rows whose length is a multiple of 256")
    x = w.reshape(rows, n // 256, 8, 32).astype(np.float32)  # (rows, super-blocks, sub-blocks, values)
    lo, hi = np.minimum(x.min(-1), 0), np.maximum(x.max(-1), 0)
    scale, low = (hi - lo) / 15, -lo
    d = _f16(scale.max(-1, keepdims=True) / 63)
    dmin = _f16(low.max(-1, keepdims=True) / 63)
    sc = np.clip(np.round(scale / np.where(d > 0, d, 1)), 0, 63).astype(np.int64)
    m = np.clip(np.round(low / np.where(dmin > 0, dmin, 1)), 0, 63).astype(np.int64)
    step, offset = d * sc, dmin * m
    q = np.clip(np.round((x + offset[..., None]) / np.where(step > 0, step, 1)[..., None]), 0, 15).astype(np.int64)
    values = (q * step[..., None] - offset[..., None]).reshape(rows, n)
    packed_scales = np.zeros(x.shape[:2] + (12,), np.int64)
    for j in range(4):  # the low six bits in bytes 0-7; the high two of sub-blocks 4-7 above them; the rest in 8-11
        packed_scales[..., j] = (sc[..., j] & 63) | ((sc[..., j + 4] >> 4) << 6)
        packed_scales[..., j + 4] = (m[..., j] & 63) | ((m[..., j + 4] >> 4) << 6)
        packed_scales[..., j + 8] = (sc[..., j + 4] & 0xF) | ((m[..., j + 4] & 0xF) << 4)
    codes = np.concatenate([q[..., 2 * c, :] | (q[..., 2 * c + 1, :] << 4) for c in range(4)], axis=-1)
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(x.shape[:2] + (2,)),
                             dmin.astype(np.float16).view(np.uint8).reshape(x.shape[:2] + (2,)),
                             packed_scales.astype(np.uint8), codes.astype(np.uint8)], axis=-1)
    return blocks.reshape(rows, -1), values.astype(np.float32)


# -- whole checkpoints -------------------------------------------------------------------------------------------

# method -> (quantiser, the config its tools write)
LINEAR_SUFFIXES = ("_proj.weight", ".w1.weight", ".w2.weight", ".w3.weight")


def is_linear(name: str) -> bool:
    """A decoder layer's linear weight: what every method here quantises (embeddings and the LM head stay)."""
    return ".layers." in name and name.endswith(LINEAR_SUFFIXES)


@dataclass
class Export:
    method: str  # gptq | awq | nf4 | fp4 | int8 | mlx | compressed | compressed_int8 | fp8
    bits: int = 4
    group_size: int = 32
    options: dict = field(default_factory=dict)


# The zoo's quantised exports (recipes.py `export`; "onnx" is zoo/onnx_export.py's).
ZOO_EXPORTS = {"gptq": Export("gptq", 4, 32, {"act_order": True, "sym": False}), "awq": Export("awq", 4, 32),
               "nf4": Export("nf4"), "mlx": Export("mlx", 4, 32), "ct-int4": Export("compressed", 4, 32),
               "fp8": Export("fp8"), "gptq-edit": Export("gptq", 4, 32)}


def quantize_state_dict(sd: dict[str, np.ndarray], spec: Export, hessians: dict | None = None,
                        input_scales: dict | None = None) -> tuple[dict[str, object], dict, dict[str, np.ndarray]]:
    """(stored tensors, quantisation config, decoded values of each quantised weight)."""
    stored: dict[str, object] = {}
    decoded: dict[str, np.ndarray] = {}
    for name, value in sd.items():
        if not (is_linear(name) or (spec.method == "mlx" and value.ndim == 2 and name.endswith(
                ("embed_tokens.weight", "lm_head.weight")))):
            stored[name] = value
            continue
        base = name[: -len(".weight")]
        q = _quantise_one(value, spec, (hessians or {}).get(name), (input_scales or {}).get(name))
        for suffix, part in q.parts.items():
            stored[_part_name(base, suffix, spec.method)] = part
        decoded[name] = q.values
    return stored, _config(spec), decoded


def _part_name(base: str, suffix: str, method: str) -> str:
    """bitsandbytes 4-bit parts hang off the weight's own name (`X.weight.absmax`); the rest off the module's."""
    if method in ("nf4", "fp4"):
        return base + ".weight" + suffix
    return base + suffix


def _quantise_one(w: np.ndarray, spec: Export, hessian, input_scale) -> Quantised:
    o = spec.options
    if spec.method == "gptq":
        return quantize_gptq(w, spec.bits, spec.group_size, o.get("sym", True), o.get("act_order", False),
                             o.get("v1", True), o.get("itemsize", 4), hessian)
    if spec.method == "awq":
        return quantize_awq(w, spec.group_size, o.get("version", "gemm"), input_scale)
    if spec.method in ("nf4", "fp4"):
        return quantize_nf4(w, spec.method, o.get("blocksize", 64), o.get("nested", True))
    if spec.method == "int8":
        return quantize_int8(w)
    if spec.method == "mlx":
        return quantize_mlx(w, spec.bits, spec.group_size)
    if spec.method == "compressed":
        return quantize_compressed(w, spec.bits, spec.group_size, o.get("sym", True), packed=True)
    if spec.method == "compressed_int8":
        return quantize_compressed(w, 8, 0, True, packed=False)
    if spec.method == "fp8":
        return quantize_fp8(w)
    raise ValueError(f"unknown export method {spec.method!r}")


def _config(spec: Export) -> dict:
    o = spec.options
    if spec.method == "gptq":
        return {"quant_method": "gptq", "bits": spec.bits, "group_size": spec.group_size, "sym": o.get("sym", True),
                "desc_act": o.get("act_order", False), "checkpoint_format": "gptq" if o.get("v1", True) else "gptq_v2",
                "pack_dtype": {1: "int8", 2: "int16", 4: "int32", 8: "int64"}[o.get("itemsize", 4)]}
    if spec.method == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": spec.group_size, "zero_point": True,
                "version": o.get("version", "gemm")}
    if spec.method in ("nf4", "fp4", "int8"):
        return {"quant_method": "bitsandbytes", "load_in_4bit": spec.method != "int8",
                "load_in_8bit": spec.method == "int8", "bnb_4bit_quant_type": spec.method if spec.method != "int8" else "fp4",
                "bnb_4bit_use_double_quant": o.get("nested", True), "bnb_4bit_compute_dtype": "bfloat16"}
    if spec.method == "mlx":
        return {"group_size": spec.group_size, "bits": spec.bits}
    weights = {"num_bits": 8 if spec.method != "compressed" else spec.bits, "symmetric": o.get("sym", True),
               "type": "float" if spec.method == "fp8" else "int",
               "strategy": "channel" if spec.method != "compressed" else "group",
               "group_size": spec.group_size if spec.method == "compressed" else None}
    fmt = {"compressed": "pack-quantized", "compressed_int8": "int-quantized", "fp8": "float-quantized"}[spec.method]
    return {"quant_method": "compressed-tensors", "format": fmt, "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": None}},
            "ignore": ["lm_head"]}


def export_model(src: Path, dst: Path, spec: Export, sd: dict[str, np.ndarray], hessians: dict | None = None,
                 input_scales: dict | None = None) -> dict[str, np.ndarray]:
    """dst: src's folder (config, tokenizer) with its weights `sd` quantised by spec; returns the decoded values."""
    dst.mkdir(parents=True, exist_ok=True)
    stored, qc, decoded = quantize_state_dict(sd, spec, hessians, input_scales)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "config.json":
            shutil.copy2(f, dst / f.name)
    config = json.loads((src / "config.json").read_text())
    if spec.method == "mlx":
        config["quantization"] = qc
    else:
        config["quantization_config"] = qc
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_tensors(dst / "model.safetensors", stored, metadata={"format": "pt"})
    return decoded
