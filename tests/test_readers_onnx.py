"""ONNX exports read as weights: our protobuf parser against onnx and onnxruntime, roles found through the graph
(node paths, exporters' names, or the graph's structure alone), bounded parsing of hostile files."""

import json

import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.errors import FormatError, LimitError
from parentage.pair import compare
from parentage.readers import WeightSet, open_file, sniff_format
from parentage.synthetic import Shape, config_for, random_state_dict, write_model
from parentage.zoo.onnx_export import NAMING, export_onnx, f_bytes, f_int, tensor_proto

SHAPE = Shape(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, ffn=128, vocab=256)


def _export(folder, weights="F32", naming="torch", external=True, seed=1):
    sd = random_state_dict("llama", SHAPE, seed=seed)
    truth = export_onnx(folder, sd, SHAPE.n_layers, weights, naming, external)
    (folder / "config.json").write_text(json.dumps(config_for("llama", SHAPE)))
    return truth


@pytest.mark.parametrize("weights", ["F32", "F16", "int8", "nbits4"])
@pytest.mark.parametrize("naming", NAMING)
def test_every_weight_is_found_under_its_hugging_face_name_and_decodes_to_what_was_written(tmp_path, weights, naming):
    truth = _export(tmp_path / "m", weights, naming, external=naming != "genai")
    with Checkpoint.open(tmp_path / "m") as ck:
        assert ck.format == "onnx" and ck.summary.family == "llama" and not ck.unmapped
        assert ck.summary.n_layers == 2 and ck.summary.hidden_size == 64 and ck.summary.intermediate_size == 128
        assert set(ck.weights.names()) == set(truth)
        for name, values in truth.items():
            np.testing.assert_array_equal(ck.weights.read_rows(name, 0, values.shape[0]).reshape(values.shape), values)
            np.testing.assert_array_equal(ck.weights.read_rows(name, 3, 9).reshape(6, -1), values[3:9].reshape(6, -1))


def test_a_block_of_a_transposed_matmul_weight_reads_only_its_columns(tmp_path):
    _export(tmp_path / "m", "F32")
    with Checkpoint.open(tmp_path / "m") as ck:
        before = ck.weights.bytes_read
        ck.weights.read_rows("model.layers.1.mlp.up_proj.weight", 16, 32)  # stored (64, 128): columns 16..31
        assert ck.weights.bytes_read - before == 16 * 64 * 4


def test_an_onnx_export_of_a_model_is_its_re_export_or_quantisation(tmp_path):
    src = write_model(tmp_path / "src", "llama", SHAPE, seed=1)
    _export(tmp_path / "f32", "F32")
    _export(tmp_path / "q8", "int8")
    doc = compare(str(src), str(tmp_path / "f32"))
    assert doc["verdict"]["label"] == "related" and doc["alignment"]["export"]["relation"] == "re_export"
    doc = compare(str(src), str(tmp_path / "q8"))
    export = doc["alignment"]["export"]
    assert doc["verdict"]["label"] == "related"
    assert (export["relation"], export["child"]) == ("quantization", "B") and not export["altered"]


def test_sniffing_tells_onnx_from_every_other_format(tmp_path):
    _export(tmp_path / "m", "F32", external=False)
    assert sniff_format(tmp_path / "m" / "model.onnx") == "onnx"
    write_model(tmp_path / "s", "llama", SHAPE)
    assert sniff_format(tmp_path / "s" / "model.safetensors") == "safetensors"


# -- hostile files ---------------------------------------------------------------------------------------------


def _model_bytes(graph: bytes) -> bytes:
    return f_int(1, 10) + f_bytes(2, "x") + f_bytes(7, graph)


def _one_matmul_graph(tensor: bytes) -> bytes:
    node = f_bytes(1, "x") + f_bytes(1, "w") + f_bytes(2, "y") + f_bytes(3, "/model/layers.0/mlp/up_proj/MatMul") + f_bytes(4, "MatMul")
    return f_bytes(1, node) + f_bytes(5, tensor)


HOSTILE = {
    "truncated": (lambda raw: raw[: len(raw) // 2], FormatError, "past"),
    "a length beyond the message": (lambda raw: raw[:-1], FormatError, "past"),
    "an eleven-byte varint": (lambda raw: f_int(1, 10) + b"\x10" + b"\xff" * 11 + b"\x01", FormatError, "varint"),
    "wire type 7": (lambda raw: f_int(1, 10) + bytes([0x17]) + raw[2:], FormatError, "wire type"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_broken_protobuf_is_one_line_naming_the_file(tmp_path, case):
    make, error, fragment = HOSTILE[case]
    good = _model_bytes(_one_matmul_graph(tensor_proto("w", "F32", (4, 4), b"\0" * 64)))
    path = tmp_path / "model.onnx"
    path.write_bytes(make(good))
    with pytest.raises(error) as info:
        WeightSet([open_file(path)])
    assert str(path) in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "a/../../secret.bin", ""])
def test_external_data_outside_the_model_folder_is_never_opened(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    (tmp_path / "m").mkdir()
    t = tensor_proto("w", "F32", (4, 4), b"\0" * 64, (location, 0))
    path = tmp_path / "m" / "model.onnx"
    path.write_bytes(_model_bytes(_one_matmul_graph(t)))
    with pytest.raises(FormatError, match="external data"):
        WeightSet([open_file(path)])


def test_dimensions_claiming_more_bytes_than_the_tensor_holds_are_refused(tmp_path):
    t = tensor_proto("w", "F32", (1 << 20, 1 << 20), b"\0" * 64)
    path = tmp_path / "model.onnx"
    path.write_bytes(_model_bytes(_one_matmul_graph(t)))
    with pytest.raises(FormatError, match="needs"):
        WeightSet([open_file(path)])


def test_millions_of_tiny_fields_are_refused_before_they_cost(tmp_path, monkeypatch):
    import parentage.readers.onnx as onnx_reader

    monkeypatch.setattr(onnx_reader, "ONNX_MAX_FIELDS", 1000)
    node = f_bytes(1, b"".join(f_bytes(1, "x") for _ in range(2000)))
    path = tmp_path / "model.onnx"
    path.write_bytes(_model_bytes(node))
    with pytest.raises(LimitError, match="protobuf fields"):
        WeightSet([open_file(path)])


def test_a_graph_without_weights_is_one_line(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(_model_bytes(f_bytes(1, f_bytes(1, "x") + f_bytes(2, "y") + f_bytes(4, "Relu"))))
    with pytest.raises(FormatError, match="no weight tensors"):
        WeightSet([open_file(path)])
