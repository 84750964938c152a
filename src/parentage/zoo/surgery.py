"""The edits a derived model's maker can apply before (or instead of) training.

Each function takes a config and a parameter dict (Hugging Face names, see model.py) and returns new ones; the
inputs are never modified. Function-preserving edits say so, and the zoo checks it on logits.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import ModelConfig, layer_shapes
from .realfamily import experts_permuted, width_pruned

Params = dict[str, torch.Tensor]

ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
FFN = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _layer_items(params: Params, i: int) -> dict[str, torch.Tensor]:
    p = f"model.layers.{i}."
    return {k[len(p) :]: v for k, v in params.items() if k.startswith(p)}


def _relayer(cfg: ModelConfig, params: Params, sources: list[tuple[int | None, dict[str, torch.Tensor]]]) -> Params:
    """Rebuild the layer stack from a list of (source layer or None, tensors by layer-relative name)."""
    out = {k: v.clone() for k, v in params.items() if not k.startswith("model.layers.")}
    for i, (_, tensors) in enumerate(sources):
        out |= {f"model.layers.{i}.{k}": v.clone() for k, v in tensors.items()}
    return out


def insert_layers(cfg: ModelConfig, params: Params, after: list[int]) -> tuple[ModelConfig, Params, list[int | None]]:
    """Insert a copy of layer i after each i in `after`, with its output projections zeroed.

    A zero o_proj and down_proj make the new layer add nothing to the residual stream, so the model computes
    the same function; training then grows the new layers. Returns the child -> parent layer map.
    """
    sources: list[tuple[int | None, dict]] = []
    for i in range(cfg.n_layers):
        sources.append((i, _layer_items(params, i)))
        if i in after:
            copy = {k: v.clone() for k, v in _layer_items(params, i).items()}
            for k in copy:
                if k.startswith(("self_attn.o_proj", "mlp.down_proj")) or (".w2." in k):
                    copy[k] = torch.zeros_like(copy[k])
            sources.append((None, copy))
    new_cfg = cfg.with_(n_layers=len(sources))
    return new_cfg, _relayer(cfg, params, sources), [s for s, _ in sources]


def remove_layers(cfg: ModelConfig, params: Params, drop: list[int]) -> tuple[ModelConfig, Params, list[int | None]]:
    sources = [(i, _layer_items(params, i)) for i in range(cfg.n_layers) if i not in drop]
    return cfg.with_(n_layers=len(sources)), _relayer(cfg, params, sources), [s for s, _ in sources]


def widen_ffn(cfg: ModelConfig, params: Params, new_ffn: int, gen: torch.Generator, noise: float = 1e-3) -> tuple[ModelConfig, Params]:
    """Net2Net widening: duplicate random neurons, halve the down-projection column between the twins.

    Twins would receive identical gradients forever, so their input rows get a little noise (relative `noise`)
    to break the symmetry; the function is preserved up to that noise.
    """
    extra = new_ffn - cfg.ffn
    out = {k: v.clone() for k, v in params.items()}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}.mlp."
        src = torch.randint(0, cfg.ffn, (extra,), generator=gen)  # which neuron each new one copies
        gate, up, down = params[p + "gate_proj.weight"], params[p + "up_proj.weight"], params[p + "down_proj.weight"]
        new_gate = gate[src] + noise * gate[src].std() * torch.randn(extra, cfg.hidden, generator=gen)
        new_up = up[src] + noise * up[src].std() * torch.randn(extra, cfg.hidden, generator=gen)
        down = down.clone()
        counts = torch.bincount(src, minlength=cfg.ffn).float() + 1  # each original neuron's number of copies
        down = down / counts  # (hidden, ffn): the original's share
        out[p + "gate_proj.weight"] = torch.cat([gate, new_gate])  # (new_ffn, hidden)
        out[p + "up_proj.weight"] = torch.cat([up, new_up])
        out[p + "down_proj.weight"] = torch.cat([down, down[:, src]], dim=1)  # (hidden, new_ffn)
    return cfg.with_(ffn=new_ffn), out


def replace_tokenizer(cfg: ModelConfig, params: Params, old_bytes: dict[int, bytes], new_bytes: dict[int, bytes],
                      gen: torch.Generator, std: float = 0.02) -> tuple[ModelConfig, Params, int]:
    """New vocabulary: rows of tokens with the same byte string are copied, the rest initialised fresh."""
    old_id = {b: i for i, b in old_bytes.items()}
    vocab = max(new_bytes) + 1
    out = {k: v.clone() for k, v in params.items()}
    shared = 0
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        fresh = torch.randn(vocab, cfg.hidden, generator=gen) * std
        for new_i, b in new_bytes.items():
            if b in old_id:
                fresh[new_i] = params[name][old_id[b]]
                shared += name == "lm_head.weight"
        out[name] = fresh
    return cfg.with_(vocab=vocab), out, shared


def prune_vocab(cfg: ModelConfig, params: Params, mapping: dict[int, int]) -> tuple[ModelConfig, Params]:
    """Embedding and LM-head rows of the kept tokens only, at their new ids (mapping: old id -> new id)."""
    old = torch.tensor(sorted(mapping, key=mapping.get))
    out = {k: v.clone() for k, v in params.items()}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        out[name] = params[name][old].clone()
    return cfg.with_(vocab=len(mapping)), out


def magnitude_prune(params: Params, share: float = 0.5) -> Params:
    """Unstructured magnitude pruning: in every row of every layer matrix, the `share` smallest values set to 0."""
    out = {k: v.clone() for k, v in params.items()}
    for k, v in params.items():
        if ".layers." in k and v.ndim == 2:
            cut = v.abs().quantile(share, dim=1, keepdim=True)
            out[k] = torch.where(v.abs() <= cut, torch.zeros_like(v), v)
    return out


def lora_merge(params: Params, rank: int, gen: torch.Generator, relative: float = 0.1) -> Params:
    """A low-rank update folded into every attention and FFN matrix: W + B A with A (rank, in), B (out, rank),
    scaled so that |B A| is `relative` of |W| (a trained LoRA adapter, merged)."""
    out = {k: v.clone() for k, v in params.items()}
    for k, v in params.items():
        if ".layers." in k and v.ndim == 2 and k.endswith(tuple(f"{m}.weight" for m in ATTN + FFN)):
            delta = torch.randn(v.shape[0], rank, generator=gen) @ torch.randn(rank, v.shape[1], generator=gen)
            out[k] = v + delta * (relative * v.norm() / delta.norm())
    return out


def upcycle(cfg: ModelConfig, params: Params, n_experts: int, gen: torch.Generator, noise: float = 0.01,
            std: float = 0.02) -> tuple[ModelConfig, Params]:
    """Dense -> MoE: every expert starts as the dense FFN plus noise; the router is new."""
    new_cfg = cfg.with_(n_experts=n_experts, naming="mixtral")
    out = {k: v.clone() for k, v in params.items() if ".mlp." not in k}
    for i in range(cfg.n_layers):
        p, q = f"model.layers.{i}.mlp.", f"model.layers.{i}.block_sparse_moe."
        out[q + "gate.weight"] = torch.randn(n_experts, cfg.hidden, generator=gen) * std
        for e in range(n_experts):
            for ours, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                w = params[p + theirs + ".weight"]
                out[f"{q}experts.{e}.{ours}.weight"] = w + noise * w.std() * torch.randn(w.shape, generator=gen)
    return new_cfg, out


def _hf(cfg: ModelConfig) -> dict:
    return {"hidden_size": cfg.hidden, "head_dim": cfg.head_dim, "num_attention_heads": cfg.n_heads,
            "num_key_value_heads": cfg.n_kv_heads, "num_hidden_layers": cfg.n_layers, "intermediate_size": cfg.ffn,
            "num_local_experts": cfg.n_experts}


def _numpy(params: Params) -> dict:
    return {k: v.numpy() for k, v in params.items()}


def _torch(arrays: dict) -> Params:
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()}


def width_prune(cfg: ModelConfig, params: Params, **how) -> tuple[ModelConfig, Params, dict]:
    """Minitron-style structured pruning (`realfamily.width_pruned`: residual channels, FFN neurons, query heads or
    key/value groups kept by weight norm, in order); returns the truth `zoo.truth.subset_errors` checks."""
    if cfg.qkv_bias or cfg.n_experts:
        raise ValueError("width_prune handles dense models without q/k/v biases")
    arrays, hf, truth = width_pruned(_numpy(params), _hf(cfg), **how)
    new = cfg.with_(hidden=hf["hidden_size"], ffn=hf["intermediate_size"], n_heads=hf["num_attention_heads"],
                    n_kv_heads=hf["num_key_value_heads"], head_size=cfg.head_dim)
    return new, _torch(arrays), truth


def permute_experts(cfg: ModelConfig, params: Params, gen: torch.Generator) -> tuple[Params, dict]:
    """Every layer's experts reordered (router rows alike) and the neurons inside every expert permuted: the same
    function (`realfamily.experts_permuted` without noise). Returns the map: B's expert e of layer j is A's
    map[j][e]."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    arrays, truth = experts_permuted(_numpy(params), _hf(cfg), rng, noise=0.0)
    return _torch(arrays), truth


