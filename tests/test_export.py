"""The export relation: which checkpoint is the other's quantisation, cast or dequantised export, and which
tensors lie beyond that storage's error (evidence/export.py)."""

import shutil

import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.evidence.export import detect_grid, grid_steps
from parentage.pair import compare
from parentage.synthetic import Shape, random_state_dict, write_model, write_tensors
from parentage.zoo.quantize import Export, awq_scales, export_model

SHAPE = Shape(n_layers=2, hidden=128, n_heads=4, n_kv_heads=2, ffn=256, vocab=512)


def _calibration(sd: dict, seed: int = 0) -> dict:
    """What a quantiser would measure on a layer's inputs: channels of unequal size, as real activations have."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, w in sd.items():
        if w.ndim == 2 and ".layers." in name:
            x = rng.standard_normal((512, w.shape[1])) * np.exp(rng.standard_normal(w.shape[1]))
            out[name] = {"hessian": x.T @ x / len(x), "mean_abs": np.abs(x).mean(0), "sample": x[:256].astype(np.float32)}
    return out


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """A source model, a light fine-tune of it, and exports of the source in several formats."""
    root = tmp_path_factory.mktemp("export")
    sd = random_state_dict("llama", SHAPE, seed=7)
    src = write_model(root / "src", "llama", SHAPE, seed=7)
    stats = _calibration(sd)
    hessians = {k: v["hessian"] for k, v in stats.items()}
    out = {"src": src, "sd": sd}
    specs = {"gptq": (Export("gptq", 4, 64, {"act_order": True, "sym": False}), sd, hessians),
             "awq": (Export("awq", 4, 64), awq_scales(sd, stats, 64), None),
             "nf4": (Export("nf4"), sd, None), "mlx": (Export("mlx", 4, 64), sd, None),
             "ct": (Export("compressed", 4, 64), sd, None), "fp8": (Export("fp8"), sd, None)}
    for name, (spec, weights, h) in specs.items():
        export_model(src, root / name, spec, weights, hessians=h)
        out[name] = root / name
    # a tensor edited after quantising: another model's values in one layer's value projection
    other = random_state_dict("llama", SHAPE, seed=8)
    edited = dict(sd)
    edited["model.layers.1.self_attn.v_proj.weight"] = other["model.layers.1.self_attn.v_proj.weight"]
    export_model(src, root / "edited", Export("gptq", 4, 64), edited)
    out["edited"] = root / "edited"
    # a fine-tune of the source, then quantised: not the source's quantisation
    rng = np.random.default_rng(9)
    tuned = {k: v + (rng.standard_normal(v.shape) * 0.2 * v.std()).astype(np.float32) for k, v in sd.items()}
    export_model(src, root / "tuned-gptq", Export("gptq", 4, 64), tuned)
    out["tuned-gptq"] = root / "tuned-gptq"
    # the GPTQ and compressed-tensors files dequantised to bf16 (what "dequantised" uploads hold), a bf16 cast
    for name, weights in (("deq", _decoded(root / "gptq")), ("deq-ct", _decoded(root / "ct")), ("bf16", sd)):
        out[name] = _bf16_folder(root / name, weights, src)
    return out


def _bf16_folder(folder, weights: dict, config_from):
    """weights in bf16 with config_from's config: a cast, or what a dequantised re-upload holds."""
    folder.mkdir()
    write_tensors(folder / "model.safetensors", {k: ("BF16", v) for k, v in weights.items()})
    shutil.copy2(config_from / "config.json", folder / "config.json")
    return folder


def _decoded(folder) -> dict:
    with Checkpoint.open(folder) as ck:
        return {n: ck.weights.read_rows(n, 0, ck.weights.info(n).n_rows).reshape(ck.weights.info(n).shape)
                for n in ck.weights.names()}


def _export(a, b) -> tuple[dict, dict]:
    doc = compare(str(a), str(b))
    return doc, doc["alignment"]["export"]


@pytest.mark.parametrize("fmt,method", [("gptq", "GPTQ 4-bit"), ("awq", "AWQ 4-bit"), ("nf4", "bitsandbytes 4-bit"),
                                        ("mlx", "MLX 4-bit"), ("ct", "compressed-tensors 4-bit"),
                                        ("fp8", "compressed-tensors 8-bit")])
def test_a_quantisation_is_named_as_the_child_of_what_it_quantises(family, fmt, method):
    doc, export = _export(family["src"], family[fmt])
    assert doc["verdict"]["label"] == "related"
    assert (export["relation"], export["child"], export["parent"]) == ("quantization", "B", "A")
    assert export["method"] == method and not export["altered"]
    assert export["n_within"] == export["n_compared"] > 10
    assert doc["direction"]["parent"] == "A" and export["summary"].startswith("B is a") and method in export["summary"]


def test_the_direction_follows_the_grid_not_the_argument_order(family):
    doc, export = _export(family["gptq"], family["src"])
    assert (export["relation"], export["child"], doc["direction"]["parent"]) == ("quantization", "A", "B")


