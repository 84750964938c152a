"""Tiny checkpoints with real tensor names, written without torch.

Used by `parentage demo` (until the zoo exists) and by the tests, which need every family's naming on disk.
Weights are random: these files exercise readers and name tables, not lineage.
The state-dict layouts below are spelled out as transformers saves them, independently of the tables in
`names.py`, so that a test mapping one through the other checks something.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dtypes import round_to_bf16



@dataclass(frozen=True)
class Shape:
    n_layers: int = 2
    hidden: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn: int = 128
    vocab: int = 256
    n_experts: int = 4
    moe_ffn: int = 32
    head_size: int = 0  # 0: hidden // n_heads; set when heads or the residual were pruned apart

    @property
    def head_dim(self) -> int:
        return self.head_size or self.hidden // self.n_heads


def _llama_layer(p: str, s: Shape, bias_qkv: bool = False) -> dict[str, tuple]:
    hd = s.head_dim
    out = {
        f"{p}input_layernorm.weight": (s.hidden,),
        f"{p}self_attn.q_proj.weight": (s.n_heads * hd, s.hidden),
        f"{p}self_attn.k_proj.weight": (s.n_kv_heads * hd, s.hidden),
        f"{p}self_attn.v_proj.weight": (s.n_kv_heads * hd, s.hidden),
        f"{p}self_attn.o_proj.weight": (s.hidden, s.n_heads * hd),
        f"{p}post_attention_layernorm.weight": (s.hidden,),
    }
    if bias_qkv:
        out |= {f"{p}self_attn.q_proj.bias": (s.n_heads * hd,), f"{p}self_attn.k_proj.bias": (s.n_kv_heads * hd,),
                f"{p}self_attn.v_proj.bias": (s.n_kv_heads * hd,)}
    return out


def _swiglu(p: str, s: Shape, width: int) -> dict[str, tuple]:
    return {f"{p}gate_proj.weight": (width, s.hidden), f"{p}up_proj.weight": (width, s.hidden), f"{p}down_proj.weight": (s.hidden, width)}


def llama_like_shapes(s: Shape, *, bias_qkv=False, qk_norm=False, sandwich=False, moe=None, tied=False) -> dict[str, tuple]:
    sd = {"model.embed_tokens.weight": (s.vocab, s.hidden)}
    for i in range(s.n_layers):
        p = f"model.layers.{i}."
        sd |= _llama_layer(p, s, bias_qkv)
        if qk_norm:
            sd |= {f"{p}self_attn.q_norm.weight": (s.head_dim,), f"{p}self_attn.k_norm.weight": (s.head_dim,)}
        if sandwich:
            sd |= {f"{p}pre_feedforward_layernorm.weight": (s.hidden,), f"{p}post_feedforward_layernorm.weight": (s.hidden,)}
        if moe == "mixtral":
            sd[f"{p}block_sparse_moe.gate.weight"] = (s.n_experts, s.hidden)
            for e in range(s.n_experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                sd |= {f"{q}w1.weight": (s.moe_ffn, s.hidden), f"{q}w3.weight": (s.moe_ffn, s.hidden), f"{q}w2.weight": (s.hidden, s.moe_ffn)}
        elif moe in ("qwen2_moe", "qwen3_moe"):
            sd[f"{p}mlp.gate.weight"] = (s.n_experts, s.hidden)
            for e in range(s.n_experts):
                sd |= _swiglu(f"{p}mlp.experts.{e}.", s, s.moe_ffn)
            if moe == "qwen2_moe":
                sd |= _swiglu(f"{p}mlp.shared_expert.", s, s.ffn)
                sd[f"{p}mlp.shared_expert_gate.weight"] = (1, s.hidden)
        else:
            sd |= _swiglu(f"{p}mlp.", s, s.ffn)
    sd["model.norm.weight"] = (s.hidden,)
    if not tied:
        sd["lm_head.weight"] = (s.vocab, s.hidden)
    return sd


def _deepseek(s: Shape, v3: bool) -> dict[str, tuple]:
    q_lora, kv_lora, nope, rope, v_dim = 48, 32, 16, 8, 16
    sd = {"model.embed_tokens.weight": (s.vocab, s.hidden)}
    for i in range(s.n_layers + (1 if v3 else 0)):  # V3 appends a multi-token-prediction layer
        p = f"model.layers.{i}."
        sd |= {
            f"{p}input_layernorm.weight": (s.hidden,),
            f"{p}self_attn.q_a_proj.weight": (q_lora, s.hidden),
            f"{p}self_attn.q_a_layernorm.weight": (q_lora,),
            f"{p}self_attn.q_b_proj.weight": (s.n_heads * (nope + rope), q_lora),
            f"{p}self_attn.kv_a_proj_with_mqa.weight": (kv_lora + rope, s.hidden),
            f"{p}self_attn.kv_a_layernorm.weight": (kv_lora,),
            f"{p}self_attn.kv_b_proj.weight": (s.n_heads * (nope + v_dim), kv_lora),
            f"{p}self_attn.o_proj.weight": (s.hidden, s.n_heads * v_dim),
            f"{p}post_attention_layernorm.weight": (s.hidden,),
        }
        if i == 0:
            sd |= _swiglu(f"{p}mlp.", s, s.ffn)  # first_k_dense_replace = 1
        else:
            sd[f"{p}mlp.gate.weight"] = (s.n_experts, s.hidden)
            if v3:
                sd[f"{p}mlp.gate.e_score_correction_bias"] = (s.n_experts,)
            for e in range(s.n_experts):
                sd |= _swiglu(f"{p}mlp.experts.{e}.", s, s.moe_ffn)
            sd |= _swiglu(f"{p}mlp.shared_experts.", s, s.moe_ffn)
        if v3 and i == s.n_layers:
            sd |= {f"{p}eh_proj.weight": (s.hidden, 2 * s.hidden), f"{p}enorm.weight": (s.hidden,), f"{p}hnorm.weight": (s.hidden,)}
    sd |= {"model.norm.weight": (s.hidden,), "lm_head.weight": (s.vocab, s.hidden)}
    return sd


def _phi3(s: Shape) -> dict[str, tuple]:
    hd = s.head_dim
    sd = {"model.embed_tokens.weight": (s.vocab, s.hidden)}
    for i in range(s.n_layers):
        p = f"model.layers.{i}."
        sd |= {
            f"{p}input_layernorm.weight": (s.hidden,),
            f"{p}self_attn.qkv_proj.weight": ((s.n_heads + 2 * s.n_kv_heads) * hd, s.hidden),
            f"{p}self_attn.o_proj.weight": (s.hidden, s.hidden),
            f"{p}post_attention_layernorm.weight": (s.hidden,),
            f"{p}mlp.gate_up_proj.weight": (2 * s.ffn, s.hidden),
            f"{p}mlp.down_proj.weight": (s.hidden, s.ffn),
        }
    return sd | {"model.norm.weight": (s.hidden,), "lm_head.weight": (s.vocab, s.hidden)}


def _gpt_neox(s: Shape) -> dict[str, tuple]:
    sd = {"gpt_neox.embed_in.weight": (s.vocab, s.hidden)}
    for i in range(s.n_layers):
        p = f"gpt_neox.layers.{i}."
        sd |= {
            f"{p}input_layernorm.weight": (s.hidden,), f"{p}input_layernorm.bias": (s.hidden,),
            f"{p}post_attention_layernorm.weight": (s.hidden,), f"{p}post_attention_layernorm.bias": (s.hidden,),
            f"{p}attention.query_key_value.weight": (3 * s.hidden, s.hidden), f"{p}attention.query_key_value.bias": (3 * s.hidden,),
            f"{p}attention.dense.weight": (s.hidden, s.hidden), f"{p}attention.dense.bias": (s.hidden,),
            f"{p}attention.rotary_emb.inv_freq": (s.head_dim // 2,),
            f"{p}mlp.dense_h_to_4h.weight": (s.ffn, s.hidden), f"{p}mlp.dense_h_to_4h.bias": (s.ffn,),
            f"{p}mlp.dense_4h_to_h.weight": (s.hidden, s.ffn), f"{p}mlp.dense_4h_to_h.bias": (s.hidden,),
        }
    return sd | {"gpt_neox.final_layer_norm.weight": (s.hidden,), "gpt_neox.final_layer_norm.bias": (s.hidden,),
                 "embed_out.weight": (s.vocab, s.hidden)}


def _falcon(s: Shape) -> dict[str, tuple]:
    hd = s.head_dim  # Falcon-7B layout: multi-query, parallel attention, one norm
    sd = {"transformer.word_embeddings.weight": (s.vocab, s.hidden)}
    for i in range(s.n_layers):
        p = f"transformer.h.{i}."
        sd |= {
            f"{p}input_layernorm.weight": (s.hidden,), f"{p}input_layernorm.bias": (s.hidden,),
            f"{p}self_attention.query_key_value.weight": ((s.n_heads + 2) * hd, s.hidden),
            f"{p}self_attention.dense.weight": (s.hidden, s.hidden),
            f"{p}mlp.dense_h_to_4h.weight": (s.ffn, s.hidden),
            f"{p}mlp.dense_4h_to_h.weight": (s.hidden, s.ffn),
        }
    return sd | {"transformer.ln_f.weight": (s.hidden,), "transformer.ln_f.bias": (s.hidden,), "lm_head.weight": (s.vocab, s.hidden)}


def _gpt2(s: Shape) -> dict[str, tuple]:
    sd = {"wte.weight": (s.vocab, s.hidden), "wpe.weight": (128, s.hidden)}
    for i in range(s.n_layers):  # Conv1D weights are stored (in, out)
        p = f"h.{i}."
        sd |= {
            f"{p}ln_1.weight": (s.hidden,), f"{p}ln_1.bias": (s.hidden,),
            f"{p}attn.bias": (1, 1, 128, 128),
            f"{p}attn.c_attn.weight": (s.hidden, 3 * s.hidden), f"{p}attn.c_attn.bias": (3 * s.hidden,),
            f"{p}attn.c_proj.weight": (s.hidden, s.hidden), f"{p}attn.c_proj.bias": (s.hidden,),
            f"{p}ln_2.weight": (s.hidden,), f"{p}ln_2.bias": (s.hidden,),
            f"{p}mlp.c_fc.weight": (s.hidden, s.ffn), f"{p}mlp.c_fc.bias": (s.ffn,),
            f"{p}mlp.c_proj.weight": (s.ffn, s.hidden), f"{p}mlp.c_proj.bias": (s.hidden,),
        }
    return sd | {"ln_f.weight": (s.hidden,), "ln_f.bias": (s.hidden,)}


def _bert(s: Shape) -> dict[str, tuple]:
    sd = {"bert.embeddings.word_embeddings.weight": (s.vocab, s.hidden), "bert.embeddings.position_embeddings.weight": (128, s.hidden),
          "bert.embeddings.token_type_embeddings.weight": (2, s.hidden), "bert.embeddings.LayerNorm.weight": (s.hidden,),
          "bert.embeddings.LayerNorm.bias": (s.hidden,)}
    for i in range(s.n_layers):
        p = f"bert.encoder.layer.{i}."
        for sub, shape in [("attention.self.query", (s.hidden, s.hidden)), ("attention.self.key", (s.hidden, s.hidden)),
                           ("attention.self.value", (s.hidden, s.hidden)), ("attention.output.dense", (s.hidden, s.hidden)),
                           ("intermediate.dense", (s.ffn, s.hidden)), ("output.dense", (s.hidden, s.ffn))]:
            sd |= {f"{p}{sub}.weight": shape, f"{p}{sub}.bias": (shape[0],)}
        for sub in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd |= {f"{p}{sub}.weight": (s.hidden,), f"{p}{sub}.bias": (s.hidden,)}
    return sd | {"bert.pooler.dense.weight": (s.hidden, s.hidden), "bert.pooler.dense.bias": (s.hidden,)}


# model_type -> (state-dict layout, extra config fields)
LAYOUTS = {
    "llama": (lambda s: llama_like_shapes(s), {"architectures": ["LlamaForCausalLM"]}),
    "mistral": (lambda s: llama_like_shapes(s), {"architectures": ["MistralForCausalLM"]}),
    "qwen2": (lambda s: llama_like_shapes(s, bias_qkv=True), {"architectures": ["Qwen2ForCausalLM"]}),
    "qwen3": (lambda s: llama_like_shapes(s, qk_norm=True), {"architectures": ["Qwen3ForCausalLM"]}),
    "gemma": (lambda s: llama_like_shapes(s, tied=True), {"architectures": ["GemmaForCausalLM"]}),
    "gemma2": (lambda s: llama_like_shapes(s, sandwich=True, tied=True), {"architectures": ["Gemma2ForCausalLM"]}),
    "gemma3_text": (lambda s: llama_like_shapes(s, sandwich=True, qk_norm=True, tied=True), {"architectures": ["Gemma3ForCausalLM"]}),
    "mixtral": (lambda s: llama_like_shapes(s, moe="mixtral"), {"architectures": ["MixtralForCausalLM"], "num_local_experts": 4}),
    "qwen2_moe": (lambda s: llama_like_shapes(s, moe="qwen2_moe"), {"architectures": ["Qwen2MoeForCausalLM"], "num_experts": 4}),
    "qwen3_moe": (lambda s: llama_like_shapes(s, moe="qwen3_moe", qk_norm=True), {"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 4}),
    "deepseek_v2": (lambda s: _deepseek(s, v3=False), {"architectures": ["DeepseekV2ForCausalLM"], "n_routed_experts": 4, "n_shared_experts": 1}),
    "deepseek_v3": (lambda s: _deepseek(s, v3=True), {"architectures": ["DeepseekV3ForCausalLM"], "n_routed_experts": 4, "n_shared_experts": 1,
                                                      "num_nextn_predict_layers": 1}),
    "phi3": (_phi3, {"architectures": ["Phi3ForCausalLM"]}),
    "gpt_neox": (_gpt_neox, {"architectures": ["GPTNeoXForCausalLM"]}),
    "falcon": (_falcon, {"architectures": ["FalconForCausalLM"], "multi_query": True, "new_decoder_architecture": False}),
    "gpt2": (_gpt2, {"architectures": ["GPT2LMHeadModel"]}),
    "bert": (_bert, {"architectures": ["BertForMaskedLM"]}),
}


def state_dict_shapes(model_type: str, shape: Shape = Shape()) -> dict[str, tuple]:
    return LAYOUTS[model_type][0](shape)


def config_for(model_type: str, shape: Shape = Shape()) -> dict:
    extra = LAYOUTS[model_type][1]
    cfg = {
        "model_type": model_type,
        "num_hidden_layers": shape.n_layers,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.ffn,
        "num_attention_heads": shape.n_heads,
        "num_key_value_heads": shape.n_kv_heads,
        "vocab_size": shape.vocab,
        "tie_word_embeddings": model_type.startswith("gemma") or model_type == "gpt2",
        "torch_dtype": "float32",
    }
    if shape.head_size:
        cfg["head_dim"] = shape.head_size
    if model_type in ("qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"):
        cfg["moe_intermediate_size"] = shape.moe_ffn
    if model_type in ("gpt2", "gpt_neox", "falcon", "bert"):
        cfg["num_key_value_heads"] = shape.n_heads if model_type != "falcon" else 1
    return cfg | extra


def encode(values: np.ndarray, dtype: str) -> bytes:
    """float32 values -> raw little-endian bytes in a safetensors dtype (round to nearest for BF16)."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "F32":
        return v.astype("<f4").tobytes()
    if dtype == "F16":
        return v.astype("<f2").tobytes()
    if dtype == "BF16":
        return round_to_bf16(v).tobytes()
    raise ValueError(f"cannot encode {dtype}")


