"""Tokenizers: formats (including hostile files), lineage on independent and edited vocabularies, health,
efficiency, and the command line. Vocabularies are trained here on stdlib text or edited by hand."""

import base64
import json
import struct

import pytest
from click.testing import CliRunner

pytest.importorskip("tokenizers")

from parentage.cli import cli  # noqa: E402
from parentage.errors import FormatError  # noqa: E402
from parentage.tokenizers import lineage, load_tokenizer  # noqa: E402
from parentage.tokenizers.efficiency import efficiency  # noqa: E402
from parentage.tokenizers.formats import BYTE_LEVEL  # noqa: E402
from parentage.tokenizers.health import byte_level_string, health  # noqa: E402
from parentage.tokenizers.report import tokenizer_report  # noqa: E402
from parentage.zoo import text  # noqa: E402

SIZE = 2000


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two independently trained byte-level BPEs (prose, code) and a third on other prose, as tokenizer.json docs."""
    root = tmp_path_factory.mktemp("tok")
    prose, code = text.prose(), text.code()
    out = {}
    for name, corpus in (("prose", prose[: len(prose) // 2]), ("code", code), ("prose2", prose[len(prose) // 2:])):
        path = root / f"{name}.json"
        text.train_tokenizer(corpus, SIZE).save(str(path))
        out[name] = json.loads(path.read_text())
    return out


def _save(doc, path):
    path.write_text(json.dumps(doc))
    return path


def _ordinary(doc):
    special = {t["id"] for t in doc["added_tokens"]}
    return sorted(((i, t) for t, i in doc["model"]["vocab"].items() if i not in special))


def _renumber(doc, tokens, extra_merges=()):
    """A copy of doc whose vocabulary is `tokens` (strings in id order, after the special tokens)."""
    out = json.loads(json.dumps(doc))
    n_special = len(doc["added_tokens"])
    out["model"]["vocab"] = {t["content"]: t["id"] for t in doc["added_tokens"]}
    for k, t in enumerate(tokens):
        out["model"]["vocab"].setdefault(t, n_special + k)
    have = set(out["model"]["vocab"])
    merges = [m for m in doc["model"]["merges"] + list(extra_merges)
              if "".join(m if isinstance(m, list) else m.split(" ")) in have]
    out["model"]["merges"] = merges
    return out


def test_independently_trained_vocabularies_are_unrelated_despite_overlap(trained, tmp_path):
    a = load_tokenizer(_save(trained["prose"], tmp_path / "a.json"))
    for other in ("code", "prose2"):
        b = load_tokenizer(_save(trained[other], tmp_path / f"{other}.json"))
        doc = lineage(a, b)
        assert doc["relation"] == "unrelated", (other, doc["notes"])
        assert doc["shared_tokens"] > 500  # plenty of overlap, still unrelated
    assert lineage(a, load_tokenizer(tmp_path / "prose2.json"))["rank_spearman"] > 0.3


def test_extension_id_shift_deletion_append_and_stitching_are_named(trained, tmp_path):
    base = trained["prose"]
    ordinary = [t for _, t in _ordinary(base)]
    code_only = [t for _, t in _ordinary(trained["code"]) if t not in set(ordinary)]
    a = load_tokenizer(_save(base, tmp_path / "a.json"))
    cases = {
        "extension": _renumber(base, ordinary + code_only[:300]),
        "deletion_append": _renumber(base, [t for k, t in enumerate(ordinary) if k % 37 != 5] + code_only[:200]),
    }
    shifted = json.loads(json.dumps(base))
    shift = 100
    shifted["model"]["vocab"] = {t: (i + shift if i >= 1 else i) for t, i in base["model"]["vocab"].items()}
    for k in range(shift):
        shifted["model"]["vocab"][f"<|control_{k}|>"] = 1 + k
        shifted["added_tokens"].append({"id": 1 + k, "content": f"<|control_{k}|>", "special": True, "single_word": False,
                                        "lstrip": False, "rstrip": False, "normalized": False})
    cases["id_shift"] = shifted
    for kind, doc in cases.items():
        b = load_tokenizer(_save(doc, tmp_path / f"{kind}.json"))
        result = lineage(a, b)
        assert (result["relation"], result["kind"]) == ("derived", kind), (kind, result["notes"])
        assert result["score"]["log10_p"] <= -6 and result["core"]["runs"]


def test_a_stitched_rank_file_that_repeats_its_first_parent_is_named_stitched(trained, tmp_path):
    """tiktoken and sentencepiece files can hold one string twice: a careless stitch appends the second
    vocabulary whole, repeating the first parent's tokens out of order (a health finding too)."""
    a = load_tokenizer(_save(trained["prose"], tmp_path / "a.json"))
    c = load_tokenizer(_save(trained["code"], tmp_path / "c.json"))
    stitched = [t for _, t in sorted(a.tokens.items())] + [t for _, t in sorted(c.tokens.items()) if len(t) > 1]
    (tmp_path / "s.tiktoken").write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(stitched)))
    s = load_tokenizer(tmp_path / "s.tiktoken")
    result = lineage(a, s)
    assert (result["relation"], result["kind"]) == ("derived", "stitched")
    assert health(s)["findings"]["duplicate_byte_strings"]["count"] > 100


