"""A Llama-style decoder in plain torch: RMSNorm, RoPE, grouped-query attention, SwiGLU, optional MoE.

It computes exactly what transformers' Llama / Qwen2 / Mixtral classes compute for the same config, so zoo
models saved under those names load there with the same logits. Parameters live in a flat dict keyed by Hugging
Face names, which keeps the surgery in `surgery.py` (insert layers, widen FFNs, rotate the residual stream) a
matter of editing tensors by name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from ..synthetic import Shape, llama_like_shapes


@dataclass(frozen=True)
class ModelConfig:
    vocab: int
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    naming: str = "llama"  # "llama" | "qwen2" (q/k/v biases) | "mixtral" (MoE)
    n_experts: int = 0  # 0 = dense
    top_k: int = 2
    rope_theta: float = 10000.0
    eps: float = 1e-5
    max_seq: int = 512
    head_size: int = 0  # 0: hidden // n_heads; set once heads or the residual stream were pruned apart

    @property
    def head_dim(self) -> int:
        return self.head_size or self.hidden // self.n_heads

    @property
    def qkv_bias(self) -> bool:
        return self.naming == "qwen2"

    def with_(self, **kw) -> "ModelConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face names and shapes, in the order parameters are initialised (the order fixes the weights).

    The llama/qwen2/mixtral state-dict layout is spelt once, in `synthetic.py`; the zoo uses the same table.
    """
    shape = Shape(n_layers=cfg.n_layers, hidden=cfg.hidden, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                  ffn=cfg.ffn, vocab=cfg.vocab, n_experts=cfg.n_experts or 1, moe_ffn=cfg.ffn, head_size=cfg.head_size)
    return llama_like_shapes(shape, bias_qkv=cfg.qkv_bias, moe="mixtral" if cfg.n_experts else None)


def layer_shapes(cfg: ModelConfig, i: int) -> dict[str, tuple[int, ...]]:
    prefix = f"model.layers.{i}."
    return {k: v for k, v in param_shapes(cfg).items() if k.startswith(prefix)}


def init_params(cfg: ModelConfig, generator: torch.Generator, std: float = 0.02) -> dict[str, torch.Tensor]:
    """Independent initialisation: N(0, std) matrices, unit norm gains, zero biases (as HF's _init_weights)."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm.weight"):
            params[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            params[name] = torch.zeros(shape)
        else:
            params[name] = torch.randn(shape, generator=generator) * std
    return params


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # computed in float32 like transformers' LlamaRMSNorm
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def _rope(cfg: ModelConfig, seq: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).float() / cfg.head_dim))
    freqs = torch.outer(torch.arange(seq, dtype=torch.float32), inv_freq)  # (seq, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (seq, head_dim): HF's non-interleaved rotary layout
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _linear(x, params, name):
    bias = params.get(name + ".bias")
    return F.linear(x, params[name + ".weight"], bias)


def _attention(cfg: ModelConfig, params, p: str, x: torch.Tensor, cos, sin) -> torch.Tensor:
    b, t, _ = x.shape
    hd = cfg.head_dim
    q = _linear(x, params, f"{p}self_attn.q_proj").view(b, t, cfg.n_heads, hd).transpose(1, 2)  # (b, H, t, hd)
    k = _linear(x, params, f"{p}self_attn.k_proj").view(b, t, cfg.n_kv_heads, hd).transpose(1, 2)  # (b, KV, t, hd)
    v = _linear(x, params, f"{p}self_attn.v_proj").view(b, t, cfg.n_kv_heads, hd).transpose(1, 2)
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    rep = cfg.n_heads // cfg.n_kv_heads
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # each KV head serves `rep` query heads
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, H, t, hd)
    return F.linear(y.transpose(1, 2).reshape(b, t, cfg.n_heads * hd), params[f"{p}self_attn.o_proj.weight"])


def _swiglu(x, gate, up, down):
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


def _mlp(cfg: ModelConfig, params, p: str, x: torch.Tensor) -> torch.Tensor:
    if not cfg.n_experts:
        return _swiglu(x, params[f"{p}mlp.gate_proj.weight"], params[f"{p}mlp.up_proj.weight"], params[f"{p}mlp.down_proj.weight"])
    # Mixtral routing: softmax over all experts, keep the top k, renormalise their weights.
    flat = x.reshape(-1, x.shape[-1])  # (tokens, d)
    probs = F.softmax(F.linear(flat, params[f"{p}block_sparse_moe.gate.weight"]), dim=-1, dtype=torch.float32)
    weights, chosen = torch.topk(probs, cfg.top_k, dim=-1)  # (tokens, k)
    weights = weights / weights.sum(-1, keepdim=True)
    out = torch.zeros_like(flat)
    for e in range(cfg.n_experts):
        q = f"{p}block_sparse_moe.experts.{e}."
        token_idx, slot = torch.where(chosen == e)
        if token_idx.numel():
            y = _swiglu(flat[token_idx], params[q + "w1.weight"], params[q + "w3.weight"], params[q + "w2.weight"])
            out.index_add_(0, token_idx, y * weights[token_idx, slot, None])
    return out.view_as(x)


def forward(cfg: ModelConfig, params: dict[str, torch.Tensor], tokens: torch.Tensor, return_hidden: bool = False) -> torch.Tensor:
    """tokens (b, t) int64 -> logits (b, t, vocab)."""
    x = F.embedding(tokens, params["model.embed_tokens.weight"])  # (b, t, d)
    cos, sin = _rope(cfg, tokens.shape[1])
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        x = x + _attention(cfg, params, p, _rms_norm(x, params[p + "input_layernorm.weight"], cfg.eps), cos, sin)
        x = x + _mlp(cfg, params, p, _rms_norm(x, params[p + "post_attention_layernorm.weight"], cfg.eps))
    x = _rms_norm(x, params["model.norm.weight"], cfg.eps)
    return x if return_hidden else F.linear(x, params["lm_head.weight"])


def hf_config(cfg: ModelConfig) -> dict:
    """config.json for transformers."""
    common = {
        "vocab_size": cfg.vocab, "hidden_size": cfg.hidden, "intermediate_size": cfg.ffn,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim, "hidden_act": "silu", "rms_norm_eps": cfg.eps, "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "max_position_embeddings": cfg.max_seq, "tie_word_embeddings": False, "initializer_range": 0.02,
        "torch_dtype": "float32", "bos_token_id": None, "eos_token_id": None, "use_cache": True,
    }
    if cfg.n_experts:
        return common | {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "num_local_experts": cfg.n_experts,
                         "num_experts_per_tok": cfg.top_k, "router_aux_loss_coef": 0.0, "output_router_logits": False,
                         "sliding_window": None}
    if cfg.naming == "qwen2":
        return common | {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "use_sliding_window": False,
                         "sliding_window": None, "max_window_layers": cfg.n_layers}
    return common | {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "attention_bias": False, "mlp_bias": False}


def n_params(cfg: ModelConfig) -> int:
    return sum(math.prod(s) for s in param_shapes(cfg).values())
