import re

import gguf
import numpy as np
import pytest

from parentage import names as N
from parentage.checkpoint import Checkpoint
from parentage.synthetic import LAYOUTS, Shape, config_for, random_state_dict, state_dict_shapes, write_model, write_safetensors

SHAPE = Shape()

# What each family must expose per layer, beyond norms.
DENSE_ROLES = {"attn_q", "attn_k", "attn_v", "attn_o", "mlp_up", "mlp_down"}
EXPECTED = {
    "llama": DENSE_ROLES | {"mlp_gate"}, "mistral": DENSE_ROLES | {"mlp_gate"}, "qwen2": DENSE_ROLES | {"mlp_gate"},
    "qwen3": DENSE_ROLES | {"mlp_gate", "attn_q_norm", "attn_k_norm"}, "gemma": DENSE_ROLES | {"mlp_gate"},
    "gemma2": DENSE_ROLES | {"mlp_gate", "attn_post_norm", "mlp_post_norm"},
    "gemma3_text": DENSE_ROLES | {"mlp_gate", "attn_q_norm", "attn_k_norm"},
    "mixtral": {"attn_q", "attn_k", "attn_v", "attn_o", "router", "mlp_gate", "mlp_up", "mlp_down"},
    "qwen2_moe": {"router", "mlp_gate", "shared_mlp_up", "shared_expert_gate"},
    "qwen3_moe": {"router", "mlp_gate", "attn_q_norm"},
    "deepseek_v2": {"attn_q_a", "attn_q_b", "attn_kv_a", "attn_kv_b", "attn_o", "mlp_up"},
    "deepseek_v3": {"attn_q_a", "attn_kv_b", "attn_o", "mlp_up"},
    "phi3": DENSE_ROLES | {"mlp_gate"}, "gpt_neox": DENSE_ROLES, "falcon": DENSE_ROLES, "gpt2": DENSE_ROLES, "bert": DENSE_ROLES,
}


@pytest.mark.parametrize("model_type", sorted(LAYOUTS))
def test_every_family_maps_every_weight_to_a_role(tmp_path, model_type):
    write_model(tmp_path, model_type, SHAPE)
    with Checkpoint.open(tmp_path) as ck:
        assert ck.unmapped == []
        assert ck.summary.family_confidence == "declared"
        assert ck.summary.n_layers == SHAPE.n_layers
        assert ck.summary.hidden_size == SHAPE.hidden
        assert ck.summary.vocab_size == SHAPE.vocab
        layer0 = {r.role for r in ck.tensors if r.layer == 0}
        layer1 = {r.role for r in ck.tensors if r.layer == 1}
        assert EXPECTED[model_type] <= layer0 | layer1
        assert N.Role("embed") in ck.tensors and N.Role("lm_head") in ck.tensors
        for t in ck.tensors.values():  # every canonical tensor reads with its declared shape
            rows = t.read_rows(0, min(2, t.n_rows))
            assert rows.shape[1:] == t.shape[1:]


def test_moe_families_report_their_experts(tmp_path):
    for model_type in ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3"):
        write_model(tmp_path / model_type, model_type, SHAPE)
        with Checkpoint.open(tmp_path / model_type) as ck:
            assert ck.summary.n_experts == SHAPE.n_experts, model_type
            assert ck.summary.moe_intermediate_size == SHAPE.moe_ffn, model_type
            assert ck.get("mlp_down", layer=1, expert=3).shape == (SHAPE.hidden, SHAPE.moe_ffn)


def test_deepseek_v3_multi_token_prediction_layer_is_set_aside(tmp_path):
    write_model(tmp_path, "deepseek_v3", SHAPE)
    with Checkpoint.open(tmp_path) as ck:
        assert ck.extra_layers == [SHAPE.n_layers]
        assert ck.summary.n_layers == SHAPE.n_layers
        assert ck.summary.intermediate_size == SHAPE.ffn  # the dense first layer


def test_phi3_fused_qkv_and_gate_up_split_into_their_parts(tmp_path):
    write_model(tmp_path, "phi3", SHAPE)
    sd = random_state_dict("phi3", SHAPE)
    fused = sd["model.layers.1.self_attn.qkv_proj.weight"]
    q_rows, kv_rows = SHAPE.n_heads * SHAPE.head_dim, SHAPE.n_kv_heads * SHAPE.head_dim
    with Checkpoint.open(tmp_path) as ck:
        np.testing.assert_array_equal(ck.get("attn_q", 1).read(), fused[:q_rows])
        np.testing.assert_array_equal(ck.get("attn_k", 1).read(), fused[q_rows : q_rows + kv_rows])
        np.testing.assert_array_equal(ck.get("attn_v", 1).read_rows(2, 5), fused[q_rows + kv_rows :][2:5])
        gate_up = sd["model.layers.0.mlp.gate_up_proj.weight"]
        np.testing.assert_array_equal(ck.get("mlp_up", 0).read(), gate_up[SHAPE.ffn :])


