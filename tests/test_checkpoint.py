import json
import os

import gguf
import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.declared import front_matter
from parentage.errors import CheckpointNotFoundError, FormatError, HubReferenceError, MissingShardError, NoWeightsError
from parentage.synthetic import Shape, config_for, random_state_dict, write_model, write_safetensors

from .test_readers_gguf import _hf_to_gguf_permute
from .torchzip import write_torch_zip

SHAPE = Shape()


def _shard(folder, model_type="llama", n_shards=3, index_name="model.safetensors.index.json", writer=None):
    folder.mkdir(parents=True, exist_ok=True)
    sd = random_state_dict(model_type, SHAPE)
    names = list(sd)
    weight_map = {}
    for i in range(n_shards):
        part = {n: sd[n] for n in names[i::n_shards]}
        shard = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors" if writer is None else f"pytorch_model-{i + 1:05d}-of-{n_shards:05d}.bin"
        (writer or write_safetensors)(folder / shard, part)
        weight_map |= {n: shard for n in part}
    (folder / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config_for(model_type, SHAPE)))
    return sd


def test_sharded_safetensors_folder_reads_as_one_checkpoint(tmp_path):
    sd = _shard(tmp_path / "m")
    with Checkpoint.open(tmp_path / "m") as ck:
        assert len(ck.resolved.weights) == 3
        np.testing.assert_array_equal(ck.get("attn_v", 1).read(), sd["model.layers.1.self_attn.v_proj.weight"])
        assert ck.cost()["bytes_total"] == sum(p.stat().st_size for p in ck.resolved.weights)


def test_sharded_torch_bin_folder_reads_as_one_checkpoint(tmp_path):
    sd = _shard(tmp_path / "m", index_name="pytorch_model.bin.index.json", writer=write_torch_zip)
    with Checkpoint.open(tmp_path / "m") as ck:
        assert ck.format == "torch" and ck.summary.n_layers == SHAPE.n_layers
        np.testing.assert_array_equal(ck.get("mlp_down", 0).read_rows(1, 4), sd["model.layers.0.mlp.down_proj.weight"][1:4])


def test_index_file_itself_is_a_valid_reference(tmp_path):
    _shard(tmp_path / "m")
    with Checkpoint.open(tmp_path / "m" / "model.safetensors.index.json") as ck:
        assert ck.summary.family == "llama"


def test_missing_shard_named_by_the_index_is_reported_by_name(tmp_path):
    _shard(tmp_path / "m")
    victim = tmp_path / "m" / "model-00002-of-00003.safetensors"
    victim.unlink()
    with pytest.raises(MissingShardError) as info:
        Checkpoint.open(tmp_path / "m")
    assert str(victim) in str(info.value)


def test_index_naming_a_tensor_its_shard_lacks_is_refused(tmp_path):
    _shard(tmp_path / "m")
    index = tmp_path / "m" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00003.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="does not hold it"):
        Checkpoint.open(tmp_path / "m")


def test_index_with_a_path_escaping_the_folder_is_refused(tmp_path):
    _shard(tmp_path / "m")
    index = tmp_path / "m" / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"x": "../../etc/passwd"}}))
    with pytest.raises(FormatError, match="plain file name"):
        Checkpoint.open(tmp_path / "m")


def test_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(NoWeightsError, match="no weights"):
        Checkpoint.open(tmp_path)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no such file"):
        Checkpoint.open(tmp_path / "nope")


def test_malformed_config_json_names_the_file(tmp_path):
    write_model(tmp_path, "llama", SHAPE)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(FormatError) as info:
        Checkpoint.open(tmp_path)
    assert "config.json" in str(info.value)


