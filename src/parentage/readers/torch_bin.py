"""PyTorch zip checkpoints (`pytorch_model.bin`, `.pt`, `.pth`) without torch and without trusting the pickle.

A torch checkpoint is a zip holding `data.pkl` (the state dict, pickled) and one member per storage. The pickle
is untrusted: unpickling it normally can run any code. Our unpickler resolves only the globals on the
allow-list below, each to a harmless stand-in of ours (nothing from torch is ever imported); any other global
(`os.system`, `builtins.eval`, ...) stops the load before it can be called.

Storages are stored uncompressed and aligned, so tensor rows are read through mmap at their offset in the zip.
"""

from __future__ import annotations

import lzma
import math
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import MAX_DIM, TORCH_MAX_ENTRIES, TORCH_MAX_NESTING, TORCH_MAX_PICKLE, TORCH_MAX_WHOLE_STORAGE
from ..dtypes import DTYPES, decode
from ..errors import FormatError, LimitError, UnsafePickleError, UnsupportedDtypeError

# What the zip module and its decompressors raise on a corrupt, encrypted or unsupported member.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
              ValueError, UnicodeDecodeError, zlib.error, lzma.LZMAError, struct.error)
from .base import FileReader, TensorInfo, check_row_range, rows_cols, shaped_rows

# torch's names for storage classes and dtypes -> our dtype names. None: known to torch, not decodable here.
_STORAGE_DTYPES = {
    "DoubleStorage": "F64", "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
    "Float8_e4m3fnStorage": "F8_E4M3", "Float8_e5m2Storage": "F8_E5M2",
}
_TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "uint16": "U16", "uint32": "U32", "uint64": "U64",
}


@dataclass(frozen=True)
class _StorageType:
    dtype: str | None  # None for UntypedStorage: the tensor carries the dtype


@dataclass(frozen=True)
class _DType:
    dtype: str


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str | None
    numel: int  # elements for typed storages, bytes for untyped ones


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    """Stand-in for torch._utils._rebuild_tensor_v2/_v3: record where the tensor lives, build nothing."""
    dtype = storage.dtype
    for extra in rest:  # v3 passes the dtype after requires_grad and backward_hooks
        if isinstance(extra, _DType):
            dtype = extra.dtype
    if not isinstance(storage, _Storage) or dtype is None:
        raise pickle.UnpicklingError("tensor without a storage or dtype")
    return _Tensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride), dtype)


def _rebuild_parameter(data, *_):
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):
    return func(*args)


class _Marker:
    """A class object from torch (torch.Tensor, nn.Parameter) that only serves as an argument."""


def _allowed() -> dict[tuple[str, str], object]:
    table: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _Marker,
        ("torch.nn.parameter", "Parameter"): _Marker,
        ("torch.storage", "UntypedStorage"): _StorageType(None),
        ("torch", "UntypedStorage"): _StorageType(None),
    }
    table.update({("torch", k): _StorageType(v) for k, v in _STORAGE_DTYPES.items()})
    table.update({("torch", k): _DType(v) for k, v in _TORCH_DTYPES.items()})
    return table


ALLOWED_GLOBALS = _allowed()


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path):
        import io

        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                self.path,
                f"pickle references {module}.{name}, which is not on the allow-list; refused without executing anything "
                "(a state dict needs only torch tensor globals)",
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid
        return _Storage(str(key), stype.dtype, int(numel))


def _flatten(obj, path: Path) -> dict[str, _Tensor]:
    """State dicts are sometimes nested ({"model": {...}}, {"state_dict": {...}}): flatten with dots.

    Iterative and capped: a pickle may reuse one dict at every level, so that a few hundred bytes describe
    2^60 paths, or nest dicts thousands deep."""
    out: dict[str, _Tensor] = {}
    stack = [(obj, "", 0)]
    visited = 0
    while stack:
        node, prefix, depth = stack.pop()
        visited += 1
        if visited > TORCH_MAX_ENTRIES:
            raise LimitError(path, f"data.pkl describes more than {TORCH_MAX_ENTRIES:,} entries (shared or "
                                   "self-referencing dicts?); no real state dict does")
        if isinstance(node, _Tensor):
            out[prefix.rstrip(".")] = node
        elif isinstance(node, dict):
            if depth >= TORCH_MAX_NESTING:
                raise LimitError(path, f"data.pkl nests dicts deeper than {TORCH_MAX_NESTING} levels")
            stack.extend((v, f"{prefix}{k}.", depth + 1) for k, v in reversed(list(node.items())))
    return out