def test_gpt_neox_interleaved_qkv_is_split_per_head(tmp_path):
    write_model(tmp_path, "gpt_neox", SHAPE)
    sd = random_state_dict("gpt_neox", SHAPE)
    per_head = sd["gpt_neox.layers.0.attention.query_key_value.weight"].reshape(SHAPE.n_heads, 3, SHAPE.head_dim, SHAPE.hidden)
    bias = sd["gpt_neox.layers.0.attention.query_key_value.bias"].reshape(SHAPE.n_heads, 3, SHAPE.head_dim)
    with Checkpoint.open(tmp_path) as ck:
        np.testing.assert_array_equal(ck.get("attn_k", 0).read(), per_head[:, 1].reshape(-1, SHAPE.hidden))
        np.testing.assert_array_equal(ck.get("attn_v", 0, param="bias").read(), bias[:, 2].reshape(-1))
        # a row block inside one head is one contiguous read
        before = ck.weights.n_reads
        ck.get("attn_q", 0).read_rows(0, SHAPE.head_dim)
        assert ck.weights.n_reads - before == 1


def test_falcon_multi_query_qkv_splits_into_one_kv_head(tmp_path):
    write_model(tmp_path, "falcon", SHAPE)
    with Checkpoint.open(tmp_path) as ck:
        assert ck.get("attn_q", 0).shape == (SHAPE.hidden, SHAPE.hidden)
        assert ck.get("attn_k", 0).shape == (SHAPE.head_dim, SHAPE.hidden)