def _fake_hub_cache(cache, repo_id, model_folder, commit="0123456789abcdef0123456789abcdef01234567", ref="main"):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in model_folder.iterdir():
        os.link(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(commit)
    return snap


def test_hub_id_resolves_through_the_cache_offline(tmp_path, monkeypatch):
    write_model(tmp_path / "src", "qwen2", SHAPE)
    cache = tmp_path / "hub"
    snap = _fake_hub_cache(cache, "acme/tiny", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with Checkpoint.open("acme/tiny") as ck:
        assert ck.summary.family == "qwen2"
        assert ck.resolved.hub == {"repo_id": "acme/tiny", "revision": "main", "commit": snap.name}
    with Checkpoint.open(f"acme/tiny@{snap.name}") as ck:
        assert ck.resolved.root == snap


def test_unknown_hub_id_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(HubReferenceError, match="HF_HUB_OFFLINE"):
        Checkpoint.open("acme/does-not-exist")


def _llama_gguf(path, sd, shape=SHAPE, qtype=None, extra_kv=()):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(shape.n_layers)
    w.add_embedding_length(shape.hidden)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.n_heads)
    w.add_head_count_kv(shape.n_kv_heads)
    w.add_token_list([f"t{i}" for i in range(shape.vocab)])
    for key, value in extra_kv:
        w.add_string(key, value)
    rename = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, value in sd.items():
        if name in rename:
            gname = rename[name]
        else:
            layer, rest = name.split(".")[2], ".".join(name.split(".")[3:-1])
            gname = f"blk.{layer}.{parts[rest]}.weight"
        if "q_proj" in name:
            value = _hf_to_gguf_permute(value, shape.n_heads)
        elif "k_proj" in name:
            value = _hf_to_gguf_permute(value, shape.n_kv_heads)
        if qtype is not None and value.ndim == 2:
            q = gguf.quants.quantize(value, qtype)
            w.add_tensor(gname, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(gname, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_checkpoint_has_the_same_roles_and_rows_as_its_safetensors_source(tmp_path):
    sd = random_state_dict("llama", SHAPE)
    path = _llama_gguf(tmp_path / "m.gguf", sd, extra_kv=[("general.base_model.0.name", "Acme Base 7B")])
    with Checkpoint.open(path) as ck:
        s = ck.summary
        assert (s.family, s.n_layers, s.hidden_size, s.intermediate_size, s.n_heads, s.n_kv_heads, s.vocab_size) == (
            "llama", SHAPE.n_layers, SHAPE.hidden, SHAPE.ffn, SHAPE.n_heads, SHAPE.n_kv_heads, SHAPE.vocab)
        assert ck.unmapped == []
        np.testing.assert_array_equal(ck.get("attn_q", 1).read(), sd["model.layers.1.self_attn.q_proj.weight"])
        np.testing.assert_array_equal(ck.get("attn_k", 0).read_rows(2, 9), sd["model.layers.0.self_attn.k_proj.weight"][2:9])
        from parentage.declared import declared_lineage

        assert declared_lineage(ck)["gguf"]["general.base_model.0.name"] == "Acme Base 7B"


def test_q8_0_gguf_rows_stay_close_to_the_source(tmp_path):
    sd = random_state_dict("llama", SHAPE)
    path = _llama_gguf(tmp_path / "m.gguf", sd, qtype=gguf.GGMLQuantizationType.Q8_0)
    with Checkpoint.open(path) as ck:
        ours = ck.get("attn_q", 0).read()
        src = sd["model.layers.0.self_attn.q_proj.weight"]
        assert np.corrcoef(ours.ravel(), src.ravel())[0, 1] > 0.999


def test_split_gguf_set_opens_all_parts_and_reports_a_missing_one(tmp_path):
    sd = random_state_dict("llama", SHAPE)
    _llama_gguf(tmp_path / "a.gguf", sd)
    # a two-part split: the second part holds nothing but is required
    (tmp_path / "m-00001-of-00002.gguf").write_bytes((tmp_path / "a.gguf").read_bytes())
    with pytest.raises(MissingShardError, match="00002-of-00002"):
        Checkpoint.open(tmp_path / "m-00001-of-00002.gguf")


def test_declared_lineage_collects_card_config_and_metadata(tmp_path):
    write_model(tmp_path, "llama", SHAPE, metadata={"format": "pt", "source": "acme/base"})
    cfg = json.loads((tmp_path / "config.json").read_text()) | {"_name_or_path": "/data/ckpts/acme-base-7b",
                                                                 "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\nbase_model:\n  - acme/base-7b\n  - other/model\nbase_model_relation: finetune\n---\n# card\n")
    (tmp_path / "modeling_x.py").write_text("import os\nos.system('touch pwned')\n")
    from parentage.declared import declared_lineage

    with Checkpoint.open(tmp_path) as ck:
        d = declared_lineage(ck)
    assert d["config"]["_name_or_path"] == "/data/ckpts/acme-base-7b"
    assert d["model_card"]["base_model"] == ["acme/base-7b", "other/model"]
    assert d["model_card"]["base_model_relation"] == "finetune"
    assert d["safetensors_metadata"]["source"] == "acme/base"
    assert d["remote_code_files"] == ["modeling_x.py"]
    assert not (tmp_path / "pwned").exists()


def test_front_matter_reads_inline_lists_and_scalars():
    assert front_matter("---\nbase_model: [a/b, 'c/d']\nlicense: mit\n---\n") == {"base_model": ["a/b", "c/d"], "license": "mit"}
    assert front_matter("no front matter") == {}


def test_config_and_tensors_disagreeing_is_warned(tmp_path):
    write_model(tmp_path, "llama", SHAPE)
    cfg = json.loads((tmp_path / "config.json").read_text()) | {"num_hidden_layers": 5, "vocab_size": 999}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with Checkpoint.open(tmp_path) as ck:
        assert any("config says 5 layers" in w for w in ck.warnings)
        assert any("vocab_size 999" in w for w in ck.warnings)


def test_weights_file_with_no_tensors_is_a_clear_error(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {})
    with pytest.raises(NoWeightsError, match="holds no tensors"):
        Checkpoint.open(tmp_path)


def test_a_lora_adapter_folder_is_named_as_such_with_its_declared_base(tmp_path):
    write_safetensors(tmp_path / "adapter_model.safetensors",
                      {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((8, 64), np.float32)})
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "acme/base-7b", "peft_type": "LORA"}))
    with pytest.raises(NoWeightsError, match="LoRA adapter.*acme/base-7b"):
        Checkpoint.open(tmp_path)
