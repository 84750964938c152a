"""Remote checkpoints through a real HTTP hub on loopback (zoo/hub_emulator.py): the same answers as local files,
only the bytes asked for cross the wire, faults are survived, and every failure is one line naming the repo."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import huggingface_hub.constants
from parentage.checkpoint import Checkpoint
from parentage.cli import cli
from parentage.pair import compare
from parentage.errors import HubReferenceError, NotCachedError, RemoteError
from parentage.remote.cache import range_cache
from parentage.synthetic import Shape, config_for, random_state_dict, write_safetensors
from parentage.zoo.hub_emulator import Faults, HubEmulator

SHAPE = Shape(n_layers=4, hidden=64, n_heads=4, n_kv_heads=2, ffn=192, vocab=384)


def _write(folder, sd, shards=1):
    folder.mkdir(parents=True)
    names = list(sd)
    if shards == 1:
        write_safetensors(folder / "model.safetensors", sd)
    else:
        weight_map = {}
        for i in range(shards):
            part = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            chunk = names[i::shards]
            write_safetensors(folder / part, {k: sd[k] for k in chunk})
            weight_map |= {k: part for k in chunk}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config_for("llama", SHAPE)))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-models")
    sd = random_state_dict("llama", SHAPE, seed=1)
    rng = np.random.default_rng(0)
    noisy = {k: (v + 0.05 * v.std() * rng.standard_normal(v.shape)).astype(np.float32) if v.ndim == 2 else v
             for k, v in sd.items()}
    return {"a": _write(root / "a", sd), "b": _write(root / "b", noisy, shards=3),
            "c": _write(root / "c", random_state_dict("llama", SHAPE, seed=7))}


@pytest.fixture
def online(monkeypatch):
    """The network allowed (conftest forbids it), waits between retries shortened."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("PARENTAGE_HTTP_BACKOFF", "0.001")


def _hub(monkeypatch, models, faults=None, tokens=None, gated=()):
    hub = HubEmulator(faults, tokens=tokens).start()
    for name, folder in models.items():
        hub.add_folder(f"acme/{name}", folder, gated=name in gated)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return hub


@pytest.fixture
def hub(online, monkeypatch, models):
    h = _hub(monkeypatch, models)
    yield h
    h.stop()


def _same_judgement(x, y):
    assert x["verdict"] == y["verdict"]
    assert json.dumps(x["evidence"], sort_keys=True) == json.dumps(y["evidence"], sort_keys=True)
    assert x["alignment"] == y["alignment"]


def test_remote_hub_ids_judge_exactly_as_the_local_folders(hub, models):
    local = compare(str(models["a"]), str(models["b"]))
    remote = compare("acme/a", "hf://acme/b")
    _same_judgement(local, remote)
    assert remote["verdict"]["label"] == "related"
    for doc_input, repo in zip(remote["inputs"], ("acme/a", "acme/b")):
        commit = hub.repos[repo].refs["main"]
        assert doc_input["source"] == "hub" and doc_input["revision"] == "main" and doc_input["commit"] == commit
    cost = remote["cost"]
    assert 0 < cost["bytes_transferred"] <= hub.counters.cdn_bytes + hub.counters.hub_bytes
    assert hub.counters.cdn_bytes < cost["bytes_total"]  # never the whole files


def test_an_unrelated_remote_pair_is_judged_as_the_local_one(hub, models):
    _same_judgement(compare(str(models["a"]), str(models["c"])), compare("acme/a", "acme/c"))


def test_a_commit_hash_revision_and_a_url_read_the_same_bytes(hub, models):
    commit = hub.repos["acme/a"].refs["main"]
    by_commit = compare(f"acme/a@{commit}", "acme/c")
    url = f"{hub.url}/acme/a/resolve/main/model.safetensors"
    by_url = compare(url, "acme/c")
    index_url = f"{hub.url}/acme/b/resolve/main/model.safetensors.index.json"
    _same_judgement(by_commit, compare("acme/a", "acme/c"))
    assert by_commit["inputs"][0]["commit"] == commit
    assert by_url["inputs"][0]["source"] == "url" and by_url["verdict"] == by_commit["verdict"]
    _same_judgement(compare(index_url, "acme/a"), compare(str(models["b"]), str(models["a"])))


