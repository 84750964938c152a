"""The typed library API (parentage.compare / inspect / tokenizer_lineage) and what `import parentage` costs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import parentage
from parentage.synthetic import Shape, config_for, random_state_dict, write_model, write_safetensors

SHAPE = Shape(n_layers=4, hidden=64, n_heads=4, n_kv_heads=2, ffn=192, vocab=384)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    a = write_model(root / "a", "llama", SHAPE, seed=1)
    sd = random_state_dict("llama", SHAPE, seed=1)
    rng = np.random.default_rng(0)
    noisy = {k: (v + 0.05 * v.std() * rng.standard_normal(v.shape)).astype(np.float32) for k, v in sd.items()}
    b = root / "b"
    b.mkdir()
    write_safetensors(b / "model.safetensors", noisy)
    (b / "config.json").write_text(json.dumps(config_for("llama", SHAPE)))
    c = write_model(root / "c", "llama", SHAPE, seed=2)
    return a, b, c


def test_compare_returns_a_comparison_whose_json_is_the_cli_document(family):
    a, b, _ = family
    from click.testing import CliRunner

    from parentage.cli import cli

    c = parentage.compare(a, b)
    assert isinstance(c, parentage.Comparison) and c.related and c.verdict.label == "related"
    assert c.verdict.log10_p <= -6 and c.cost.bytes_read > 0 and 0 < c.cost.fraction_read <= 1
    assert all(isinstance(e, parentage.Evidence) for e in c.evidence)
    assert c.evidence_named("hidden_dimension_order").counted
    cli_doc = json.loads(CliRunner().invoke(cli, ["compare", str(a), str(b), "--format", "json"]).stdout)
    ours = json.loads(c.to_json())
    for doc in (ours, cli_doc):
        doc["cost"].pop("seconds")
        for per in doc["cost"]["per_input"]:
            per.pop("seconds", None)
    assert ours == cli_doc


def test_an_unknown_evidence_name_says_which_ran(family):
    a, _, c_ = family
    c = parentage.compare(a, c_)
    assert c.verdict.label == "unrelated" and not c.related
    with pytest.raises(KeyError, match="hidden_dimension_order"):
        c.evidence_named("no_such_test")


def test_inspect_returns_a_summary_with_the_inspect_fields(family):
    a, _, _ = family
    s = parentage.inspect(a)
    assert isinstance(s, parentage.Summary)
    assert (s.arch, s.n_layers, s.hidden_size, s.vocab_size, s.n_experts) == ("llama", 4, 64, 384, None)
    assert json.loads(s.to_json())["n_layers"] == 4


def test_tokenizer_lineage_of_one_tokenizer_with_itself_is_identical(tmp_path):
    from tests.hostile import tokenizer_doc

    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_doc()))
    doc = parentage.tokenizer_lineage(tmp_path / "tokenizer.json", tmp_path / "tokenizer.json")
    assert doc["relation"] == "identical"


def test_a_missing_file_raises_the_library_error_that_is_also_a_builtin(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        parentage.compare(tmp_path / "nope", tmp_path / "nope2")
    assert isinstance(e.value, parentage.ParentageError) and "nope" in str(e.value)


def test_checkpoint_get_on_a_missing_role_or_layer_names_what_exists(family):
    a, _, _ = family
    with parentage.Checkpoint.open(a) as ck:
        assert ck.get("mlp_up", 3).shape == (192, 64)
        assert ck.find("mlp_up", 9) is None
        with pytest.raises(KeyError, match=r"no 'mlp_up' in layer 9; it is held in layers 0-3"):
            ck.get("mlp_up", 9)
        with pytest.raises(KeyError, match=r"no tensor of role 'router'; roles held: .*mlp_up"):
            ck.get("router", 0)
        with pytest.raises(KeyError, match=r"no expert 2 of 'mlp_up' in layer 0; it has no experts \(a dense layer\)"):
            ck.get("mlp_up", 0, expert=2)


def test_import_parentage_and_help_load_neither_numpy_nor_scipy():
    code = ("import sys, parentage; from parentage.cli import cli; "
            "print(sorted(m for m in ('numpy', 'scipy', 'torch', 'matplotlib', 'jinja2', 'gguf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_comparison_loads_neither_scipy_stats_nor_optimize_nor_plotting(family):
    a, b, _ = family
    code = (f"import sys, parentage; parentage.compare({str(a)!r}, {str(b)!r}); "
            "print(sorted(m for m in ('scipy.stats', 'scipy.optimize', 'scipy.linalg', 'torch', 'matplotlib', 'jinja2') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
