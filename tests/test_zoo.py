"""The zoo: ground-truth model families. The tiny zoo is built once per test session (conftest.zoo)."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from parentage.checkpoint import Checkpoint  # noqa: E402
from parentage.errors import FolderNotEmptyError  # noqa: E402
from parentage.zoo.build import SIZES, build_zoo, recipes  # noqa: E402
from parentage.zoo.model import ModelConfig, forward  # noqa: E402

ALL_KINDS = {"base", "finetune", "merge", "continued", "insert_layers", "remove_layers", "widen_ffn", "replace_tokenizer",
             "upcycle", "frozen", "obfuscate", "export_bf16", "export_gguf", "export_quant", "combined", "distill",
             "magnitude_prune", "lora_merge", "prune_vocab", "width_prune", "depth_prune", "permute_experts"}
EXPORT_FORMATS = {"gptq", "awq", "nf4", "mlx", "ct-int4", "fp8", "onnx", "gptq-edit"}


def _params(folder, manifest, name):
    entry = manifest["models"][name]
    return ModelConfig(**entry["model_config"]), load_file(str(folder / entry["path"] / "model.safetensors"))


def test_the_zoo_covers_every_derivation_kind_and_lists_every_pair(zoo):
    folder, m = zoo
    assert m["complete"] and {e["recipe"] for e in m["models"].values()} == ALL_KINDS
    assert {e["format"] for e in m["models"].values() if e["recipe"] == "export_quant"} == EXPORT_FORMATS
    exports = [n for n, e in m["models"].items() if e["recipe"].startswith("export")]
    assert all(m["models"][n]["export"]["of"] == m["models"][n]["parents"][0] for n in exports)
    assert [n for n in exports if m["models"][n]["export"]["altered"]] == ["p0-gptq-edit"]
    assert {(p["a"], p["b"]) for p in m["pairs"] if p["kind"] == "export vs its source"} == \
        {(m["models"][n]["parents"][0], n) for n in exports}
    names = set(m["models"])
    assert {p["a"] for p in m["pairs"]} | {p["b"] for p in m["pairs"]} == names
    for p in m["pairs"]:
        same_root = m["models"][p["a"]]["root"] == m["models"][p["b"]]["root"]
        assert p["truth"] == ("related" if same_root else "unrelated"), p
    distill = [p for p in m["pairs"] if p["b"] == "p0-distill" or p["a"] == "p0-distill"]
    assert any(p["a"] == "base-p0" and p["truth"] == "unrelated" for p in distill)
    bases = sum(e["recipe"] == "base" for e in m["models"].values())
    assert bases >= 3
    assert sum(p["kind"].startswith("independent bases") for p in m["pairs"]) == bases * (bases - 1) // 2


def test_every_zoo_model_opens_with_our_readers_and_matches_its_config(zoo):
    folder, m = zoo
    for name, entry in m["models"].items():
        cfg = entry["model_config"]
        with Checkpoint.open(folder / entry["path"]) as ck:
            s = ck.summary
            assert (s.n_layers, s.hidden_size, s.vocab_size) == (cfg["n_layers"], cfg["hidden"], cfg["vocab"]), name
            assert s.n_experts == (cfg["n_experts"] or None), name
            assert ck.unmapped == [], name
            assert s.family == entry["arch"], name
            assert (ck.tokenizer_files() != []) == (not entry["format"].startswith("gguf")), name


def test_full_size_has_at_least_eight_independent_bases():
    assert sum(r.kind == "base" for r in recipes(SIZES["full"])) >= 8


def test_frozen_layers_are_bit_identical_to_the_parent(zoo):
    folder, m = zoo
    entry = m["models"]["p0-frozen"]
    _, child = _params(folder, m, "p0-frozen")
    _, parent = _params(folder, m, "base-p0")
    assert entry["frozen_tensors"]
    for name in entry["frozen_tensors"]:
        assert torch.equal(child[name], parent[name]), name
    assert not torch.equal(child["model.layers.3.mlp.up_proj.weight"], parent["model.layers.3.mlp.up_proj.weight"])


def test_obfuscation_leaves_logits_unchanged_while_every_matrix_changes(zoo):
    folder, m = zoo
    cfg, base = _params(folder, m, "base-p0")
    _, obf = _params(folder, m, "p0-obf")
    tokens = torch.randint(0, cfg.vocab, (2, 32), generator=torch.Generator().manual_seed(0))
    a, b = forward(cfg, base, tokens), forward(cfg, obf, tokens)
    assert float((a - b).abs().max()) < 1e-3 * float(a.abs().max())
    for name, w in base.items():
        if w.ndim == 2:
            assert not torch.allclose(w, obf[name], atol=1e-3), name
    assert m["models"]["p0-obf"]["function_check"]["max_abs_logit_diff"] < 1e-3


def test_continued_training_moves_weights_at_least_as_far_as_pretraining_did(zoo):
    _, m = zoo
    for name in ("p0-cpt-1x", "p0-wash-3x"):
        mv = m["models"][name]["movement"]
        assert mv["attn"]["vs_parent_pretraining"] >= 1.0, (name, mv)
        assert mv["ffn"]["vs_parent_pretraining"] >= 1.0, (name, mv)


def test_gguf_exports_read_back_close_to_the_model_they_export(zoo):
    folder, m = zoo
    _, ft = _params(folder, m, "p0-ft-a")
    for name, tol in (("p0-q8", 0.01), ("p0-q4", 0.2)):
        with Checkpoint.open(folder / m["models"][name]["path"]) as ck:
            assert ck.format == "gguf"
            q = ck.get("attn_q", 1).read()
            ref = ft["model.layers.1.self_attn.q_proj.weight"].numpy()
            assert np.abs(q - ref).max() < tol * np.abs(ref).max() * 2, name


_PARITY = """
import json, sys, torch, transformers
from safetensors.torch import load_file
from parentage.zoo.model import ModelConfig, forward
folder, entry = sys.argv[1], json.loads(sys.argv[2])
cfg = ModelConfig(**entry["model_config"])
params = load_file(folder + "/model.safetensors")
model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
tokens = torch.randint(0, cfg.vocab, (2, 24), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    theirs = model(tokens).logits
print(float((forward(cfg, params, tokens) - theirs).abs().max()), float(theirs.abs().max()))
"""


def test_zoo_models_load_in_transformers_with_the_same_logits(zoo):
    # In a child process: importing transformers changes which CPU kernels torch picks in this one, which would
    # break the bit-for-bit reproducibility the other zoo tests check.
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers not installed")
    folder, m = zoo
    qwen2 = next(n for n, e in m["models"].items() if e["recipe"] == "base" and e["arch"] == "qwen2")
    for name in ("base-p0", qwen2, "p0-upcycle"):
        entry = m["models"][name]
        proc = subprocess.run([sys.executable, "-c", _PARITY, str(folder / entry["path"]), json.dumps(entry)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        diff, scale = map(float, proc.stdout.split())
        assert diff <= 1e-4 * max(1.0, scale), (name, diff)


def test_same_seed_gives_the_same_manifest_and_weights(zoo, tmp_path):
    folder, m = zoo
    again = build_zoo(tmp_path / "again", size="tiny", seed=0, log=lambda _: None)
    strip = lambda man: {k: {f: v for f, v in e.items() if f != "build_seconds"} for k, e in man["models"].items()}  # noqa: E731
    assert strip(again) == strip(m) and again["pairs"] == m["pairs"]
    for name in ("base-p0", "p0-wash-3x", "p0-upcycle"):
        path = m["models"][name]["path"]
        assert (folder / path / "model.safetensors").read_bytes() == (tmp_path / "again" / path / "model.safetensors").read_bytes()


def test_interrupted_build_resumes_without_listing_half_written_models(zoo, tmp_path):
    folder, m = zoo
    copy = tmp_path / "zoo"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for name in ("p0-combined", "p0-distill", "q-ft"):  # the build "died" before these
        del manifest["models"][name]
        shutil.rmtree(copy / "models" / name)
    manifest["complete"] = False
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "models" / ".tmp-p0-combined").mkdir()  # a model interrupted mid-write
    (copy / "models" / ".tmp-p0-combined" / "model.safetensors").write_bytes(b"partial")
    resumed = build_zoo(copy, size="tiny", seed=0, log=lambda _: None)
    assert resumed["complete"] and set(resumed["models"]) == set(m["models"])
    assert not (copy / "models" / ".tmp-p0-combined").exists()
    path = m["models"]["p0-combined"]["path"]
    assert (copy / path / "model.safetensors").read_bytes() == (folder / path / "model.safetensors").read_bytes()


def test_non_empty_folder_that_is_not_a_zoo_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FolderNotEmptyError, match="not empty"):
        build_zoo(tmp_path, size="tiny", log=lambda _: None)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_zoo_built_with_other_options_is_refused(zoo, tmp_path):
    folder, _ = zoo
    copy = tmp_path / "zoo"
    shutil.copytree(folder, copy)
    with pytest.raises(FolderNotEmptyError, match="--size tiny --seed 0"):
        build_zoo(copy, size="tiny", seed=1, log=lambda _: None)


def test_cli_refuses_a_non_zoo_folder_with_one_line(tmp_path):
    from click.testing import CliRunner

    from parentage.cli import cli

    (tmp_path / "x").write_text("data")
    result = CliRunner().invoke(cli, ["zoo", "build", str(tmp_path), "--size", "tiny"])
    assert result.exit_code == 1 and "not empty" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_identical_tensor_evidence_finds_exactly_the_frozen_matrices(zoo):
    from parentage.evidence.identical import identical_tensors

    folder, m = zoo
    frozen = m["models"]["p0-frozen"]["frozen_tensors"]
    with Checkpoint.open(folder / "models" / "base-p0") as a, Checkpoint.open(folder / "models" / "p0-frozen") as b:
        ev, _ = identical_tensors(a, b)
    frozen_matrices = {n for n in frozen if not n.endswith("norm.weight")}
    found = set(ev.details["identical"])
    assert ev.log10_p <= -100
    assert len(found - {"embed.weight"}) == len(frozen_matrices)
    # Embedding rows of tokens the new data never uses get no gradient and stay bit-identical: if the sample
    # lands on them, the embedding is listed too (sampled rows, not the whole tensor, as the summary says).
    with Checkpoint.open(folder / "models" / "base-p0") as a, Checkpoint.open(folder / "models" / "base-p1") as b:
        assert identical_tensors(a, b)[0].details["identical"] == []


def test_the_ladder_sizes_carry_every_compute_rung_clean_and_washed():
    from parentage.zoo.build import LADDER

    for size in ("ladder", "full"):
        rungs = {(r.compute, r.junk > 0) for r in recipes(SIZES[size]) if r.ladder}
        assert rungs == {(c, j) for c in LADDER for j in (False, True)}
    assert all(r.kind in ("base", "continued") for r in recipes(SIZES["ladder"]))


def test_zoo_build_on_a_terminal_says_what_it_builds_then_model_and_step_and_quiet_silences_it(zoo, tmp_path):
    from tests.terminal import stderr_on_a_terminal

    folder, m = zoo
    for quiet in (False, True):
        copy = tmp_path / f"zoo-{quiet}"
        shutil.copytree(folder, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        for name in ("p0-distill", "q-ft"):  # left to build: the last two
            del manifest["models"][name]
            shutil.rmtree(copy / "models" / name)
        (copy / "manifest.json").write_text(json.dumps(manifest))
        seen = stderr_on_a_terminal(["zoo", "build", str(copy), "--size", "tiny"] + (["--quiet"] if quiet else []))
        if quiet:
            assert seen == ""
            continue
        first = seen.lstrip().splitlines()[0]
        assert first.startswith(f"zoo: building {len(m['models'])} models (tiny size, seed 0) in {copy}")
        assert f"resuming: {len(m['models']) - 2} of {len(m['models'])} models already built" in seen
        n = len(m["models"])
        assert f"zoo: model {n - 1} of {n} (p0-distill), step " in seen and " left" in seen
        assert f"model {n} of {n}: q-ft" in seen
