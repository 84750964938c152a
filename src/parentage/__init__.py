"""parentage: test whether one language-model checkpoint was derived from another, from the weights.

    import parentage
    c = parentage.compare("./base", "./suspect")      # -> Comparison
    s = parentage.inspect("./suspect")                # -> Summary
    t = parentage.tokenizer_lineage("./base", "./suspect")

Names are imported when first used, so `import parentage` (and `parentage --help`) costs no numpy.
"""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it

_LAZY = {
    "compare": ("api", "compare"), "inspect": ("api", "inspect"), "tokenizer_lineage": ("api", "tokenizer_lineage"),
    "Comparison": ("api", "Comparison"), "Summary": ("api", "Summary"), "Cost": ("api", "Cost"),
    "Checkpoint": ("checkpoint", "Checkpoint"), "Evidence": ("evidence", "Evidence"), "Verdict": ("verdict", "Verdict"),
    "ParentageError": ("errors", "ParentageError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'parentage' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