def test_a_second_run_transfers_nothing_and_works_offline(hub, models, monkeypatch):
    first = compare("acme/a", "acme/b")
    served = hub.counters.cdn_bytes
    second = compare("acme/a", "acme/b")
    assert second["cost"]["bytes_transferred"] == 0 and hub.counters.cdn_bytes == served
    _same_judgement(first, second)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = hub.counters.requests
    offline = compare("acme/a", "acme/b")
    _same_judgement(first, offline)
    assert hub.counters.requests == requests  # offline means no request at all


def test_offline_a_range_never_fetched_is_one_clear_line(hub, models, monkeypatch):
    compare("acme/a", "acme/b")
    shutil.rmtree(range_cache().root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotCachedError, match="not in the range cache.*HF_HUB_OFFLINE"):
        compare("acme/a", "acme/b")
    with pytest.raises(HubReferenceError, match="HF_HUB_OFFLINE"):
        compare("acme/never-seen", "acme/b")


def test_deleting_the_range_cache_mid_run_is_safe(hub, models):
    with Checkpoint.open("acme/a") as ck:
        t = ck.get("mlp_up", 1)
        first = t.read_rows(0, 8).copy()
        shutil.rmtree(range_cache().root)
        assert np.array_equal(t.read_rows(0, 8), first)  # fetched again
        assert np.array_equal(t.read_rows(4, 12)[:4], first[4:])


def test_the_range_cache_stays_under_its_cap(online, monkeypatch, models):
    monkeypatch.setenv("PARENTAGE_RANGE_CACHE_BYTES", str(200_000))
    hub = _hub(monkeypatch, models)
    try:
        doc = compare("acme/a", "acme/b")
        held = sum(p.stat().st_size for p in range_cache().root.rglob("*") if p.is_file())
        assert doc["cost"]["bytes_transferred"] > 200_000 and held <= 200_000
    finally:
        hub.stop()


def test_dropped_connections_and_503_bursts_do_not_change_the_verdict(online, monkeypatch, models):
    hub = _hub(monkeypatch, models, Faults(drop=0.1, burst=0.05, burst_len=3, seed=3))
    try:
        doc = compare("acme/a", "acme/b")
        assert hub.counters.dropped > 0 and hub.counters.errors_503 > 0
    finally:
        hub.stop()
    _same_judgement(doc, compare(str(models["a"]), str(models["b"])))


def test_a_slow_trickle_still_completes(online, monkeypatch, models):
    hub = _hub(monkeypatch, models, Faults(trickle_bps=20e6))
    try:
        with Checkpoint.open("acme/a") as ck:
            assert ck.get("mlp_up", 0).read_rows(0, 64).shape == (64, SHAPE.hidden)
    finally:
        hub.stop()


@pytest.mark.parametrize("faults, problem", [(Faults(ignore_range=True), "ignored the Range header"),
                                             (Faults(shift_range=16), "answered Content-Range")])
def test_a_server_that_breaks_the_range_protocol_is_refused(online, monkeypatch, models, faults, problem):
    hub = _hub(monkeypatch, models, faults)
    try:
        with pytest.raises(RemoteError, match=problem):
            Checkpoint.open("acme/a")
    finally:
        hub.stop()


def _cli(*args):
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_unknown_repo_gated_repo_and_unreachable_host_are_one_line_each(online, monkeypatch, models):
    hub = _hub(monkeypatch, {"a": models["a"], "g": models["b"]}, tokens={"hf_good"}, gated={"g"})
    try:
        code, out, err = _cli("compare", "acme/a", "acme/missing")
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
        assert "acme/missing" in err and "no such repository" in err
        code, _, err = _cli("compare", "acme/a", "acme/g")
        assert code == 1 and len(err.strip().splitlines()) == 1 and "acme/g" in err and "gated" in err
        code, _, err = _cli("compare", "acme/a", "acme/a@v9")
        assert code == 1 and "no such revision" in err
        code, _, err = _cli("compare", "acme/a", f"{hub.url}/acme/a/resolve/main/missing.safetensors")
        assert code == 1 and "404" in err and "missing.safetensors" in err
        monkeypatch.setenv("HF_TOKEN", "hf_good")
        assert compare("acme/a", "acme/g")["verdict"]["label"] == "related"
    finally:
        hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    code, out, err = _cli("compare", "acme/a", str(models["b"]))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "acme/a" in err and "cannot reach" in err