def test_gptq_error_compensation_is_within_its_quantiser_and_said_so(family):
    _, export = _export(family["src"], family["gptq"])
    assert export["rounding"].startswith("error-compensating")
    _, export = _export(family["src"], family["mlx"])
    assert export["rounding"] == "round-to-nearest"


def test_awq_scales_folded_into_the_norms_are_rescaled_not_altered(family):
    _, export = _export(family["src"], family["awq"])
    assert export["fitted_scales"] > 0 and export["rescaled"]
    assert all(k.endswith(("attn_norm.weight", "mlp_norm.weight")) for k in export["rescaled"])


def test_a_tensor_edited_after_quantising_is_named_and_nothing_else(family):
    doc, export = _export(family["src"], family["edited"])
    assert export["relation"] == "quantization" and export["child"] == "B"
    assert [t["tensor"] for t in export["altered"]] == ["layers.1.attn_v.weight"]
    assert export["altered"][0]["times_rounding_error"] > 5
    assert "layers.1.attn_v.weight differs by" in export["summary"] and "(altered)" in export["summary"]


def test_fail_on_altered_gates_only_an_altered_export(family):
    from click.testing import CliRunner

    from parentage.cli import cli

    runner = CliRunner()
    bad = runner.invoke(cli, ["compare", str(family["src"]), str(family["edited"]), "--fail-on", "altered", "-q"])
    good = runner.invoke(cli, ["compare", str(family["src"]), str(family["gptq"]), "--fail-on", "altered", "-q"])
    assert bad.exit_code == 3 and "altered" in bad.stderr
    assert good.exit_code == 0


def test_a_quantisation_of_other_weights_is_not_called_this_ones(family):
    doc, export = _export(family["src"], family["tuned-gptq"])
    assert doc["verdict"]["label"] == "related"  # a fine-tune of it, quantised: kin, but not its export
    assert export["relation"] is None and doc["direction"]["parent"] is None
    assert export["summary"].startswith("B is not a GPTQ 4-bit quantization of A")


def test_a_dequantised_export_is_the_child_of_the_quantised_file(family):
    doc, export = _export(family["gptq"], family["deq"])
    assert (export["relation"], export["child"], doc["direction"]["parent"]) == ("dequantization", "B", "A")


def test_a_dequantised_export_is_found_on_its_grid_beside_the_original(family):
    _, export = _export(family["src"], family["deq-ct"])
    assert (export["relation"], export["child"]) == ("quantization", "B")
    assert "4-bit" in export["method"] and "dequantized as BF16" in export["method"]


def test_a_cast_is_named_with_the_rounded_copy_as_child(family):
    _, export = _export(family["src"], family["bf16"])
    assert (export["relation"], export["child"]) == ("cast", "B") and export["method"] == "BF16"
    _, export = _export(family["bf16"], family["src"])
    assert (export["relation"], export["child"]) == ("cast", "A")


def test_an_upcast_lies_on_the_grid_it_came_from_and_is_the_child(family, tmp_path):
    up = tmp_path / "f32-of-bf16"
    up.mkdir()
    with Checkpoint.open(family["bf16"]) as ck:
        values = {n: ck.weights.read_rows(n, 0, ck.weights.info(n).n_rows).reshape(ck.weights.info(n).shape)
                  for n in ck.weights.names()}
    write_tensors(up / "model.safetensors", values)  # float32 holding bf16 values exactly
    shutil.copy2(family["src"] / "config.json", up / "config.json")
    doc, export = _export(family["bf16"], up)
    assert (export["relation"], export["child"], doc["direction"]["parent"]) == ("cast", "B", "A")


def test_unrelated_models_have_no_export_relation(family, tmp_path):
    other = write_model(tmp_path / "other", "llama", SHAPE, seed=99)
    doc = compare(str(other), str(family["gptq"]))
    assert doc["verdict"]["label"] != "related" and doc["alignment"].get("export") is None


def test_inspect_shows_the_quantisation_and_what_stays_in_full_precision(family):
    from parentage.inspection import inspect_checkpoint

    q = inspect_checkpoint(str(family["gptq"]))["quantization"]
    assert q["method"] == "gptq" and q["bits"] == [4] and q["group_sizes"] == [64] and q["symmetric"] is False
    assert set(q["kept"]) == {"model.embed_tokens.weight", "lm_head.weight"}
    assert q["summary"].startswith("GPTQ 4-bit")
    assert inspect_checkpoint(str(family["src"]))["quantization"] is None


# -- the grids ---------------------------------------------------------------------------------------------------


def test_grid_steps_recovers_each_blocks_spacing_from_its_values():
    rng = np.random.default_rng(0)
    d = np.array([0.5, 0.125, 3.0, 0.01])
    codes = rng.integers(0, 16, size=(4, 32))
    codes[:, :2] = [0, 15]  # the smallest gap may be several steps: the divisor search finds the step
    values = (codes * d[:, None] - 2 * d[:, None]).astype(np.float32).reshape(1, 128)
    steps = grid_steps(values, 32)
    np.testing.assert_allclose(steps.reshape(4, 32)[:, 0], d, rtol=1e-5)


