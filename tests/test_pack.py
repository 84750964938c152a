"""Packs: an index as one file, queried in place (locally or by range requests) or imported; hostile packs."""

from __future__ import annotations

import json
import sqlite3
import struct

import huggingface_hub.constants
import numpy as np
import pytest
from click.testing import CliRunner

from parentage.cli import cli
from parentage.index import add_models, open_store
from parentage.index.identify import identify
from parentage.index.pack import MAGIC, PACK_VERSION, export_pack, import_pack, open_pack
from parentage.synthetic import random_state_dict
from parentage.zoo.hub_emulator import HubEmulator
from tests.test_compare import SHAPE, _noisy, _obfuscate, _write


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack-family")
    rng = np.random.default_rng(6)
    base = random_state_dict("llama", SHAPE, seed=40)
    models = {"base": _write(root / "base", base), "child": _write(root / "child", _noisy(base, rng)),
              "hidden": _write(root / "hidden", _obfuscate(_noisy(base, rng), rng)),
              "stranger": _write(root / "stranger", random_state_dict("llama", SHAPE, seed=41)),
              "other": _write(root / "other", random_state_dict("llama", SHAPE, seed=42))}
    db = str(root / "index.sqlite")
    add_models([str(models[k]) for k in ("base", "stranger", "other")], db)
    pack = root / "lineage.pack"
    with open_store(db) as store:
        export_pack(store, pack)
    return {**models, "db": db, "pack": pack}


