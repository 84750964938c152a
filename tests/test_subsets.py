"""What B kept of A (evidence/subsets.py): residual dimensions, query and key/value heads, FFN neurons, each said
as what it is: a subset kept in order is never called a permutation, a relabelling never "kept in order"."""

import json

import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.evidence.hidden import HiddenMap
from parentage.evidence.subsets import longest_increasing, residual_kept
from parentage.index.direction import growth
from parentage.pair import compare
from parentage.synthetic import Shape, config_for, random_state_dict, write_safetensors
from parentage.zoo.realfamily import experts_permuted, upcycled, width_pruned
from parentage.zoo.truth import expert_errors, subset_errors

SHAPE = Shape(n_layers=4, hidden=128, n_heads=6, n_kv_heads=2, ffn=384, vocab=512)


def _config():
    return config_for("llama", SHAPE) | {"head_dim": SHAPE.hidden // SHAPE.n_heads}


def _save(folder, sd, config):
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", sd, "BF16")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _noisy(sd, rng, scale=0.02):
    return {k: (v + scale * v.std() * rng.standard_normal(v.shape)).astype(np.float32) if v.ndim == 2 else v
            for k, v in sd.items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("subsets")
    sd = random_state_dict("llama", SHAPE, seed=2)
    return root, sd, _save(root / "a", sd, _config())


def test_longest_increasing_run():
    assert longest_increasing(np.array([3, 1, 2, 5, 4, 6])) == 4
    assert longest_increasing(np.array([], dtype=int)) == 0
    assert longest_increasing(np.arange(10)[::-1]) == 1


def test_a_subset_kept_in_order_is_not_a_permutation():
    kept = np.sort(np.random.default_rng(0).choice(100, 80, replace=False))
    perm = np.full(100, -1)
    perm[kept] = np.arange(80)  # A's dimension kept[k] is B's k: indices shift, order does not change
    out = residual_kept(HiddenMap("permutation", 100, 80, perm=perm, signs=np.ones(100, np.float32)))
    assert out["kind"] == "subset" and "80 of A's 100 dimensions, in A's order (20 removed" in out["note"]


def test_a_relabelled_residual_stream_is_said_so_and_a_kept_order_says_nothing():
    rng = np.random.default_rng(1)
    shuffled = HiddenMap("permutation", 64, 64, perm=rng.permutation(64), signs=np.ones(64, np.float32))
    assert residual_kept(shuffled)["kind"] == "permutation"
    in_place = HiddenMap("permutation", 64, 64, perm=np.arange(64), signs=np.ones(64, np.float32))
    assert residual_kept(in_place) is None


@pytest.mark.parametrize("how", [dict(), dict(hidden=1.0, ffn=1.0, drop_per_group=0, drop_groups=1)],
                         ids=["minitron-width", "kv-group"])
def test_pruned_channels_heads_and_neurons_are_named_as_kept_and_removed(base, how):
    root, sd, a = base
    pruned, config, truth = width_pruned(sd, _config(), **how)
    b = _save(root / f"b-{len(list(root.iterdir()))}", _noisy(pruned, np.random.default_rng(0)), config)
    doc = compare(str(a), str(b))
    assert doc["verdict"]["label"] == "related"
    assert subset_errors(doc, {"subsets": truth}) == []
    notes = " / ".join(doc["alignment"]["notes"])
    assert "permutation" not in notes and "relabelled" not in notes
    assert f"query heads {SHAPE.n_heads} -> {config['num_attention_heads']}" in notes
    assert doc["alignment"]["subsets"]["descriptive"]


def test_a_copy_of_the_same_shape_gets_no_subset_notes(base):
    root, sd, a = base
    doc = compare(str(a), str(_save(root / "same", _noisy(sd, np.random.default_rng(4)), _config())))
    assert doc["alignment"]["subsets"] is None


@pytest.fixture(scope="module")
def moe(base):
    """A upcycled into an MoE (each expert a shuffled quarter of the dense FFN), and that MoE with its experts
    and their neurons reordered."""
    root, sd, a = base
    rng = np.random.default_rng(5)
    up, cfg, up_truth = upcycled(sd, _config(), rng, n_experts=4, share=0.5)
    perm, perm_truth = experts_permuted(up, cfg, rng)
    return (a, _save(root / "moe", up, cfg), up_truth), (_save(root / "moe-perm", perm, cfg), perm_truth), (up, cfg)


def test_upcycled_experts_are_each_mapped_to_the_dense_ffn_whatever_their_neuron_order(moe):
    (a, b, truth), _, _ = moe
    doc = compare(str(a), str(b))
    assert expert_errors(doc, {"experts": truth}) == []
    experts = doc["alignment"]["subsets"]["experts"]
    assert experts["kind"] == "upcycled" and experts["descriptive"]
    assert any(n.startswith("all 4 experts of B in each of its layers") for n in doc["alignment"]["notes"])
    assert not any(n.endswith("A's dense FFNs (upcycled)") for n in doc["alignment"]["notes"])  # said once
    with Checkpoint.open(a) as ca, Checkpoint.open(b) as cb:  # and identify's direction reads it from the map
        assert "B's experts upcycled from A's dense FFNs" in growth(ca, cb, doc)


def test_reordered_experts_are_mapped_by_router_rows_and_checked_on_their_weights(moe):
    (_, up, _), (perm, truth), _ = moe
    doc = compare(str(up), str(perm))
    assert expert_errors(doc, {"experts": truth}) == []
    experts = doc["alignment"]["subsets"]["experts"]
    assert experts["kind"] == "reordered"
    assert all(lay["checked"]["agree"] > 0.5 * lay["checked"]["rows"] for lay in experts["layers"])


def test_experts_kept_in_place_are_said_in_order(moe):
    (_, up, _), _, _ = moe
    doc = compare(str(up), str(up))
    assert doc["alignment"]["subsets"]["experts"]["kind"] == "in order"


def test_pruned_experts_are_named_by_what_was_kept(base, moe):
    """MoE -> MoE with some experts removed (router rows alike): B's experts map onto the ones A kept."""
    root, _, _ = base
    (_, up, _), _, (sd, cfg) = moe
    keep = [0, 2, 3]
    pruned = {k: v for k, v in sd.items() if ".experts." not in k}
    for i in range(SHAPE.n_layers):
        q = f"model.layers.{i}.block_sparse_moe."
        pruned[q + "gate.weight"] = sd[q + "gate.weight"][keep]
        for e, src in enumerate(keep):
            for w in ("w1", "w2", "w3"):
                pruned[f"{q}experts.{e}.{w}.weight"] = sd[f"{q}experts.{src}.{w}.weight"]
    doc = compare(str(up), str(_save(root / "moe-pruned", pruned, cfg | {"num_local_experts": len(keep)})))
    truth = {"from": "experts", "map": {str(i): keep for i in range(SHAPE.n_layers)}}
    assert expert_errors(doc, {"experts": truth}) == []
    assert "B keeps 3 of A's 4 experts, A's 1 removed" in doc["alignment"]["subsets"]["experts"]["note"]

