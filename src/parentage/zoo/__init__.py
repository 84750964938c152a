"""The zoo: small model families with known ground truth (optional extra: torch, tokenizers, safetensors)."""

from __future__ import annotations

import importlib.util

from ..errors import ParentageError

_NEEDED = ("torch", "tokenizers", "safetensors")


class MissingExtraError(ParentageError, ImportError):
    """An optional dependency is not installed."""


def require_zoo_extra() -> None:
    missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(
            None, f"the zoo needs {', '.join(missing)}: pip install 'parentage[zoo]' (pins torch==2.13.0, a CPU build here)"
        )
