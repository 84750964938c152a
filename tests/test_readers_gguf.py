import struct

import gguf
import numpy as np
import pytest

from parentage.errors import FormatError
from parentage.readers import GGUFFile, open_file
from parentage.readers.gguf import LazyStrings


def _hf_to_gguf_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute, written out for the test."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write(path, arch, tensors: dict, kv: dict | None = None, raw_dtypes: dict | None = None, tokens=None):
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in (kv or {}).items():
        if isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_string(key, value)
    if tokens is not None:
        w.add_token_list(tokens)
    for name, value in tensors.items():
        qtype = (raw_dtypes or {}).get(name)
        if qtype is None:
            w.add_tensor(name, value)
        else:
            q = gguf.quants.quantize(value, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("qtype", [gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0])
def test_quantised_rows_round_trip_through_the_gguf_writer(tmp_path, qtype):
    rng = np.random.default_rng(0)
    value = rng.standard_normal((48, 64)).astype(np.float32)
    path = _write(tmp_path / "m.gguf", "qwen2", {"blk.0.ffn_up.weight": value}, raw_dtypes={"blk.0.ffn_up.weight": qtype})
    r = GGUFFile(path)
    info = r.info("blk.0.ffn_up.weight")
    assert info.shape == (48, 64) and info.dtype == qtype.name
    expected = gguf.quants.dequantize(gguf.quants.quantize(value, qtype), qtype)
    np.testing.assert_array_equal(r.read_rows("blk.0.ffn_up.weight", 5, 21), expected[5:21])
    tolerance = 0.02 if qtype == gguf.GGMLQuantizationType.Q8_0 else 0.3
    assert np.abs(r.read_rows("blk.0.ffn_up.weight", 0, 48) - value).max() < tolerance * np.abs(value).max()


def test_f16_and_f32_rows_are_exact(tmp_path):
    rng = np.random.default_rng(1)
    t = {"token_embd.weight": rng.standard_normal((20, 8)).astype(np.float16), "output_norm.weight": np.ones(8, np.float32)}
    r = GGUFFile(_write(tmp_path / "m.gguf", "qwen2", t))
    np.testing.assert_array_equal(r.read_rows("token_embd.weight", 2, 9), t["token_embd.weight"][2:9].astype(np.float32))
    np.testing.assert_array_equal(r.read_rows("output_norm.weight", 0, 8), np.ones(8))


def test_llama_q_and_k_come_back_in_hugging_face_row_order(tmp_path):
    rng = np.random.default_rng(2)
    n_head, n_kv, head_dim, hidden = 4, 2, 8, 32
    q_hf = rng.standard_normal((n_head * head_dim, hidden)).astype(np.float32)
    k_hf = rng.standard_normal((n_kv * head_dim, hidden)).astype(np.float32)
    tensors = {"blk.0.attn_q.weight": _hf_to_gguf_permute(q_hf, n_head), "blk.0.attn_k.weight": _hf_to_gguf_permute(k_hf, n_kv)}
    kv = {"llama.attention.head_count": n_head, "llama.attention.head_count_kv": n_kv}
    r = GGUFFile(_write(tmp_path / "m.gguf", "llama", tensors, kv))
    np.testing.assert_array_equal(r.read_rows("blk.0.attn_q.weight", 0, 32), q_hf)
    np.testing.assert_array_equal(r.read_rows("blk.0.attn_k.weight", 3, 13), k_hf[3:13])


def test_qwen2_q_is_not_permuted(tmp_path):
    q = np.arange(32 * 4, dtype=np.float32).reshape(32, 4)
    kv = {"qwen2.attention.head_count": 4, "qwen2.attention.head_count_kv": 2}
    r = GGUFFile(_write(tmp_path / "m.gguf", "qwen2", {"blk.0.attn_q.weight": q}, kv))
    np.testing.assert_array_equal(r.read_rows("blk.0.attn_q.weight", 0, 32), q)


def test_vocabulary_is_skipped_on_open_and_decoded_on_demand(tmp_path):
    tokens = [f"tok{i}" for i in range(5000)]
    r = GGUFFile(_write(tmp_path / "m.gguf", "llama", {"output_norm.weight": np.ones(4, np.float32)}, tokens=tokens))
    assert isinstance(r.metadata["tokenizer.ggml.tokens"], LazyStrings)
    assert len(r.metadata["tokenizer.ggml.tokens"]) == 5000
    assert r.strings("tokenizer.ggml.tokens")[:3] == ["tok0", "tok1", "tok2"]
    assert r.metadata["general.architecture"] == "llama"


def test_header_agrees_with_the_gguf_package_reader(tmp_path):
    rng = np.random.default_rng(3)
    t = {f"blk.{i}.ffn_down.weight": rng.standard_normal((16, 32)).astype(np.float32) for i in range(3)}
    path = _write(tmp_path / "m.gguf", "qwen2", t, {"qwen2.block_count": 3})
    ours = GGUFFile(path)
    theirs = gguf.GGUFReader(str(path))
    for rt in theirs.tensors:
        assert ours.info(rt.name).shape == tuple(int(d) for d in reversed(rt.shape.tolist()))
        np.testing.assert_array_equal(ours.read_rows(rt.name, 0, 16), np.asarray(rt.data).reshape(16, 32))
    assert ours.metadata["qwen2.block_count"] == 3


def _valid(tmp_path):
    return _write(tmp_path / "ok.gguf", "qwen2", {"blk.0.ffn_up.weight": np.ones((4, 32), np.float32)})


def test_truncated_tensor_data_is_refused(tmp_path):
    path = _valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-64])
    with pytest.raises(FormatError, match="past the end"):
        GGUFFile(path)


def test_truncated_header_is_refused(tmp_path):
    path = _valid(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(FormatError, match=r"truncated"):
        GGUFFile(path)


def test_wrong_version_and_absurd_counts_are_refused(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 1) + b"\0" * 32)
    with pytest.raises(FormatError, match="version 1"):
        GGUFFile(path)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 0) + b"\0" * 16)
    with pytest.raises(FormatError, match="implausible"):
        GGUFFile(path)


def test_huge_string_length_is_refused_without_allocating(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62) + b"x" * 16)
    with pytest.raises(FormatError, match="exceeds the cap"):
        GGUFFile(path)


def test_magic_bytes_not_extension_choose_the_reader(tmp_path):
    path = _valid(tmp_path)
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(path.read_bytes())
    assert open_file(renamed).format == "gguf"


def test_metadata_of_the_wrong_type_is_refused_or_ignored_not_crashed_on(tmp_path):
    from parentage.checkpoint import Checkpoint

    bad = _write(tmp_path / "align.gguf", "qwen2", {"blk.0.ffn_up.weight": np.ones((4, 32), np.float32)},
                 {"general.alignment": "thirty-two"})
    with pytest.raises(FormatError, match="alignment"):
        GGUFFile(bad)
    odd = _write(tmp_path / "odd.gguf", "llama", {"blk.0.attn_q.weight": np.ones((32, 32), np.float32)},
                 {"llama.block_count": "many", "llama.attention.head_count": "four"})
    with Checkpoint.open(odd) as ck:  # string-valued numbers are ignored; the tensors still speak
        assert ck.summary.n_layers == 1 and ck.summary.n_heads is None