def test_a_pack_answers_as_the_index_it_was_made_from(family):
    for name in ("child", "hidden"):
        from_db = identify(str(family[name]), family["db"])
        from_pack = identify(str(family[name]), str(family["pack"]))
        assert from_pack["best"] == from_db["best"] == str(family["base"])
        assert [c["log10_p"] for c in from_pack["candidates"]] == [c["log10_p"] for c in from_db["candidates"]]
    r = CliRunner().invoke(cli, ["index", "list", "--db", str(family["pack"]), "--format", "json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["entries"]) == 3
    r = CliRunner().invoke(cli, ["graph", "--db", str(family["pack"]), "--format", "json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["nodes"]) == 3


def test_import_is_idempotent_and_a_damaged_pack_writes_nothing(family, tmp_path):
    db = str(tmp_path / "imported.sqlite")
    first = import_pack(str(family["pack"]), db)
    again = import_pack(str(family["pack"]), db)
    assert [r["status"] for r in first] == ["added"] * 3 and [r["status"] for r in again] == ["indexed already"] * 3
    with open_store(db) as a, open_store(family["db"]) as b:
        assert {(e.ref, e.digest) for e in a.entries()} == {(e.ref, e.digest) for e in b.entries()}
    # the last fingerprint's bytes damaged: the whole pack is checked first, so nothing is written
    data = bytearray(family["pack"].read_bytes())
    data[-100] ^= 0xFF
    bad = tmp_path / "bad.pack"
    bad.write_bytes(bytes(data))
    db2 = tmp_path / "partial.sqlite"
    r = CliRunner().invoke(cli, ["index", "import", str(bad), "--db", str(db2)])
    assert r.exit_code == 1 and "does not match its digest" in r.output and "\n" not in r.output.strip()
    assert not db2.exists()
    # into an existing index: the entries it held stay, and none of the pack's is half there
    r = CliRunner().invoke(cli, ["index", "import", str(bad), "--db", db])
    assert r.exit_code == 1
    with open_store(db) as s:
        assert len(s.entries()) == 3 and all(s.load(e) is not None for e in s.entries())


def _header(pack: bytes) -> tuple[dict, int]:
    n = struct.unpack("<IQ", pack[len(MAGIC):len(MAGIC) + 12])[1]
    return json.loads(pack[len(MAGIC) + 12:len(MAGIC) + 12 + n]), n


def _with_header(pack: bytes, header: dict) -> bytes:
    _, n = _header(pack)
    raw = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<IQ", PACK_VERSION, len(raw)) + raw + pack[len(MAGIC) + 12 + n:]


@pytest.mark.parametrize("damage", ["truncated", "magic", "newer", "forged", "plan", "scan", "offsets", "empty"])
def test_a_hostile_pack_is_one_line_and_exit_1(family, tmp_path, damage):
    data = family["pack"].read_bytes()
    header, _ = _header(data)
    if damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "magic":
        data = b"NOTAPACK" + data[8:]
    elif damage == "newer":
        data = data[:len(MAGIC)] + struct.pack("<I", PACK_VERSION + 1) + data[len(MAGIC) + 4:]
    elif damage == "forged":  # another fingerprint's digest: the bytes no longer match what the header claims
        header["entries"][0]["digest"] = header["entries"][1]["digest"]
        data = _with_header(data, header)
    elif damage == "plan":
        header["entries"][0]["plan"] = 99
        data = _with_header(data, header)
    elif damage == "scan":
        header["scan_digest"] = "0" * 64
        data = _with_header(data, header)
    elif damage == "offsets":
        header["entries"][0]["fingerprint"] = [10 ** 15, 10]
        data = _with_header(data, header)
    else:
        data = b""
    bad = tmp_path / "bad.pack"
    bad.write_bytes(data)
    for args in (["identify", str(family["child"]), "--db", str(bad)], ["index", "import", str(bad), "--db",
                                                                         str(tmp_path / "i.sqlite")]):
        r = CliRunner().invoke(cli, args)
        if damage == "forged" and args[0] == "identify":  # the forged entry may not reach the shortlist's loads
            assert r.exit_code in (0, 1)
            continue
        assert r.exit_code == 1 and r.output.startswith("parentage: error: ") and "\n" not in r.output.strip(), (damage, r.output)
        if damage == "newer":
            assert "newer parentage" in r.output
        if damage == "plan":
            assert "plan 99" in r.output and "parentage" in r.output


def test_a_pack_is_read_only(family):
    r = CliRunner().invoke(cli, ["index", "add", str(family["child"]), "--db", str(family["pack"])])
    assert r.exit_code == 1 and "read only" in r.output


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("PARENTAGE_HTTP_BACKOFF", "0.001")


def test_a_hosted_pack_is_queried_by_ranges_and_never_hears_of_the_query(family, online, monkeypatch, tmp_path):
    hub = HubEmulator().start()
    try:
        folder = tmp_path / "dataset"
        folder.mkdir()
        (folder / "lineage.pack").write_bytes(family["pack"].read_bytes())
        hub.add_folder("datasets/acme/lineage", folder)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ref = "hf://datasets/acme/lineage/lineage.pack"
        doc = identify(str(family["hidden"]), ref, k=1)
        assert doc["best"] == str(family["base"]) and doc["n_candidates"] == 3
        first = hub.counters.cdn_bytes
        assert 0 < first < family["pack"].stat().st_size  # ranges for one fingerprint, not the whole pack
        again = identify(str(family["child"]), ref, k=1)
        assert again["best"] == str(family["base"])
        # the second query reads the scan block and the base's parts from the range cache
        assert hub.counters.cdn_bytes - first < first
        seen = json.dumps(hub.log)
        for secret in ("hidden", "child", str(family["child"].parent)):
            assert secret not in seen, secret
        pack_requests = [r for r in hub.log if r["method"] == "GET" and "lineage.pack" in r["path"]]
        assert all(r["range"] for r in pack_requests if "/resolve/" not in r["path"])
        r = CliRunner().invoke(cli, ["index", "import", "hf://datasets/acme/lineage/lineage.pack", "--db",
                                     str(tmp_path / "i.sqlite")])
        assert r.exit_code == 0 and r.output.count("added") == 3
        assert CliRunner().invoke(cli, ["identify", str(family["child"]), "--db",
                                        "hf://datasets/acme/../lineage"]).exit_code == 1
    finally:
        hub.stop()


def test_opening_a_sqlite_index_as_a_pack_is_refused(family):
    with pytest.raises(Exception) as e:
        open_pack(family["db"])
    assert "pack" in str(e.value)
    with sqlite3.connect(family["db"]) as c:
        assert c.execute("SELECT count(*) FROM fingerprints").fetchone()[0] == 3


def test_the_shipped_list_names_pretrained_hub_checkpoints_only():
    from parentage.index import read_ref_list, shipped_bases

    bases = shipped_bases()
    refs = read_ref_list("bases")
    assert len(refs) == len(bases) >= 100 and len(set(refs)) == len(refs)
    families = {b["family"].split()[0] for b in bases}
    for family in ("GPT-2", "Pythia", "Llama", "Mistral", "Mixtral", "Qwen", "DeepSeek", "Gemma", "Phi", "Falcon",
                   "Yi", "InternLM", "Baichuan", "GLM", "OLMo", "SmolLM"):
        assert family in families, family
    for b in bases:
        org, name = b["ref"].split("/")
        assert org and name and b["params_b"] > 0 and b["arch"] in ("dense", "moe")
        words = ("instruct", "-it", "gptq", "awq", "gguf", "int4", "fp8") + (() if name.endswith("-base") else ("chat",))
        assert not any(w in name.lower() for w in words), name  # chatglm3-6b-base is GLM's pretrained base