def merge(a: Params, b: Params) -> Params:
    return {k: (a[k] + b[k]) / 2 for k in a}


def frozen_names(cfg: ModelConfig, layers: list[int]) -> set[str]:
    return {k for i in layers for k in layer_shapes(cfg, i)}


def _random_orthogonal(d: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()  # sign fix: Haar-distributed


def obfuscate(cfg: ModelConfig, params: Params, gen: torch.Generator) -> Params:
    """Every free re-parameterisation at once; the logits do not change (up to float rounding).

    1. fold each RMSNorm gain into the matrices that read its output, leaving unit gains;
    2. rotate the residual stream by a random orthogonal R (RMSNorm commutes with rotations);
    3. permute KV groups, query heads within their group, and MLP neurons;
    4. scale Q by a and K by 1/a per KV group, V by b and O by 1/b, an up row by c and its down column by 1/c.
    """
    if cfg.n_experts:
        raise ValueError("obfuscate handles dense models")
    hd, kv, rep = cfg.head_dim, cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
    P = {k: v.clone().double() for k, v in params.items()}

    # 1. fold norms
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        g = P[p + "input_layernorm.weight"]
        for m in ("q_proj", "k_proj", "v_proj"):
            P[f"{p}self_attn.{m}.weight"] = P[f"{p}self_attn.{m}.weight"] * g
        g2 = P[p + "post_attention_layernorm.weight"]
        for m in ("gate_proj", "up_proj"):
            P[f"{p}mlp.{m}.weight"] = P[f"{p}mlp.{m}.weight"] * g2
        P[p + "input_layernorm.weight"] = torch.ones_like(g)
        P[p + "post_attention_layernorm.weight"] = torch.ones_like(g2)
    P["lm_head.weight"] = P["lm_head.weight"] * P["model.norm.weight"]
    P["model.norm.weight"] = torch.ones_like(P["model.norm.weight"])

    # 2. rotate the residual stream: readers W -> W R, writers W -> R^T W, embeddings E -> E R
    R = _random_orthogonal(cfg.hidden, gen).double()
    P["model.embed_tokens.weight"] = P["model.embed_tokens.weight"] @ R
    P["lm_head.weight"] = P["lm_head.weight"] @ R
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
            P[f"{p}{m}.weight"] = P[f"{p}{m}.weight"] @ R
        for m in ("self_attn.o_proj", "mlp.down_proj"):
            P[f"{p}{m}.weight"] = R.T @ P[f"{p}{m}.weight"]

    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        # 3. heads: new KV group g holds old group kv_perm[g]; query heads move with their group
        kv_perm = torch.randperm(kv, generator=gen)
        q_heads = torch.cat([g * rep + torch.randperm(rep, generator=gen) for g in kv_perm.tolist()])
        q_rows = (q_heads[:, None] * hd + torch.arange(hd)).reshape(-1)
        kv_rows = (kv_perm[:, None] * hd + torch.arange(hd)).reshape(-1)
        for m, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            for suffix in (".weight", ".bias"):
                key = f"{p}self_attn.{m}{suffix}"
                if key in P:
                    P[key] = P[key][rows]
        P[f"{p}self_attn.o_proj.weight"] = P[f"{p}self_attn.o_proj.weight"][:, q_rows]
        # MLP neurons
        perm = torch.randperm(cfg.ffn, generator=gen)
        for m in ("gate_proj", "up_proj"):
            P[f"{p}mlp.{m}.weight"] = P[f"{p}mlp.{m}.weight"][perm]
        P[f"{p}mlp.down_proj.weight"] = P[f"{p}mlp.down_proj.weight"][:, perm]

        # 4. gauges: per KV group a (Q/K) and b (V/O); per neuron c (up/down). Log-uniform in [1/4, 4].
        a = torch.exp((torch.rand(kv, generator=gen, dtype=torch.float64) * 2 - 1) * 1.386)
        b = torch.exp((torch.rand(kv, generator=gen, dtype=torch.float64) * 2 - 1) * 1.386)
        c = torch.exp((torch.rand(cfg.ffn, generator=gen, dtype=torch.float64) * 2 - 1) * 1.386)
        a_q, a_k = a.repeat_interleave(rep * hd), a.repeat_interleave(hd)
        b_v, b_o = b.repeat_interleave(hd), b.repeat_interleave(rep * hd)
        for m, s in (("q_proj", a_q), ("k_proj", 1 / a_k), ("v_proj", b_v)):
            for suffix in (".weight", ".bias"):
                key = f"{p}self_attn.{m}{suffix}"
                if key in P:
                    P[key] = P[key] * (s[:, None] if suffix == ".weight" else s)
        P[f"{p}self_attn.o_proj.weight"] = P[f"{p}self_attn.o_proj.weight"] / b_o
        P[f"{p}mlp.up_proj.weight"] = P[f"{p}mlp.up_proj.weight"] * c[:, None]
        P[f"{p}mlp.down_proj.weight"] = P[f"{p}mlp.down_proj.weight"] / c
    return {k: v.float() for k, v in P.items()}
