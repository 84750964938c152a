"""Linear sum assignment: scipy's exact solver, without the cost of importing `scipy.optimize`.

Every compare test that matches units (neurons, heads, residual dimensions) calls one solver. scipy's is exact
and fast, but `import scipy.optimize` imports scipy.linalg, scipy.sparse and most of scipy with it: about
0.3 s on 2 cores, more than a whole tiny-model comparison. The solver itself is one compiled module
(`scipy/optimize/_lsap`) that needs only numpy, so it is loaded from its file; if that ever fails (a scipy that
moved it), the public import is used instead, and the answer is the same.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np


@functools.cache
def _solver() -> Callable:
    try:
        spec = importlib.util.find_spec("scipy")  # finds the package without running its __init__
        folder = Path(next(iter(spec.submodule_search_locations))) / "optimize"
        path = next(p for p in folder.iterdir() if p.name.startswith("_lsap.") and p.suffix in (".so", ".pyd"))
        loader = importlib.machinery.ExtensionFileLoader("_lsap", str(path))
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("_lsap", path, loader=loader))
        loader.exec_module(module)
        return module.linear_sum_assignment
    except Exception:  # noqa: BLE001 - any layout we do not recognise: the public, slower import
        from scipy.optimize import linear_sum_assignment

        return linear_sum_assignment


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the minimum-cost one-to-one assignment of a (n, m) cost matrix; min(n, m) pairs, rows
    ascending. scipy.optimize.linear_sum_assignment exactly."""
    return _solver()(cost)