def test_a_vocabulary_with_its_ids_reordered_is_derived_not_unrelated(trained, tmp_path):
    """RoBERTa kept GPT-2's BPE but re-sorted the ids: no id gap survives, every token does."""
    import random

    ordinary = [t for _, t in _ordinary(trained["prose"])]
    shuffled = ordinary[:256] + random.Random(0).sample(ordinary[256:], len(ordinary) - 256)
    a = load_tokenizer(_save(trained["prose"], tmp_path / "a.json"))
    b = load_tokenizer(_save(_renumber(trained["prose"], shuffled), tmp_path / "b.json"))
    assert (lineage(a, b)["relation"], lineage(a, b)["kind"]) == ("derived", "reordered")


def test_siblings_of_a_common_core_are_partial(trained, tmp_path):
    ordinary = [t for _, t in _ordinary(trained["prose"])]
    code_only = [t for _, t in _ordinary(trained["code"]) if t not in set(ordinary)]
    a = load_tokenizer(_save(_renumber(trained["prose"], ordinary[:1000] + ordinary[1000:]), tmp_path / "a.json"))
    b = load_tokenizer(_save(_renumber(trained["prose"], ordinary[:1000] + code_only[:600]), tmp_path / "b.json"))
    result = lineage(a, b)
    assert (result["relation"], result["kind"]) == ("derived", "partial")


def test_re_export_as_tiktoken_and_new_special_tokens_are_identical(trained, tmp_path):
    a = load_tokenizer(_save(trained["prose"], tmp_path / "a.json"))
    lines = [f"{base64.b64encode(t).decode()} {i}" for i, t in sorted(a.tokens.items())]
    (tmp_path / "a.tiktoken").write_text("\n".join(lines) + "\n")
    result = lineage(a, load_tokenizer(tmp_path / "a.tiktoken"))
    assert (result["relation"], result["kind"]) == ("identical", "re_export")
    renamed = json.loads(json.dumps(trained["prose"]))
    renamed["added_tokens"][0]["content"] = "<|end_of_text|>"
    result = lineage(a, load_tokenizer(_save(renamed, tmp_path / "renamed.json")))
    assert (result["relation"], result["kind"]) == ("identical", "special_tokens")


def test_three_tokenizers_report_which_two_were_stitched(trained, tmp_path):
    ordinary = [t for _, t in _ordinary(trained["prose"])]
    code = [t for _, t in _ordinary(trained["code"])]
    stitched = _renumber(trained["prose"], ordinary + [t for t in code if t not in set(ordinary)])
    refs = [str(_save(trained["prose"], tmp_path / "p.json")), str(_save(trained["code"], tmp_path / "c.json")),
            str(_save(stitched, tmp_path / "s.json"))]
    doc = tokenizer_report(refs)
    assert doc["stitched"] and doc["stitched"][0]["tokenizer"] == refs[2]
    assert set(doc["stitched"][0]["parents"]) == {refs[0], refs[1]}


