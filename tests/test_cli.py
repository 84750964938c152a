import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from parentage.cli import cli
from parentage.synthetic import Shape, write_model

from .terminal import stderr_on_a_terminal
from .torchzip import hostile_pickle, write_torch_zip

REQUIRED_INSPECT_FIELDS = {"ref", "format", "arch", "n_layers", "hidden_size", "intermediate_size", "n_heads", "n_kv_heads",
                           "n_experts", "vocab_size", "declared", "cost"}


def _run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_inspect_json_has_the_documented_fields(tmp_path):
    write_model(tmp_path, "mixtral", Shape())
    code, out, err = _run("inspect", str(tmp_path), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert REQUIRED_INSPECT_FIELDS <= doc.keys()
    assert doc["arch"] == "mixtral" and doc["n_experts"] == 4 and doc["n_layers"] == 2
    assert doc["cost"]["bytes_read"] < doc["cost"]["bytes_total"]
    assert all(f["sha256"] is None for f in doc["files"])


def test_inspect_dense_model_reports_null_experts(tmp_path):
    write_model(tmp_path, "llama", Shape())
    doc = json.loads(_run("inspect", str(tmp_path), "--format", "json")[1])
    assert doc["n_experts"] is None


def test_inspect_hash_adds_sha256_of_every_file(tmp_path):
    import hashlib

    write_model(tmp_path, "llama", Shape())
    doc = json.loads(_run("inspect", str(tmp_path), "--format", "json", "--hash")[1])
    weights = next(f for f in doc["files"] if f["role"] == "weights")
    assert weights["sha256"] == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()


def test_inspect_human_output_leads_with_the_architecture(tmp_path):
    write_model(tmp_path, "qwen2", Shape())
    code, out, _ = _run("inspect", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert "qwen2" in lines[1] and "2 layers" in lines[2]


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1"), "bad.safetensors"),
    (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00"), "truncated"),
    (lambda p: p.write_bytes(b"hello world, not weights"), "not a weights file"),
])
def test_bad_files_give_one_error_line_and_exit_1(tmp_path, make, fragment):
    path = tmp_path / "bad.safetensors"
    make(path)
    code, out, err = _run("inspect", str(path))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err and "Traceback" not in err


def test_hostile_pickle_through_the_cli_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = write_torch_zip(tmp_path / "pytorch_model.bin", {}, pickle_bytes=hostile_pickle(f"touch {marker}"))
    code, _, err = _run("inspect", str(path))
    assert code == 1 and "os.system" in err and str(path) in err
    assert not marker.exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "parentage.cli", "--debug", "inspect", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "CheckpointNotFoundError" in proc.stderr


def test_usage_error_exits_2():
    code, _, _ = _run("inspect")
    assert code == 2
    code, _, _ = _run("inspect", "x", "--format", "xml")
    assert code == 2


def test_demo_writes_its_checkpoints_once_and_calls_both_pairs_right(tmp_path, monkeypatch):
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    code, out, err = _run("demo", "--quick", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [d["verdict"]["label"] for d in doc["comparisons"]] == ["related", "unrelated"]
    assert all(p.endswith(".html") and os.path.isfile(p) for p in doc["reports"])
    weights = tmp_path / "cache" / "demo" / "v2" / "derived" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    code, out, _ = _run("demo", "--quick")
    assert code == 0 and out.startswith("== derived pair ==\nRELATED")
    assert weights.stat().st_mtime_ns == mtime


def test_console_script_runs_as_a_process(tmp_path):
    write_model(tmp_path, "gpt2", Shape())
    proc = subprocess.run([sys.executable, "-m", "parentage.cli", "inspect", str(tmp_path), "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["arch"] == "gpt2"


def test_every_command_has_help_with_examples():
    for command in ("inspect", "compare", "tokenizer", "demo"):
        code, out, _ = _run(command, "--help")
        assert code == 0 and "Example" in out


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """Two copies of one model (the same seed: related, bit-identical) and an independent one."""
    root = tmp_path_factory.mktemp("trio")
    shape = Shape(n_layers=4, hidden=64, n_heads=4, n_kv_heads=2, ffn=192, vocab=384)
    return [str(write_model(root / name, "llama", shape, seed=seed)) for name, seed in (("a", 1), ("b", 1), ("c", 2))]


def test_compare_of_three_models_gives_every_pair_as_a_matrix(trio):
    code, out, err = _run("compare", *trio, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["models"] == trio and len(doc["pairs"]) == 3
    labels = doc["matrix"]["label"]
    assert labels[0][1] == labels[1][0] == "related" and labels[0][2] == labels[1][2] == "unrelated"
    assert labels[0][0] is None and doc["matrix"]["log10_p"][0][1] <= -6
    code, human, _ = _run("compare", *trio)
    assert code == 0 and "[3]" in human and "R related, U unrelated" in human
    code, csv_text, _ = _run("compare", *trio, "--format", "csv")
    rows = csv_text.strip().splitlines()
    assert rows[0] == "a,b,label,log10_p,parent,summary" and len(rows) == 4
    assert rows[1].startswith(f"{trio[0]},{trio[1]},related,")


def test_fail_on_exits_3_only_when_a_verdict_is_the_named_label(trio):
    a, b, c = trio
    assert _run("compare", a, b, "--fail-on", "unrelated")[0] == 0
    code, _, err = _run("compare", a, b, "--fail-on", "related", "--format", "json")
    assert code == 3 and err.strip().splitlines() == [f"parentage: --fail-on related: {a} ~ {b} is related"]
    assert _run("compare", a, b, c, "--fail-on", "unrelated", "--fail-on", "inconclusive")[0] == 3


def test_output_writes_the_document_to_a_file_and_nothing_on_failure(trio, tmp_path):
    a, b, _ = trio
    out_file = tmp_path / "verdict.json"
    code, out, err = _run("compare", a, b, "--format", "json", "--output", str(out_file))
    assert code == 0 and out == "", err
    assert json.loads(out_file.read_text())["verdict"]["label"] == "related"
    missing = tmp_path / "gone.json"
    code, _, err = _run("compare", a, str(tmp_path / "no-such-model"), "-o", str(missing))
    assert code == 1 and len(err.strip().splitlines()) == 1 and not missing.exists()
    assert list(tmp_path.iterdir()) == [out_file]  # no temporary file left behind
    code, _, err = _run("compare", a, b, "-o", str(tmp_path / "no-folder" / "x.json"))
    assert code == 1 and "no-folder" in err


def test_compare_json_on_a_terminal_shows_stage_progress_and_quiet_turns_it_off(trio):
    a, b, _ = trio
    assert "compare" in stderr_on_a_terminal(["compare", a, b, "--format", "json"])
    assert stderr_on_a_terminal(["compare", a, b, "--format", "json", "--quiet"]) == ""
    assert stderr_on_a_terminal(["--quiet", "compare", a, b, "--format", "json"]) == ""
