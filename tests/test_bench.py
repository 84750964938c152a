"""`parentage bench`: the table's structure on the test zoo, plug-ins, outside scores, resuming, bad manifests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from parentage.bench import auc
from parentage.cli import cli

METHODS = {"parentage", "honestagi_std_profile", "raw_cosine", "phi_match", "awm", "awm_shipped_null"}


def test_auc_is_the_chance_a_related_pair_outscores_an_unrelated_one():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0 and auc([1], [1]) == 0.5
    assert auc([None], [1]) is None


def test_bench_on_the_zoo_reports_every_method_and_kind(zoo, tmp_path, monkeypatch):
    folder, manifest = zoo
    plugin = tmp_path / "myscore.py"
    plugin.write_text("def score(a, b):\n    return float(a.summary.hidden_size == b.summary.hidden_size)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pairs = json.loads((folder / "manifest.json").read_text())["pairs"]
    scores = tmp_path / "theirs.csv"
    scores.write_text("a,b,score,decision\n" + "".join(f"{p['a']},{p['b']},0.5,0\n" for p in pairs))
    args = ["bench", str(folder / "manifest.json"), "--cache", str(tmp_path / "cache"), "--format", "json",
            "--scores", str(scores), "--methods", ",".join(sorted(METHODS) + ["parentage:ffn_neuron_order", "myscore:score"])]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert set(doc) >= {"manifest", "methods", "pairs"} and len(doc["pairs"]) == len(pairs)
    names = {m["name"] for m in doc["methods"]}
    assert names == METHODS | {"parentage:ffn_neuron_order", "myscore:score", "scores:theirs.csv"}
    kinds = {p["kind"] for p in pairs}
    for m in doc["methods"]:
        assert set(m["overall"]) == {"power", "false_positive_rate", "auc", "median_seconds", "median_bytes_read"}
        assert {k["kind"] for k in m["per_kind"]} == kinds
        for k in m["per_kind"]:
            assert set(k) == {"kind", "n_related", "detected", "n_unrelated", "false_positives", "auc"}
            assert 0 <= k["detected"] <= k["n_related"] and 0 <= k["false_positives"] <= k["n_unrelated"]
        assert m["baseline"] == (not m["name"].startswith("parentage"))
    assert len(list((tmp_path / "cache").glob("*.json"))) == len(pairs)
    again = CliRunner().invoke(cli, args)  # resumed from the cache: the same table
    assert json.loads(again.output)["methods"] == doc["methods"]
    table = CliRunner().invoke(cli, args[:-4] + ["--format", "markdown"])
    assert table.exit_code == 0 and "| method | baseline |" in table.output


@pytest.mark.parametrize("content, words", [
    ("[]", "JSON object with 'models' and 'pairs'"),
    ('{"models": [{"name": "a", "path": "a"}], "pairs": [{"a": "a", "b": "zz", "truth": "related"}]}', "pair 0"),
    ('{"models": [], "pairs": []}', "lists no pairs"),
])
def test_a_bad_manifest_is_one_line_and_exit_1(tmp_path, content, words):
    m = tmp_path / "manifest.json"
    m.write_text(content)
    r = CliRunner().invoke(cli, ["bench", str(m)])
    assert r.exit_code == 1 and words in r.output and str(m) in r.output and "\n" not in r.output.strip()


def test_an_unknown_method_is_named(tmp_path):
    m = tmp_path / "manifest.json"
    m.write_text('{"models": [{"name": "a", "path": "a"}], "pairs": [{"a": "a", "b": "a", "truth": "related"}]}')
    r = CliRunner().invoke(cli, ["bench", str(m), "--methods", "nonsense"])
    assert r.exit_code == 1 and "no such method" in r.output


def test_power_curves_follow_the_ladder_and_the_page_draws_them(tmp_path):
    from parentage.bench import curves
    from parentage.bench.methods import all_methods
    from parentage.report.bench import bench_html

    methods = {k: v for k, v in all_methods().items() if k in ("parentage", "raw_cosine")}
    entries = {"base": {}, "other": {}, "r1": {"ladder": True, "compute": 0.1, "junk": 0.0},
               "r3": {"ladder": True, "compute": 3.0, "junk": 0.5}}
    row = lambda b, truth, s, d: {"a": "base", "b": b, "truth": truth, "kind": "continued",  # noqa: E731
                                  "scores": {"parentage": s, "raw_cosine": s / 100}, "decisions": {"parentage": d},
                                  "seconds": {"parentage": 0.1, "raw_cosine": 0.1}, "bytes_read": {}}
    rows = [row("r1", "related", 80.0, True), row("r3", "related", 4.0, False), row("other", "unrelated", 0.3, False)]
    out = curves(rows, methods, entries)
    ours = next(c for c in out if c["name"] == "parentage")
    assert [(p["compute"], p["junk"], p["detected"]) for p in ours["points"]] == [(0.1, False, 1), (3.0, True, 0)]
    from parentage.bench import summarise

    doc = {"manifest": "m.json", "methods": summarise(rows, methods), "curves": out, "pairs": rows}
    page = bench_html(doc)
    assert page.count("<svg") == 2 and "Power against continued-training compute" in page
