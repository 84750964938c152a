"""The JSON documents the commands print: strict JSON, whatever the inputs carried."""

from __future__ import annotations

import json
import math

from ..errors import clean_text


def dumps(doc: dict) -> str:
    """Strict JSON: NaN and Infinity (which a hostile config may carry) become null, text is valid UTF-8."""
    return json.dumps(json_safe(doc), indent=2, allow_nan=False)


def json_safe(obj):
    """A value json.dumps can write as standard JSON: numpy scalars and arrays as Python values, non-finite
    floats as null, lone surrogates replaced, anything else as its string."""
    import numpy as np

    if isinstance(obj, dict):
        return {clean_text(str(k)): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return clean_text(obj)
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    return clean_text(str(obj))