def test_a_remote_gguf_header_larger_than_the_first_fetch_is_read_whole(online, monkeypatch, tmp_path):
    gguf = pytest.importorskip("gguf")
    from parentage.readers import open_file
    import parentage.readers.gguf as reader

    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_token_list([f"token-{i}" for i in range(20_000)])
    w.add_tensor("output_norm.weight", np.arange(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    monkeypatch.setattr(reader, "GGUF_REMOTE_HEAD", 4096)  # the header is ~300 KB: several doublings
    hub = _hub(monkeypatch, {"q": tmp_path})
    try:
        from parentage.refs import resolve

        r = open_file(resolve("acme/q").weights[0])
        assert r.strings("tokenizer.ggml.tokens")[-1] == "token-19999"
        assert np.array_equal(r.read_rows("output_norm.weight", 0, 64), np.arange(64, dtype=np.float32))
    finally:
        hub.stop()


def test_a_remote_torch_checkpoint_is_refused_with_the_way_out(online, monkeypatch, tmp_path):
    from tests.torchzip import write_torch_zip

    folder = tmp_path / "t"
    folder.mkdir()
    write_torch_zip(folder / "pytorch_model.bin", {"model.embed_tokens.weight": np.zeros((4, 4), np.float32)})
    hub = _hub(monkeypatch, {"t": folder})
    try:
        with pytest.raises(Exception, match="read only from disk"):
            Checkpoint.open("acme/t")
    finally:
        hub.stop()


def test_a_complete_hub_cache_snapshot_is_read_from_disk_with_the_same_judgement(hub, models, tmp_path, monkeypatch):
    remote = compare("acme/a", "acme/b")
    cache = tmp_path / "hub-cache"
    commit = hub.repos["acme/a"].refs["main"]
    snap = cache / "models--acme--a" / "snapshots" / commit
    shutil.copytree(models["a"], snap)
    (cache / "models--acme--a" / "refs").mkdir()
    (cache / "models--acme--a" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    served = hub.counters.cdn_bytes
    local = compare("acme/a", "acme/b")
    _same_judgement(remote, local)
    assert local["inputs"][0]["commit"] == commit and local["cost"]["per_input"][0]["bytes_transferred"] == 0
    assert hub.counters.cdn_bytes == served  # B's ranges came from the range cache, A's from the snapshot


@pytest.fixture(scope="module")
def exports(tmp_path_factory, models):
    """The first model exported as hub derivatives are: GPTQ (packed along the input: strided reads), MLX, and
    ONNX int8 with its weights in an external data file."""
    from parentage.zoo.onnx_export import export_onnx
    from parentage.zoo.quantize import Export, export_model

    root = tmp_path_factory.mktemp("remote-exports")
    sd = random_state_dict("llama", SHAPE, seed=1)
    export_model(models["a"], root / "gptq", Export("gptq", 4, 32), sd)
    export_model(models["a"], root / "mlx", Export("mlx", 4, 32), sd)
    export_onnx(root / "onnx", sd, SHAPE.n_layers, "int8", "torch", external=True)
    shutil.copy2(models["a"] / "config.json", root / "onnx" / "config.json")
    return {name: root / name for name in ("gptq", "mlx", "onnx")}


@pytest.mark.parametrize("fmt", ["gptq", "mlx", "onnx"])
def test_quantised_and_onnx_exports_judge_remotely_as_locally(online, monkeypatch, models, exports, fmt):
    hub = _hub(monkeypatch, {**models, fmt: exports[fmt]})
    try:
        local = compare(str(models["a"]), str(exports[fmt]))
        remote = compare("acme/a", f"acme/{fmt}")
        _same_judgement(local, remote)
        assert remote["verdict"]["label"] == "related" and remote["alignment"]["export"]["relation"] == "quantization"
        cost = remote["cost"]["per_input"][1]
        # a tiny model is read almost whole; coalescing nearby ranges may fetch a cached byte twice, never more
        assert 0 < cost["bytes_transferred"] <= 1.5 * cost["bytes_total"]
        if fmt == "onnx":  # by URL too: the external data file is found beside the model on the server
            by_url = compare(str(models["a"]), f"{hub.url}/acme/onnx/resolve/main/model.onnx")
            assert by_url["verdict"] == local["verdict"]
    finally:
        hub.stop()


def test_hub_dates_are_kept_with_the_entry_and_order_relatives_offline_too(online, monkeypatch, models, tmp_path):
    """The hub's dates (repository creation, the commit's date) stand where file dates stand for local
    folders: circumstantial, kept in the fingerprint, and known offline from the manifest."""
    from parentage.index import add_models, open_store
    from parentage.index.fingerprint import source_meta
    from parentage.index.identify import identify

    hub = HubEmulator().start()
    try:
        hub.add_folder("acme/a", models["a"], date="2024-01-02T03:04:05.000Z")
        hub.add_folder("acme/b", models["b"], date="2024-06-01T00:00:00Z")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        db = str(tmp_path / "i.sqlite")
        add_models(["acme/a"], db)
        with open_store(db) as s:
            fp = s.load(s.entries()[0])
        assert fp.meta["created"] == "2024-01-02T03:04:05.000000Z"
        assert fp.meta["hub"]["repo_created"] == fp.meta["hub"]["commit_date"] == fp.meta["created"]
        doc = identify("acme/b", db)
        assert doc["best"] == "acme/a" and doc["best_direction_from"] == "dates"
        assert "written 2024-01-02T03:04:05, before the query (2024-06-01T00:00:00)" in doc["candidates"][0]["basis"]
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with Checkpoint.open("acme/b") as ck:
            assert source_meta(ck)["created"] == "2024-06-01T00:00:00.000000Z"
    finally:
        hub.stop()


def test_a_hub_fingerprint_records_the_digests_the_hub_lists(online, monkeypatch, models, tmp_path):
    from parentage.index.fingerprint import take

    hub = HubEmulator().start()
    try:
        hub.add_folder("acme/a", models["a"])
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with Checkpoint.open("acme/a") as ck:
            fp = take(ck)
        digests = fp.meta["file_digests"]
        assert digests and all(len(v) == 64 for v in digests.values())
        assert set(digests) <= {n.rsplit("/", 1)[-1] for n in fp.meta["files"]} | set(fp.meta["files"])
    finally:
        hub.stop()


def test_the_emulated_link_charges_round_trips_handshakes_and_one_shared_bandwidth():
    """The loopback hub's link: a round trip before every answer, two more per new connection, and a bandwidth
    that concurrent responses share (so more requests in flight hide latency, never bandwidth)."""
    import http.client
    import threading
    import time

    from parentage.zoo.hub_emulator import BytesFile, Link

    rtt, bandwidth, size = 0.05, 20e6, 2_000_000
    with HubEmulator(link=Link(rtt=rtt, bandwidth=bandwidth)) as hub:
        hub.add_files("acme/big", {"w.safetensors": BytesFile(bytes(size))})
        etag = next(iter(hub.blobs))
        port = hub.cdn.server_address[1]

        def get(conn, lo, hi):
            conn.request("GET", f"/blobs/{etag}", headers={"Range": f"bytes={lo}-{hi - 1}"})
            r = conn.getresponse()
            assert r.status == 206 and len(r.read()) == hi - lo

        conn = http.client.HTTPConnection("127.0.0.1", port)
        t = time.perf_counter()
        get(conn, 0, 10)  # a new connection: handshake (2 trips) and the request (1 trip)
        first = time.perf_counter() - t
        t = time.perf_counter()
        get(conn, 10, 20)  # kept alive: one trip
        second = time.perf_counter() - t
        conn.close()
        assert first >= 3 * rtt and second >= rtt and second < first  # lower bounds: a loaded machine only adds

        t = time.perf_counter()
        threads = [threading.Thread(target=lambda k=k: get(http.client.HTTPConnection("127.0.0.1", port),
                                                           k * size // 2, (k + 1) * size // 2)) for k in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        both = time.perf_counter() - t
        assert both >= size / bandwidth  # two halves in parallel still need the whole file's time on the pipe
        assert hub.counters.connections == 3


def test_a_slow_link_is_noticed_and_gets_more_requests_in_flight(online, monkeypatch, models):
    from parentage.remote import ranges
    from parentage.zoo.hub_emulator import Link

    for rtt, slow in ((0.0, False), (0.02, True)):
        monkeypatch.setattr(ranges, "_WAIT", {"seconds": 0.0, "n": 0})
        hub = HubEmulator(link=Link(rtt=rtt)).start()
        hub.add_folder("acme/a", models["a"])
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        try:
            with Checkpoint.open("acme/a") as ck:
                for t in list(ck.tensors.values())[:8]:
                    t.sample_rows(16, 0)
        finally:
            hub.stop()
        assert ranges.slow_link() is slow
        assert ranges.pool()._max_workers == (32 if slow else 8)
