"""The methods `parentage bench` scores: ours, the published baselines (in our own code, from their papers'
descriptions), and any a user plugs in.

A method gives each pair a score (higher = more related) and, where it has one, its own decision. Methods whose
published rule is a threshold learnt on unrelated pairs get it here from the manifest's unrelated pairs only
(`calibrate`), and say so. Every method sees the same two open checkpoints; ours reads the one compare document
of the pair.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import spearmanr

from ..checkpoint import Checkpoint
from ..assignment import linear_sum_assignment
from ..evidence import LOG10_P_FLOOR
from ..verdict import RELATED_LEVEL

NULL_QUANTILE = 0.95  # threshold rules learnt on unrelated pairs: their 95th percentile (a 5% in-sample FPR)
Z_LEVEL = 3.0  # z-score rules: three standard deviations above the unrelated pairs' mean


@dataclass
class Method:
    name: str
    baseline: bool
    rule: str  # "own" (the method decides), "quantile" or "z" (a threshold from the unrelated pairs)
    describe: str
    score: Callable | None = None  # (a, b, compare_doc) -> float | None; None: from our compare document
    decide: Callable | None = None  # score -> bool, for an "own" rule that is not "-log10 p >= 6"
    in_compare: bool = False  # computed inside compare (the shown baselines): compare's cost is its cost


# -- ours: the verdict and each counted test alone --------------------------------------------------------------

OUR_TESTS = ("hidden_dimension_order", "ffn_neuron_order", "ffn_neuron_agreement", "ffn_neuron_rank_order",
             "value_row_order", "attention_head_order", "identical_tensors")


def ours(doc: dict, name: str) -> tuple[float | None, bool | None]:
    """(score = -log10 p, decision) of the verdict or of one counted test, from the pair's compare document."""
    if name == "parentage":
        p = doc["verdict"]["log10_p"]
        return (None if p is None else -p), doc["verdict"]["label"] == "related"
    test = name.split(":", 1)[1]
    ev = next((e for e in doc["evidence"] if e["name"] == test), None)
    if ev is None or ev["log10_p"] is None:  # the test could not run on this pair: no evidence, p = 1
        return 0.0, False
    return -ev["log10_p"], ev["log10_p"] <= RELATED_LEVEL


# -- baselines ---------------------------------------------------------------------------------------------------


def _honestagi(a: Checkpoint, b: Checkpoint, doc: dict) -> float | None:
    ev = next((e for e in doc["evidence"] if e["name"] == "baseline_honestagi_std_profile"), None)
    return None if ev is None else ev["effect"]


def _raw_cosine(a: Checkpoint, b: Checkpoint, doc: dict) -> float | None:
    ev = next((e for e in doc["evidence"] if e["name"] == "baseline_raw_cosine"), None)
    return None if ev is None else ev["effect"]


PHI_ROWS = 256  # FFN neurons per layer matched (all of them in small models)


def phi_match(a: Checkpoint, b: Checkpoint, doc: dict | None = None) -> float | None:
    """A Zhu et al. (2025)-style matching test without residual alignment: per layer, match A's FFN neurons to
    B's by their up-projection rows (Hungarian on |cos|, in the raw residual basis), test the matching against
    the identity with Spearman's rho (its p-value under independence), and combine the layers' p-values with
    Fisher's method. Returns -log10 of the combined p; its own rule: p <= 1e-6 like ours. Assumes the same
    residual basis and one FFN per layer, as the constrained setting of the paper does; blind to a rotation."""
    from ..evidence.blocks import ffn_units, read_block

    ua, ub = ffn_units(a), ffn_units(b)
    logs = []
    for layer in sorted(set(ua) & set(ub)):
        x, y = ua[layer][0], ub[layer][0]
        m = min(PHI_ROWS, x.n_rows, y.n_rows)
        xa, xb = read_block(a, x, 0, m)[-1], read_block(b, y, 0, m)[-1]  # up rows (m, d)
        if xa.shape[1] != xb.shape[1] or m < 4:
            continue
        na = xa / np.maximum(np.linalg.norm(xa, axis=1, keepdims=True), 1e-30)
        nb = xb / np.maximum(np.linalg.norm(xb, axis=1, keepdims=True), 1e-30)
        rows, cols = linear_sum_assignment(-np.abs(na @ nb.T))
        rho, p = spearmanr(rows, cols)
        if not np.isfinite(p):
            continue
        p_one = p / 2 if rho > 0 else 1 - p / 2  # one-sided: kinship keeps the order
        logs.append(math.log(max(p_one, 1e-300)))
    if not logs:
        return None
    stat = -2 * sum(logs)  # Fisher: chi-square with 2k degrees of freedom under the null
    from scipy.stats import chi2

    score = float(-chi2.logsf(stat, 2 * len(logs)) / math.log(10))
    return score if math.isfinite(score) else -LOG10_P_FLOOR  # beyond double range: the floor ours uses


AWM_TOKENS = 2048  # shared-token embedding rows used to align the residual dimensions


