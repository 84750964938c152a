"""The sketch tier: small, invariant, taken from a fingerprint's own rows, ranking the index before the full tests;
and identify's answer when dates say nothing or the wrong thing."""

from __future__ import annotations

import os
import sqlite3
import time

import numpy as np
import pytest
from click.testing import CliRunner

from parentage.checkpoint import Checkpoint
from parentage.cli import cli
from parentage.errors import FormatError
from parentage.index import add_models, take
from parentage.index.identify import identify
from parentage.index.sketch import ANCHORS, SKETCH_VERSION, Sketch, gram_correlation, similarity, take_sketch
from parentage.synthetic import random_state_dict, relayered
from tests.test_compare import SHAPE, _noisy, _obfuscate, _write


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("sketch-family")
    rng = np.random.default_rng(4)
    base = random_state_dict("llama", SHAPE, seed=20)
    return {
        "base": _write(root / "base", base),
        "child": _write(root / "child", _noisy(base, rng)),
        "hidden": _write(root / "hidden", _obfuscate(_noisy(base, rng), rng)),
        "grown": _write(root / "grown", relayered(_noisy(base, rng), [0, 1, 1, 2, 3]), n_layers=5),
        "stranger": _write(root / "stranger", random_state_dict("llama", SHAPE, seed=21)),
        "other": _write(root / "other", random_state_dict("llama", SHAPE, seed=22)),
    }


@pytest.fixture(scope="module")
def sketches(family):
    out = {}
    for name, path in family.items():
        with Checkpoint.open(path) as ck:
            out[name] = take_sketch(ck)
    return out


def test_a_fingerprint_gives_the_sketch_of_its_live_checkpoint(family, sketches):
    with Checkpoint.open(family["hidden"]) as ck:
        fp = take(ck)
    with fp.open() as stored:
        again = take_sketch(stored)
    live = sketches["hidden"]  # no extra reads: the rows it holds suffice
    for part in ("anchors", "gram", "vector", "minhash"):
        assert np.array_equal(getattr(again, part), getattr(live, part)), part
    # the basis part folds norm gains into rows a fingerprint keeps as float16: equal to that rounding
    assert np.allclose(again.basis, live.basis, rtol=1e-2, atol=1e-2 * np.abs(live.basis).max())


def test_a_sketch_is_small_and_survives_its_own_round_trip(sketches):
    sk = sketches["base"]
    assert sk.n_bytes <= 256 << 10
    back = Sketch.from_bytes(sk.to_bytes(), "x")
    assert back.to_bytes() == sk.to_bytes() and len(back.anchors) <= ANCHORS


def test_relatives_score_far_above_strangers_whatever_the_reparameterisation(sketches):
    for name in ("child", "hidden", "grown"):
        corr, shared = gram_correlation(sketches["base"], sketches[name])
        assert corr > 0.9 and shared == len(sketches["base"].anchors), name
    for name in ("stranger", "other"):
        assert similarity(sketches["base"], sketches[name]) < 0.3, name


