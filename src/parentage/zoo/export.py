"""Writing zoo models as users meet them: Hugging Face folders (F32 or BF16) and GGUF (Q8_0, Q4_0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..readers.gguf import llama_qk_row_map
from .model import ModelConfig, hf_config

TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "model_max_length": 512}


def save_hf(folder: Path, cfg: ModelConfig, params: dict[str, torch.Tensor], tokenizer, dtype: str = "F32") -> None:
    """config.json, model.safetensors (real HF names), tokenizer.json and tokenizer_config.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch_dtype = {"F32": torch.float32, "BF16": torch.bfloat16}[dtype]
    tensors = {k: v.detach().to(torch_dtype).contiguous() for k, v in sorted(params.items())}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = hf_config(cfg) | {"torch_dtype": "float32" if dtype == "F32" else "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")


# Hugging Face name (after "model.layers.N.") -> llama.cpp name (after "blk.N.")
_GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}
_GGUF_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}


def _hf_to_gguf_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row permutation (the inverse of what our GGUF reader undoes)."""
    gguf_rows = llama_qk_row_map(w.shape[0], n_head)  # HF row r lives at GGUF row gguf_rows[r]
    out = np.empty_like(w)
    out[gguf_rows] = w
    return out


def save_gguf(path: Path, cfg: ModelConfig, params: dict[str, torch.Tensor], tokenizer, qtype_name: str, name: str) -> None:
    """A llama-architecture GGUF with the tokenizer embedded, as llama.cpp's converter writes it."""
    import gguf

    if cfg.n_experts or cfg.qkv_bias:
        raise ValueError("GGUF export covers dense llama-named models")
    qtype = gguf.GGMLQuantizationType[qtype_name]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_block_count(cfg.n_layers)
    w.add_context_length(cfg.max_seq)
    w.add_embedding_length(cfg.hidden)
    w.add_feed_forward_length(cfg.ffn)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.eps)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype_name == "Q8_0" else gguf.LlamaFileType.MOSTLY_Q4_0)
    vocab = json.loads(tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(vocab["vocab"].items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t == "<|endoftext|>" else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in vocab["merges"]])
    for hf_name, value in params.items():
        arr = value.detach().float().numpy()
        if hf_name in _GGUF_GLOBAL:
            gname = _GGUF_GLOBAL[hf_name]
        else:
            parts = hf_name.split(".")
            gname = f"blk.{parts[2]}.{_GGUF_LAYER['.'.join(parts[3:])]}"
        if hf_name.endswith("q_proj.weight"):
            arr = _hf_to_gguf_rows(arr, cfg.n_heads)
        elif hf_name.endswith("k_proj.weight"):
            arr = _hf_to_gguf_rows(arr, cfg.n_kv_heads)
        if arr.ndim == 2 and arr.shape[1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(gname, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(gname, arr.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
