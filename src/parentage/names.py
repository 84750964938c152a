"""Canonical tensor roles: what each stored tensor *is*, whatever the family calls it.

Each family is a data table: a few global names, a layer prefix, and per-layer names, each mapped to a role.
`{E}` in a name is an expert index. Fused tensors (Phi-3 `qkv_proj`, GPT-NeoX/Falcon `query_key_value`, GPT-2
`c_attn`, GGUF expert stacks) name a *split*: a function of the stored shape and the config that says which
stored rows (or, for GPT-2's transposed Conv1D, which stored columns) make up each role.

Canonical matrices are `(out_features, in_features)`, as in `torch.nn.Linear`. A role key reads
`layers.3.attn_q.weight`, `layers.3.experts.5.mlp_up.weight` or `embed.weight`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Every role a table may name (order is the display order); a test checks the tables against these.
GLOBAL_ROLES = ("embed", "pos_embed", "type_embed", "embed_norm", "final_norm", "lm_head", "pooler")
LAYER_ROLES = (
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_o", "attn_q_norm", "attn_k_norm", "attn_post_norm",
    "attn_q_a", "attn_q_a_norm", "attn_q_b", "attn_kv_a", "attn_kv_a_norm", "attn_kv_b",
    "mlp_norm", "mlp_gate", "mlp_up", "mlp_down", "mlp_post_norm",
    "router", "router_bias", "shared_mlp_gate", "shared_mlp_up", "shared_mlp_down", "shared_expert_gate",
)


@dataclass(frozen=True, order=True)
class Role:
    role: str
    layer: int | None = None
    expert: int | None = None
    param: str = "weight"

    @property
    def key(self) -> str:
        parts = []
        if self.layer is not None:
            parts.append(f"layers.{self.layer}")
        if self.expert is not None:
            parts.append(f"experts.{self.expert}")
        parts.append(f"{self.role}.{self.param}")
        return ".".join(parts)


@dataclass(frozen=True)
class Piece:
    """Where one canonical tensor lives inside a stored one."""

    role: Role
    source: str  # stored tensor name
    shape: tuple[int, ...]  # canonical shape
    rows: np.ndarray | None = None  # stored rows (or stored columns, if transposed) in canonical order; None = all
    transposed: bool = False  # stored as (in, out): GPT-2 Conv1D


# ---------------------------------------------------------------------------------------------------------------
# Splits of fused tensors. Each takes (stored shape, config view, param) and returns [(role, row indices)], where
# indices are along the stored first axis, or along the stored last axis for transposed (Conv1D) weights.


@dataclass(frozen=True)
class Dims:
    """The config numbers splits need (see checkpoint.arch_summary for where they come from)."""

    n_heads: int | None
    n_kv_heads: int | None
    head_dim: int | None
    hidden: int | None
    falcon_layout: str = "interleaved"  # "interleaved" | "multi_query" | "grouped"


def _ranges(sizes: list[tuple[str, int]]) -> list[tuple[str, np.ndarray]]:
    out, start = [], 0
    for role, n in sizes:
        out.append((role, np.arange(start, start + n)))
        start += n
    return out


def _head_dim(n: int, d: Dims, n_slots: int) -> int:
    if d.head_dim:
        return d.head_dim
    if d.n_heads and d.hidden:
        return d.hidden // d.n_heads
    return n // n_slots


def split_sequential_qkv(n: int, d: Dims) -> list[tuple[str, np.ndarray]]:
    """[Q; K; V] stacked (Phi-3 qkv_proj, GPT-2 c_attn, Falcon-7B multi-query)."""
    n_heads, n_kv = d.n_heads or 1, d.n_kv_heads or d.n_heads or 1
    hd = _head_dim(n, d, n_heads + 2 * n_kv)
    if hd * (n_heads + 2 * n_kv) != n:  # GPT-2 has no head counts that matter here: equal thirds
        return _ranges([("attn_q", n // 3), ("attn_k", n // 3), ("attn_v", n // 3)])
    return _ranges([("attn_q", n_heads * hd), ("attn_k", n_kv * hd), ("attn_v", n_kv * hd)])


def split_halves_gate_up(n: int, d: Dims) -> list[tuple[str, np.ndarray]]:
    return _ranges([("mlp_gate", n // 2), ("mlp_up", n // 2)])


def split_per_head_qkv(n: int, d: Dims) -> list[tuple[str, np.ndarray]]:
    """GPT-NeoX and classic Falcon: rows grouped per head as (n_heads, 3, head_dim)."""
    n_heads = d.n_heads or 1
    hd = n // (3 * n_heads)
    idx = np.arange(n).reshape(n_heads, 3, hd)
    return [(role, idx[:, i, :].reshape(-1)) for i, role in enumerate(("attn_q", "attn_k", "attn_v"))]


def split_falcon_qkv(n: int, d: Dims) -> list[tuple[str, np.ndarray]]:
    if d.falcon_layout == "multi_query":
        return split_sequential_qkv(n, Dims(d.n_heads, 1, d.head_dim, d.hidden))
    if d.falcon_layout == "grouped":  # Falcon-40B/180B: per KV group, its query heads then one K and one V
        n_heads, n_kv = d.n_heads or 1, d.n_kv_heads or 1
        per = n_heads // n_kv + 2
        hd = n // (n_kv * per)
        idx = np.arange(n).reshape(n_kv, per, hd)
        return [("attn_q", idx[:, :-2].reshape(-1)), ("attn_k", idx[:, -2].reshape(-1)), ("attn_v", idx[:, -1].reshape(-1))]
    return split_per_head_qkv(n, d)


def split_meta_rotary(n: int, d: Dims, kv: bool) -> np.ndarray:
    """Meta's original llama checkpoints keep rotary pairs interleaved; HF's converter de-interleaves Q and K."""
    n_head = (d.n_kv_heads or d.n_heads) if kv else d.n_heads
    if not n_head:  # unknown head count: leave the rows as stored (the checkpoint warns)
        return np.arange(n)
    from .readers.gguf import llama_qk_row_map  # the same permutation llama.cpp applies

    return llama_qk_row_map(n, n_head)


SPLITS: dict[str, Callable[[int, Dims], list[tuple[str, np.ndarray]]]] = {
    "qkv": split_sequential_qkv,
    "gate_up": split_halves_gate_up,
    "neox_qkv": split_per_head_qkv,
    "falcon_qkv": split_falcon_qkv,
    "meta_q": lambda n, d: [("attn_q", split_meta_rotary(n, d, kv=False))],
    "meta_k": lambda n, d: [("attn_k", split_meta_rotary(n, d, kv=True))],
}


# ---------------------------------------------------------------------------------------------------------------
# Family tables.


@dataclass(frozen=True)
class Family:
    name: str
    globals: dict[str, str]
    layer_prefix: str  # with {L}
    layer: dict[str, str]  # name after the prefix -> role, or "split:NAME", or "experts:ROLE" (3-D stack)
    drop: tuple[str, ...] = ()  # regexes of buffers and heads that carry no weight evidence
    transposed: tuple[str, ...] = ()  # per-layer names stored (in, out)
    wrappers: tuple[tuple[str, str], ...] = ()  # (prefix, replacement): wrappers around the text model


_COMMON_DROP = (r"rotary_emb\.inv_freq$", r"\.(weight|input)_scale(_inv)?$", r"position_ids$")

_LLAMA_LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_o",
    "post_attention_layernorm": "mlp_norm",
    "mlp.gate_proj": "mlp_gate",
    "mlp.up_proj": "mlp_up",
    "mlp.down_proj": "mlp_down",
}
_LLAMA_GLOBALS = {"model.embed_tokens": "embed", "model.norm": "final_norm", "lm_head": "lm_head"}
_QK_NORM = {"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
_SANDWICH = {  # Gemma 2/3 norm placement
    "post_attention_layernorm": "attn_post_norm",
    "pre_feedforward_layernorm": "mlp_norm",
    "post_feedforward_layernorm": "mlp_post_norm",
}
_EXPERTS = {
    "mlp.gate": "router",
    "mlp.experts.{E}.gate_proj": "mlp_gate",
    "mlp.experts.{E}.up_proj": "mlp_up",
    "mlp.experts.{E}.down_proj": "mlp_down",
}
# Gemma 3 checkpoints with a vision tower nest the text model, spelt differently across transformers versions.
_GEMMA_WRAPPERS = (("language_model.model.", "model."), ("model.language_model.", "model."), ("language_model.lm_head", "lm_head"))


def _decoder(name: str, *extra: dict[str, str], drop: tuple[str, ...] = (), wrappers: tuple = ()) -> Family:
    layer = dict(_LLAMA_LAYER)
    for e in extra:
        layer.update(e)
    return Family(name, _LLAMA_GLOBALS, "model.layers.{L}.", layer, _COMMON_DROP + drop, wrappers=wrappers)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        _decoder("llama"),
        _decoder("qwen2"),
        _decoder("qwen3", _QK_NORM),
        _decoder("gemma"),
        _decoder("gemma2", _SANDWICH),
        _decoder("gemma3", _SANDWICH, _QK_NORM, drop=(r"^(model\.)?(vision_tower|multi_modal_projector)\.",), wrappers=_GEMMA_WRAPPERS),
        _decoder(
            "mixtral",
            {
                "block_sparse_moe.gate": "router",
                "block_sparse_moe.experts.{E}.w1": "mlp_gate",
                "block_sparse_moe.experts.{E}.w3": "mlp_up",
                "block_sparse_moe.experts.{E}.w2": "mlp_down",
            },
        ),
        _decoder(
            "qwen2_moe",
            _EXPERTS,
            {
                "mlp.shared_expert.gate_proj": "shared_mlp_gate",
                "mlp.shared_expert.up_proj": "shared_mlp_up",
                "mlp.shared_expert.down_proj": "shared_mlp_down",
                "mlp.shared_expert_gate": "shared_expert_gate",
            },
        ),
        _decoder("qwen3_moe", _QK_NORM, _EXPERTS),
        _decoder(
            "deepseek_v2",
            _EXPERTS,
            {
                "self_attn.q_a_proj": "attn_q_a",
                "self_attn.q_a_layernorm": "attn_q_a_norm",
                "self_attn.q_b_proj": "attn_q_b",
                "self_attn.kv_a_proj_with_mqa": "attn_kv_a",
                "self_attn.kv_a_layernorm": "attn_kv_a_norm",
                "self_attn.kv_b_proj": "attn_kv_b",
                "mlp.gate.e_score_correction_bias$": "router_bias",
                "mlp.shared_experts.gate_proj": "shared_mlp_gate",
                "mlp.shared_experts.up_proj": "shared_mlp_up",
                "mlp.shared_experts.down_proj": "shared_mlp_down",
            },
            # DeepSeek-V3's multi-token-prediction block sits past the last layer with its own extra tensors.
            drop=(r"\.(eh_proj|enorm|hnorm|shared_head\.norm|shared_head\.head)\.",),
        ),
        _decoder("phi3", {"self_attn.qkv_proj": "split:qkv", "mlp.gate_up_proj": "split:gate_up"}),
        Family(
            "gpt_neox",
            {"gpt_neox.embed_in": "embed", "gpt_neox.final_layer_norm": "final_norm", "embed_out": "lm_head"},
            "gpt_neox.layers.{L}.",
            {
                "input_layernorm": "attn_norm",
                "attention.query_key_value": "split:neox_qkv",
                "attention.dense": "attn_o",
                "post_attention_layernorm": "mlp_norm",
                "mlp.dense_h_to_4h": "mlp_up",
                "mlp.dense_4h_to_h": "mlp_down",
            },
            _COMMON_DROP + (r"attention\.(bias|masked_bias)$",),
        ),
        Family(
            "falcon",
            {"transformer.word_embeddings": "embed", "transformer.ln_f": "final_norm", "lm_head": "lm_head"},
            "transformer.h.{L}.",
            {
                "input_layernorm": "attn_norm",
                "ln_attn": "attn_norm",
                "ln_mlp": "mlp_norm",
                "post_attention_layernorm": "mlp_norm",
                "self_attention.query_key_value": "split:falcon_qkv",
                "self_attention.dense": "attn_o",
                "mlp.dense_h_to_4h": "mlp_up",
                "mlp.dense_4h_to_h": "mlp_down",
            },
            _COMMON_DROP,
        ),
        Family(
            "gpt2",
            {"wte": "embed", "wpe": "pos_embed", "ln_f": "final_norm", "lm_head": "lm_head"},
            "h.{L}.",
            {
                "ln_1": "attn_norm",
                "attn.c_attn": "split:qkv",
                "attn.c_proj": "attn_o",
                "ln_2": "mlp_norm",
                "mlp.c_fc": "mlp_up",
                "mlp.c_proj": "mlp_down",
            },
            _COMMON_DROP + (r"attn\.(bias|masked_bias)$",),
            transposed=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
            wrappers=(("transformer.", ""),),
        ),
        Family(
            "bert",
            {
                "embeddings.word_embeddings": "embed",
                "embeddings.position_embeddings": "pos_embed",
                "embeddings.token_type_embeddings": "type_embed",
                "embeddings.LayerNorm": "embed_norm",
                "pooler.dense": "pooler",
            },
            "encoder.layer.{L}.",
            {
                "attention.self.query": "attn_q",
                "attention.self.key": "attn_k",
                "attention.self.value": "attn_v",
                "attention.output.dense": "attn_o",
                "attention.output.LayerNorm": "attn_post_norm",
                "intermediate.dense": "mlp_up",
                "output.dense": "mlp_down",
                "output.LayerNorm": "mlp_post_norm",
            },
            _COMMON_DROP + (r"^cls\.",),
            wrappers=(("bert.", ""),),
        ),
        Family(  # llama.cpp's names, for every GGUF file (the reader has already undone the Q/K permutation)
            "gguf",
            {"token_embd": "embed", "output_norm": "final_norm", "output": "lm_head", "position_embd": "pos_embed",
             "token_embd_norm": "embed_norm", "token_types": "type_embed"},
            "blk.{L}.",
            {
                "attn_norm": "attn_norm",
                "attn_q": "attn_q",
                "attn_k": "attn_k",
                "attn_v": "attn_v",
                "attn_qkv": "split:qkv",
                "attn_output": "attn_o",
                "attn_q_norm": "attn_q_norm",
                "attn_k_norm": "attn_k_norm",
                "post_attention_norm": "attn_post_norm",
                "attn_output_norm": "attn_post_norm",  # BERT's post-norm layout
                "layer_output_norm": "mlp_post_norm",
                "attn_q_a": "attn_q_a",
                "attn_q_a_norm": "attn_q_a_norm",
                "attn_q_b": "attn_q_b",
                "attn_kv_a_mqa": "attn_kv_a",
                "attn_kv_a_norm": "attn_kv_a_norm",
                "attn_kv_b": "attn_kv_b",
                "ffn_norm": "mlp_norm",
                "ffn_gate": "mlp_gate",
                "ffn_up": "mlp_up",
                "ffn_down": "mlp_down",
                "post_ffw_norm": "mlp_post_norm",
                "ffn_gate_inp": "router",
                "exp_probs_b$": "router_bias",
                "exp_probs_b.bias": "router_bias",
                "ffn_gate_exps": "experts:mlp_gate",
                "ffn_up_exps": "experts:mlp_up",
                "ffn_down_exps": "experts:mlp_down",
                "ffn_gate.{E}": "mlp_gate",  # GGUF files from before expert stacking
                "ffn_up.{E}": "mlp_up",
                "ffn_down.{E}": "mlp_down",
                "ffn_gate_shexp": "shared_mlp_gate",
                "ffn_up_shexp": "shared_mlp_up",
                "ffn_down_shexp": "shared_mlp_down",
                "ffn_gate_inp_shexp": "shared_expert_gate",
            },
            (r"^rope_freqs\.",),
        ),
        Family(  # Meta's original llama release (consolidated.*.pth)
            "meta_llama",
            {"tok_embeddings": "embed", "norm": "final_norm", "output": "lm_head"},
            "layers.{L}.",
            {
                "attention_norm": "attn_norm",
                "attention.wq": "split:meta_q",
                "attention.wk": "split:meta_k",
                "attention.wv": "attn_v",
                "attention.wo": "attn_o",
                "ffn_norm": "mlp_norm",
                "feed_forward.w1": "mlp_gate",
                "feed_forward.w3": "mlp_up",
                "feed_forward.w2": "mlp_down",
            },
            (r"^rope\.freqs$",),
        ),
    ]
}

# config.json `model_type` -> the table that names its tensors. Families that share llama's names map to it.
MODEL_TYPE_TABLE = {
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma": "gemma", "gemma2": "gemma2",
    "gemma3": "gemma3", "gemma3_text": "gemma3", "mixtral": "mixtral", "qwen2_moe": "qwen2_moe",
    "qwen3_moe": "qwen3_moe", "deepseek_v2": "deepseek_v2", "deepseek_v3": "deepseek_v2", "phi3": "phi3",
    "gpt_neox": "gpt_neox", "falcon": "falcon", "RefinedWeb": "falcon", "RefinedWebModel": "falcon",
    "gpt2": "gpt2", "bert": "bert", "olmo2": "qwen3", "granite": "llama", "internlm2": None,
}


# ---------------------------------------------------------------------------------------------------------------
# Matching names against a table.


_PARAM = r"\.(weight|bias|gamma|beta)$"
_PARAM_ALIASES = {"gamma": "weight", "beta": "bias"}  # old BERT/TF-converted LayerNorm names


def _compile(pattern: str, prefix: str = "") -> re.Pattern:
    exact = pattern.endswith("$")
    body = re.escape(prefix + pattern.rstrip("$"))
    # at most 9 digits: a longer index is no real layer (and int() of 5,000 digits raises); such a name is unmapped
    body = body.replace(r"\{L\}", r"(?P<L>\d{1,9})").replace(r"\{E\}", r"(?P<E>\d{1,9})")
    return re.compile("^" + body + ("$" if exact else r"(?P<P>\.(weight|bias|gamma|beta))$"))


@dataclass
class _Compiled:
    family: Family
    rules: list[tuple[re.Pattern, str, str]] = field(default_factory=list)  # (regex, target, layer-relative name)
    drops: list[re.Pattern] = field(default_factory=list)


_COMPILED: dict[str, _Compiled] = {}  # for the built-in tables only; inferred ones are compiled each time


def _compiled(family: Family) -> _Compiled:
    cached = _COMPILED.get(family.name)
    if cached is not None and cached.family is family:
        return cached
    c = _Compiled(family)
    for name, target in family.globals.items():
        c.rules.append((_compile(name), target, ""))
    for name, target in family.layer.items():
        c.rules.append((_compile(name, family.layer_prefix), target, name.rstrip("$")))
    c.drops = [re.compile(d) for d in family.drop]
    if FAMILIES.get(family.name) is family:
        _COMPILED[family.name] = c
    return c


@dataclass(frozen=True)
class Match:
    target: str  # role, "split:NAME" or "experts:ROLE"
    layer: int | None
    expert: int | None
    param: str
    transposed: bool


def unwrap(family: Family, name: str) -> str:
    for prefix, replacement in family.wrappers:
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    return name


def match_name(family: Family, name: str) -> Match | None | str:
    """The match for a stored name; "drop" for buffers and heads; None when the table does not know it."""
    c = _compiled(family)
    bare = unwrap(family, name)
    for rx, target, rel in c.rules:
        m = rx.match(bare)
        if m:
            groups = m.groupdict()
            param = (groups.get("P") or ".value").lstrip(".")
            if target == "router_bias":
                param = "bias"
            return Match(
                target,
                int(groups["L"]) if groups.get("L") else None,
                int(groups["E"]) if groups.get("E") else None,
                _PARAM_ALIASES.get(param, param),
                rel in family.transposed,
            )
    if any(d.search(name) for d in c.drops):
        return "drop"
    return None


COVERAGE_SAMPLE = 4096  # names enough to tell families apart; every table scores them, so keep it bounded


def coverage(family: Family, names: list[str]) -> float:
    """Fraction of names this table accounts for (mapped or knowingly dropped), on an even sample of them."""
    if not names:
        return 0.0
    if len(names) > COVERAGE_SAMPLE:
        names = names[:: -(-len(names) // COVERAGE_SAMPLE)]
    return sum(match_name(family, n) is not None for n in names) / len(names)


# ---------------------------------------------------------------------------------------------------------------
# Fallback for families we have no table for: find the repeated layer block and name its parts by keyword.

_KEYWORDS: list[tuple[str, str]] = [  # (regex on the layer-relative name, role); first match wins
    (r"experts?\.\d+\..*(gate|w1)\b", "mlp_gate"),
    (r"experts?\.\d+\..*(up|w3)\b", "mlp_up"),
    (r"experts?\.\d+\..*(down|w2)\b", "mlp_down"),
    (r"(q_proj|query|\bwq\b|attn_q\b)", "attn_q"),
    (r"(k_proj|\bkey\b|\bwk\b|attn_k\b)", "attn_k"),
    (r"(v_proj|value|\bwv\b|attn_v\b)", "attn_v"),
    (r"(o_proj|out_proj|\bwo\b|attn_output|attention\.dense|attn\.c_proj)", "attn_o"),
    (r"(gate_proj|\bw1\b|ffn_gate\b)", "mlp_gate"),
    (r"(up_proj|\bw3\b|fc1|dense_h_to_4h|c_fc|ffn_up\b)", "mlp_up"),
    (r"(down_proj|\bw2\b|fc2|dense_4h_to_h|mlp\.c_proj|ffn_down\b)", "mlp_down"),
    (r"(\brouter\b|\bgate\b)", "router"),
    (r"(input_layernorm|attention_norm|ln_1|attn_norm|norm1)", "attn_norm"),
    (r"(post_attention_layernorm|ffn_norm|ln_2|norm2)", "mlp_norm"),
]
_GLOBAL_KEYWORDS: list[tuple[str, str]] = [
    (r"(embed_tokens|word_embeddings|\bwte\b|tok_embeddings|embed_in|token_embd)", "embed"),
    (r"(lm_head|embed_out|^output\.)", "lm_head"),
    (r"(norm|ln_f)", "final_norm"),
]


def infer_family(names: list[str]) -> Family | None:
    """Build a table from the names themselves: the most common `<prefix>.<digits>.` is the layer stack."""
    prefixes = Counter()
    for n in names:
        m = re.match(r"^(.*?)(\d+)\.(.+)$", n)
        if m:
            prefixes[m.group(1)] += 1
    if not prefixes:
        return None
    prefix = prefixes.most_common(1)[0][0]
    layer: dict[str, str] = {}
    global_: dict[str, str] = {}
    for n in names:
        base = re.sub(_PARAM, "", n)
        if n.startswith(prefix) and re.match(r"\d+\.", n[len(prefix) :]):
            rel = re.sub(r"^\d+\.", "", base[len(prefix) :])
            rel_pattern = re.sub(r"(experts?\.)\d+", r"\g<1>{E}", rel)
            for rx, role in _KEYWORDS:
                if re.search(rx, rel):
                    layer.setdefault(rel_pattern, role)
                    break
        else:
            for rx, role in _GLOBAL_KEYWORDS:
                if re.search(rx, base):
                    global_.setdefault(base, role)
                    break
    if not layer:
        return None
    return Family("inferred", global_, prefix + "{L}.", layer, _COMMON_DROP)
