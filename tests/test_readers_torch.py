import zipfile

import numpy as np
import pytest

from parentage.errors import FormatError, UnsafePickleError
from parentage.readers import TorchZipFile, open_file

from .conftest import requires_torch
from .torchzip import hostile_pickle, tensor_pickle, write_torch_zip


def test_rows_of_contiguous_and_transposed_tensors_come_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "a.weight": rng.standard_normal((10, 6)).astype(np.float32),
        "b.weight": rng.standard_normal((7, 5)).astype(np.float16),
        "c.weight": rng.standard_normal((4, 9)).astype(np.float32),
    }
    path = write_torch_zip(tmp_path / "pytorch_model.bin", tensors, transpose={"c.weight"})
    r = open_file(path)
    assert r.format == "torch" and sorted(r.names()) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(r.read_rows(name, 1, 3), value[1:3].astype(np.float32))


def test_contiguous_row_reads_are_one_read(tmp_path):
    path = write_torch_zip(tmp_path / "m.bin", {"w": np.ones((64, 32), np.float32)})
    r = TorchZipFile(path)
    before = r.stats.n_reads
    r.read_rows("w", 8, 24)
    # one read of the member's local header (to find its data) and one of the rows
    assert r.stats.n_reads - before == 2
    assert r.stats.bytes_read >= 16 * 32 * 4


def test_hostile_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = write_torch_zip(tmp_path / "evil.bin", {}, pickle_bytes=hostile_pickle(f"touch {marker}"))
    with pytest.raises(UnsafePickleError) as info:
        TorchZipFile(path)
    assert "os.system" in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()


def test_hostile_bare_pickle_is_refused_as_legacy_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.bin"
    path.write_bytes(hostile_pickle(f"touch {marker}"))
    with pytest.raises(FormatError, match="legacy"):
        open_file(path)
    assert not marker.exists()


def test_builtins_eval_is_not_on_the_allow_list(tmp_path):
    evil = b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R."
    path = write_torch_zip(tmp_path / "evil.bin", {}, pickle_bytes=evil)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        TorchZipFile(path)


def test_storage_named_by_the_pickle_but_missing_is_a_format_error(tmp_path):
    pkl = tensor_pickle([("w", "FloatStorage", "7", 4, (2, 2), (2, 1), 0)])
    path = write_torch_zip(tmp_path / "m.bin", {}, pickle_bytes=pkl)
    with pytest.raises(FormatError, match="storage '7'"):
        TorchZipFile(path)


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    path = tmp_path / "m.bin"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", tensor_pickle([("w", "FloatStorage", "0", 4, (4, 4), (4, 1), 0)]))
        z.writestr("archive/data/0", np.zeros(4, np.float32).tobytes())
    with pytest.raises(FormatError, match="storage holds 4"):
        TorchZipFile(path)


def test_truncated_zip_is_a_format_error(tmp_path):
    path = write_torch_zip(tmp_path / "m.bin", {"w": np.ones((64, 32), np.float32)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=str(path)):
        open_file(path)


@requires_torch
def test_rows_match_torch_save_for_every_common_dtype(tmp_path):
    import torch

    torch.manual_seed(0)
    sd = {
        "f32": torch.randn(6, 4),
        "bf16": torch.randn(6, 4).bfloat16(),
        "f16": torch.randn(6, 4).half(),
        "transposed": torch.randn(4, 6).t(),
        "param": torch.nn.Parameter(torch.randn(3)),
        "e4m3": torch.randn(5, 2).to(torch.float8_e4m3fn),
        "nested.inner": torch.arange(6).reshape(2, 3),
    }
    torch.save(sd, tmp_path / "m.bin")
    r = TorchZipFile(tmp_path / "m.bin")
    for name, value in sd.items():
        np.testing.assert_array_equal(r.read_rows(name, 0, value.shape[0]), value.detach().float().numpy())


@requires_torch
def test_torch_save_of_a_nested_state_dict_is_flattened(tmp_path):
    import torch

    torch.save({"model": {"layer.weight": torch.ones(2, 2)}}, tmp_path / "m.pt")
    assert TorchZipFile(tmp_path / "m.pt").names() == ["model.layer.weight"]


def test_allow_list_has_no_callable_from_outside_our_stand_ins():
    from parentage.readers import torch_bin

    for (module, name), obj in torch_bin.ALLOWED_GLOBALS.items():
        assert getattr(obj, "__module__", torch_bin.__name__) in (torch_bin.__name__, "collections"), (module, name)


def test_shape_and_stride_of_different_lengths_are_refused(tmp_path):
    pkl = tensor_pickle([("w", "FloatStorage", "0", 4, (2, 2), (2,), 0)])
    path = tmp_path / "m.bin"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", np.zeros(4, np.float32).tobytes())
    with pytest.raises(FormatError, match="2 dimensions but 1 strides"):
        TorchZipFile(path)
