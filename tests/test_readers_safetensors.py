import json
import struct

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from parentage.errors import FormatError, UnsupportedDtypeError
from parentage.readers import SafetensorsFile, open_file
from parentage.synthetic import write_safetensors

from .conftest import requires_torch


def _raw_file(path, header: dict, data: bytes, header_len: int | None = None):
    head = json.dumps(header).encode()
    n = len(head) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + head + data)
    return path


def test_rows_match_the_safetensors_package_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((33, 17)).astype(np.float32),
        "f16": rng.standard_normal((8, 5)).astype(np.float16),
        "f64": rng.standard_normal((4,)).astype(np.float64),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "stack": rng.standard_normal((3, 4, 5)).astype(np.float32),
    }
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
    r = open_file(tmp_path / "m.safetensors")
    assert r.metadata == {"format": "pt"}
    for name, value in tensors.items():
        whole = r.read_rows(name, 0, r.info(name).n_rows)
        np.testing.assert_array_equal(whole.reshape(value.shape), value.astype(np.float32))
    # a row block from the middle of a 3-D stack: rows of the (12, 5) view
    np.testing.assert_array_equal(r.read_rows("stack", 4, 8), tensors["stack"].reshape(12, 5)[4:8])


def test_bf16_and_fp8_rows_match_ml_dtypes(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((16, 8)).astype(np.float32)
    encoded = {
        "BF16": values.astype(ml_dtypes.bfloat16),
        "F8_E4M3": values.astype(ml_dtypes.float8_e4m3fn),
        "F8_E5M2": values.astype(ml_dtypes.float8_e5m2),
    }
    header, data, offset = {}, b"", 0
    for dtype, arr in encoded.items():
        raw = arr.tobytes()
        header[dtype] = {"dtype": dtype, "shape": [16, 8], "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    r = SafetensorsFile(_raw_file(tmp_path / "q.safetensors", header, data))
    for dtype, arr in encoded.items():
        np.testing.assert_array_equal(r.read_rows(dtype, 3, 11), arr.astype(np.float32)[3:11])


@requires_torch
def test_rows_match_torch_for_bf16_and_fp8_saved_by_the_safetensors_package(tmp_path):
    import torch
    from safetensors.torch import save_file as torch_save

    t = torch.randn(12, 6)
    tensors = {"bf16": t.bfloat16(), "e4m3": t.to(torch.float8_e4m3fn), "e5m2": t.to(torch.float8_e5m2), "f16": t.half()}
    torch_save(tensors, tmp_path / "t.safetensors")
    r = open_file(tmp_path / "t.safetensors")
    for name, value in tensors.items():
        np.testing.assert_array_equal(r.read_rows(name, 0, 12), value.float().numpy())


def test_sixteen_rows_cost_one_contiguous_read_of_exactly_their_bytes(tmp_path):
    write_safetensors(tmp_path / "m.safetensors", {"w": np.ones((256, 64), np.float32)}, "BF16")
    r = open_file(tmp_path / "m.safetensors")
    before_reads, before_bytes = r.stats.n_reads, r.stats.bytes_read
    r.read_rows("w", 100, 116)
    assert r.stats.n_reads - before_reads == 1
    assert r.stats.bytes_read - before_bytes == 16 * 64 * 2


def test_opening_reads_only_the_header(tmp_path):
    write_safetensors(tmp_path / "m.safetensors", {"w": np.ones((1024, 256), np.float32)})
    r = open_file(tmp_path / "m.safetensors")
    assert r.stats.bytes_read < 200
    assert r.bytes_total > 1024 * 256 * 4


def test_fp8_block_scales_are_applied_on_read(tmp_path):
    from parentage.readers import WeightSet
    from parentage.readers.quantization import attach

    rng = np.random.default_rng(2)
    q = rng.standard_normal((200, 300)).astype(ml_dtypes.float8_e4m3fn)
    scale = rng.uniform(0.5, 2.0, size=(2, 3)).astype(np.float32)  # 128x128 blocks, edges partial
    header = {
        "w.weight": {"dtype": "F8_E4M3", "shape": [200, 300], "data_offsets": [0, 60000]},
        "w.weight_scale_inv": {"dtype": "F32", "shape": [2, 3], "data_offsets": [60000, 60024]},
    }
    ws = WeightSet([SafetensorsFile(_raw_file(tmp_path / "s.safetensors", header, q.tobytes() + scale.tobytes()))])
    assert attach(ws, {}, lambda name: None).method == "fp8"
    assert ws.names() == ["w.weight"]
    expected = q.astype(np.float32) * np.kron(scale, np.ones((128, 128), np.float32))[:200, :300]
    np.testing.assert_allclose(ws.read_rows("w.weight", 120, 140), expected[120:140], rtol=0, atol=0)


HOSTILE = {
    "truncated_data": (lambda p: _raw_file(p, {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, b"\0" * 10), "truncated"),
    "header_over_cap": (lambda p: p.write_bytes(struct.pack("<Q", 1 << 40) + b"{}"), "cap"),
    "header_past_eof": (lambda p: p.write_bytes(struct.pack("<Q", 4096) + b"{}"), "past the end"),
    "too_short": (lambda p: p.write_bytes(b"\x01\x02"), "too short"),
    "overlap": (lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24), "overlaps"),
    "gap": (lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16), "gap"),
    "offset_out_of_range": (lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 1 << 40]}}, b"\0" * 8), "bytes but data_offsets span"),
    "unknown_dtype": (lambda p: _raw_file(p, {"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2), "Q7"),
    "shape_mismatch": (lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "needs 12 bytes"),
    "negative_shape": (lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b""), "non-negative"),
    "not_json": (lambda p: p.write_bytes(struct.pack("<Q", 5) + b"{oops"), "not valid JSON"),
    "trailing_bytes": (lambda p: _raw_file(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12), "not described"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_refused_with_the_file_named(tmp_path, case):
    build, fragment = HOSTILE[case]
    path = tmp_path / "bad.safetensors"
    build(path)
    with pytest.raises(FormatError) as info:
        SafetensorsFile(path)
    assert str(path) in str(info.value) and fragment in str(info.value)
    if case == "unknown_dtype":
        assert isinstance(info.value, UnsupportedDtypeError)


def test_duplicate_keys_in_the_header_are_refused(tmp_path):
    head = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 4)
    with pytest.raises(FormatError, match="duplicate key"):
        SafetensorsFile(path)


def test_shape_whose_size_overflows_int64_is_refused(tmp_path):
    # 2**32 * 2**32 * 4 bytes wraps to 0 in int64 arithmetic; Python integers do not wrap
    path = _raw_file(tmp_path / "wrap.safetensors", {"a": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}, b"")
    with pytest.raises(FormatError, match="needs"):
        SafetensorsFile(path)