# -- formats --------------------------------------------------------------------------------------------------


def _spm_model(pieces):
    """A sentencepiece ModelProto: repeated field 1 = SentencePiece(piece, score, type)."""
    out = b""
    for piece, score, kind in pieces:
        raw = piece.encode()
        body = b"\x0a" + bytes([len(raw)]) + raw + b"\x15" + struct.pack("<f", score) + b"\x18" + bytes([kind])
        out += b"\x0a" + bytes([len(body)]) + body
    trainer = b"\x18\x02"  # TrainerSpec.model_type = BPE
    return out + b"\x12" + bytes([len(trainer)]) + trainer


def test_sentencepiece_model_is_read_without_the_library(tmp_path):
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("<0x0A>", 0.0, 6), ("\u2581the", -1.0, 1),
              ("ing", -2.0, 1), ("\u2581", -3.0, 1), ("t", -4.0, 1), ("h", -4.0, 1), ("e", -4.0, 1)]
    (tmp_path / "tokenizer.model").write_bytes(_spm_model(pieces))
    v = load_tokenizer(tmp_path)
    assert v.format == "sentencepiece" and v.model == "bpe" and v.size == len(pieces)
    assert v.tokens[4] == b" the" and v.tokens[3] == b"\n" and v.special == {0: "<unk>", 1: "<s>", 2: "</s>"}


