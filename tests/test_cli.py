import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from parentage.cli import cli
from parentage.synthetic import Shape, write_model

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