@pytest.mark.parametrize("damage", ["magic", "truncated", "newer", "nan", "header"])
def test_a_damaged_sketch_is_one_clear_error(sketches, damage):
    blob = bytearray(sketches["base"].to_bytes())
    if damage == "magic":
        blob[:8] = b"NOTASKCH"
    elif damage == "truncated":
        blob = blob[: len(blob) // 2]
    elif damage == "newer":
        blob = bytes(blob).replace(b'"version": %d' % SKETCH_VERSION, b'"version": %d' % (SKETCH_VERSION + 1), 1)
    elif damage == "nan":
        blob[-4:] = np.array([np.nan], "<f4").tobytes()
    else:
        blob[14:20] = b"\xff\xfe{{{{"
    with pytest.raises(FormatError) as e:
        Sketch.from_bytes(bytes(blob), "idx [m]")
    assert "idx [m]" in str(e.value) and "\n" not in str(e.value)
    if damage == "newer":
        assert "newer parentage" in str(e.value)


@pytest.fixture(scope="module")
def indexed(family, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("sk-idx") / "i.sqlite")
    add_models([str(family[k]) for k in ("base", "stranger", "other")], db)
    return db


def test_two_stages_answer_as_the_exhaustive_scan_and_say_what_they_read(family, indexed):
    for name in ("child", "hidden", "grown"):
        quick = identify(str(family[name]), indexed, k=1)
        full = identify(str(family[name]), indexed, exhaustive=True)
        assert quick["best"] == full["best"] == str(family["base"]), name
        assert quick["shortlist"]["k"] == 1 and quick["n_candidates"] == 3  # corrected for the whole index
        assert quick["candidates"][0]["sketch"]["rank"] == 1
        assert quick["candidates"][0]["log10_p"] == full["candidates"][0]["log10_p"]
        assert quick["shortlist"]["sketch_bytes"] > 0 and "two-stage" in quick["stage"]
    r = CliRunner().invoke(cli, ["identify", str(family["child"]), "--db", indexed, "--exhaustive"])
    assert r.exit_code == 0 and "exhaustive" in r.output


def test_an_index_made_before_sketches_gets_them_on_first_use(family, tmp_path):
    db = tmp_path / "old.sqlite"
    add_models([str(family["base"]), str(family["stranger"])], str(db))
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM sketches")
    assert identify(str(family["child"]), str(db))["best"] == str(family["base"])
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM sketches").fetchone()[0] == 2


@pytest.mark.parametrize("damage", ["scan", "data", "blob"])
def test_a_damaged_sketch_in_the_index_is_one_line_never_an_empty_shortlist(family, tmp_path, damage):
    db = tmp_path / "bad.sqlite"
    add_models([str(family["base"])], str(db))
    with sqlite3.connect(db) as c:
        if damage == "scan":
            c.execute("UPDATE sketches SET scan = ?", (b"\x00" * 7,))
        elif damage == "data":
            c.execute("UPDATE sketches SET data = substr(data, 1, 100)")
        else:
            c.execute("UPDATE sketches SET scan = ?", (np.full(700, np.nan, "<f4").tobytes(),))
    r = CliRunner().invoke(cli, ["identify", str(family["child"]), "--db", str(db), "--shortlist", "1"])
    assert r.exit_code == 1 and r.output.startswith("parentage: error: ") and "\n" not in r.output.strip(), r.output
    assert str(db) in r.output


def _stamp(folder, t):
    for f in folder.iterdir():
        os.utime(f, (t, t))


def test_equal_or_reversed_dates_never_veto_the_weights(family, tmp_path):
    """A derived model whose files carry its parent's very second (a copy without -p, a fresh download), or an
    earlier one: the parent is still named (issue 25: dates order and label, they never veto)."""
    db = str(tmp_path / "dates.sqlite")
    now = time.time()
    for stamp_child, label in ((now, "equal"), (now - 3600, "reversed")):
        _stamp(family["base"], now)
        _stamp(family["child"], stamp_child)
        add_models([str(family["base"]), str(family["stranger"])], db, replace=True)
        doc = identify(str(family["child"]), db)
        assert doc["best"] == str(family["base"]), label
        assert doc["best_direction_from"] in (None, "weights"), label
        if label == "equal":
            assert "written after" not in doc["answer"]


def test_the_parent_named_with_its_children_indexed_sits_between_them(family, tmp_path):
    """The base and two of its other children indexed, dates all equal: the weights find the parent, because a
    parent's offsets to its children meet at right angles and a sibling's do not."""
    rng = np.random.default_rng(9)
    base = random_state_dict("llama", SHAPE, seed=20)
    sibs = [_write(tmp_path / f"sib{i}", _noisy(base, rng, 0.3)) for i in range(2)]
    now = time.time()
    for folder in [family["base"], family["child"], *sibs]:
        _stamp(folder, now)
    db = str(tmp_path / "between.sqlite")
    add_models([str(family["base"]), *map(str, sibs)], db)
    doc = identify(str(family["child"]), db)
    assert doc["best"] == str(family["base"]) and doc["best_direction_from"] == "weights", doc["answer"]


def test_graph_from_sketch_shortlists_matches_every_pair_and_caches_what_it_compared(family, tmp_path):
    db = str(tmp_path / "g.sqlite")
    add_models([str(family[k]) for k in ("base", "child", "grown", "stranger", "other")], db)
    from parentage.index.graph import family_graph

    quick = family_graph(db, k=2)
    full = family_graph(db, exhaustive=True)
    assert sorted(map(sorted, quick["families"])) == sorted(map(sorted, full["families"]))
    assert quick["n_pairs"] == full["n_pairs"] == 10  # the correction is for every pair either way
    assert quick["n_pairs_compared"] < full["n_pairs_compared"] == 10
    again = family_graph(db, k=2)
    assert again["n_pairs_cached"] == again["n_pairs_compared"] and again["edges"] == quick["edges"]
    with sqlite3.connect(db) as c:  # a damaged cache entry is recomputed, never trusted
        c.execute("UPDATE pairs SET doc = '{\"log10_p\": \"x\"}'")
    assert family_graph(db, k=2)["edges"] == quick["edges"]


def test_verify_tests_a_declared_base_even_when_the_sketch_ranks_it_out(family, indexed, tmp_path):
    """A shortlist of one holds the base; the declared stranger still gets the full tests, so the claim is
    found unsupported rather than left untested."""
    from parentage.index.verify import verify

    liar = tmp_path / "liar"
    liar.mkdir()
    for f in family["child"].iterdir():
        (liar / f.name).write_bytes(f.read_bytes())
    (liar / "README.md").write_text(f"---\nbase_model: {family['stranger'].name}\n---\n")
    import parentage.index.identify as ident

    saved = ident.SHORTLIST_MAX
    ident.SHORTLIST_MAX, floor = 1, ident.SHORTLIST_MIN
    ident.SHORTLIST_MIN = 1
    try:
        doc = verify(str(liar), indexed)
    finally:
        ident.SHORTLIST_MAX, ident.SHORTLIST_MIN = saved, floor
    assert doc["status"] == "unsupported_claim", doc["reason"]
    refs = {c["ref"] for c in doc["identify"]["candidates"]}
    assert str(family["stranger"]) in refs and str(family["base"]) in refs