def _ucka(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased linear CKA between two representations of the same n items (n, p) and (n, q)."""
    n = x.shape[0]
    if n < 4:
        return float("nan")

    def hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 - the papers' K and L
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(l, 0.0)
        one = np.ones(n)
        return float((np.sum(k * l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                      - 2 * (one @ k @ l @ one) / (n - 2)) / (n * (n - 3)))

    k, l = x @ x.T, y @ y.T  # noqa: E741
    denom = math.sqrt(max(hsic(k, k) * hsic(l, l), 1e-300))
    return hsic(k, l) / denom


def awm(a: Checkpoint, b: Checkpoint, doc: dict | None = None) -> float | None:
    """An AWM-style score (Zeng et al., 2026): align the residual dimensions by a linear assignment on shared-token
    embedding columns, then per layer the unbiased CKA between A's and B's Q (and K) weights, taking for each
    layer of A its best layer of B; the score is the mean. Decision: a z-score of Z_LEVEL against the manifest's
    unrelated pairs (the paper's own null constants are not reproduced here)."""
    from ..pair import _token_pairs
    from ..tokenizers import checkpoint_vocab

    ea, eb = a.find("embed") or a.find("lm_head"), b.find("embed") or b.find("lm_head")
    if ea is None or eb is None:
        return None
    pairs = _token_pairs(checkpoint_vocab(a), checkpoint_vocab(b), ea, eb, [])[:AWM_TOKENS]
    if len(pairs) < 32:
        return None
    x, y = ea.read_at(pairs[:, 0]), eb.read_at(pairs[:, 1])  # (n, d_a), (n, d_b)
    x, y = x - x.mean(0), y - y.mean(0)
    corr = (x / np.maximum(np.linalg.norm(x, axis=0), 1e-30)).T @ (y / np.maximum(np.linalg.norm(y, axis=0), 1e-30))
    rows, cols = linear_sum_assignment(-np.abs(corr))  # dimension i of A ~ dimension cols[i] of B
    sign = np.sign(corr[rows, cols])
    scores = []
    la = [i for i in range(a.summary.n_layers or 0) if a.find("attn_q", i) is not None]
    lb = [j for j in range(b.summary.n_layers or 0) if b.find("attn_q", j) is not None]
    if not la or not lb:
        return None
    mats_b = {j: [b.get(r, j).read() for r in ("attn_q", "attn_k")] for j in lb}
    for i in la:
        qa, ka = (a.get(r, i).read() for r in ("attn_q", "attn_k"))  # (rows, d_a)
        best = -1.0
        for j in lb:
            qb, kb = mats_b[j]
            if qb.shape[1] <= cols.max() or qa.shape[0] != qb.shape[0] or ka.shape[0] != kb.shape[0]:
                continue
            # items: residual dimensions (columns), aligned; features: output rows
            vals = [_ucka(wa[:, rows].T, (wb[:, cols] * sign).T) for wa, wb in ((qa, qb), (ka, kb))]
            best = max(best, float(np.nanmean(vals)))
        if best > -1.0:
            scores.append(best)
    return float(np.mean(scores)) if scores else None


# The negative-pair constants the AWM release ships (main.py: mean 0.00375, std 0.0028 of its Q/K CKA over 90
# unrelated pairs of 7B-class models): what a user of the shipped version compares every score with.
AWM_SHIPPED_MEAN, AWM_SHIPPED_STD = 0.00375, 0.0028


def _awm_shipped_decide(score: float) -> bool:
    return abs(score - AWM_SHIPPED_MEAN) / AWM_SHIPPED_STD >= Z_LEVEL


BASELINES = {
    "honestagi_std_profile": Method("honestagi_std_profile", True, "quantile",
                                    "HonestAGI: Pearson r of per-layer attention std profiles", _honestagi,
                                    in_compare=True),
    "raw_cosine": Method("raw_cosine", True, "quantile", "mean cosine of same-name tensors", _raw_cosine,
                         in_compare=True),
    "phi_match": Method("phi_match", True, "own", "Zhu et al.-style neuron matching without alignment "
                                                  "(Spearman + Fisher), -log10 p; p <= 1e-6", phi_match),
    "awm": Method("awm", True, "z", "AWM-style LAP-aligned unbiased CKA of Q/K with layer matching; z >= 3 "
                                    "against the manifest's unrelated pairs", awm),
    "awm_shipped_null": Method("awm_shipped_null", True, "own", "the same score, z >= 3 against the null constants "
                                                                "the AWM release ships (mean 0.00375, std 0.0028)", awm,
                               _awm_shipped_decide),
}


def our_methods() -> dict[str, Method]:
    out = {"parentage": Method("parentage", False, "own", "the verdict: related at combined log10 p <= -6")}
    for t in OUR_TESTS:
        out[f"parentage:{t}"] = Method(f"parentage:{t}", False, "own", f"{t} alone: log10 p <= -6")
    return out


def all_methods() -> dict[str, Method]:
    return {**our_methods(), **BASELINES}


def plugin(spec: str) -> Method:
    """`module:function` with function(a: Checkpoint, b: Checkpoint) -> float (higher = more related); an
    optional attribute `decide(score) -> bool` gives its own rule, else the unrelated pairs' 95th percentile."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"{spec!r}: a plug-in method is module:function")
    fn = getattr(importlib.import_module(module), attr)
    own = getattr(fn, "decide", None)
    return Method(spec, True, "own" if own else "quantile", getattr(fn, "__doc__", None) or spec,
                  lambda a, b, doc: fn(a, b), own)


def calibrate(method: Method, unrelated_scores: list[float]) -> float | None:
    """The decision threshold a learnt rule takes from the unrelated pairs' scores (None for "own" rules)."""
    s = np.array([x for x in unrelated_scores if x is not None and np.isfinite(x)], dtype=float)
    if method.rule == "own" or s.size == 0:
        return None
    if method.rule == "quantile":
        return float(np.quantile(s, NULL_QUANTILE))
    return float(s.mean() + Z_LEVEL * max(s.std(ddof=1) if s.size > 1 else 0.0, 1e-12))
