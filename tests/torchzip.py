"""A tiny writer of torch zip checkpoints, for tests that must not need torch.

It emits the same pickle opcodes `torch.save` does (protocol 2, `_rebuild_tensor_v2` over persistent storage
ids), so the reader is tested against the format rather than against our own reader's assumptions.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

_STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage"}


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(entries: list[tuple[str, str, str, int, tuple, tuple, int]]) -> bytes:
    """entries: (name, storage class, storage key, storage numel, shape, stride, offset)."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"("
    for name, storage_cls, key, numel, shape, stride, offset in entries:
        pid = _tuple([_str("storage"), _global("torch", storage_cls), _str(key), _str("cpu"), _int(numel)]) + b"Q"
        args = _tuple([pid, _int(offset), _tuple([_int(d) for d in shape]), _tuple([_int(d) for d in stride]),
                       b"\x89", _global("collections", "OrderedDict") + b")R"])
        out += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    return out + b"u."


def write_torch_zip(path: str | Path, tensors: dict[str, np.ndarray], transpose: set[str] = frozenset(), pickle_bytes: bytes | None = None) -> Path:
    """Write tensors as torch.save would; names in `transpose` are stored as a transposed view of their storage."""
    path = Path(path)
    entries, blobs = [], {}
    for i, (name, value) in enumerate(tensors.items()):
        key = str(i)
        if name in transpose:  # store value.T contiguously and describe `value` as its transpose
            storage = np.ascontiguousarray(value.T)
            stride = (1, value.shape[0])
        else:
            storage = np.ascontiguousarray(value)
            stride = tuple(int(np.prod(value.shape[j + 1 :])) for j in range(value.ndim))
        blobs[key] = storage.tobytes()
        entries.append((name, _STORAGE[value.dtype], key, storage.size, value.shape, stride, 0))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes if pickle_bytes is not None else tensor_pickle(entries))
        z.writestr("archive/version", "3\n")
        for key, blob in blobs.items():
            z.writestr(f"archive/data/{key}", blob)
    return path


def hostile_pickle(command: str) -> bytes:
    """A pickle that runs `os.system(command)` when loaded by an unrestricted unpickler."""
    return b"\x80\x02" + _global("os", "system") + _tuple([_str(command)]) + b"R."