def test_detect_grid_finds_dequantised_groups_and_refuses_plain_floats():
    rng = np.random.default_rng(1)
    scale = np.exp(rng.standard_normal((8, 4, 1)))
    codes = rng.integers(0, 16, size=(8, 4, 128))
    dequantised = ((codes - 8) * scale).reshape(8, 512).astype(np.float32)
    found = detect_grid(dequantised)
    assert found is not None and found[1] == 128 and found[2] <= 16
    assert detect_grid(rng.standard_normal((8, 512)).astype(np.float32)) is None


# -- GGUF K-quants, and identify on a dequantised export ----------------------------------------------------------

GGUF_NAMES = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
              "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
              "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
              "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
              "mlp.down_proj.weight": "ffn_down.weight"}
K_SHAPE = Shape(n_layers=2, hidden=256, n_heads=4, n_kv_heads=2, ffn=512, vocab=512)


def _write_gguf_q4_k(path, sd: dict, shape: Shape) -> dict:
    """A llama GGUF with every matrix in Q4_K (our writer; gguf-py only dequantises K-quants): the values each
    HF-named weight decodes to."""
    import gguf

    from parentage.readers.gguf import llama_qk_row_map
    from parentage.zoo.quantize import quantize_q4_k

    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in (("block_count", shape.n_layers), ("embedding_length", shape.hidden),
                       ("feed_forward_length", shape.ffn), ("attention.head_count", shape.n_heads),
                       ("attention.head_count_kv", shape.n_kv_heads)):
        w.add_uint32(f"llama.{key}", value)
    decoded = {}
    for name, value in sd.items():
        if name.startswith("model.layers."):
            parts = name.split(".")
            gname = f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:])]}"
        else:
            gname = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"}[name]
        if value.ndim == 1:
            w.add_tensor(gname, value.astype(np.float32))
            decoded[name] = value
            continue
        heads = shape.n_heads if name.endswith("q_proj.weight") else shape.n_kv_heads if name.endswith("k_proj.weight") else 0
        stored = value
        if heads:  # llama.cpp interleaves each rotary head's halves; the reader undoes it
            stored = np.empty_like(value)
            stored[llama_qk_row_map(value.shape[0], heads)] = value
        raw, values = quantize_q4_k(stored)
        if heads:
            values = values[llama_qk_row_map(value.shape[0], heads)]
        w.add_tensor(gname, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        decoded[name] = values
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return decoded


@pytest.fixture(scope="module")
def k_family(tmp_path_factory):
    root = tmp_path_factory.mktemp("kquant")
    sd = random_state_dict("llama", K_SHAPE, seed=3)
    src = write_model(root / "src", "llama", K_SHAPE, seed=3)
    decoded = _write_gguf_q4_k(root / "model-Q4_K.gguf", sd, K_SHAPE)
    deq = _bf16_folder(root / "deq", decoded, src)  # the GGUF file dequantised to bf16, as GGUF re-uploads are
    return {"src": src, "gguf": root / "model-Q4_K.gguf", "deq": deq, "decoded": decoded}


def test_a_gguf_k_quant_is_a_quantisation_measured_on_its_own_grid(k_family):
    with Checkpoint.open(k_family["gguf"]) as ck:  # our Q4_K writer, read back through gguf's dequantiser
        q = k_family["decoded"]["model.layers.1.self_attn.q_proj.weight"]
        np.testing.assert_array_equal(ck.get("attn_q", 1).read_rows(0, q.shape[0]), q)
    doc, export = _export(k_family["src"], k_family["gguf"])
    assert (export["relation"], export["child"], export["method"]) == ("quantization", "B", "GGUF Q4_K")
    assert export["rounding"] == "round-to-nearest" and not export["altered"]


def test_a_bf16_export_of_a_gguf_file_is_its_dequantised_child(k_family):
    doc, export = _export(k_family["gguf"], k_family["deq"])
    assert (export["relation"], export["child"], doc["direction"]["parent"]) == ("dequantization", "B", "A")
    ident = next(e for e in doc["evidence"] if e["name"] == "identical_tensors")
    assert ident["details"]["copies"]["B"] > ident["details"]["copies"]["A"]


def test_identify_names_the_gguf_file_a_dequantised_export_came_from_as_its_ancestor(k_family, tmp_path):
    from parentage.index import add_model
    from parentage.index.identify import identify

    db = str(tmp_path / "index.sqlite")
    add_model(str(k_family["gguf"]), db)
    add_model(str(k_family["src"]), db)
    doc = identify(str(k_family["deq"]), db, workers=1)
    gguf_ref = str(k_family["gguf"])
    candidate = next(c for c in doc["candidates"] if c["ref"] == gguf_ref)
    assert candidate["label"] == "related" and candidate["relation"] == "ancestor"
    assert doc["best"] == gguf_ref
