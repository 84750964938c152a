"""Update types the weights show (evidence/updates.py): sparsity and merged low-rank updates named, fine-tunes
and rounding never called either."""

import json

import numpy as np
import pytest

from parentage.pair import compare
from parentage.synthetic import Shape, config_for, random_state_dict, write_safetensors

SHAPE = Shape(n_layers=4, hidden=256, n_heads=4, n_kv_heads=2, ffn=512, vocab=512)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("updates")
    sd = random_state_dict("llama", SHAPE, seed=1)
    return root, sd


def _save(folder, sd, dtype="BF16"):
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", sd, dtype)
    (folder / "config.json").write_text(json.dumps(config_for("llama", SHAPE)))
    return folder


def _layer_matrices(sd):
    return [k for k, v in sd.items() if ".layers." in k and v.ndim == 2]


def _updates(root, sd, changed, name, dtype="BF16"):
    a = root / f"a-{dtype}"
    if not a.exists():
        _save(a, sd, dtype)
    doc = compare(str(a), str(_save(root / name, changed, dtype)))
    assert doc["verdict"]["label"] == "related"
    return doc["alignment"]["updates"]


def test_magnitude_pruning_is_named_with_its_share(base):
    root, sd = base
    pruned = dict(sd)
    for k in _layer_matrices(sd):
        cut = np.quantile(np.abs(sd[k]), 0.5, axis=1, keepdims=True)
        pruned[k] = np.where(np.abs(sd[k]) <= cut, 0, sd[k]).astype(np.float32)
    u = _updates(root, sd, pruned, "magnitude")
    s = u["sparsity"]
    assert s["by_magnitude"] and abs(s["share_zeroed"] - 0.5) < 0.02 and not s["two_of_four"]
    assert s["summary"].startswith("unstructured sparsity: 50%") and "magnitude pruning" in s["summary"]
    assert u["descriptive"] and not u["low_rank"]["ranks"]


def test_random_two_of_four_sparsity_is_semi_structured_and_not_by_magnitude(base):
    root, sd = base
    rng = np.random.default_rng(3)
    sparse = dict(sd)
    for k in _layer_matrices(sd):
        w = sd[k].reshape(sd[k].shape[0], -1, 4).copy()
        drop = np.argsort(rng.random(w.shape), axis=-1)[..., :2]  # two random places of every four
        np.put_along_axis(w, drop, 0.0, axis=-1)
        sparse[k] = w.reshape(sd[k].shape)
    s = _updates(root, sd, sparse, "two-of-four")["sparsity"]
    assert s["two_of_four"] and not s["by_magnitude"] and s["summary"].startswith("2:4 semi-structured")


@pytest.mark.parametrize("dtype,rank,wide", [("BF16", 4, False), ("F32", 4, False), ("BF16", 12, True)])
def test_a_merged_low_rank_update_is_named_with_its_rank(base, monkeypatch, dtype, rank, wide):
    """On the identity test's 16 rows a rank below 8 is told from a full update; wider rows (read when they cost
    little of the checkpoints: forced here on a small model) tell ranks up to 31."""
    import parentage.pair

    if wide:
        monkeypatch.setattr(parentage.pair, "UPDATE_SHARE", 1.0)
    root, sd = base
    rng = np.random.default_rng(4)
    merged = dict(sd)
    for k in _layer_matrices(sd):
        delta = rng.standard_normal((sd[k].shape[0], rank)) @ rng.standard_normal((rank, sd[k].shape[1]))
        merged[k] = (sd[k] + delta * 0.05 * np.linalg.norm(sd[k]) / np.linalg.norm(delta)).astype(np.float32)
    u = _updates(root, sd, merged, f"lora-{dtype}-{rank}", dtype)
    assert u["rows_per_matrix"] == (64 if wide else 16)
    assert set(u["low_rank"]["ranks"].values()) == {rank} and len(u["low_rank"]["ranks"]) == 7
    assert u["low_rank"]["summary"].startswith(f"a merged rank-{rank} update in q, k, v, o, gate, up, down")


def test_a_low_rank_update_is_named_on_matrices_with_outlier_columns(tmp_path):
    """Real matrices have columns of far larger values (Gemma's q_proj: residual dimensions with massive
    activations), which round on a coarser bf16 grid: their rounding error must not pass for extra rank."""
    rng = np.random.default_rng(8)
    sd = random_state_dict("llama", SHAPE, seed=3)
    scaled, merged = dict(sd), {}
    for k in _layer_matrices(sd):
        scale = np.ones(sd[k].shape[1], np.float32)
        scale[rng.choice(sd[k].shape[1], 4, replace=False)] = 40.0  # four outlier columns
        scaled[k] = sd[k] * scale
        delta = rng.standard_normal((sd[k].shape[0], 4)) @ rng.standard_normal((4, sd[k].shape[1]))
        merged[k] = (scaled[k] + delta * 0.05 * np.linalg.norm(sd[k]) / np.linalg.norm(delta)).astype(np.float32)
    u = _updates(tmp_path, scaled, {**scaled, **merged}, "lora-outliers")
    assert set(u["low_rank"]["ranks"].values()) == {4} and len(u["low_rank"]["ranks"]) == 7


def test_a_rank_too_high_for_the_rows_read_is_not_called_low(base):
    root, sd = base
    rng = np.random.default_rng(6)
    merged = dict(sd)
    for k in _layer_matrices(sd):
        delta = rng.standard_normal((sd[k].shape[0], 12)) @ rng.standard_normal((12, sd[k].shape[1]))
        merged[k] = (sd[k] + delta * 0.05 * np.linalg.norm(sd[k]) / np.linalg.norm(delta)).astype(np.float32)
    u = _updates(root, sd, merged, "lora-12-narrow")
    assert u["rows_per_matrix"] == 16 and not u["low_rank"]["ranks"]


@pytest.mark.parametrize("noise", [0.001, 0.05, 0.5])
def test_a_fine_tune_is_called_neither_sparse_nor_low_rank_and_its_drift_is_measured(base, noise):
    root, sd = base
    rng = np.random.default_rng(5)
    tuned = {k: (v + noise * v.std() * rng.standard_normal(v.shape)).astype(np.float32) for k, v in sd.items()}
    u = _updates(root, sd, tuned, f"tuned-{noise}")
    assert not u["low_rank"]["ranks"] and not u["sparsity"]["summary"]
    # the random init has mean zero, so std is the norm per value: the drift is the noise's scale (bf16 storage
    # adds its own rounding, about 0.1% of a value)
    assert u["drift"]["median_relative_change"] == pytest.approx(noise, rel=0.2, abs=0.002)
    assert u["notes"] == [u["drift"]["summary"]] and "a full-rank change, not sparse" in u["notes"][0]
