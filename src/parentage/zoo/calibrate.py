"""What a quantiser measures on calibration text before it quantises: each linear layer's inputs.

GPTQ needs each layer's input second moment X^T X (its Hessian, up to a factor); AWQ the mean magnitude of
each input channel and the inputs themselves (its scale search minimises the output error on them). Both are
taken in one forward pass of the zoo's model over calibration tokens, by recording what every `F.linear` call
receives, keyed by the weight it multiplies.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .model import ModelConfig, forward

SAMPLE_INPUTS = 256  # input rows kept per layer for AWQ's output-error search


def layer_inputs(cfg: ModelConfig, params: dict[str, torch.Tensor], tokens: torch.Tensor
                 ) -> dict[str, dict[str, np.ndarray]]:
    """{weight name: {"hessian": X^T X (in, in), "mean_abs": mean |x| (in,), "sample": (<= 256, in)}}."""
    names = {id(v): k for k, v in params.items() if v.ndim == 2}
    stats: dict[str, dict[str, np.ndarray]] = {}
    original = F.linear

    def recording(x, weight, bias=None):
        name = names.get(id(weight))
        if name is not None:
            flat = x.detach().reshape(-1, x.shape[-1]).double()  # (tokens, in)
            s = stats.setdefault(name, {"hessian": 0.0, "abs": 0.0, "n": 0, "sample": []})
            s["hessian"] = s["hessian"] + (flat.T @ flat).numpy()
            s["abs"] = s["abs"] + flat.abs().sum(0).numpy()
            s["n"] += flat.shape[0]
            if sum(len(r) for r in s["sample"]) < SAMPLE_INPUTS:
                s["sample"].append(flat[:SAMPLE_INPUTS].float().numpy())
        return original(x, weight, bias)

    F.linear = recording
    try:
        with torch.no_grad():
            forward(cfg, params, tokens)
    finally:
        F.linear = original
    return {k: {"hessian": v["hessian"] / v["n"], "mean_abs": v["abs"] / v["n"],
                "sample": np.concatenate(v["sample"])[:SAMPLE_INPUTS]} for k, v in stats.items()}