def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray], dtype: str = "F32", metadata: dict | None = None) -> None:
    """A minimal safetensors writer (the format is a JSON header and raw bytes), atomic via rename."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, value in tensors.items():
        raw = encode(value, dtype)
        header[name] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    _write_file(Path(path), header, blobs)


# numpy dtype -> safetensors dtype, for tensors written as they are (packed codes, scales, zero points)
NUMPY_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32", "int16": "I16",
                "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8"}


def write_tensors(path: str | Path, tensors: dict[str, "np.ndarray | tuple[str, np.ndarray]"],
                  metadata: dict | None = None) -> None:
    """A safetensors file of tensors each in its own dtype: a numpy array as it is, or ("BF16", values) for a
    dtype numpy lacks (BF16 from float32 values, rounded to nearest even; F8_E4M3/F8_E5M2 from their uint8
    codes). Atomic, as write_safetensors."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, arr = value
            raw = round_to_bf16(arr).tobytes() if dtype == "BF16" else np.ascontiguousarray(arr, np.uint8).tobytes()
        else:
            arr = np.ascontiguousarray(value)
            dtype = NUMPY_DTYPES[arr.dtype.name]
            raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    _write_file(Path(path), header, blobs)


def _write_file(path: Path, header: dict, blobs: list[bytes]) -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def random_state_dict(model_type: str, shape: Shape = Shape(), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, dims in state_dict_shapes(model_type, shape).items():
        if len(dims) == 1 and "norm" in name.lower() and name.endswith("weight"):
            out[name] = np.ones(dims, dtype=np.float32)  # norm gains start at one
        else:
            out[name] = (rng.standard_normal(dims) * 0.02).astype(np.float32)
    return out


def write_model(folder: str | Path, model_type: str = "llama", shape: Shape = Shape(), seed: int = 0,
                dtype: str = "F32", metadata: dict | None = None) -> Path:
    """A Hugging Face-layout folder: config.json and model.safetensors with the family's real names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if dtype not in ("F32", "F16", "BF16"):
        raise ValueError(f"write_model writes F32, F16 or BF16, not {dtype}")
    write_safetensors(folder / "model.safetensors", random_state_dict(model_type, shape, seed), dtype, metadata)
    (folder / "config.json").write_text(json.dumps(config_for(model_type, shape), indent=2))
    return folder


# -- layer surgery on Hugging Face llama-style state dicts (numpy), for tests and benchmarks -------------------


def relayered(sd: dict[str, np.ndarray], sources: list[int]) -> dict[str, np.ndarray]:
    """sd with its layer stack rebuilt: the new layer k is a copy of sd's layer sources[k] (repeats: inserted
    copies, omissions: removed layers)."""
    out = {k: v for k, v in sd.items() if ".layers." not in k}
    for k, i in enumerate(sources):
        prefix = f"model.layers.{i}."
        out |= {f"model.layers.{k}." + n[len(prefix):]: v.copy() for n, v in sd.items() if n.startswith(prefix)}
    return out


def zero_outputs(sd: dict[str, np.ndarray], layers: list[int]) -> dict[str, np.ndarray]:
    """The layers' o_proj and down_proj set to zero: an inserted copy that adds nothing until trained."""
    return {k: (np.zeros_like(v) if any(k.startswith(f"model.layers.{i}.") for i in layers)
                and k.endswith(("o_proj.weight", "down_proj.weight")) else v) for k, v in sd.items()}
