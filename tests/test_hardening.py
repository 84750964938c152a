"""Every hostile or broken input gets one clear line: one test per class of attack, each building its own file,
and the seeded fuzz harness over every format (a few hundred cases per format here, thousands when slow)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from parentage.checkpoint import Checkpoint
from parentage.cli import cli
from parentage.errors import FormatError, HubReferenceError, LimitError
from parentage.readers import open_file
from parentage.synthetic import Shape, config_for, random_state_dict, write_model, write_safetensors

from .hostile import SMALL, _dag_pickle, gguf_bytes, good_gguf_parts, good_model, tokenizer_doc, write_torch_zip_raw
from .torchzip import tensor_pickle

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parentage: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# -- 1. reads outside the model's place -------------------------------------------------------------------------


def _hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo = cache / "models--org--name"
    good_model(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    secret = good_model(tmp_path / "secret")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return repo, secret


@pytest.mark.parametrize("refs_main", ["../../../secret", "../../..", "ABSOLUTE"])
def test_a_hub_refs_file_pointing_out_of_the_cache_is_refused(tmp_path, monkeypatch, refs_main):
    repo, secret = _hub(tmp_path, monkeypatch)
    (repo / "refs" / "main").write_text(str(secret) if refs_main == "ABSOLUTE" else refs_main)
    with pytest.raises(HubReferenceError) as info:
        Checkpoint.open("org/name")
    assert "outside" in str(info.value) or "not in the Hugging Face cache" in str(info.value)


@pytest.mark.parametrize("revision", ["../../../secret", "../x", "/etc", "main/../..", "a\nb", "x" * 300])
def test_a_revision_that_is_a_path_is_refused_before_the_cache_is_touched(tmp_path, monkeypatch, revision):
    repo, _ = _hub(tmp_path, monkeypatch)
    (repo / "refs" / "main").write_text(COMMIT)
    code, out, err = _run("inspect", f"org/name@{revision}", "--format", "json")
    assert code == 1 and out == ""
    _one_error_line(err, "revision")


def test_a_snapshot_file_linking_out_of_the_cache_is_never_read(tmp_path, monkeypatch):
    repo, secret = _hub(tmp_path, monkeypatch)
    (repo / "refs" / "main").write_text(COMMIT)
    weights = repo / "snapshots" / COMMIT / "model.safetensors"
    weights.unlink()
    weights.symlink_to(secret / "model.safetensors")
    with pytest.raises(HubReferenceError, match="links outside"):
        Checkpoint.open("org/name")


def test_a_good_hub_snapshot_still_resolves_by_branch_and_by_commit(tmp_path, monkeypatch):
    repo, _ = _hub(tmp_path, monkeypatch)
    (repo / "refs" / "main").write_text(COMMIT)
    for ref in ("org/name", "org/name@main", f"org/name@{COMMIT}", "hf://org/name"):
        with Checkpoint.open(ref) as ck:
            assert ck.resolved.hub["commit"] == COMMIT and ck.summary.n_layers == 2


# -- 2. writing through what is at the output path -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "fifo", "device", "folder", "dangling"])
def test_a_report_never_replaces_a_link_fifo_device_or_folder(tmp_path, kind):
    good = good_model(tmp_path / "good")
    target = tmp_path / "report.html"
    if kind == "symlink":
        (tmp_path / "precious").write_text("keep me")
        target.symlink_to(tmp_path / "precious")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("creating a device node needs root")
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to(tmp_path / "nowhere")
    before = os.lstat(target)
    code, out, err = _run("tokenizer", str(good), "--html", str(target))
    assert code == 1 and out == ""
    _one_error_line(err, str(target), "regular file")
    after = os.lstat(target)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.html.")]
    if kind == "symlink":
        assert (tmp_path / "precious").read_text() == "keep me"


def test_a_report_replaces_a_regular_file_with_the_users_umask(tmp_path):
    good = good_model(tmp_path / "good")
    target = tmp_path / "report.html"
    target.write_text("old")
    old = os.umask(0o022)
    try:
        code, _, err = _run("tokenizer", str(good), "--html", str(target))
    finally:
        os.umask(old)
    assert code == 0, err
    assert target.read_text().startswith("<!DOCTYPE html>") and stat.S_IMODE(target.stat().st_mode) == 0o644


# -- 3. unbounded work from small inputs --------------------------------------------------------------------------


def test_a_pickle_reusing_one_dict_at_every_level_is_refused_quickly(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    write_torch_zip_raw(path, _dag_pickle(30), {})  # 2^30 paths from a few hundred bytes
    assert path.stat().st_size < 2000
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="entries"):
        open_file(path)
    assert time.perf_counter() - t0 < 5


def test_a_compressed_storage_inflates_only_as_far_as_the_tensor_needs(tmp_path):
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "pytorch_model.bin"
    write_torch_zip_raw(path, tensor_pickle([("w", "FloatStorage", "0", 12, (3, 4), (4, 1), 0)]), {"0": value.tobytes()},
                        trick="bomb")  # the member inflates to 200 MB of zeros after the 48 bytes the tensor needs
    assert path.stat().st_size < 2 << 20
    r = open_file(path)
    np.testing.assert_array_equal(r.read_rows("w", 0, 3), value)
    r.close()


def test_a_layer_index_beyond_any_real_model_is_one_clear_line(tmp_path):
    sd = random_state_dict("llama", Shape())
    sd["model.layers.999999999.input_layernorm.weight"] = sd.pop("model.layers.1.input_layernorm.weight")
    write_safetensors(tmp_path / "model.safetensors", sd)
    (tmp_path / "config.json").write_text(json.dumps(config_for("llama")))
    t0 = time.perf_counter()
    code, _, err = _run("inspect", str(tmp_path))
    assert code == 1 and time.perf_counter() - t0 < 5
    _one_error_line(err, "999999999")


def test_gguf_headers_claiming_millions_of_keys_or_tensors_are_refused_at_once(tmp_path):
    kv, tensors = good_gguf_parts()
    for kw, word in (({"n_kv": 2**24}, "metadata keys"), ({"n_tensors": 2**24}, "tensors")):
        path = tmp_path / "m.gguf"
        path.write_bytes(gguf_bytes(kv, tensors, **kw))
        with pytest.raises(LimitError, match=word):
            open_file(path)
    many = [(f"k{i}", 4, 1) for i in range(70_000)]  # more keys than any real file, each well formed
    path.write_bytes(gguf_bytes(kv + many, tensors))
    with pytest.raises(LimitError):
        open_file(path)


def test_a_30000_byte_token_does_not_make_the_health_check_quadratic(tmp_path):
    doc = tokenizer_doc()
    doc["model"]["vocab"]["e" * 30_000] = len(doc["model"]["vocab"]) + 1
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    t0 = time.perf_counter()
    code, out, err = _run("tokenizer", str(tmp_path / "tokenizer.json"), "--format", "json")
    assert code == 0, err
    assert time.perf_counter() - t0 < 10
    assert json.loads(out)["health"][0]["findings"]["unreachable_tokens"]["count"] >= 1


@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "folder"])
def test_text_files_that_are_not_regular_files_are_refused(tmp_path, what):
    good = good_model(tmp_path / "good")
    target = {"fifo": tmp_path / "fifo", "/dev/zero": "/dev/zero", "folder": tmp_path}[what]
    if what == "fifo":
        os.mkfifo(target)
    code, out, err = _run("tokenizer", str(good), "--text", str(target), "--format", "json")
    assert code == 1 and out == ""
    _one_error_line(err, "not a regular file")


def test_a_large_text_file_is_measured_on_its_first_megabytes(tmp_path, monkeypatch):
    import parentage.tokenizers.efficiency as eff

    monkeypatch.setattr(eff, "TEXT_MAX_BYTES", 10_000)
    big = tmp_path / "big.txt"
    big.write_text("é" * 20_000)  # two bytes a character: the cut falls inside one
    good = good_model(tmp_path / "good")
    code, out, err = _run("tokenizer", str(good), "--text", str(big), "--format", "json")
    assert code == 0, err
    row = next(r for r in json.loads(out)["efficiency"][0]["samples"] if r["sample"] == "big.txt")
    assert row["truncated_to_bytes"] == 10_000 and row["bytes"] <= 10_000


def test_a_huge_model_card_is_read_only_at_its_top(tmp_path, monkeypatch):
    import parentage.declared as declared

    m = good_model(tmp_path / "m")
    (m / "README.md").write_text("---\nbase_model: org/parent\n---\n" + "x" * 5_000_000)
    reads = []
    real = declared.read_prefix
    monkeypatch.setattr(declared, "read_prefix", lambda p, n: reads.append(n) or real(p, n))
    code, out, err = _run("inspect", str(m), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["declared"]["model_card"]["base_model"] == "org/parent" and max(reads) <= 200_000


@pytest.mark.parametrize("text, word", [("[" * 1000 + "]" * 1000, "nests deeper"), ('{"a": ' + "9" * 4301 + "}", "not valid JSON"),
                                        ('{"a": ' + "[" * 80 + "]" * 80 + "}", "nests deeper")])
def test_json_nested_too_deep_or_with_a_4301_digit_integer_is_one_clear_line(tmp_path, text, word):
    m = good_model(tmp_path / "m")
    (m / "config.json").write_text(text)
    code, _, err = _run("inspect", str(m))
    assert code == 1
    _one_error_line(err, "config.json", word)


# -- 4. values of the wrong type or range --------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("num_attention_heads", "Infinity"), ("num_attention_heads", "NaN"),
                                          ("num_hidden_layers", "[2]"), ("num_key_value_heads", "3"),
                                          ("num_attention_heads", "0"), ("hidden_size", "-64"), ("head_dim", "1e400"),
                                          ("model_type", '["llama"]'), ("num_nextn_predict_layers", '"x"'),
                                          ("vocab_size", "1e300")])
def test_config_values_of_the_wrong_type_or_range_are_ignored_with_a_warning(tmp_path, field, value):
    m = good_model(tmp_path / "m")
    text = json.dumps(config_for("llama", SMALL))[:-1] + f', "{field}": {value}}}'
    (m / "config.json").write_text(text)
    code, out, err = _run("inspect", str(m), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n_layers"] == SMALL.n_layers and doc["hidden_size"] == SMALL.hidden
    if field != "model_type":
        assert any(field in w for w in doc["warnings"])


@pytest.mark.parametrize("name", ["m-00001-of-00000.gguf", "m-00002-of-00001.gguf", "m-00000-of-00002.gguf"])
def test_a_gguf_split_name_numbering_no_real_part_is_refused(tmp_path, name):
    kv, tensors = good_gguf_parts()
    (tmp_path / name).write_bytes(gguf_bytes(kv, tensors))
    code, _, err = _run("inspect", str(tmp_path / name))
    assert code == 1
    _one_error_line(err, "part")


def test_a_list_as_dtype_or_shard_name_is_one_clear_line(tmp_path):
    m = tmp_path / "m"
    write_model(m)
    data = (m / "model.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["dtype"] = ["F32"]
    text = json.dumps(header).encode()
    (m / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    code, _, err = _run("inspect", str(m))
    _one_error_line(err, "dtype")
    write_model(m)
    (m / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {key: ["model.safetensors"]}}))
    code, _, err = _run("inspect", str(m))
    _one_error_line(err, "weight_map")


@pytest.mark.parametrize("token_id", [2**63, -1, "1", 10**9])
def test_token_ids_out_of_range_are_refused(tmp_path, token_id):
    doc = tokenizer_doc()
    doc["model"]["vocab"]["zz"] = token_id
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    code, _, err = _run("tokenizer", str(tmp_path / "tokenizer.json"))
    _one_error_line(err, "non-negative integer ids")


@pytest.mark.parametrize("line", [f"YQ== {2**63}", "YQ== -1", f"YQ== {2**32}", "YQ== 1e5", "YQ== " + "9" * 5000])
def test_tiktoken_ranks_outside_the_vocabulary_range_are_refused(tmp_path, line):
    (tmp_path / "r.tiktoken").write_text("YQ== 0\nYg== 1\n" + line + "\n")
    code, _, err = _run("tokenizer", str(tmp_path / "r.tiktoken"))
    _one_error_line(err, "line 3")


def test_lone_surrogates_in_token_text_and_paths_give_valid_output(tmp_path):
    doc = tokenizer_doc()
    doc["model"]["vocab"]["\ud800x"] = len(doc["model"]["vocab"]) + 1
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))  # ASCII escapes: "\ud800" survives in the JSON
    code, out, err = _run("tokenizer", str(tmp_path / "tokenizer.json"), "--format", "json")
    assert code in (0, 1)
    if code == 0:
        json.loads(out)
    else:
        _one_error_line(err)
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"parentage.cli", b"inspect", os.fsencode(tmp_path) + b"/\xff\xfe"],
                          capture_output=True)
    assert proc.returncode == 1
    _one_error_line(proc.stderr.decode("utf-8"), "no such file")


# -- 5. library exceptions that escape ---------------------------------------------------------------------------


def _torch_model(path, trick):
    sd = {"model.embed_tokens.weight": np.ones((8, 4), np.float32)}
    entries = [(k, "FloatStorage", str(i), v.size, v.shape, (v.shape[1], 1), 0) for i, (k, v) in enumerate(sd.items())]
    write_torch_zip_raw(path, tensor_pickle(entries), {str(i): v.tobytes() for i, v in enumerate(sd.values())}, trick=trick)


@pytest.mark.parametrize("trick, word", [("encrypted", "encrypted"), ("crc", "data.pkl"), ("lzma", None), ("bzip2", None)])
def test_zip_members_encrypted_corrupt_or_compressed_get_one_line_or_read_right(tmp_path, trick, word):
    path = tmp_path / "pytorch_model.bin"
    _torch_model(path, trick)
    code, out, err = _run("inspect", str(path), "--format", "json")
    if word is None:  # compressed storages are a legal, if rare, zip: they read correctly
        assert code == 0, err
    else:
        _one_error_line(err, str(path), word)


def test_a_tokenizer_the_tokenizers_library_refuses_is_one_clear_line(tmp_path):
    doc = tokenizer_doc()
    doc["decoder"] = {"type": "ByteLevel"}  # parentage's reader takes it; the library wants every field
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    code, _, err = _run("tokenizer", str(tmp_path / "tokenizer.json"))
    _one_error_line(err, "tokenizers library")


def test_a_pickled_name_holding_a_newline_stays_on_one_line(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    write_torch_zip_raw(path, b"\x80\x02ctorch\nFloatStorage\nos\n.", {})
    code, _, err = _run("inspect", str(path))
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_successful_runs_print_nothing_on_stderr_even_when_numpy_would_warn(tmp_path):
    sd = random_state_dict("llama", Shape())
    sd["model.layers.0.input_layernorm.weight"] = np.zeros(64, np.float32)  # zero variance: correlations divide by 0
    sd["model.layers.1.self_attn.v_proj.weight"][:] = 0.0
    (tmp_path / "a").mkdir()
    write_safetensors(tmp_path / "a" / "model.safetensors", sd)
    (tmp_path / "a" / "config.json").write_text(json.dumps(config_for("llama")))
    good = write_model(tmp_path / "b")
    proc = subprocess.run([sys.executable, "-m", "parentage.cli", "compare", str(tmp_path / "a"), str(good), "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    json.loads(proc.stdout)


# -- 6. silently wrong ----------------------------------------------------------------------------------------------


def test_nan_and_infinity_in_a_config_come_out_as_null_in_strict_json(tmp_path):
    m = good_model(tmp_path / "m")
    text = json.dumps(config_for("llama", SMALL))[:-1] + ', "rope_theta": NaN, "max_position_embeddings": Infinity}'
    (m / "config.json").write_text(text)
    code, out, err = _run("compare", str(m), str(m), "--format", "json")
    assert code == 0, err

    def reject(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    json.loads(out, parse_constant=reject)


def test_a_gguf_whose_tensor_count_is_one_short_is_refused(tmp_path):
    kv, tensors = good_gguf_parts()
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes(kv, tensors, n_tensors=len(tensors) - 1))
    with pytest.raises(FormatError, match="belong to no tensor|overlaps|past the end|truncated"):
        open_file(path)
    path.write_bytes(gguf_bytes(kv, tensors))
    assert len(open_file(path).names()) == len(tensors)


def test_a_torch_storage_flagged_encrypted_is_never_decoded_as_weights(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    _torch_model(path, "encrypted")
    with pytest.raises(FormatError, match="encrypted"):
        open_file(path)


@pytest.mark.parametrize("name", ["model.layers.1.self_attn.k_proj.weight", "model.layers.0.input_layernorm.weight"])
def test_inf_or_nan_in_key_rows_or_a_norm_gain_is_refused_at_the_read(tmp_path, name):
    sd = random_state_dict("llama", Shape())
    sd[name].reshape(-1)[3] = np.inf if "k_proj" in name else np.nan
    (tmp_path / "a").mkdir()
    write_safetensors(tmp_path / "a" / "model.safetensors", sd)
    (tmp_path / "a" / "config.json").write_text(json.dumps(config_for("llama")))
    code, out, err = _run("compare", str(tmp_path / "a"), str(tmp_path / "a"), "--format", "json", "--budget", "1GB")
    assert code == 1 and out == ""
    _one_error_line(err, "NaN or Inf", name)


# -- 7. valid inputs that crashed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ungated", ["gpt2", "gpt_neox", "bert"])
def test_a_gated_ffn_model_compares_with_an_ungated_one(tmp_path, ungated):
    a = write_model(tmp_path / "a", "llama", Shape())
    b = write_model(tmp_path / "b", ungated, Shape())
    code, out, err = _run("compare", str(a), str(b), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    agreement = next(e for e in doc["evidence"] if e["name"] == "ffn_neuron_agreement")
    assert agreement["log10_p"] is None and "gated" in agreement["summary"]


@pytest.mark.parametrize("shape", [(256, 0), (0, 64)])
def test_a_zero_width_embedding_is_left_out_with_a_warning_not_a_crash(tmp_path, shape):
    sd = random_state_dict("llama", Shape(), 0)
    sd["model.embed_tokens.weight"] = np.zeros(shape, np.float32)
    (tmp_path / "z").mkdir()
    write_safetensors(tmp_path / "z" / "model.safetensors", sd)
    (tmp_path / "z" / "config.json").write_text(json.dumps(config_for("llama", Shape())))
    ok = write_model(tmp_path / "ok", "llama", Shape(), seed=1)
    for a, b in ((ok, tmp_path / "z"), (tmp_path / "z", ok)):
        code, out, err = _run("compare", str(a), str(b), "--format", "json", "-q")
        assert code == 0 and not err, err
        assert json.loads(out)["verdict"]["label"] != "related"
    with Checkpoint.open(tmp_path / "z") as ck:
        assert ck.find("embed") is None and any("zero-size dimension" in w for w in ck.warnings)


def test_a_parentage_cache_listing_nested_thousands_deep_is_ignored_not_a_crash(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "remote").mkdir(parents=True)
    deep = "[" * 5000 + "1" + "]" * 5000
    (cache / "remote" / "org--name.json").write_text(
        '{"refs": {"main": "%s"}, "commits": {"%s": {"files": %s}}}' % (COMMIT, COMMIT, deep))
    monkeypatch.setenv("PARENTAGE_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    code, _, err = _run("inspect", "org/name")
    assert code == 1
    _one_error_line(err, "org/name", "never resolved online")


def test_debug_works_after_the_subcommand_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "parentage.cli", "inspect", "--debug", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


# -- the fuzz harness ---------------------------------------------------------------------------------------------


def _fuzz(per_format: int, seed: int) -> None:
    from .fuzz_run import run

    results = run(seed, per_format)
    failing = [r for r in results if r.get("problems")]
    assert len(results) >= per_format * 10
    assert not failing, "\n".join(json.dumps(r)[:600] for r in failing[:10])


def test_fuzz_harness_finds_no_broken_promise():
    _fuzz(per_format=int(os.environ.get("PARENTAGE_FUZZ_CASES", "200")), seed=int(os.environ.get("PARENTAGE_FUZZ_SEED", "7")))


@pytest.mark.slow
def test_fuzz_harness_finds_no_broken_promise_in_thousands_of_cases():
    _fuzz(per_format=1000, seed=11)
