"""The fingerprint index: fingerprints stand in for checkpoints, the store keeps them safely, identify/verify."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from parentage.checkpoint import Checkpoint
from parentage.cli import cli
from parentage.pair import compare_checkpoints
from parentage.errors import FormatError, IndexStoreError
from parentage.index import add_models, open_store, take
from parentage.index.fingerprint import Fingerprint
from parentage.index.identify import identify
from parentage.index.store import MIGRATIONS, SCHEMA_VERSION
from parentage.synthetic import random_state_dict, relayered
from tests.browser import needs_chromium, screenshot
from tests.test_compare import SHAPE, _noisy, _obfuscate, _write


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("index-family")
    rng = np.random.default_rng(3)
    base = random_state_dict("llama", SHAPE, seed=10)
    return {
        "base": _write(root / "base", base),
        "child": _write(root / "child", _noisy(base, rng)),
        "hidden": _write(root / "hidden", _obfuscate(_noisy(base, rng), rng)),
        "grown": _write(root / "grown", relayered(_noisy(base, rng), [0, 1, 1, 2, 3]), n_layers=5),
        "stranger": _write(root / "stranger", random_state_dict("llama", SHAPE, seed=11)),
        "other": _write(root / "other", random_state_dict("llama", SHAPE, seed=12)),
    }


def _verdict(doc):
    return doc["verdict"]["label"], doc["verdict"]["log10_p"]


def test_a_stored_fingerprint_gives_the_verdict_of_the_live_checkpoint(models):
    for name in ("child", "hidden", "grown", "stranger"):
        with Checkpoint.open(models["base"]) as a, Checkpoint.open(models[name]) as b:
            stored = Fingerprint.from_bytes(take(a).to_bytes(), "test")
            live = compare_checkpoints(a, b)
            with stored.open() as fa:
                replay = compare_checkpoints(fa, b)
            assert replay["verdict"]["label"] == live["verdict"]["label"], name
            assert replay["cost"]["per_input"][0]["bytes_read"] == 0  # nothing of A is read again


def test_two_fingerprints_line_up_without_either_checkpoint(models):
    with Checkpoint.open(models["base"]) as a, Checkpoint.open(models["grown"]) as b:
        fa, fb = (Fingerprint.from_bytes(take(x).to_bytes(), "t") for x in (a, b))
    with fa.open() as a, fb.open() as b:
        doc = compare_checkpoints(a, b)
    assert doc["verdict"]["label"] == "related"
    assert "layers 4 -> 5" in doc["alignment"]["notes"]


def test_fingerprint_size_is_bounded_and_holds_no_whole_large_tensor(models):
    with Checkpoint.open(models["base"]) as ck:
        fp = take(ck)
        assert fp.n_bytes < ck.weights.bytes_total  # this model is tiny: its FFNs fit whole
        embed = ck.get("embed")
        held = sum(r.shape[0] for _, r in fp.spans[embed.piece.source])
        assert held == min(embed.n_rows, 2048)


@pytest.mark.parametrize("damage", ["magic", "truncate", "header", "shape", "nan"])
def test_a_corrupt_fingerprint_is_one_clear_error(models, damage):
    with Checkpoint.open(models["base"]) as ck:
        blob = bytearray(take(ck).to_bytes())
    n = int.from_bytes(blob[8:16], "little")
    head = json.loads(blob[16:16 + n])
    if damage == "magic":
        blob[:8] = b"NOTPRINT"
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "header":
        blob[20:40] = b"\x00" * 20
    elif damage == "shape":
        key = next(iter(head["arrays"]))
        head["arrays"][key][1] = [10**9, 10**9]
    elif damage == "nan":
        name, spans = next(iter(head["spans"].items()))
        dtype, shape, offset = head["arrays"][spans[0][1]]
        blob[16 + n + offset:16 + n + offset + 2] = np.array([np.nan], dtype=dtype).tobytes()
    if damage in ("shape",):
        raw = json.dumps(head).encode()
        blob = blob[:8] + len(raw).to_bytes(8, "little") + raw + blob[16 + n:]
    with pytest.raises(FormatError) as e:
        Fingerprint.from_bytes(bytes(blob), "db [x]")
    assert str(e.value).startswith("db [x]:") and "\n" not in str(e.value)


# -- the store ---------------------------------------------------------------------------------------------------


def test_add_is_idempotent_and_list_show_remove_work(models, tmp_path):
    db = str(tmp_path / "i.sqlite")
    first = add_models([str(models["base"]), str(models["child"])], db)
    again = add_models([str(models["base"])], db)
    assert [r["status"] for r in first] == ["added", "added"] and again[0]["status"] == "indexed already"
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["index", "list", "--db", db, "--format", "json"]).output)
    assert [e["ref"] for e in listed["entries"]] == [str(models["base"]), str(models["child"])]
    shown = runner.invoke(cli, ["index", "show", str(models["base"]), "--db", db])
    assert shown.exit_code == 0 and "digests of" in shown.output
    gone = runner.invoke(cli, ["index", "remove", str(models["child"]), "--db", db])
    assert gone.exit_code == 0
    with open_store(db) as s:
        assert [e.ref for e in s.entries()] == [str(models["base"])]
        assert s._run("SELECT COUNT(*) FROM blobs")[0][0] == 1  # the removed entry's blob went with it


def test_bad_databases_are_one_line_and_exit_1(tmp_path):
    runner = CliRunner()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE users (name TEXT)")
    newer = tmp_path / "newer.sqlite"
    open_store(str(newer), create=True).close()
    with sqlite3.connect(newer) as c:
        c.execute("UPDATE parentage_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    cases = {junk: "not a usable", foreign: "not a parentage index", newer: "newer parentage",
             tmp_path / "missing.sqlite": "no index here", tmp_path: "is a folder"}
    for path, words in cases.items():
        r = runner.invoke(cli, ["index", "list", "--db", str(path)])
        assert r.exit_code == 1, (path, r.output)
        line = r.output.strip()
        assert "\n" not in line and str(path) in line and words in line, line
    r = runner.invoke(cli, ["identify", str(tmp_path), "--db", "postgresql://nobody@127.0.0.1:1/none"])
    assert r.exit_code == 1 and "cannot connect to PostgreSQL" in r.output and "\n" not in r.output.strip()


def test_an_older_schema_is_migrated_in_place(models, tmp_path):
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE parentage_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO parentage_meta VALUES ('schema_version', '1')")
    for statement in MIGRATIONS[0]:
        conn.execute(statement.format(blob="BLOB", id="INTEGER PRIMARY KEY AUTOINCREMENT", big="INTEGER"))
    conn.commit()
    conn.close()
    with open_store(str(db)) as s:
        assert s._run("SELECT value FROM parentage_meta WHERE key = 'schema_version'")[0][0] == str(SCHEMA_VERSION)
    assert add_models([str(models["base"])], str(db))[0]["status"] == "added"


WRITER = """
import sys
from parentage.index import open_store
from parentage.index.fingerprint import Fingerprint
blob = open(sys.argv[2], "rb").read()
store = open_store(sys.argv[1], create=True)
for i in range(100000):
    fp = Fingerprint.from_bytes(blob, "w")
    fp.meta["ref"], fp.meta["commit"], fp.blob = f"model-{i}", f"{i:040d}", None
    name = next(iter(fp.spans))
    start, rows = fp.spans[name][0]
    rows = rows.copy()
    rows.flat[0] = i  # a different blob each time
    fp.spans[name][0] = (start, rows)
    store.add(fp)
    print(i, flush=True)
