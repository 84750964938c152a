"""Built-in example checkpoints for `parentage demo`, written with numpy alone (no torch, no download).

A base model, a derived one (the base with 2% noise on every matrix and a fresh layer inserted in the middle:
the shape of continued training with added layers), and an independent model of the same shape.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .constants import cache_dir
from .errors import FormatError
from .safeio import read_json
from .synthetic import Shape, config_for, random_state_dict, write_safetensors

SHAPE = Shape(n_layers=6, hidden=128, ffn=384, vocab=512, n_heads=8, n_kv_heads=4)
INSERT_AFTER = 2  # the derived model gets a new layer after this one


def _derived(base: dict[str, np.ndarray], fresh: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for name, w in base.items():
        if ".layers." in name:
            i = int(name.split(".layers.")[1].split(".")[0])
            j = i + 1 if i > INSERT_AFTER else i
            name = name.replace(f".layers.{i}.", f".layers.{j}.")
        out[name] = w + (0.02 * w.std() * rng.standard_normal(w.shape)).astype(np.float32) if w.ndim == 2 else w
    for name, w in fresh.items():  # the inserted layer: fresh weights
        if f".layers.{INSERT_AFTER + 1}." in name:
            out[name] = w
    return out


def _write(folder: Path, tensors: dict[str, np.ndarray], n_layers: int) -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    config = config_for("llama", replace(SHAPE, n_layers=n_layers))
    write_safetensors(folder / "model.safetensors", tensors, dtype="BF16")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def demo_models() -> tuple[Path, Path, Path]:
    """(base, derived, independent) folders in the cache, written on first use."""
    root = cache_dir() / "demo" / "v2"
    base_dir, derived_dir, indep_dir = root / "base", root / "derived", root / "independent"
    if all((d / "config.json").is_file() for d in (base_dir, derived_dir, indep_dir)):
        return base_dir, derived_dir, indep_dir
    base = random_state_dict("llama", SHAPE, seed=0)
    fresh = random_state_dict("llama", replace(SHAPE, n_layers=SHAPE.n_layers + 1), seed=2)
    # config.json last: its presence marks a finished folder
    _write(base_dir, base, SHAPE.n_layers)
    _write(derived_dir, _derived(base, fresh, np.random.default_rng(1)), SHAPE.n_layers + 1)
    _write(indep_dir, random_state_dict("llama", SHAPE, seed=1), SHAPE.n_layers)
    return base_dir, derived_dir, indep_dir


def zoo_pairs(zoo_dir: Path | None = None, log=None, quick: bool = False) -> tuple[list[tuple[str, Path, Path]], str, list[Path]]:
    """(title, A, B) pairs to compare, where they came from, and unrelated models of the same shape (whose std
    profiles the reports draw beside the pair's).

    With the `zoo` extra installed: the ci-size zoo, built into the cache on first use (a few minutes) or taken
    from `zoo_dir`; the pairs are a derived model that went through every trick at once (continued training,
    FFN widened, a layer inserted, tokenizer replaced) and a student distilled from the base (behaves alike,
    independent weights). Without it: the numpy-only models of `demo_models`.
    """
    import importlib.util
    if quick or (zoo_dir is None and importlib.util.find_spec("torch") is None):
        base, derived, independent = demo_models()
        return [("derived pair", base, derived), ("independent pair", base, independent)], (
            "numpy-generated models" + ("" if quick else " (install parentage[zoo] for the trained zoo)")), []
    if zoo_dir is None:
        from .zoo.build import build_zoo

        zoo_dir = cache_dir() / "zoo-ci"
        build_zoo(zoo_dir, size="ci", seed=0, log=log)
    manifest_path = Path(zoo_dir) / "manifest.json"
    try:
        return _demo_pairs(zoo_dir, read_json(manifest_path))
    except (KeyError, StopIteration, TypeError, AttributeError) as e:
        raise FormatError(manifest_path, f"is not a zoo manifest parentage wrote ({type(e).__name__}: {e}); "
                                         "build one with `parentage zoo build DIR`") from None


def _demo_pairs(zoo_dir: Path, manifest: dict):
    models = manifest["models"]
    base = next(n for n, m in models.items() if m["recipe"] == "base")

    def path(name: str) -> Path:
        return Path(zoo_dir) / models[name]["path"]

    derived = next((n for n, m in models.items() if m["recipe"] == "combined" and base in m.get("parents", [])),
                   next(n for n, m in models.items() if base in m.get("parents", [])))
    other = next((n for n, m in models.items() if m["recipe"] == "distill"),
                 next(n for n, m in models.items() if m["recipe"] == "base" and n != base))
    shape = models[base]["model_config"]
    unrelated = [n for n, m in models.items() if m["recipe"] == "base" and n != base and m["model_config"] == shape][:2]
    return [(f"derived pair ({derived})", path(base), path(derived)),
            (f"independent pair ({other})", path(base), path(other))], f"the ci-size zoo in {zoo_dir}", [
        path(n) for n in unrelated]
