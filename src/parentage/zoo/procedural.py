"""Checkpoints at real scale without disk: safetensors shards whose bytes are computed from (seed, tensor, row).

A `Model` is a layout (real tensor names, shapes and dtypes of Llama-3-70B, Qwen1.5-110B, Qwen2.5-14B, a 7B
Llama, DeepSeek-V3 with MLA, 256 routed + 1 shared experts and FP8 weights with 128 x 128 block scales) plus,
for each tensor, where its values come from: a fresh seeded draw, or a parent model's tensor with noise added.
That one rule gives every derivation the seed case describes: continued training (noise on every matrix),
drift (noise growing with depth), inserted layers (fresh tensors at new indices), a widened FFN (the parent's
rows and columns kept, the new ones fresh), frozen copies (no noise: the same bytes), upcycling (each expert
drawn from the parent's dense FFN), and independent models (another seed).

Values are generated a block of rows at a time from a counter-based seed, so any byte range of any shard is
computed on its own, deterministically, at a few hundred MB/s, and `Shard.read(offset, n)` serves it to the
hub emulator. Weights are iid normal: enough for lineage tests that work on any init, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ..dtypes import DTYPES, _E4M3

BLOCK_VALUES = 1 << 18  # values generated per seeded block (rows are grouped to about this many)
SHARD_BYTES = 5 << 30  # bytes per shard, as hub uploads are cut
FP8_BLOCK = 128
WEIGHT_STD = 0.02


@dataclass(frozen=True)
class Source:
    """Where one tensor's values come from: `parent` (a Source) plus `noise` x its std, or a fresh draw."""

    key: tuple  # seeds the draw: (model seed, tensor name)
    shape: tuple[int, ...]
    std: float = WEIGHT_STD
    mean: float = 0.0
    parent: "Source | None" = None
    noise: float = 0.0

    @property
    def cols(self) -> int:
        return self.shape[-1] if len(self.shape) > 1 else 1

    @property
    def rows(self) -> int:
        return math.prod(self.shape[:-1]) if len(self.shape) > 1 else self.shape[0]


_CACHE: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_BLOCKS = 64


def _seed(key: tuple, block: int) -> list[int]:
    return [zlib.crc32(repr(key).encode()), block]


