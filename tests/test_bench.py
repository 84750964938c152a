"""`parentage bench`: the table's structure on the ci zoo, plug-ins, outside scores, resuming, bad manifests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from parentage.bench import auc
from parentage.cli import cli

METHODS = {"parentage", "honestagi_std_profile", "raw_cosine", "phi_match", "awm"}


def test_auc_is_the_chance_a_related_pair_outscores_an_unrelated_one():
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0 and auc([1], [1]) == 0.5
    assert auc([None], [1]) is None


def test_bench_on_the_ci_zoo_reports_every_method_and_kind(ci_zoo, tmp_path, monkeypatch):
    folder, manifest = ci_zoo
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