class TorchZipFile(FileReader):
    format = "torch"
    _zip = None

    def _open(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
            raise FormatError(
                self.path,
                "legacy (pre-1.6, non-zip) torch serialisation is not supported; convert it to safetensors first",
            )
        try:
            self._zip = zipfile.ZipFile(self.path)
            members = {i.filename: i for i in self._zip.infolist()}
        except ZIP_ERRORS as e:
            raise FormatError(self.path, f"not a readable torch zip checkpoint ({type(e).__name__}: {e})") from None
        encrypted = next((i.filename for i in members.values() if i.flag_bits & 0x1), None)
        if encrypted is not None:  # its bytes are ciphertext: decoding them as weights would be silently wrong
            raise FormatError(self.path, f"zip member {encrypted!r} is encrypted; a torch checkpoint never is")
        pkl = [n for n in members if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise FormatError(self.path, "torch zip checkpoint has no single '<archive>/data.pkl'")
        self._prefix = pkl[0][: -len("data.pkl")]
        self._offsets: dict[str, int] = {}
        self._members = members
        info = members[pkl[0]]
        if info.file_size > TORCH_MAX_PICKLE:
            raise FormatError(self.path, f"data.pkl is {info.file_size} bytes, beyond the {TORCH_MAX_PICKLE}-byte cap")
        try:
            with self._zip.open(pkl[0]) as f:
                data = f.read(TORCH_MAX_PICKLE + 1)  # the declared size may lie; never inflate past the cap
        except ZIP_ERRORS as e:
            raise FormatError(self.path, f"cannot read data.pkl ({type(e).__name__}: {e})") from None
        if len(data) > TORCH_MAX_PICKLE:
            raise LimitError(self.path, f"data.pkl inflates beyond the {TORCH_MAX_PICKLE}-byte cap")
        self.stats.add(len(data) + 22)  # the pickle and the end-of-central-directory record
        try:
            obj = _SafeUnpickler(data, self.path).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # any malformed pickle: refuse it as a format problem
            raise FormatError(self.path, f"data.pkl is not a valid state-dict pickle ({type(e).__name__}: {e})") from None
        self._tensors = _flatten(obj, self.path)
        self.metadata: dict = {}
        self._entries: dict[str, TensorInfo] = {}
        for name, t in self._tensors.items():
            if t.dtype not in DTYPES:
                raise UnsupportedDtypeError(self.path, f"tensor {name!r} has dtype {t.dtype}")
            self._check_bounds(name, t)
            n = math.prod(t.shape) if t.shape else 1
            self._entries[name] = TensorInfo(name, t.dtype, t.shape, str(self.path), n * DTYPES[t.dtype].itemsize)

    def _member(self, key: str) -> zipfile.ZipInfo:
        name = f"{self._prefix}data/{key}"
        if name not in self._members:
            raise FormatError(self.path, f"storage {key!r} named by data.pkl is missing from the zip")
        return self._members[name]

    def _check_bounds(self, name: str, t: _Tensor) -> None:
        itemsize = DTYPES[t.dtype].itemsize
        member = self._member(t.storage.key)
        if member.compress_type == zipfile.ZIP_STORED and member.compress_size != member.file_size:
            raise FormatError(self.path, f"stored zip member {member.filename!r} declares {member.file_size} bytes "
                                         f"but holds {member.compress_size}")
        if len(t.shape) != len(t.stride):
            raise FormatError(self.path, f"tensor {name!r} has {len(t.shape)} dimensions but {len(t.stride)} strides")
        if any(s < 0 for s in t.shape) or any(s < 0 for s in t.stride) or t.offset < 0:
            raise FormatError(self.path, f"tensor {name!r} has negative shape, stride or offset")
        if len(t.shape) > 8 or any(s > MAX_DIM for s in t.shape + t.stride) or t.offset > MAX_DIM:
            raise FormatError(self.path, f"tensor {name!r} has a shape, stride or offset beyond 2^40")
        last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride)) if all(t.shape) else t.offset - 1
        if (last + 1) * itemsize > member.file_size:
            raise FormatError(
                self.path, f"tensor {name!r} reaches element {last} but its storage holds {member.file_size // itemsize}"
            )

    @staticmethod
    def _extent(t: _Tensor) -> int:
        """Elements of the storage the tensor reaches: its offset plus its last element, plus one."""
        if not all(t.shape):
            return t.offset
        return t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride)) + 1

    def _data_offset(self, member: zipfile.ZipInfo) -> int:
        # Local file header: 30 fixed bytes, then the name and the extra field, then the data. Read once per
        # storage, so later row reads are a single read each.
        if member.filename in self._offsets:
            return self._offsets[member.filename]
        raw = bytes(self._file.read(member.header_offset, 30))
        if raw[:4] != b"PK\x03\x04":
            raise FormatError(self.path, f"zip member {member.filename!r} has a corrupt local header")
        name_len, extra_len = struct.unpack("<HH", raw[26:30])
        self._offsets[member.filename] = member.header_offset + 30 + name_len + extra_len
        return self._offsets[member.filename]

    def names(self) -> list[str]:
        return list(self._entries)

    def info(self, name: str) -> TensorInfo:
        return self._entries[name]

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        info, t = self._entries[name], self._tensors[name]
        check_row_range(self.path, info, start, stop)
        n_rows, n_cols = rows_cols(info.shape)
        itemsize = DTYPES[t.dtype].itemsize
        member = self._member(t.storage.key)
        contiguous = all(
            t.stride[i] == math.prod(t.shape[i + 1 :]) for i in range(len(t.shape)) if t.shape[i] > 1
        )
        if member.compress_type != zipfile.ZIP_STORED:
            # Rare (hand-made zips; torch.save never compresses): inflate only as far as the tensor reaches,
            # so a member that inflates to gigabytes costs no more than the declared shape needs.
            need = self._extent(t) * itemsize
            if need > TORCH_MAX_WHOLE_STORAGE:
                raise LimitError(self.path, f"tensor {name!r} sits in a compressed member and needs {need:,} bytes "
                                            f"inflated (cap {TORCH_MAX_WHOLE_STORAGE:,}); re-save it uncompressed")
            try:
                with self._zip.open(member.filename) as f:
                    storage = np.frombuffer(f.read(need), dtype=np.uint8)
            except ZIP_ERRORS as e:
                raise FormatError(self.path, f"cannot inflate storage {t.storage.key!r} ({type(e).__name__}: {e})") from None
            if storage.size < need:
                raise FormatError(self.path, f"storage {t.storage.key!r} inflates to {storage.size} bytes, "
                                             f"short of the {need} tensor {name!r} needs")
            self.stats.add(member.compress_size)
            elems = decode(t.dtype, storage)
        elif contiguous:
            base = self._data_offset(member) + t.offset * itemsize
            raw = self._file.read(base + start * n_cols * itemsize, (stop - start) * n_cols * itemsize)
            return shaped_rows(decode(t.dtype, raw), info.shape, stop - start)
        else:
            need = self._extent(t) * itemsize
            if need > TORCH_MAX_WHOLE_STORAGE:
                raise LimitError(self.path, f"strided tensor {name!r} needs {need:,} bytes decoded whole "
                                            f"(cap {TORCH_MAX_WHOLE_STORAGE:,})")
            elems = decode(t.dtype, self._file.read(self._data_offset(member), need))
        view = np.lib.stride_tricks.as_strided(
            elems[t.offset :], shape=t.shape, strides=tuple(s * 4 for s in t.stride), writeable=False
        )
        rows = np.ascontiguousarray(view).reshape(n_rows, n_cols)[start:stop]
        return shaped_rows(rows.reshape(-1), info.shape, stop - start)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._file.close()
