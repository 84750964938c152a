"""HTML reports and circumstantial evidence: structure, determinism, escaping, a real browser, the demo."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

from parentage.cli import cli  # noqa: E402
from parentage.pair import compare  # noqa: E402
from parentage.report.html import render_compare  # noqa: E402
from parentage.synthetic import Shape, config_for, random_state_dict, write_safetensors  # noqa: E402
from tests.browser import needs_chromium, screenshot  # noqa: E402

SHAPE = Shape(n_layers=4, hidden=64, n_heads=4, n_kv_heads=2, ffn=192, vocab=384)


def _write(folder, tensors, config_extra=None, files=None):
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", tensors)
    (folder / "config.json").write_text(json.dumps({**config_for("llama", SHAPE), **(config_extra or {})}))
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return folder


def _noisy(sd, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (v + 0.05 * v.std() * rng.standard_normal(v.shape)).astype(np.float32) if v.ndim == 2 else v for k, v in sd.items()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    base = random_state_dict("llama", SHAPE, seed=0)
    hostile_code = ("# Copyright 2024 Example Labs. All rights reserved.\n"
                    "import pathlib\npathlib.Path('EXECUTED').write_text('ran')\n"
                    "class SuspectForCausalLM:\n    pass\n")
    a = _write(root / "a", base)
    b = _write(root / "b", _noisy(base), {"_name_or_path": "<script>alert('x')</script>", "auto_map": {"AutoModel": "modeling_suspect.SuspectForCausalLM"}},
               {"modeling_suspect.py": hostile_code, "README.md": "---\nbase_model: nobody/else\n---\n# card\n"})
    c = _write(root / "c", random_state_dict("llama", SHAPE, seed=1), files={"README.md": "---\nbase_model: a\n---\n"})
    return a, b, c


def test_compare_report_has_every_section_and_no_external_resource(pair):
    a, b, _ = pair
    html = render_compare(compare(str(a), str(b)))
    for needle in ("RELATED".lower(), "Evidence", "Alignment: what changed", "Tokenizers", "HonestAGI", "Circumstantial",
                   "Inputs and reproduction", "ffn_neuron_order", "baseline_raw_cosine", "seed 0"):
        assert needle in html
    assert html.count("<svg") >= 3  # heatmap, per-layer bars, std profiles
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html.lower().replace("&lt;script", "")


def test_metadata_is_escaped_and_shipped_code_is_parsed_never_run(pair, tmp_path, monkeypatch):
    a, b, _ = pair
    monkeypatch.chdir(tmp_path)
    doc = compare(str(a), str(b))
    html = render_compare(doc)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html and "<script>alert" not in html
    code = doc["circumstantial"]["code"]["B"]
    assert code[0]["classes"] == ["SuspectForCausalLM"] and "Copyright 2024 Example Labs" in code[0]["copyright"][0]
    assert not (tmp_path / "EXECUTED").exists() and not (b / "EXECUTED").exists()


def test_declared_and_observed_disagreements_are_spelled_out(pair):
    a, b, c = pair
    related = compare(str(a), str(b))["circumstantial"]["declared_vs_observed"]
    assert any("B declares nobody/else as its base - observed: B shares weight ancestry with A" in x for x in related)
    unrelated = compare(str(a), str(c))
    assert unrelated["verdict"]["label"] == "unrelated"
    assert any("declared: B derives from a - observed: no shared weight ancestry" in x
               for x in unrelated["circumstantial"]["declared_vs_observed"])


def test_reports_are_byte_identical_across_reruns(pair, tmp_path):
    a, b, _ = pair
    paths = [tmp_path / "one.html", tmp_path / "two.html"]
    for p in paths:
        r = CliRunner().invoke(cli, ["compare", str(a), str(b), "--html", str(p)])
        assert r.exit_code == 0, r.stderr
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def _grown(folder):
    """A base and a model grown from it by a zero-output layer copy and a frozen first layer: a report with a
    tie, an inserted layer and every component panel."""
    from parentage.synthetic import relayered, zero_outputs

    base = random_state_dict("llama", SHAPE, seed=0)
    grown = zero_outputs(_noisy(relayered(base, [0, 1, 2, 2, 3])), [3])
    grown |= {k: v for k, v in base.items() if k.startswith("model.layers.0.")}
    a = _write(folder / "base", base)
    b = folder / "grown"
    b.mkdir()
    write_safetensors(b / "model.safetensors", grown)
    (b / "config.json").write_text(json.dumps({**config_for("llama", SHAPE), "num_hidden_layers": 5}))
    return a, b


def test_every_statement_of_the_alignment_is_in_the_json_and_the_report(tmp_path):
    """The report is drawn from the JSON: each note and component run appears verbatim (escaped) in the HTML,
    and the heatmap draws the alignment and the tie the text states."""
    from markupsafe import escape

    a, b = _grown(tmp_path)
    doc = compare(str(a), str(b))
    al = doc["alignment"]
    page = render_compare(doc)
    assert [None, 3] in al["layers"] and al["ties"] and al["ties"][0]["original"] == 2
    for line in al["notes"] + al["components"]["runs"]:
        assert str(escape(line)) in page, line
    assert "Findings per component" in page and "tie: a layer and its copy" in page
    assert "a copy of layer 2" in page  # the components table says what the inserted layer is


@needs_chromium
def test_report_opens_in_a_headless_browser_and_is_not_blank(tmp_path):
    a, b = _grown(tmp_path)
    report = tmp_path / "report.html"
    CliRunner().invoke(cli, ["compare", str(a), str(b), "--html", str(report)])
    assert "Findings per component" in report.read_text()
    pixels = screenshot(report, tmp_path / "shot.png", tmp_path / "profile")
    assert pixels.std() > 0.05  # text, tables and plots, not a blank page
    assert (pixels.reshape(-1, 3).max(axis=1) - pixels.reshape(-1, 3).min(axis=1)).max() > 0.3  # colour: verdict box, plots
    # the new panels sit below the first screen: the lower half holds text and plots too, not a blank page
    assert pixels[len(pixels) // 2:].std() > 0.05


def test_tokenizer_report_renders(tmp_path):
    pytest.importorskip("tokenizers")
    from parentage.zoo import text

    for name, corpus in (("p", text.prose()[:200_000]), ("c", text.code()[:200_000])):
        text.train_tokenizer(corpus, 800).save(str(tmp_path / f"{name}.json"))
    out = tmp_path / "tok.html"
    r = CliRunner().invoke(cli, ["tokenizer", str(tmp_path / "p.json"), str(tmp_path / "c.json"), "--html", str(out)])
    assert r.exit_code == 0, r.stderr
    html = out.read_text()
    assert "unrelated" in html and "Efficiency" in html and "Health" in html and html.count("<svg") >= 1


def test_demo_compares_a_derived_and_a_distilled_model_and_writes_both_reports(zoo, tmp_path):
    folder, _ = zoo
    r = CliRunner().invoke(cli, ["demo", "--zoo", str(folder), "--out", str(tmp_path), "--format", "json"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [d["verdict"]["label"] for d in doc["comparisons"]] == ["related", "unrelated"]
    for p in doc["reports"]:
        assert p.startswith(str(tmp_path)) and "<svg" in open(p).read()
    human = CliRunner().invoke(cli, ["demo", "--zoo", str(folder), "--out", str(tmp_path)]).stdout
    assert human.startswith("== derived pair") and human.rstrip().splitlines()[-1].startswith("report: ")
