"""Quantised weights read back as weights: known answers worked by hand, the project's writers round-tripped,
and files made by each format's own library (where it runs on CPU here) decoded as that library decodes them.

Checked against what (README, "What it reads"):
- GPTQ, AWQ: no reference runs on CPU here; known-answer words worked by hand from the layouts (GPTQ's bit
  stream down a column, 3-bit codes straddling words; AWQ's interleaved nibble order) and the writers in
  zoo/quantize.py.
- bitsandbytes: files its CPU path quantises (quantize_4bit, nested or not; int8 rows), serialised as
  transformers does, against its dequantize_4bit.
- MLX: files mlx.core.quantize and mlx.core.save_safetensors write, against mlx.core.dequantize.
- compressed-tensors: its own compressors' output against their decompress.
- ONNX: onnxruntime's own MatMulNBits quantiser and DequantizeLinear graphs, run by onnxruntime on the identity;
  float initializers with external data as onnx's numpy helpers load them (tests/test_readers_onnx.py: the
  project's writer, hostile files).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.errors import FormatError, UnsupportedQuantizationError
from parentage.readers import WeightSet, open_file
from parentage.readers.packed import pack, span, unpack
from parentage.readers.quantization import attach
from parentage.synthetic import Shape, random_state_dict, write_model, write_tensors
from parentage.zoo.quantize import Export, export_model


def _weights(path, config=None, side=None):
    ws = WeightSet([open_file(path)])
    scheme = attach(ws, config or {}, lambda name: (side or {}).get(name))
    return ws, scheme


# -- known answers ------------------------------------------------------------------------------------------------


def test_gptq_4bit_known_answer_reads_codes_down_each_column_with_v1_zero_points(tmp_path):
    # q[o, i] = (o + i) % 16: column o of qweight holds input channels 0..7 in nibbles, lowest first
    words = [0x76543210, 0x87654321, 0x98765432, 0xA9876543, 0xBA987654, 0xCBA98765, 0xDCBA9876, 0xEDCBA987]
    scales = np.array([[(o + 1) / 8 for o in range(8)]], np.float16)
    write_tensors(tmp_path / "g.safetensors", {
        "m.qweight": np.array([words], np.uint32).view(np.int32),
        "m.qzeros": np.array([[0x77777777]], np.uint32).view(np.int32),  # v1: zero 8 stored as 7
        "m.scales": scales, "m.g_idx": np.zeros(8, np.int32)})
    ws, scheme = _weights(tmp_path / "g.safetensors", {"quantization_config": {"quant_method": "gptq", "bits": 4}})
    assert scheme.method == "gptq" and ws.names() == ["m.weight"] and ws.info("m.weight").shape == (8, 8)
    q = (np.arange(8)[:, None] + np.arange(8)[None, :]) % 16
    expected = (np.arange(1, 9)[:, None] / 8) * (q - 8)
    np.testing.assert_array_equal(ws.read_rows("m.weight", 0, 8), expected)
    np.testing.assert_array_equal(ws.read_rows("m.weight", 3, 5), expected[3:5])
    np.testing.assert_array_equal(ws.steps("m.weight", 2, 3), np.full((1, 8), 3 / 8))


def test_gptq_3bit_known_answer_reads_codes_that_straddle_words(tmp_path):
    # codes 0..7 repeated: as one 96-bit stream the octal digits are 76543210 four times
    stream = int("76543210" * 4, 8)
    assert [hex((stream >> (32 * k)) & 0xFFFFFFFF) for k in range(3)] == ["0x88fac688", "0xc688fac6", "0xfac688fa"]
    write_tensors(tmp_path / "g.safetensors", {
        "m.qweight": np.array([[0x88FAC688], [0xC688FAC6], [0xFAC688FA]], np.uint32).view(np.int32),  # (3, 1)
        "m.qzeros": np.array([[3]], np.int32),  # v2: zero 3 as it is
        "m.scales": np.array([[2.0]], np.float16)})
    ws, _ = _weights(tmp_path / "g.safetensors", {"quantization_config": {
        "quant_method": "gptq", "bits": 3, "group_size": 32, "checkpoint_format": "gptq_v2"}})
    np.testing.assert_array_equal(ws.read_rows("m.weight", 0, 1)[0], 2.0 * (np.arange(32) % 8 - 3))


def test_awq_gemm_known_answer_reads_its_interleaved_nibble_order(tmp_path):
    # output channels 0..7 hold codes 0..7: nibble j holds channel (0, 2, 4, 6, 1, 3, 5, 7)[j]
    write_tensors(tmp_path / "a.safetensors", {
        "m.qweight": np.array([[0x75316420]] * 4, np.uint32).view(np.int32),  # 4 input channels
        "m.qzeros": np.array([[0x00000000]], np.int32),
        "m.scales": np.ones((1, 8), np.float16)})
    ws, scheme = _weights(tmp_path / "a.safetensors", {"quantization_config": {
        "quant_method": "awq", "bits": 4, "group_size": 4, "version": "gemm"}})
    assert scheme.method == "awq"
    np.testing.assert_array_equal(ws.read_rows("m.weight", 0, 8), np.repeat(np.arange(8.0)[:, None], 4, axis=1))
    np.testing.assert_array_equal(ws.read_rows("m.weight", 5, 6), [[5.0] * 4])


def test_bit_streams_of_every_width_round_trip_from_any_code(tmp_path):
    rng = np.random.default_rng(0)
    for mode in ("stream", "word"):
        for bits in range(1, 9):
            for itemsize in (1, 2, 4, 8):
                codes = rng.integers(0, 1 << bits, size=(2, 77))
                words = pack(codes, bits, itemsize, mode)
                for s, e in ((0, 77), (5, 40), (33, 34), (64, 77)):
                    w0, w1, skip = span(s, e, bits, itemsize, mode)
                    np.testing.assert_array_equal(unpack(words[:, w0:w1], bits, e - s, mode, skip), codes[:, s:e])


# -- the project's writers, read back ---------------------------------------------------------------------------

SHAPE = Shape(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=256)
EXPORTS = {
    "gptq4": Export("gptq", 4, 32), "gptq3": Export("gptq", 3, 32), "gptq2_asym": Export("gptq", 2, 64, {"sym": False}),
    "gptq8_int16_words": Export("gptq", 8, 32, {"itemsize": 2}),
    "gptq4_act_order_v2": Export("gptq", 4, 32, {"act_order": True, "v1": False}),
    "awq_gemm": Export("awq", 4, 32), "awq_gemv": Export("awq", 4, 32, {"version": "gemv"}),
    "nf4_nested": Export("nf4"), "fp4": Export("fp4", options={"nested": False}), "int8": Export("int8"),
    "mlx4": Export("mlx", 4, 32), "mlx3": Export("mlx", 3, 32), "mlx6": Export("mlx", 6, 64),
    "ct_int4": Export("compressed", 4, 32), "ct_int4_asym": Export("compressed", 4, 32, {"sym": False}),
    "ct_int3": Export("compressed", 3, 32), "ct_int8": Export("compressed_int8"), "ct_fp8": Export("fp8"),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    write_model(folder, "llama", SHAPE, seed=1)
    return folder, random_state_dict("llama", SHAPE, seed=1)


@pytest.mark.parametrize("case", sorted(EXPORTS))
def test_every_written_layout_decodes_to_what_it_encodes_row_blocks_included(tmp_path, source, case):
    folder, sd = source
    rng = np.random.default_rng(0)
    hessians = {n: (lambda x: x.T @ x)(rng.standard_normal((256, v.shape[1]))) for n, v in sd.items() if v.ndim == 2}
    decoded = export_model(folder, tmp_path / case, EXPORTS[case], sd, hessians=hessians)
    with Checkpoint.open(tmp_path / case) as ck:
        assert ck.weights.scheme is not None and not ck.unmapped and ck.summary.n_layers == 2
        for name, values in decoded.items():
            np.testing.assert_array_equal(ck.weights.read_rows(name, 0, values.shape[0]), values)
            np.testing.assert_array_equal(ck.weights.read_rows(name, 3, 11), values[3:11])
            steps = ck.weights.steps(name, 3, 11)
            assert steps.shape == (8, values.shape[1]) and (steps > 0).all()
        # the quantiser rounds to its grid: never more than a step from the original (GPTQ spreads its error)
        if EXPORTS[case].method not in ("gptq",):
            for name, values in decoded.items():
                steps = ck.weights.steps(name, 0, values.shape[0])
                assert (np.abs(values - sd[name]) <= steps * 0.5 + 1e-3 * steps + 1e-6).mean() > 0.99


def test_a_quantised_pair_reads_at_most_twice_the_bytes_of_the_same_rows_in_bf16(tmp_path, source):
    folder, sd = source
    write_model(tmp_path / "bf16", "llama", SHAPE, seed=1, dtype="BF16")
    export_model(folder, tmp_path / "gptq", Export("gptq", 4, 32), sd)
    cost = {}
    for name in ("bf16", "gptq"):
        with Checkpoint.open(tmp_path / name) as ck:
            before = ck.weights.bytes_read
            ck.weights.read_rows("model.layers.1.mlp.up_proj.weight", 16, 48)
            cost[name] = ck.weights.bytes_read - before
    assert cost["gptq"] <= 2 * cost["bf16"] * 4 / 16 + 4096  # 4 bits of 16, plus the rows' scales and zeros


# -- files made by each format's own library ------------------------------------------------------------------


REFERENCE_CASES = {
    "mlx": [f"mlx:{b}:{g}" for b in (2, 3, 4, 5, 6, 8) for g in (32, 128)],
    "bitsandbytes": [f"bnb4:{t}:{n}" for t in ("nf4", "fp4") for n in ("nested", "flat")] + ["bnb8"],
    "compressed-tensors": [f"compressed:{s}:{y}:{b}" for s, y, b in (("group", "sym", 4), ("group", "asym", 4),
                                                                      ("channel", "sym", 8), ("group", "sym", 3),
                                                                      ("channel", "asym", 4))],
    "onnx": ["onnx_nbits:4:32:asym", "onnx_nbits:4:128:sym", "onnx_nbits:8:32:asym", "onnx_qdq:int8", "onnx_qdq:uint8",
             "onnx_float:f32", "onnx_float:f16"],
}


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Files made by each format's own library, one child process per library (tests/reference_formats.py says
    why a child), as {library: folder or the reason it was skipped}."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("reference")
    out = {}
    for library, cases in REFERENCE_CASES.items():
        proc = subprocess.run([sys.executable, "-m", "tests.reference_formats", str(root), *cases],
                              capture_output=True, text=True, cwd=Path(__file__).parent.parent)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[library] = proc.stdout.strip()[6:] if proc.stdout.startswith("skip:") else root
    return out


def _reference(references, library: str, *case: str):
    """A reference file opened, its scheme, and what the library decodes it to."""
    root = references[library]
    if isinstance(root, str):
        pytest.skip(root)
    folder = root / "_".join(case)
    weights = folder / ("model.onnx" if (folder / "model.onnx").exists() else "model.safetensors")
    ws, scheme = _weights(weights, json.loads((folder / "config.json").read_text()))
    return ws, scheme, dict(np.load(folder / "expected.npz"))


@pytest.mark.parametrize("bits", ["2", "3", "4", "5", "6", "8"])
def test_mlx_files_decode_as_mlx_dequantizes_them(references, bits):
    for group in ("32", "128"):
        ws, scheme, expected = _reference(references, "mlx", "mlx", bits, group)
        assert scheme.method == "mlx" and scheme.bits == [int(bits)] and scheme.group_sizes == [int(group)]
        name, values = next(iter(expected.items()))
        np.testing.assert_allclose(ws.read_rows(name, 0, 96), values, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ws.read_rows(name, 40, 45), values[40:45], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("quant_type,nested", [("nf4", "nested"), ("nf4", "flat"), ("fp4", "nested"), ("fp4", "flat")])
def test_bitsandbytes_4bit_decodes_as_its_cpu_path_dequantizes(references, quant_type, nested):
    ws, scheme, expected = _reference(references, "bitsandbytes", "bnb4", quant_type, nested)
    name, values = next(iter(expected.items()))
    assert scheme.layout == quant_type and ws.info(name).shape == (200, 128)
    got = ws.read_rows(name, 0, 200)
    np.testing.assert_allclose(got, values, rtol=1e-2, atol=1e-6)  # bitsandbytes rounds to the bf16 it was given
    np.testing.assert_array_equal(ws.read_rows(name, 101, 103), got[101:103])


def test_bitsandbytes_int8_rows_decode_with_their_row_maxima(references):
    ws, scheme, expected = _reference(references, "bitsandbytes", "bnb8")
    assert scheme.layout == "llm.int8"
    np.testing.assert_allclose(ws.read_rows("l.weight", 0, 64), expected["l.weight"], rtol=1e-6)


@pytest.mark.parametrize("strategy,sym,bits", [("group", "sym", "4"), ("group", "asym", "4"), ("channel", "sym", "8"),
                                               ("group", "sym", "3"), ("channel", "asym", "4")])
def test_compressed_tensors_decodes_as_its_own_decompressor(references, strategy, sym, bits):
    ws, scheme, expected = _reference(references, "compressed-tensors", "compressed", strategy, sym, bits)
    assert scheme.method == "compressed-tensors" and scheme.bits == [int(bits)]
    np.testing.assert_allclose(ws.read_rows("l.weight", 0, 48), expected["l.weight"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("case", REFERENCE_CASES["onnx"])
def test_onnx_weights_decode_as_onnxruntime_and_onnx_compute_them(references, case):
    ws, scheme, expected = _reference(references, "onnx", *case.split(":"))
    assert scheme is None and ws.format == "onnx"  # ONNX decodes its own quantisation: no safetensors method
    name, values = next(iter(expected.items()))
    assert ws.names() == [name]
    np.testing.assert_allclose(ws.read_rows(name, 0, values.shape[0]), values, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ws.read_rows(name, 7, 19), values[7:19], rtol=1e-6, atol=1e-6)


# -- what is refused, in one line --------------------------------------------------------------------------------


def test_a_method_parentage_does_not_read_is_named_in_one_line(tmp_path):
    write_tensors(tmp_path / "h.safetensors", {"m.W_q": np.zeros((4, 4), np.uint8), "m.qweight": np.zeros((1, 8), np.int32)})
    with pytest.raises(UnsupportedQuantizationError, match="'hqq'"):
        _weights(tmp_path / "h.safetensors", {"quantization_config": {"quant_method": "hqq"}})


def test_marlin_repacked_gptq_is_refused_by_name(tmp_path):
    write_tensors(tmp_path / "g.safetensors", {"m.qweight": np.zeros((1, 8), np.int32)})
    with pytest.raises(UnsupportedQuantizationError, match="marlin"):
        _weights(tmp_path / "g.safetensors", {"quantization_config": {"quant_method": "gptq", "bits": 4,
                                                                      "checkpoint_format": "marlin"}})


def test_parts_no_method_accounts_for_are_one_line_not_half_a_model(tmp_path):
    write_tensors(tmp_path / "x.safetensors", {"m.weight": np.zeros((4, 4), np.float32), "m.weight_zero_point": np.zeros(4, np.int8)})
    with pytest.raises(UnsupportedQuantizationError, match="weight_zero_point"):
        _weights(tmp_path / "x.safetensors")


def test_a_dequantised_export_with_its_old_config_reads_as_plain_weights(tmp_path):
    write_tensors(tmp_path / "d.safetensors", {"m.weight": np.ones((4, 4), np.float32)})
    ws, scheme = _weights(tmp_path / "d.safetensors", {"quantization_config": {"quant_method": "hqq"}})
    assert scheme is None and ws.names() == ["m.weight"]


HOSTILE = {
    "g_idx out of range": ({"m.qweight": np.zeros((1, 8), np.int32), "m.qzeros": np.zeros((1, 1), np.int32),
                            "m.scales": np.ones((1, 8), np.float16), "m.g_idx": np.full(8, 7, np.int32)}, "group index"),
    "scales for other rows": ({"m.qweight": np.zeros((1, 8), np.int32), "m.qzeros": np.zeros((1, 1), np.int32),
                               "m.scales": np.ones((1, 9), np.float16)}, "scales"),
    "qzeros of the wrong width": ({"m.qweight": np.zeros((1, 8), np.int32), "m.qzeros": np.zeros((1, 3), np.int32),
                                   "m.scales": np.ones((1, 8), np.float16)}, "qzeros"),
    "float codes": ({"m.qweight": np.zeros((1, 8), np.float32), "m.qzeros": np.zeros((1, 1), np.int32),
                     "m.scales": np.ones((1, 8), np.float16)}, "expected"),
    "missing scales": ({"m.qweight": np.zeros((1, 8), np.int32), "m.qzeros": np.zeros((1, 1), np.int32)}, "lacks"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_gptq_parts_are_refused_with_the_file_and_tensor_named(tmp_path, case):
    tensors, fragment = HOSTILE[case]
    write_tensors(tmp_path / "h.safetensors", tensors)
    with pytest.raises(FormatError) as info:
        ws, _ = _weights(tmp_path / "h.safetensors", {"quantization_config": {"quant_method": "gptq", "bits": 4}})
        ws.read_rows("m.weight", 0, 8)
    assert fragment in str(info.value) and "h.safetensors" in str(info.value)


def test_a_garbage_bitsandbytes_quant_state_is_one_line(tmp_path):
    write_tensors(tmp_path / "b.safetensors", {
        "m.weight": np.zeros((8, 1), np.uint8), "m.weight.absmax": np.ones(1, np.float32),
        "m.weight.quant_map": np.zeros(16, np.float32),
        "m.weight.quant_state.bitsandbytes__nf4": np.frombuffer(b'{"quant_type": "nf4", "shape": [1e999]}', np.uint8).copy()})
    with pytest.raises(FormatError, match="shape"):
        _weights(tmp_path / "b.safetensors")


def test_autogptq_quantize_config_beside_the_weights_is_read_when_config_json_has_none(tmp_path, source):
    folder, sd = source
    export_model(folder, tmp_path / "g", Export("gptq", 3, 32), sd)
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    qc = config.pop("quantization_config")
    (tmp_path / "g" / "config.json").write_text(json.dumps(config))
    (tmp_path / "g" / "quantize_config.json").write_text(json.dumps({k: v for k, v in qc.items() if k != "quant_method"}))
    with Checkpoint.open(tmp_path / "g") as ck:
        scheme = ck.weights.scheme
        assert (scheme.method, scheme.bits, scheme.config_source) == ("gptq", [3], "quantize_config.json")
        assert not ck.unmapped and ck.summary.n_layers == 2