"""


def test_a_writer_killed_mid_insert_loses_nothing_committed_and_leaves_no_partial_entry(models, tmp_path):
    db, blob = tmp_path / "k.sqlite", tmp_path / "fp.bin"
    with Checkpoint.open(models["base"]) as ck:
        blob.write_bytes(take(ck).to_bytes())
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(blob)], stdout=subprocess.PIPE, text=True)
    committed = -1
    while committed < 20:
        committed = int(proc.stdout.readline())
    # meanwhile a reader reads (WAL: it never waits for the writer)
    with open_store(str(db)) as reader:
        assert len(reader.entries()) >= 20
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open_store(str(db)) as s:
        entries = s.entries()
        assert len(entries) >= committed + 1
        assert [e.ref for e in entries] == [f"model-{i}" for i in range(len(entries))]
        for e in entries[-3:]:
            s.load(e)  # whole and matching its digest
        assert s._run("PRAGMA integrity_check")[0][0] == "ok"
        orphans = s._run("SELECT COUNT(*) FROM blobs WHERE digest NOT IN (SELECT digest FROM fingerprints)")
        assert orphans[0][0] == 0


def test_a_reader_is_not_blocked_by_an_open_write_transaction(models, tmp_path):
    db = str(tmp_path / "w.sqlite")
    add_models([str(models["base"])], db)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM fingerprints")
    with open_store(db) as reader:
        assert len(reader.entries()) == 1  # the uncommitted delete is not seen, and nothing waits
    writer.execute("ROLLBACK")
    writer.close()


# -- identify and verify -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(models, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("idx") / "i.sqlite")
    add_models([str(models[k]) for k in ("base", "stranger", "other")], db)
    return db


def test_identify_names_the_parent_of_every_kind_of_derived_model(models, indexed):
    for name in ("child", "hidden", "grown"):
        doc = identify(str(models[name]), indexed)
        assert doc["best"] == str(models["base"]), name
        top = doc["candidates"][0]
        assert top["label"] == "related" and top["log10_p"] <= -6
        assert set(doc) >= {"query", "candidates", "best", "cost"}
    assert identify(str(models["grown"]), indexed)["candidates"][0]["relation"] == "ancestor"  # layers inserted


def test_identify_says_none_for_an_unrelated_model(models, indexed, tmp_path):
    lone = _write(tmp_path / "lone", random_state_dict("llama", SHAPE, seed=99))
    doc = identify(str(lone), indexed)
    assert doc["best"] is None
    assert all(c["label"] != "related" for c in doc["candidates"])


def test_the_p_value_is_corrected_for_the_number_of_candidates(models, indexed):
    doc = identify(str(models["child"]), indexed)
    for c in doc["candidates"]:
        if c["log10_p_pair"] is not None and c["log10_p"] is not None and c["log10_p"] < 0:
            assert c["log10_p"] == pytest.approx(c["log10_p_pair"] + np.log10(doc["n_candidates"]), abs=0.01)


def test_the_query_itself_is_left_out_when_indexed(models, indexed):
    doc = identify(str(models["base"]), indexed)
    assert doc["n_candidates"] == 2 and doc["notes"] and doc["best"] is None


def test_identify_in_a_process_pool_agrees_with_one_process(models, tmp_path):
    db = str(tmp_path / "many.sqlite")
    add_models([str(models["base"]), str(models["stranger"])], db)
    with open_store(db) as s:  # many entries: copies of two fingerprints under other names
        fps = [s.load(e) for e in s.entries()]
        for i in range(60):
            fp = Fingerprint.from_bytes(fps[i % 2].to_bytes(), "t")
            fp.meta["ref"], fp.meta["commit"], fp.blob = f"copy-{i}", f"{i:040d}", None
            s.add(fp)
    one = identify(str(models["child"]), db, top=100, workers=1)
    pool = identify(str(models["child"]), db, top=100, workers=2)
    key = lambda d: sorted((c["ref"], c["log10_p"]) for c in d["candidates"])  # noqa: E731
    assert key(one) == key(pool)


def test_verify_exit_status_gates_an_upload(models, indexed, tmp_path):
    runner = CliRunner()
    undeclared = runner.invoke(cli, ["verify", str(models["child"]), "--db", indexed])
    assert undeclared.exit_code == 3 and "undeclared_parent" in undeclared.output
    honest = tmp_path / "honest"
    honest.mkdir()
    for f in ("model.safetensors", "config.json"):
        (honest / f).write_bytes((models["child"] / f).read_bytes())
    (honest / "README.md").write_text(f"---\nbase_model: {models['base'].name}\n---\n")
    assert runner.invoke(cli, ["verify", str(honest), "--db", indexed]).exit_code == 0
    liar = tmp_path / "liar"
    liar.mkdir()
    for f in ("model.safetensors", "config.json"):
        (liar / f).write_bytes((models["child"] / f).read_bytes())
    (liar / "README.md").write_text(f"---\nbase_model: {models['stranger'].name}\n---\n")
    r = runner.invoke(cli, ["verify", str(liar), "--db", indexed, "--format", "json"])
    assert r.exit_code == 4 and json.loads(r.output)["status"] == "unsupported_claim"


def test_index_add_reports_a_bad_model_and_keeps_the_others(models, tmp_path):
    listing = tmp_path / "models.txt"
    listing.write_text(f"# the family\n{models['base']}\n{tmp_path / 'nothing-here'}\n\n{models['stranger']}\n")
    db = str(tmp_path / "f.sqlite")
    r = CliRunner().invoke(cli, ["index", "add", "--from", str(listing), "--db", db])
    assert r.exit_code == 1 and "1 of 3 models not indexed" in r.output
    with open_store(db) as s:
        assert len(s.entries()) == 2


def test_postgresql_holds_the_same_index(models, postgres):
    url = postgres.new_database("parentage_index_test")
    add_models([str(models[k]) for k in ("base", "stranger")], url)
    assert add_models([str(models["base"])], url)[0]["status"] == "indexed already"
    doc = identify(str(models["child"]), url)
    assert doc["best"] == str(models["base"])
    with open_store(url) as s:
        assert s.dialect == "postgresql" and len(s.entries()) == 2
        with pytest.raises(IndexStoreError):
            s._run("SELECT * FROM no_such_table")


def test_indexing_on_a_local_ray_instance_stores_the_fingerprints_the_pool_does(models, tmp_path):
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not imported here: see on_ray
        pytest.skip("ray not installed (pip install 'parentage[ray]')")
    refs = [str(models[k]) for k in ("base", "child", "stranger")]
    pool_db, ray_db = str(tmp_path / "pool.sqlite"), str(tmp_path / "ray.sqlite")
    add_models(refs, pool_db, workers=2)

    def on_ray(*models):  # in a child process: merely importing ray changes which CPU kernels torch uses in
        # this one (the zoo then trains differently by 1e-7, which the zoo's determinism test sees)
        exe = os.path.join(os.path.dirname(sys.executable), "parentage")
        out = subprocess.run([exe, "index", "add", *models, "--db", ray_db, "--ray", "local", "--format", "json"],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    first = on_ray(*refs[:2])
    again = on_ray(*refs)  # resumed: the two indexed models are not read again
    assert sorted(r["status"] for r in first["results"]) == ["added", "added"]
    assert sorted(r["status"] for r in again["results"]) == ["added", "indexed already", "indexed already"]
    with open_store(pool_db) as p, open_store(ray_db) as r:
        assert {(e.ref, e.digest) for e in p.entries()} == {(e.ref, e.digest) for e in r.entries()}


def test_graph_draws_families_with_a_direction_only_where_the_evidence_gives_one(models, tmp_path):
    db = str(tmp_path / "g.sqlite")
    add_models([str(models[k]) for k in ("base", "child", "grown", "stranger")], db)
    html = tmp_path / "graph.html"
    r = CliRunner().invoke(cli, ["graph", "--db", db, "--html", str(html), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    family = sorted([str(models["base"]), str(models["child"]), str(models["grown"])])
    assert sorted(map(sorted, doc["families"])) == sorted([family, [str(models["stranger"])]])
    assert len(doc["edges"]) == 2 and all(e["log10_p"] <= -6 for e in doc["edges"])
    grown = next(e for e in doc["edges"] if str(models["grown"]) in (e["a"], e["b"]))
    assert grown["parent"] is not None and grown["parent"] != str(models["grown"])  # layers were inserted in it
    assert "layers 4 -> 5" in grown["notes"] or "layers 5 -> 4" in grown["notes"]
    page = html.read_text()
    assert page.count("<svg") == 1 and "marker-end" in page and "http" not in page.replace("http://www.w3.org", "")


@needs_chromium
def test_graph_page_opens_in_a_headless_browser_and_is_not_blank(models, tmp_path):
    db = str(tmp_path / "g.sqlite")
    add_models([str(models[k]) for k in ("base", "child", "grown")], db)
    page = tmp_path / "graph.html"
    assert CliRunner().invoke(cli, ["graph", "--db", db, "--html", str(page)]).exit_code == 0
    pixels = screenshot(page, tmp_path / "shot.png", tmp_path / "profile", "1000,900")
    assert pixels.std() > 0.05  # boxes, lines and the edge table, not a blank page
    top = pixels[: len(pixels) // 2]
    assert (top.reshape(-1, 3).max(axis=1) - top.reshape(-1, 3).min(axis=1)).max() > 0.1  # the coloured node boxes


def test_graph_and_identify_refuse_an_empty_index(tmp_path):
    db = str(tmp_path / "empty.sqlite")
    open_store(db, create=True).close()
    for args in (["graph", "--db", db], ["identify", str(tmp_path), "--db", db]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1 and "holds no models" in r.output


def test_a_damaged_entry_and_odd_paths_are_one_line_errors(models, tmp_path):
    db = tmp_path / "d.sqlite"
    add_models([str(models["base"])], str(db))
    with sqlite3.connect(db) as c:
        c.execute("UPDATE blobs SET data = ?", (b"garbage",))
    runner = CliRunner()
    for args in (["index", "show", str(models["base"]), "--db", str(db)],
                 ["identify", str(models["child"]), "--db", str(db)],
                 ["index", "show", "nothing-like-it", "--db", str(db)],
                 ["index", "remove", "nothing-like-it", "--db", str(db)]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 1 and r.output.startswith("parentage: error: ") and "\n" not in r.output.strip(), r.output
        assert str(db) in r.output
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = runner.invoke(cli, ["index", "list", "--db", str(fifo)])
    assert r.exit_code == 1 and "not a regular file" in r.output
    assert runner.invoke(cli, ["index", "add", "--db", str(db)]).exit_code == 2  # nothing to add: a usage error


def test_mutated_fingerprints_are_refused_with_a_clear_error_or_still_compare(models):
    """Byte flips, JSON values of the wrong type and truncations: a FormatError, never another exception."""
    import random

    from parentage.errors import ParentageError

    with Checkpoint.open(models["base"]) as ck:
        blob = take(ck).to_bytes()
    n = int.from_bytes(blob[8:16], "little")
    head = json.loads(blob[16:16 + n])
    rng = random.Random(5)
    values = [None, -1, 10**12, "x", [], {}, 1.5, True]

    def mutate(x, depth=0):
        if isinstance(x, (dict, list)) and x:
            k = rng.choice(list(x)) if isinstance(x, dict) else rng.randrange(len(x))
            if rng.random() < 0.3 or depth > 5:
                x[k] = rng.choice(values)
            else:
                mutate(x[k], depth + 1)

    with Checkpoint.open(models["child"]) as live:
        for i in range(240):
            b = bytearray(blob)
            if i % 3 == 0:
                for _ in range(rng.randint(1, 20)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
            elif i % 3 == 1:
                h = json.loads(json.dumps(head))
                mutate(h)
                raw = json.dumps(h).encode()
                b = bytearray(blob[:8] + len(raw).to_bytes(8, "little") + raw + blob[16 + n:])
            else:
                b = b[: rng.randrange(len(b))]
            try:
                with Fingerprint.from_bytes(bytes(b), "db [x]").open() as a:
                    compare_checkpoints(a, live, detail=False)
            except ParentageError as e:
                assert "\n" not in str(e)


def test_a_merge_names_its_ingredients_and_a_later_relative_is_not_named_as_the_origin(models, tmp_path):
    rng = np.random.default_rng(8)
    base = random_state_dict("llama", SHAPE, seed=10)
    a, b = _noisy(base, rng, 0.3), _noisy(base, rng, 0.3)
    sib_a, sib_b = _write(tmp_path / "sib-a", a), _write(tmp_path / "sib-b", b)
    merged = _write(tmp_path / "merged", {k: ((a[k] + b[k]) / 2).astype(np.float32) for k in a})
    later = time.time() + 100  # the siblings and the merge written after the base, as the file dates say
    for folder in (sib_a, sib_b, merged):
        for f in folder.iterdir():
            os.utime(f, (later, later))
    db = str(tmp_path / "m.sqlite")
    add_models([str(models["base"]), str(sib_a), str(sib_b)], db)
    doc = identify(str(merged), db)
    assert doc["best"] in (str(sib_a), str(sib_b)) and doc["best_relation"] == "ancestor"
    assert "weighted average" in doc["candidates"][0]["basis"]
    # the base was written before its relatives: one is named (dates never veto), but not as what it comes from
    doc = identify(str(models["base"]), db)
    assert doc["best"] in (str(sib_a), str(sib_b)) and doc["best_relation"] == "relative"
    assert doc["best_direction_from"] is None and "written after" in doc["answer"]