def test_falcon_grouped_layout_splits_per_kv_group():
    d = N.Dims(n_heads=4, n_kv_heads=2, head_dim=3, hidden=12, falcon_layout="grouped")
    parts = dict(N.split_falcon_qkv(2 * (4 // 2 + 2) * 3, d))
    # group 0: q heads at rows 0-5, k 6-8, v 9-11; group 1 starts at 12
    assert parts["attn_k"].tolist() == [6, 7, 8, 18, 19, 20]
    assert parts["attn_q"].tolist()[:6] == [0, 1, 2, 3, 4, 5]


def test_gpt2_conv1d_weights_are_transposed_to_out_by_in(tmp_path):
    write_model(tmp_path, "gpt2", SHAPE)
    sd = random_state_dict("gpt2", SHAPE)
    c_attn = sd["h.1.attn.c_attn.weight"]  # (in, 3*out)
    with Checkpoint.open(tmp_path) as ck:
        assert ck.summary.tied_embeddings
        np.testing.assert_array_equal(ck.get("attn_v", 1).read(), c_attn[:, 2 * SHAPE.hidden :].T)
        np.testing.assert_array_equal(ck.get("mlp_up", 0).read_rows(3, 7), sd["h.0.mlp.c_fc.weight"].T[3:7])
        assert ck.get("mlp_down", 0).shape == (SHAPE.hidden, SHAPE.ffn)


def test_gemma3_multimodal_wrapper_names_are_unwrapped(tmp_path):
    sd = {re.sub(r"^model\.", "model.language_model.", k): v for k, v in random_state_dict("gemma3_text", SHAPE).items()}
    sd["model.vision_tower.vision_model.embeddings.patch_embedding.weight"] = np.zeros((4, 3), np.float32)
    write_safetensors(tmp_path / "model.safetensors", sd)
    cfg = {"model_type": "gemma3", "text_config": config_for("gemma3_text", SHAPE)}
    (tmp_path / "config.json").write_text(__import__("json").dumps(cfg))
    with Checkpoint.open(tmp_path) as ck:
        assert ck.unmapped == [] and ck.summary.n_layers == SHAPE.n_layers


def test_family_is_detected_from_names_when_config_is_missing(tmp_path):
    write_model(tmp_path, "qwen3", SHAPE)
    (tmp_path / "config.json").unlink()
    with Checkpoint.open(tmp_path) as ck:
        assert ck.summary.family == "qwen3" and ck.summary.family_confidence == "names"


def test_unknown_family_falls_back_to_inferred_roles_flagged_low_confidence(tmp_path):
    sd = {"tok.emb.weight": np.zeros((32, 8), np.float32)}
    for i in range(3):
        sd |= {f"net.blocks.{i}.att.wq.weight": np.zeros((8, 8), np.float32),
               f"net.blocks.{i}.att.wk.weight": np.zeros((8, 8), np.float32),
               f"net.blocks.{i}.ff.w2.weight": np.zeros((8, 16), np.float32)}
    write_safetensors(tmp_path / "model.safetensors", sd)
    with Checkpoint.open(tmp_path) as ck:
        assert ck.summary.family_confidence == "inferred"
        assert ck.summary.n_layers == 3
        assert ck.get("attn_q", 2) is not None and ck.get("mlp_down", 0) is not None
        assert any("low confidence" in w for w in ck.warnings)


def test_meta_llama_layout_is_converted_to_hugging_face_rotary_order():
    d = N.Dims(n_heads=2, n_kv_heads=2, head_dim=8, hidden=16)
    # Meta row (h, i, j) holds HF row (h, j, i): HF row 4 (head 0, half 1, i=0) is Meta row 1
    rows = N.SPLITS["meta_q"](16, d)[0][1]
    assert rows[4] == 1 and rows[0] == 0 and rows[1] == 2


# --- the gguf package's TensorNameMap as an independent oracle ------------------------------------------------

GGUF_ARCH = {"llama": "LLAMA", "mistral": "LLAMA", "mixtral": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3", "gemma": "GEMMA",
             "gemma2": "GEMMA2", "qwen2_moe": "QWEN2MOE", "qwen3_moe": "QWEN3MOE", "deepseek_v2": "DEEPSEEK2",
             "phi3": "PHI3", "gpt_neox": "GPTNEOX", "falcon": "FALCON", "gpt2": "GPT2", "bert": "BERT"}


def _kind(target: str) -> str:
    return target.split(":")[-1] if target.startswith("experts:") else "split" if target.startswith("split:") else target


@pytest.mark.parametrize("model_type", sorted(GGUF_ARCH))
def test_roles_agree_with_the_gguf_tensor_name_map(model_type):
    from parentage.checkpoint import _choose_family

    shapes = state_dict_shapes(model_type, SHAPE)
    family = _choose_family(config_for(model_type, SHAPE), list(shapes), is_gguf=False)[0]
    oracle = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, GGUF_ARCH[model_type]), SHAPE.n_layers + 1)
    checked = 0
    for name in shapes:
        ours = N.match_name(family, name)
        if not isinstance(ours, N.Match):
            continue
        stacked = re.sub(r"experts\.\d+\.", "experts.", N.unwrap(family, name))  # llama.cpp maps the stacked expert name
        hit = oracle.get_type_and_name(stacked, try_suffixes=(".weight", ".bias"))
        if hit is None:
            continue
        theirs = N.match_name(N.FAMILIES["gguf"], hit[1])
        assert isinstance(theirs, N.Match), (name, hit)
        if ours.target == "split:gate_up":  # llama.cpp names Phi-3's fused gate_up as ffn_up and splits later
            continue
        assert _kind(ours.target) == _kind(theirs.target), (name, hit[1])
        assert ours.layer == theirs.layer
        checked += 1
    assert checked >= 0.6 * len(shapes)


def test_meta_native_release_reads_params_json_and_returns_hf_rotary_order(tmp_path):
    import json

    from parentage.readers.gguf import llama_qk_row_map

    sd = random_state_dict("llama", SHAPE)
    meta = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
            "output.weight": sd["lm_head.weight"]}
    parts = {"input_layernorm": "attention_norm", "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
             "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "feed_forward.w1", "mlp.up_proj": "feed_forward.w3", "mlp.down_proj": "feed_forward.w2"}
    for i in range(SHAPE.n_layers):
        for hf, ours in parts.items():
            w = sd[f"model.layers.{i}.{hf}.weight"]
            if hf in ("self_attn.q_proj", "self_attn.k_proj"):  # Meta keeps rotary pairs interleaved
                n_head = SHAPE.n_heads if "q_proj" in hf else SHAPE.n_kv_heads
                stored = np.empty_like(w)
                stored[llama_qk_row_map(w.shape[0], n_head)] = w
                w = stored
            meta[f"layers.{i}.{ours}.weight"] = w
    write_safetensors(tmp_path / "consolidated.safetensors", meta)
    (tmp_path / "params.json").write_text(json.dumps({"dim": SHAPE.hidden, "n_layers": SHAPE.n_layers, "n_heads": SHAPE.n_heads,
                                                      "n_kv_heads": SHAPE.n_kv_heads, "vocab_size": SHAPE.vocab}))
    with Checkpoint.open(tmp_path) as ck:
        assert ck.summary.family_confidence == "names" and ck.unmapped == []
        np.testing.assert_array_equal(ck.get("attn_q", 1).read(), sd["model.layers.1.self_attn.q_proj.weight"])
        np.testing.assert_array_equal(ck.get("attn_k", 0).read(), sd["model.layers.0.self_attn.k_proj.weight"])
        assert ck.summary.n_heads == SHAPE.n_heads and ck.summary.intermediate_size == SHAPE.ffn


def test_every_table_names_only_known_roles_and_splits():
    known = set(N.GLOBAL_ROLES) | set(N.LAYER_ROLES)
    for family in N.FAMILIES.values():
        for target in list(family.globals.values()) + list(family.layer.values()):
            kind, _, rest = target.partition(":")
            if kind == "split":
                assert rest in N.SPLITS, (family.name, target)
            elif kind == "experts":
                assert rest in known, (family.name, target)
            else:
                assert target in known, (family.name, target)