def test_wordpiece_vocab_txt_is_read_and_encodes(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "##s", "a", "t", "h", "e", "c", "s",
             "m", "o", "n"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    v = load_tokenizer(tmp_path)
    assert v.format == "vocab.txt" and v.model == "wordpiece" and v.size == len(words)
    assert v.special[1] == "[UNK]" and v.tokens[4] == b" the" and v.tokens[9] == b"s"
    rows = {r["sample"]: r for r in efficiency(v)}
    assert rows["english"]["tokens"] > 0


def test_vocab_and_merges_files_are_read_and_bad_merges_reported(trained, tmp_path):
    doc = trained["prose"]
    (tmp_path / "vocab.json").write_text(json.dumps(doc["model"]["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in doc["model"]["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges + ["zq xv"]) + "\n")
    v = load_tokenizer(tmp_path / "vocab.json")
    assert v.format == "vocab.json" and len(v.merges) == len(merges) + 1
    assert health(v)["findings"]["merges_with_missing_tokens"]["count"] == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"model": {"type": "Banana", "vocab": {"a": 0}}}), "unknown tokenizer model type"),
    (json.dumps({"version": "1.0"}), "no 'model' object"),
    (json.dumps({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}}), "non-negative integer ids"),
    (json.dumps({"model": {"type": "Unigram", "vocab": [1, 2]}}), r"\[token, score\] pairs"),
    (json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}), "not a pair of tokens"),
    (json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"content": "x"}]}), "added_tokens"),
])
def test_malformed_tokenizer_json_gets_one_clear_line(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(FormatError, match=message):
        load_tokenizer(path)
    r = CliRunner().invoke(cli, ["tokenizer", str(path)])
    assert r.exit_code == 1 and str(path) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_tokenizer_json_under_another_name_beside_merges_txt_is_still_a_tokenizer_json(trained, tmp_path):
    (tmp_path / "merges.txt").write_text("a b\n")
    v = load_tokenizer(_save(trained["prose"], tmp_path / "renamed.json"))
    assert v.format == "tokenizer.json" and len(v.tokens) > 1000


def test_merges_txt_that_is_not_utf8_gets_one_clear_line(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    (tmp_path / "merges.txt").write_bytes(b"a b\n\xff\xfe c\n")
    with pytest.raises(FormatError, match="merges.txt: not UTF-8"):
        load_tokenizer(tmp_path / "vocab.json")


def test_vocabulary_embedded_in_a_gguf_file_is_read(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_token_list(["<|endoftext|>", "Ġthe", "a", "b"])
    w.add_token_types([3, 1, 1, 1])
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    v = load_tokenizer(tmp_path / "m.gguf")
    assert v.format == "gguf" and v.tokens[1] == b" the" and v.special == {0: "<|endoftext|>"}


def test_tiktoken_file_with_a_bad_line_is_refused(tmp_path):
    path = tmp_path / "bad.tiktoken"
    path.write_text("IQ== 0\nIg== 1\nthis is not base64!! 2\n")
    r = CliRunner().invoke(cli, ["tokenizer", str(path)])
    assert r.exit_code == 1 and "line 3" in r.stderr and "bad.tiktoken" in r.stderr


# -- health and efficiency ------------------------------------------------------------------------------------


def test_health_finds_duplicates_unreachable_tokens_and_colliding_specials(trained, tmp_path):
    doc = json.loads(json.dumps(trained["prose"]))
    vocab = doc["model"]["vocab"]
    n = max(vocab.values()) + 1
    vocab[byte_level_string(b"zqzqzq")] = n  # appended with no merge path
    doc["added_tokens"].append({"id": n + 1, "content": " the", "special": True, "single_word": False,
                                "lstrip": False, "rstrip": False, "normalized": False})
    vocab[" the"] = n + 1  # a control token spelled like ordinary text ("Ġthe" is " the")
    v = load_tokenizer(_save(doc, tmp_path / "t.json"))
    v.tokens[n + 2] = v.tokens[vocab["Ġthe"]]  # a stitched vocabulary's second copy of a string
    f = health(v)["findings"]
    assert f["unreachable_tokens"]["count"] >= 1 and [n, "zqzqzq"] in f["unreachable_tokens"]["examples"]
    assert f["duplicate_byte_strings"]["count"] == 1
    assert f["special_tokens_colliding_with_text"]["examples"] == [" the"]
    assert health(load_tokenizer(_save(trained["prose"], tmp_path / "ok.json")))["findings"]["unreachable_tokens"]["count"] == 0


def test_efficiency_flags_a_tokenizer_that_spends_a_token_per_character(trained, tmp_path):
    bytes_only = {byte_level_string(bytes([b])): b for b in range(256)}
    doc = json.loads(json.dumps(trained["prose"]))
    doc["model"]["vocab"], doc["model"]["merges"], doc["added_tokens"] = bytes_only, [], []
    weak = {r["sample"]: r for r in efficiency(load_tokenizer(_save(doc, tmp_path / "bytes.json")))}
    good = {r["sample"]: r for r in efficiency(load_tokenizer(_save(trained["prose"], tmp_path / "p.json")))}
    assert weak["english"]["about_one_token_per_char"] and weak["english"]["chars_per_token"] == pytest.approx(1.0, abs=0.01)
    assert not good["english"]["about_one_token_per_char"] and good["english"]["chars_per_token"] > 2.5
    assert set(good) == {"english", "code", "digits", "chinese"}


def test_tiktoken_files_encode_through_derived_merges_like_the_original(trained, tmp_path):
    a = load_tokenizer(_save(trained["prose"], tmp_path / "a.json"))
    lines = [f"{base64.b64encode(t).decode()} {i}" for i, t in sorted(a.tokens.items())]
    (tmp_path / "a.tiktoken").write_text("\n".join(lines) + "\n")
    via_json = {r["sample"]: r["tokens"] for r in efficiency(a)}
    via_ranks = {r["sample"]: r["tokens"] for r in efficiency(load_tokenizer(tmp_path / "a.tiktoken"))}
    for sample in ("english", "code"):
        assert abs(via_ranks[sample] - via_json[sample]) <= 0.02 * via_json[sample]


def test_cli_two_tokenizers_json_has_the_contract_fields(trained, tmp_path):
    a, b = _save(trained["prose"], tmp_path / "a.json"), _save(trained["code"], tmp_path / "b.json")
    r = CliRunner().invoke(cli, ["tokenizer", str(a), str(b), "--format", "json"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"relation", "kind", "score", "notes"} <= doc.keys() and doc["relation"] == "unrelated"
    assert {"value", "null", "log10_p"} <= doc["score"].keys()
    human = CliRunner().invoke(cli, ["tokenizer", str(a)]).stdout
    assert "characters per token" in human and "health" in human


def test_byte_level_table_is_a_bijection():
    assert sorted(BYTE_LEVEL.values()) == list(range(256)) and len(BYTE_LEVEL) == 256


def test_heap_bpe_merges_exactly_like_rescanning_every_pair():
    import random

    from parentage.tokenizers import bpe

    rng = random.Random(0)
    for _ in range(500):
        alphabet = b"abc"[: rng.randint(1, 3)]
        rank = {}
        for _ in range(rng.randint(0, 15)):
            rank.setdefault(bytes(rng.choice(alphabet) for _ in range(rng.randint(2, 6))), len(rank))
        word = bytes(rng.choice(alphabet) for _ in range(rng.randint(25, 80)))  # past SHORT_TOKEN: the heap runs
        parts = [word[i:i + 1] for i in range(len(word))]
        max_rank = rng.choice([None, 3, 100])
        assert bpe._bpe(list(parts), lambda a, b: rank.get(a + b), max_rank) == \
            bpe._bpe_scan(list(parts), lambda a, b: rank.get(a + b), max_rank)


def _with_template(doc, start):
    """doc plus one maker's hand-written block at fixed ids: 30 runs of tabs (2..31) in the vocabulary and
    100 placeholder tokens added after them, as Gemma's vocabularies carry."""
    out = json.loads(json.dumps(doc))
    tab = next(ch for ch, b in BYTE_LEVEL.items() if b == 9)  # the byte-level character of "\t"
    for k in range(2, 32):
        out["model"]["vocab"][tab * k] = start + k - 2
    out["added_tokens"] += [{"id": start + 30 + k, "content": f"<unused{k}>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": False} for k in range(100)]
    return out


def test_a_shared_hand_defined_block_is_not_lineage_of_the_learned_vocabulary(trained, tmp_path):
    """Two independently trained vocabularies of one maker share its template at the same ids: that is
    reported as a shared hand-defined block, the relation stays unrelated."""
    a = load_tokenizer(_save(_with_template(trained["prose"], 3000), tmp_path / "a.json"))
    b = load_tokenizer(_save(_with_template(trained["code"], 3000), tmp_path / "b.json"))
    result = lineage(a, b)
    assert result["relation"] == "unrelated", result["notes"]
    assert result["hand_defined"]["same_offset"] >= 120
    assert any("hand-defined block" in n for n in result["notes"])


def test_a_derived_vocabulary_stays_derived_when_both_carry_a_template(trained, tmp_path):
    ordinary = [t for _, t in _ordinary(trained["prose"])]
    a = load_tokenizer(_save(_with_template(trained["prose"], 3000), tmp_path / "a.json"))
    grown = _renumber(trained["prose"], ordinary + [t for _, t in _ordinary(trained["code"]) if t not in set(ordinary)][:300])
    b = load_tokenizer(_save(_with_template(grown, 3000), tmp_path / "b.json"))
    result = lineage(a, b)
    assert (result["relation"], result["kind"]) == ("derived", "extension"), result["notes"]


def test_hand_defined_series_are_found_by_pattern_not_by_the_alphabet():
    from parentage.tokenizers.formats import Vocab
    from parentage.tokenizers.lineage import hand_defined

    tokens = {i: bytes([48 + i]) for i in range(10)}  # "0".."9": the alphabet, consecutive but single bytes
    tokens |= {10 + k: b"\t" * (k + 2) for k in range(30)}
    tokens |= {40 + k: f"<extra_id_{k}>".encode() for k in range(5)}
    tokens |= {45: b"the", 46: b"then", 47: b"there"}  # learned merges that extend each other: not a series
    v = Vocab("x", "tiktoken", "bpe", "plain", 48, tokens)
    assert hand_defined(v) == set(range(10, 45))


@pytest.mark.parametrize("name", ["tokenizer.model.v3", "spm.bin", "ranks"])
def test_formats_are_recognised_by_content_whatever_the_file_name(tmp_path, name, trained):
    """Real releases ship `tokenizer.model.v3`; a user may rename anything: content decides."""
    pieces = [("<unk>", 0.0, 2), ("\u2581the", -1.0, 1), ("t", -4.0, 1), ("<tab2>", 0.0, 4)]
    (tmp_path / name).write_bytes(_spm_model(pieces))
    v = load_tokenizer(tmp_path / name)
    assert v.format == "sentencepiece" and v.tokens[1] == b" the" and v.defined_ids == {3}
    a = load_tokenizer(_save(trained["prose"], tmp_path / "a.json"))
    lines = [f"{base64.b64encode(t).decode()} {i}" for i, t in sorted(a.tokens.items())]
    (tmp_path / f"{name}.ranks").write_text("\n".join(lines) + "\n")
    assert load_tokenizer(tmp_path / f"{name}.ranks").format == "tiktoken"
    (tmp_path / f"{name}.json-renamed").write_text(json.dumps(trained["prose"]))
    assert load_tokenizer(tmp_path / f"{name}.json-renamed").format == "tokenizer.json"


def test_a_deletion_append_description_counts_what_the_id_map_shows(trained, tmp_path):
    """Every number in the sentence is recomputed from the two vocabularies: deleted tokens are absent from B,
    new ones absent from A."""
    import re

    base = trained["prose"]
    ordinary = [t for _, t in _ordinary(base)]
    code_only = [t for _, t in _ordinary(trained["code"]) if t not in set(ordinary)]
    dropped = [t for k, t in enumerate(ordinary) if k % 37 == 5 and len(t) >= 2]
    kept = [t for t in ordinary if t not in set(dropped)]
    a = load_tokenizer(_save(base, tmp_path / "a.json"))
    b = load_tokenizer(_save(_renumber(base, kept + code_only[:200]), tmp_path / "b.json"))
    note = lineage(a, b)["notes"][0]
    multi = lambda v: {t for t in v.by_bytes() if len(t) >= 2}  # noqa: E731
    deleted, new = len(multi(a) - multi(b)), len(multi(b) - multi(a))
    numbers = [int(x.replace(",", "")) for x in re.findall(r"\d[\d,]*", note.split(";")[0])]
    assert numbers[0] == deleted and new in numbers, note


@pytest.mark.parametrize("keep_every", [3, 50])
def test_a_pruned_vocabulary_is_named_pruned_with_what_was_removed(trained, tmp_path, keep_every):
    """B keeps a subset of A's tokens in A's order, ids renumbered (vocabulary trimming): dense pruning leaves no
    id gap intact, and B is still A's, not a sibling."""
    base = trained["prose"]
    ordinary = [t for _, t in _ordinary(base)]
    kept = [t for k, t in enumerate(ordinary) if k < 256 or k % keep_every]  # every keep_every-th token removed
    a = load_tokenizer(_save(base, tmp_path / "a.json"))
    b = load_tokenizer(_save(_renumber(base, kept), tmp_path / f"b{keep_every}.json"))
    for x, y, child in ((a, b, "B"), (b, a, "A")):
        result = lineage(x, y)
        assert (result["relation"], result["kind"]) == ("derived", "pruned"), result["notes"]
        multi = lambda v: {t for t in v.by_bytes() if len(t) >= 2}  # noqa: E731
        removed = len(multi(a) - multi(b))
        assert result["notes"][0].startswith(f"{child}'s vocabulary is") and f"minus {removed:,} of" in result["notes"][0]