def _block_rows(cols: int) -> int:
    return max(1, BLOCK_VALUES // cols)


_SQRT12 = np.float32(math.sqrt(12.0))


def _draw(key: tuple, cols: int, r0: int, r1: int) -> np.ndarray:
    """Zero-mean unit-variance uniform values (r1 - r0, cols), the same for the same key and rows whatever range
    is asked. Uniform rather than normal: three times faster to draw, and an iid init either way."""
    per = _block_rows(cols)
    out = []
    for b in range(r0 // per, (r1 - 1) // per + 1):
        ck = (key, cols, b)
        with _CACHE_LOCK:
            block = _CACHE.get(ck)
            if block is not None:
                _CACHE.move_to_end(ck)
        if block is None:
            block = np.random.Generator(np.random.SFC64(_seed(key, b))).random((per, cols), dtype=np.float32)
            block -= np.float32(0.5)
            block *= _SQRT12
            with _CACHE_LOCK:
                _CACHE[ck] = block
                if len(_CACHE) > _CACHE_BLOCKS:
                    _CACHE.popitem(last=False)
        lo, hi = max(r0, b * per) - b * per, min(r1, (b + 1) * per) - b * per
        out.append(block[lo:hi])
    return np.concatenate(out) if len(out) > 1 else out[0]


def values(src: Source, r0: int, r1: int) -> np.ndarray:
    """float32 (r1 - r0, cols) of the tensor's 2-D view."""
    cols = src.cols
    if src.parent is None:
        return src.mean + src.std * _draw(src.key, cols, r0, r1)
    p = src.parent
    out = np.empty((r1 - r0, cols), dtype=np.float32)
    keep_r1, keep_c = min(r1, p.rows), min(cols, p.cols)
    if keep_r1 > r0:
        out[: keep_r1 - r0, :keep_c] = values(p, r0, keep_r1)[:, :keep_c]
    if keep_c < cols or keep_r1 < r1:  # grown: the new rows and columns are fresh
        fresh = src.mean + src.std * _draw(src.key + ("grown",), cols, r0, r1)
        out[:, keep_c:] = fresh[:, keep_c:]
        out[max(0, keep_r1 - r0):] = fresh[max(0, keep_r1 - r0):]
    if src.noise:
        out += (src.noise * src.std) * _draw(src.key + ("noise",), cols, r0, r1)
    return out


# -- encoding ------------------------------------------------------------------------------------------------

_E4M3_FINITE = np.sort(_E4M3[np.isfinite(_E4M3)])
_E4M3_CODES = np.array([int(np.flatnonzero(_E4M3 == v)[0]) for v in _E4M3_FINITE], dtype=np.uint8)
_E4M3_MID = (_E4M3_FINITE[1:] + _E4M3_FINITE[:-1]) / 2


def fp8_scale(src: Source) -> float:
    """The dequantisation scale of every 128 x 128 block: the tensor's 4-sigma range over E4M3's largest value."""
    return 4 * src.std / 448.0


def encode(dtype: str, v: np.ndarray, src: Source) -> bytes:
    if dtype == "BF16":  # round to nearest even in uint32: the values are finite by construction
        bits = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
        return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype("<u2").tobytes()
    if dtype == "F32":
        return v.astype("<f4").tobytes()
    if dtype == "F8_E4M3":
        scaled = np.clip(v / fp8_scale(src), -448.0, 448.0)
        return _E4M3_CODES[np.searchsorted(_E4M3_MID, scaled)].tobytes()  # nearest code
    raise ValueError(f"procedural tensors are BF16, F32 or F8_E4M3, not {dtype}")


# -- models --------------------------------------------------------------------------------------------------


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    source: Source | None  # None for an FP8 scale tensor: see `scale_of`
    scale_of: str | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype].itemsize


@dataclass
class Model:
    config: dict
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def derive(self, seed: int, noise: float | Callable[[str], float], layout: "Model | None" = None,
               parent_of: Callable[[str], str | None] | None = None, frozen: Callable[[str], bool] = lambda n: False
               ) -> "Model":
        """A child: `layout` (default: this model's) with each tensor drawn from `parent_of(name)` of this model
        (default: the same name; None or a missing name: fresh), plus noise (none where `frozen`)."""
        layout = layout or self
        child = Model(dict(layout.config))
        for name, t in layout.tensors.items():
            if t.source is None:
                child.tensors[name] = replace(t)
                continue
            pname = parent_of(name) if parent_of else name
            parent = self.tensors.get(pname) if pname else None
            own = replace(t.source, key=(seed, name), parent=None, noise=0.0)
            if parent is not None and parent.source is not None:
                level = 0.0 if frozen(name) else (noise(name) if callable(noise) else noise)
                own = replace(own, parent=parent.source, noise=level)
            child.tensors[name] = Tensor(name, t.dtype, t.shape, own)
        return child

    @property
    def n_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def shards(self, shard_bytes: int = SHARD_BYTES) -> list[list[str]]:
        groups, current, size = [], [], 0
        for name, t in self.tensors.items():
            if current and size + t.nbytes > shard_bytes:
                groups.append(current)
                current, size = [], 0
            current.append(name)
            size += t.nbytes
        return groups + ([current] if current else [])

    def files(self, shard_bytes: int = SHARD_BYTES) -> dict:
        """{file name: file} for the hub emulator: config.json, the shard index, and the generated shards."""
        from .hub_emulator import BytesFile

        groups = self.shards(shard_bytes)
        n = len(groups)
        names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        out = {"config.json": BytesFile(json.dumps(self.config, indent=2).encode())}
        weight_map = {t: f for f, g in zip(names, groups) for t in g}
        index = {"metadata": {"total_size": self.n_bytes}, "weight_map": weight_map}
        out["model.safetensors.index.json"] = BytesFile(json.dumps(index).encode())
        for fname, group in zip(names, groups):
            out[fname] = Shard(self, group)
        return out


class Shard:
    """One safetensors file of a procedural model: the header, then tensor bytes computed on demand."""

    def __init__(self, model: Model, names: list[str]):
        self.model, self.names = model, names
        header, offset, self.spans = {}, 0, []
        for name in names:
            t = model.tensors[name]
            header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
            self.spans.append((offset, offset + t.nbytes, t))
            offset += t.nbytes
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        self.head = len(head).to_bytes(8, "little") + head
        self.size = len(self.head) + offset
        # the ETag pins the bytes: the header and the full derivation of every tensor in it
        self.etag = hashlib.sha256(self.head + repr([model.tensors[n].source for n in names]).encode()).hexdigest()

    def read(self, offset: int, n: int) -> bytes:
        end = min(self.size, offset + n)
        out = bytearray()
        if offset < len(self.head):
            out += self.head[offset: min(end, len(self.head))]
        pos = max(offset, len(self.head))
        base = len(self.head)
        for lo, hi, t in self.spans:
            if pos >= end:
                break
            if hi + base <= pos:
                continue
            a, b = pos - base - lo, min(end - base, hi) - lo  # bytes of this tensor wanted
            out += self._tensor_bytes(t, a, b)
            pos = base + lo + b
        return bytes(out)

    def _tensor_bytes(self, t: Tensor, a: int, b: int) -> bytes:
        item = DTYPES[t.dtype].itemsize
        cols = t.shape[-1] if len(t.shape) > 1 else 1
        row_bytes = cols * item
        r0, r1 = a // row_bytes, -(-b // row_bytes)
        if t.scale_of is not None:
            weight = self.model.tensors[t.scale_of]
            v = np.full((r1 - r0, cols), fp8_scale(weight.source), dtype=np.float32)
        else:
            v = values(t.source, r0, r1)
        raw = encode(t.dtype, v.reshape(-1), t.source or Source((), t.shape))
        return raw[a - r0 * row_bytes: b - r0 * row_bytes]


# -- layouts of real models -----------------------------------------------------------------------------------


def _norm(shape) -> Source:
    return Source((), shape, std=0.02, mean=1.0)


def _mat(shape) -> Source:
    return Source((), shape)


def dense(n_layers: int, hidden: int, ffn: int, vocab: int, heads: int, kv_heads: int, bias: bool, model_type: str,
          seed: int, tie: bool = False, **extra) -> Model:
    hd = hidden // heads
    cfg = {"architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]],
           "model_type": model_type, "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": n_layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
           "tie_word_embeddings": tie, "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16", **extra}
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        shapes |= {f"{p}input_layernorm.weight": (hidden,), f"{p}self_attn.q_proj.weight": (heads * hd, hidden),
                   f"{p}self_attn.k_proj.weight": (kv_heads * hd, hidden), f"{p}self_attn.v_proj.weight": (kv_heads * hd, hidden),
                   f"{p}self_attn.o_proj.weight": (hidden, heads * hd)}
        if bias:
            shapes |= {f"{p}self_attn.q_proj.bias": (heads * hd,), f"{p}self_attn.k_proj.bias": (kv_heads * hd,),
                       f"{p}self_attn.v_proj.bias": (kv_heads * hd,)}
        shapes |= {f"{p}post_attention_layernorm.weight": (hidden,), f"{p}mlp.gate_proj.weight": (ffn, hidden),
                   f"{p}mlp.up_proj.weight": (ffn, hidden), f"{p}mlp.down_proj.weight": (hidden, ffn)}
    shapes["model.norm.weight"] = (hidden,)
    if not tie:
        shapes["lm_head.weight"] = (vocab, hidden)
    m = Model(cfg)
    for name, shape in shapes.items():
        src = _norm(shape) if name.endswith("norm.weight") else _mat(shape)
        m.tensors[name] = Tensor(name, "BF16", shape, replace(src, key=(seed, name)))
    return m


LAYOUTS: dict[str, Callable[[int], Model]] = {
    "smollm2-135m": lambda seed: dense(30, 576, 1536, 49152, 9, 3, False, "llama", seed, tie=True),
    "llama-7b": lambda seed: dense(32, 4096, 11008, 32000, 32, 32, False, "llama", seed),
    "qwen2.5-14b": lambda seed: dense(48, 5120, 13824, 152064, 40, 8, True, "qwen2", seed),
    "llama-3-70b": lambda seed: dense(80, 8192, 28672, 128256, 64, 8, False, "llama", seed, rope_theta=500000.0),
    "qwen1.5-110b": lambda seed: dense(80, 8192, 49152, 152064, 64, 8, True, "qwen2", seed),
}


def deepseek_v3(seed: int, n_layers: int = 61, n_experts: int = 256) -> Model:
    """DeepSeek-V3's layout: MLA attention, 3 dense layers then MoE (256 routed + 1 shared expert of width 2048),
    a multi-token-prediction layer after the last, FP8 E4M3 linear weights with 128 x 128 block scales."""
    hidden, vocab, ffn, moe_ffn, heads = 7168, 129280, 18432, 2048, 128
    q_lora, kv_lora, nope, rope, v_dim, dense_layers = 1536, 512, 128, 64, 128, 3
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": hidden,
           "intermediate_size": ffn, "moe_intermediate_size": moe_ffn, "num_hidden_layers": n_layers,
           "num_attention_heads": heads, "num_key_value_heads": heads, "vocab_size": vocab,
           "n_routed_experts": n_experts, "n_shared_experts": 1, "num_experts_per_tok": 8,
           "first_k_dense_replace": dense_layers, "q_lora_rank": q_lora, "kv_lora_rank": kv_lora,
           "qk_nope_head_dim": nope, "qk_rope_head_dim": rope, "v_head_dim": v_dim, "num_nextn_predict_layers": 1,
           "tie_word_embeddings": False, "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                   "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}}
    m = Model(cfg)

    def add(name, shape, kind="fp8"):
        if kind == "fp8":
            m.tensors[name] = Tensor(name, "F8_E4M3", shape, Source((seed, name), shape))
            sshape = (-(-shape[0] // FP8_BLOCK), -(-shape[1] // FP8_BLOCK))
            m.tensors[name + "_scale_inv"] = Tensor(name + "_scale_inv", "F32", sshape, None, scale_of=name)
        elif kind == "norm":
            m.tensors[name] = Tensor(name, "BF16", shape, Source((seed, name), shape, std=0.02, mean=1.0))
        else:
            m.tensors[name] = Tensor(name, kind, shape, Source((seed, name), shape))

    def swiglu(p, width):
        add(f"{p}gate_proj.weight", (width, hidden))
        add(f"{p}up_proj.weight", (width, hidden))
        add(f"{p}down_proj.weight", (hidden, width))

    add("model.embed_tokens.weight", (vocab, hidden), "BF16")
    for i in range(n_layers + 1):
        p = f"model.layers.{i}."
        add(f"{p}input_layernorm.weight", (hidden,), "norm")
        add(f"{p}self_attn.q_a_proj.weight", (q_lora, hidden))
        add(f"{p}self_attn.q_a_layernorm.weight", (q_lora,), "norm")
        add(f"{p}self_attn.q_b_proj.weight", (heads * (nope + rope), q_lora))
        add(f"{p}self_attn.kv_a_proj_with_mqa.weight", (kv_lora + rope, hidden))
        add(f"{p}self_attn.kv_a_layernorm.weight", (kv_lora,), "norm")
        add(f"{p}self_attn.kv_b_proj.weight", (heads * (nope + v_dim), kv_lora))
        add(f"{p}self_attn.o_proj.weight", (hidden, heads * v_dim))
        add(f"{p}post_attention_layernorm.weight", (hidden,), "norm")
        if i < dense_layers:
            swiglu(f"{p}mlp.", ffn)
        else:
            add(f"{p}mlp.gate.weight", (n_experts, hidden), "BF16")
            add(f"{p}mlp.gate.e_score_correction_bias", (n_experts,), "F32")
            for e in range(n_experts):
                swiglu(f"{p}mlp.experts.{e}.", moe_ffn)
            swiglu(f"{p}mlp.shared_experts.", moe_ffn)
        if i == n_layers:  # the multi-token-prediction block
            add(f"{p}enorm.weight", (hidden,), "norm")
            add(f"{p}hnorm.weight", (hidden,), "norm")
            add(f"{p}eh_proj.weight", (hidden, 2 * hidden), "BF16")
            add(f"{p}shared_head.norm.weight", (hidden,), "norm")
            add(f"{p}shared_head.head.weight", (vocab, hidden), "BF16")
    add("model.norm.weight", (hidden,), "norm")
    add("lm_head.weight", (vocab, hidden), "BF16")
    return m


# -- the derivations of the seed case -------------------------------------------------------------------------


def layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 3 and parts[1] == "layers" and parts[2].isdigit() else None


def with_layer(name: str, layer: int) -> str:
    parts = name.split(".")
    parts[2] = str(layer)
    return ".".join(parts)


def inserted_and_widened(parent: Model, seed: int, insert_after: list[int], ffn: int, noise: float = 0.02) -> Model:
    """The seed's first case: fresh layers inserted after `insert_after` (A's indices), every FFN widened to
    `ffn` (A's neurons kept first, the new ones fresh), and continued training (noise) on everything."""
    cfg = parent.config
    n = cfg["num_hidden_layers"] + len(insert_after)
    bias = any(name.endswith("q_proj.bias") for name in parent.tensors)
    layout = dense(n, cfg["hidden_size"], ffn, cfg["vocab_size"], cfg["num_attention_heads"],
                   cfg["num_key_value_heads"], bias, cfg["model_type"], seed)
    source_layer = []
    for i in range(cfg["num_hidden_layers"]):
        source_layer.append(i)
        if i in insert_after:
            source_layer.append(None)
    def parent_of(name: str) -> str | None:
        layer = layer_of(name)
        if layer is None:
            return name
        src = source_layer[layer]
        return None if src is None else with_layer(name, src)

    return parent.derive(seed, noise, layout, parent_of)


def frozen_copy(parent: Model, seed: int, frozen: Callable[[str], bool], noise: float = 0.02) -> Model:
    """Continued training with some copied tensors frozen: those keep the parent's bytes exactly."""
    return parent.derive(seed, noise, frozen=frozen)


def drifted(parent: Model, seed: int, top: float = 0.1) -> Model:
    """Continued-training drift: noise growing linearly with depth, from a tenth of `top` to `top`."""
    n = parent.config["num_hidden_layers"]

    def noise(name: str) -> float:
        layer = layer_of(name)
        return top * (0.1 + 0.9 * (layer if layer is not None else n) / max(n, 1))

    return parent.derive(seed, noise)


def upcycled(parent: Model, seed: int, n_experts: int, noise: float = 0.02) -> Model:
    """A dense model turned MoE: every expert of a layer starts from that layer's dense FFN (Mixtral names)."""
    cfg = {**parent.config, "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
           "num_local_experts": n_experts, "num_experts_per_tok": 2}
    layout = Model(cfg)
    ffn, hidden = parent.config["intermediate_size"], parent.config["hidden_size"]
    mlp = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
    parents = {}
    for name, t in parent.tensors.items():
        if ".mlp." not in name:
            layout.tensors[name] = replace(t)
            continue
        if not name.endswith("gate_proj.weight"):
            continue
        p = name[: name.index("mlp.")]
        router = f"{p}block_sparse_moe.gate.weight"
        layout.tensors[router] = Tensor(router, "BF16", (n_experts, hidden), Source((seed, router), (n_experts, hidden)))
        for e in range(n_experts):
            for w, dense_name in mlp.items():
                shape = (hidden, ffn) if w == "w2" else (ffn, hidden)
                ename = f"{p}block_sparse_moe.experts.{e}.{w}.weight"
                layout.tensors[ename] = Tensor(ename, "BF16", shape, Source((seed, ename), shape))
                parents[ename] = f"{p}mlp.{dense_name}.weight"
    return parent.derive(seed, noise, layout, lambda n: parents.get(n, n))
