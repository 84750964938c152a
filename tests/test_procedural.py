"""Procedural checkpoints (zoo/procedural.py): bytes computed from (seed, tensor, row), served by the loopback hub,
with real large layouts and the seed case's derivations explained as they were made."""

import json

import numpy as np
import pytest

import huggingface_hub.constants
from parentage.checkpoint import Checkpoint
from parentage.pair import compare
from parentage.inspection import inspect_checkpoint
from parentage.zoo import procedural as P
from parentage.zoo.hub_emulator import HubEmulator


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    h = HubEmulator().start()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    yield h
    h.stop()


def small(seed):
    return P.dense(6, 256, 512, 1000, 8, 4, True, "qwen2", seed=seed)


def _shard(model):
    return next(f for name, f in model.files(shard_bytes=1 << 20).items() if name.endswith(".safetensors"))


def test_any_byte_range_is_the_same_bytes_as_part_of_a_larger_read():
    shard = _shard(small(1))
    whole = shard.read(0, shard.size)
    assert len(whole) == shard.size
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = int(rng.integers(0, shard.size - 1))
        n = int(rng.integers(1, min(300_000, shard.size - a)))
        assert shard.read(a, n) == whole[a: a + n]
    assert _shard(small(1)).read(0, shard.size) == whole  # deterministic across instances


def test_frozen_tensors_keep_the_parents_bytes_and_the_rest_move():
    a = small(1)
    f = P.frozen_copy(a, 2, lambda n: P.layer_of(n) == 1 and "self_attn" in n)
    for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.2.self_attn.q_proj.weight"):
        ta, tf = a.tensors[name], f.tensors[name]
        same = P.values(ta.source, 0, 64).tobytes() == P.values(tf.source, 0, 64).tobytes()
        assert same == (P.layer_of(name) == 1)


def test_real_large_layouts_open_from_their_headers_alone(hub):
    models = {"p/qwen110b": P.LAYOUTS["qwen1.5-110b"](1), "p/dsv3": P.deepseek_v3(1)}
    for repo, m in models.items():
        hub.add_files(repo, m.files())
    doc = inspect_checkpoint("p/qwen110b")
    assert (doc["n_layers"], doc["hidden_size"], doc["intermediate_size"], doc["n_kv_heads"]) == (80, 8192, 49152, 8)
    assert doc["cost"]["bytes_total"] > 200e9 and doc["cost"]["bytes_transferred"] < 2e6
    with Checkpoint.open("p/dsv3") as ck:
        s = ck.summary
        assert (s.n_layers, s.n_experts, s.hidden_size) == (61, 256, 7168)
        assert ck.get("mlp_up", 10, expert=5).dtype == "F8_E4M3"
        assert ck.cost()["bytes_transferred"] < 30e6 and ck.weights.bytes_total > 600e9
        rows = ck.get("mlp_up", 10, expert=5).read_rows(0, 4)  # FP8 codes times their block scale
        assert rows.shape == (4, 7168) and 0.015 < rows.std() < 0.025


def test_inserted_layers_widening_frozen_tensors_and_upcycling_are_explained(hub):
    a = small(1)
    models = {"a": a, "grown": P.inserted_and_widened(a, 2, [1, 3], 640),
              "frozen": P.frozen_copy(a, 4, lambda n: P.layer_of(n) in (2, 3) and "self_attn" in n),
              "moe": P.upcycled(a, 5, 4), "other": small(3)}
    for name, m in models.items():
        hub.add_files(f"p/{name}", m.files(shard_bytes=1 << 20))
    grown = compare("p/a", "p/grown")
    assert grown["verdict"]["label"] == "related"
    assert {"FFN width 512 -> 640", "layers 6 -> 8", "layers 2 and 5 of B have no counterpart in A"} <= set(grown["alignment"]["notes"])
    frozen = compare("p/a", "p/frozen")
    assert frozen["alignment"]["components"]["frozen_tensors"] == [
        {"layers": [2, 3], "tensors": ["attn_k.weight", "attn_o.weight", "attn_q.weight", "attn_v.weight"]}]
    moe = compare("p/a", "p/moe")
    assert moe["verdict"]["label"] == "related" and any("upcycled" in n for n in moe["alignment"]["notes"])
    assert compare("p/a", "p/other")["verdict"]["label"] == "unrelated"
    assert json.dumps(grown["inputs"][1]["commit"]) == json.dumps(hub.repos["p/grown"].refs["main"])
