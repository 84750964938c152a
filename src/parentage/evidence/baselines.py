"""Published statistics without a null model: shown beside the evidence, never counted (DESIGN principle 1).

- `honestagi_std_profile`: the statistic of the 2025 public accusation — per layer, the standard deviation of
  each attention matrix (Q, K, V, O); per matrix, the Pearson correlation of the two depth profiles; averaged.
  Independently trained models of similar recipe give high values too, because depth profiles of weight
  scale are shaped by the architecture and optimiser, not by ancestry.
- `raw_cosine`: cosine of same-named tensors, blind to every permutation and rotation an adversary gets free.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint
from . import Evidence

ATTN_ROLES = ("attn_q", "attn_k", "attn_v", "attn_o")
SAMPLE_ROWS = 16  # rows per tensor (thousands of values): std and cosine settle; the same block identical_tensors reads


def _profile(ck: Checkpoint, role: str, seed: int) -> np.ndarray:
    n = ck.summary.n_layers or 0
    tensors = [ck.get(role, i) for i in range(n)]
    return np.array([float(t.sample_rows(SAMPLE_ROWS, seed)[1].std()) if t is not None else np.nan for t in tensors])


def std_profiles(ck: Checkpoint, seed: int = 0) -> dict[str, list[float]]:
    """Per-layer std of each attention matrix of one model: what the HonestAGI statistic correlates."""
    out = {}
    for role in ATTN_ROLES:
        p = _profile(ck, role, seed)
        if len(p) and not np.isnan(p).any():
            out[role] = p.tolist()
    return out


def _on_depth(profile: np.ndarray, n: int) -> np.ndarray:
    """Resample a depth profile onto n points of relative depth, so models of different depth compare."""
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(profile)), profile)


def honestagi_std_profile(a: Checkpoint, b: Checkpoint, seed: int = 0) -> Evidence:
    per_role, profiles = {}, {}
    for role in ATTN_ROLES:
        pa, pb = _profile(a, role, seed), _profile(b, role, seed)
        if len(pa) < 3 or len(pb) < 3 or np.isnan(pa).any() or np.isnan(pb).any():
            continue
        n = max(len(pa), len(pb))
        ra, rb = _on_depth(pa, n), _on_depth(pb, n)
        if ra.std() == 0 or rb.std() == 0:
            continue
        per_role[role] = float(np.corrcoef(ra, rb)[0, 1])
        profiles[role] = {"a": pa.tolist(), "b": pb.tolist()}
    value = float(np.mean(list(per_role.values()))) if per_role else None
    summary = (f"HonestAGI std-profile correlation {value:.2f} (no null model: unrelated models of similar recipe score high too)"
               if value is not None else "HonestAGI std-profile correlation not computable (needs >= 3 layers with attention)")
    return Evidence("baseline_honestagi_std_profile", None, value, False, summary,
                    {"per_role": per_role, "profiles": profiles, "rows_sampled": SAMPLE_ROWS})


def raw_cosine(a: Checkpoint, b: Checkpoint, seed: int = 0) -> Evidence:
    cosines = {}
    for role in sorted(set(a.tensors) & set(b.tensors)):
        ta, tb = a.tensors[role], b.tensors[role]
        if ta.shape != tb.shape or len(ta.shape) != 2:
            continue
        va, vb = ta.sample_rows(SAMPLE_ROWS, seed)[1].ravel(), tb.sample_rows(SAMPLE_ROWS, seed)[1].ravel()
        denom = float(np.linalg.norm(va) * np.linalg.norm(vb))
        if denom > 0:
            cosines[role.key] = float(va @ vb / denom)
    value = float(np.mean(list(cosines.values()))) if cosines else None
    summary = (f"mean raw cosine of same-named tensors {value:.2f} (no null; a permutation or rotation drives it to 0 "
               "without changing the model)" if value is not None else "no same-shaped matrices to compare by name")
    return Evidence("baseline_raw_cosine", None, value, False, summary, {"per_tensor": cosines, "rows_sampled": SAMPLE_ROWS})
