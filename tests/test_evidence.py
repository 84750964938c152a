import numpy as np

from parentage.checkpoint import Checkpoint
from parentage.evidence.baselines import honestagi_std_profile, raw_cosine
from parentage.evidence.identical import identical_tensors
from parentage.synthetic import Shape, random_state_dict, write_model, write_safetensors, config_for

SHAPE = Shape(n_layers=4, hidden=64, ffn=128, vocab=256)


def _folder(tmp_path, name, sd, dtype="F32"):
    import json

    folder = tmp_path / name
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", sd, dtype)
    (folder / "config.json").write_text(json.dumps(config_for("llama", SHAPE)))
    return folder


def test_copied_tensors_are_listed_and_counted_with_a_tiny_p(tmp_path):
    a_sd, b_sd = random_state_dict("llama", SHAPE, seed=0), random_state_dict("llama", SHAPE, seed=1)
    for k in a_sd:
        if k.startswith(("model.layers.0.", "model.layers.1.")):  # B froze (copied) the first two layers
            b_sd[k] = a_sd[k]
    with Checkpoint.open(_folder(tmp_path, "a", a_sd)) as a, Checkpoint.open(_folder(tmp_path, "b", b_sd)) as b:
        ev, _ = identical_tensors(a, b)
    assert ev.counted and ev.log10_p <= -100
    assert sorted(ev.details["identical"]) == sorted(
        f"layers.{i}.{r}.weight" for i in (0, 1) for r in ("attn_q", "attn_k", "attn_v", "attn_o", "mlp_gate", "mlp_up", "mlp_down"))
    # the copied norm gains are all ones: listed apart, never counted
    assert "layers.0.attn_norm.weight" in ev.details["identical_low_information"]


def test_independent_models_have_no_identical_tensors_and_p_one(tmp_path):
    write_model(tmp_path / "a", "llama", SHAPE, seed=0)
    write_model(tmp_path / "b", "llama", SHAPE, seed=1)
    with Checkpoint.open(tmp_path / "a") as a, Checkpoint.open(tmp_path / "b") as b:
        ev, _ = identical_tensors(a, b)
    assert ev.log10_p == 0.0 and ev.details["identical"] == []


def test_a_bf16_export_is_identical_after_the_dtype_cast(tmp_path):
    sd = random_state_dict("llama", SHAPE, seed=0)
    with Checkpoint.open(_folder(tmp_path, "f32", sd)) as a, Checkpoint.open(_folder(tmp_path, "bf16", sd, "BF16")) as b:
        ev, _ = identical_tensors(a, b)
    assert len(ev.details["identical"]) == 4 * 7 + 2  # every matrix plus embed and lm_head


def test_baselines_are_shown_but_never_counted(tmp_path):
    write_model(tmp_path / "a", "llama", SHAPE, seed=0)
    write_model(tmp_path / "b", "llama", SHAPE, seed=1)
    with Checkpoint.open(tmp_path / "a") as a, Checkpoint.open(tmp_path / "b") as b:
        for ev in (honestagi_std_profile(a, b), raw_cosine(a, b)):
            assert ev.counted is False and ev.log10_p is None and ev.effect is not None


def test_raw_cosine_is_blind_to_a_neuron_permutation_that_changes_nothing(tmp_path):
    sd = random_state_dict("llama", SHAPE, seed=0)
    perm = np.random.default_rng(0).permutation(SHAPE.ffn)
    permuted = dict(sd)
    for i in range(SHAPE.n_layers):
        p = f"model.layers.{i}.mlp."
        permuted[p + "gate_proj.weight"] = sd[p + "gate_proj.weight"][perm]
        permuted[p + "up_proj.weight"] = sd[p + "up_proj.weight"][perm]
        permuted[p + "down_proj.weight"] = sd[p + "down_proj.weight"][:, perm]
    with Checkpoint.open(_folder(tmp_path, "a", sd)) as a, Checkpoint.open(_folder(tmp_path, "b", permuted)) as b:
        ev = raw_cosine(a, b)
    mlp = [v for k, v in ev.details["per_tensor"].items() if "mlp" in k]
    assert max(abs(v) for v in mlp) < 0.2  # the same model, by construction, looks unrelated to this statistic


def test_token_neurons_are_found_from_a_alone_and_random_rows_are_not():
    from parentage.evidence.neurons import token_neuron_mask

    rng = np.random.default_rng(0)
    d, n_tokens = 64, 4000
    tokens = rng.standard_normal((n_tokens, d)).astype(np.float32)
    block = rng.standard_normal((3, 32, d)).astype(np.float32)  # (units, m, d): ordinary neurons
    readers = rng.choice(n_tokens, 8, replace=False)
    block[1, :8] = tokens[readers] * 3 + 0.3 * rng.standard_normal((8, d))  # neurons that read one token each
    gate = block
    up = rng.standard_normal(block.shape).astype(np.float32)
    mask, threshold = token_neuron_mask([gate, up], tokens, rng)
    assert mask.shape == (3, 32) and mask[1, :8].all()
    assert mask.sum() - 8 <= 3  # about 1% of the 88 ordinary rows x 2 views, by the 99% quantile
    assert 0 < threshold < 1
