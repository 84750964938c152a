"""Published statistics without a null model: shown beside the evidence, never counted (DESIGN principle 1).

- `honestagi_std_profile`: the statistic of the 2025 public accusation — per layer, the standard deviation of
  each attention matrix (Q, K, V, O); per matrix, the Pearson correlation of the two depth profiles; averaged.
  Independently trained models of similar recipe give high values too, because depth profiles of weight
  scale are shaped by the architecture and optimiser, not by ancestry.
- `raw_cosine`: cosine of same-named tensors, blind to every permutation and rotation an adversary gets free.
"""

from __future__ import annotations

import numpy as np

from ..checkpoint import PROBE_BYTES, Checkpoint
from .identical import probing, shared_roles
from . import Evidence

ATTN_ROLES = ("attn_q", "attn_k", "attn_v", "attn_o")
SAMPLE_ROWS = 16  # rows per tensor (thousands of values): std and cosine settle; the same block identical_tensors reads


def _profile(ck: Checkpoint, role: str, seed: int, probe: bool) -> np.ndarray:
    n = ck.summary.n_layers or 0
    tensors = [ck.find(role, i) for i in range(n)]
    return np.array([float(t.sample_rows(SAMPLE_ROWS, seed, probe).std()) if t is not None else np.nan for t in tensors])


def std_profiles(ck: Checkpoint, seed: int = 0, probe: bool = False) -> dict[str, list[float]]:
    """Per-layer std of each attention matrix of one model: what the HonestAGI statistic correlates (`probe`:
    on the identity test's probe rows, which a large pair reads)."""
    out = {}
    for role in ATTN_ROLES:
        p = _profile(ck, role, seed, probe)
        if len(p) and not np.isnan(p).any():
            out[role] = p.tolist()
    return out


def _on_depth(profile: np.ndarray, n: int) -> np.ndarray:
    """Resample a depth profile onto n points of relative depth, so models of different depth compare."""
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(profile)), profile)


def profile_correlation(pa: dict[str, list[float]], pb: dict[str, list[float]]) -> tuple[float | None, dict[str, float]]:
    """The HonestAGI statistic from two models' std profiles: per role, Pearson r across relative depth; mean."""
    per_role = {}
    for role in ATTN_ROLES:
        if role not in pa or role not in pb:
            continue
        xa, xb = np.asarray(pa[role], dtype=float), np.asarray(pb[role], dtype=float)
        if len(xa) < 3 or len(xb) < 3 or np.isnan(xa).any() or np.isnan(xb).any():
            continue
        n = max(len(xa), len(xb))
        ra, rb = _on_depth(xa, n), _on_depth(xb, n)
        if ra.std() == 0 or rb.std() == 0:
            continue
        per_role[role] = float(np.corrcoef(ra, rb)[0, 1])
    return (float(np.mean(list(per_role.values()))) if per_role else None), per_role


def honestagi_std_profile(a: Checkpoint, b: Checkpoint, seed: int = 0) -> Evidence:
    probe = probing(a, b)
    pa, pb = std_profiles(a, seed, probe), std_profiles(b, seed, probe)
    value, per_role = profile_correlation(pa, pb)
    profiles = {r: {"a": pa[r], "b": pb[r]} for r in per_role}
    summary = (f"HonestAGI std-profile correlation {value:.2f} (no null model: the value alone does not say how "
               "an unrelated pair would score)"
               if value is not None else "HonestAGI std-profile correlation not computable (needs >= 3 layers with attention)")
    return Evidence("baseline_honestagi_std_profile", None, value, False, summary,
                    {"per_role": per_role, "profiles": profiles,
                     "rows_sampled": None if probe else SAMPLE_ROWS,
                     "probe_bytes": PROBE_BYTES if probe else None})


def raw_cosine(a: Checkpoint, b: Checkpoint, seed: int = 0) -> Evidence:
    cosines, probe = {}, probing(a, b)
    for role in shared_roles(a, b):
        ta, tb = a.tensors[role], b.tensors[role]
        if ta.shape != tb.shape or len(ta.shape) != 2:
            continue
        va, vb = ta.sample_rows(SAMPLE_ROWS, seed, probe).ravel(), tb.sample_rows(SAMPLE_ROWS, seed, probe).ravel()
        denom = float(np.linalg.norm(va) * np.linalg.norm(vb))
        if denom > 0:
            cosines[role.key] = float(va @ vb / denom)
    value = float(np.mean(list(cosines.values()))) if cosines else None
    summary = (f"mean raw cosine of same-named tensors {value:.2f} (no null; a permutation or rotation drives it to 0 "
               "without changing the model)" if value is not None else "no same-shaped matrices to compare by name")
    return Evidence("baseline_raw_cosine", None, value, False, summary,
                    {"per_tensor": cosines, "rows_sampled": None if probe else SAMPLE_ROWS,
                     "probe_bytes": PROBE_BYTES if probe else None})
