"""From evidence to a label: combination of the counted tests, and what the label means.

The combined p-value is Bonferroni over the counted tests (the smallest p times their number): valid whatever
the dependence between tests, which share the same two checkpoints. Labels:

- `related`: the combined log10 p is at or below RELATED_LEVEL;
- `unrelated`: it is above UNRELATED_LEVEL and a counted test that survives free re-parameterisations (its
  details say `invariant`) had the power to reach RELATED_LEVEL had the models been kin (each test records its
  best achievable p-value). Order tests alone cannot say `unrelated`: a copy with relabelled neurons and a
  rotated residual stream passes them;
- `inconclusive`: anything else: nothing comparable, no test with enough power, or weak evidence in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from .evidence import Evidence
from .stats import bonferroni

RELATED_LEVEL = -6.0  # a forensic claim: one false accusation in a million independent pairs
UNRELATED_LEVEL = -2.0


@dataclass
class Verdict:
    label: str
    log10_p: float | None
    summary: str

    def to_dict(self) -> dict:
        return {"label": self.label, "log10_p": None if self.log10_p is None else round(self.log10_p, 2), "summary": self.summary}


def decide(evidence: list[Evidence]) -> Verdict:
    counted = [e for e in evidence if e.counted and e.log10_p is not None]
    if not counted:
        return Verdict("inconclusive", None, "no test with a calibrated null could be run on these two checkpoints")
    combined = bonferroni([e.log10_p for e in counted])
    strongest = min(counted, key=lambda e: e.log10_p)
    if combined <= RELATED_LEVEL:
        return Verdict("related", combined, f"the weights reject independent initialisation "
                                            f"(log10 p = {combined:.1f}; strongest: {strongest.summary})")
    n = len(counted)
    powered = [e for e in counted if (e.details.get("max_power_log10_p") or 0.0) + _penalty(n) <= RELATED_LEVEL]
    invariant = [e for e in powered if e.details.get("invariant")]
    if combined > UNRELATED_LEVEL and invariant:
        names = ", ".join(e.name for e in powered)
        return Verdict("unrelated", combined, f"no sign of shared ancestry (log10 p = {combined:.1f}) in tests that "
                                              f"would have detected it ({names})")
    if not powered:
        return Verdict("inconclusive", combined, "the tests that could run are too small to detect shared ancestry")
    if combined > UNRELATED_LEVEL:
        return Verdict("inconclusive", combined, "no shared ancestry in the order of hidden units, but the "
                                                 "permutation-invariant test did not run (raise --budget), so a "
                                                 "relabelled copy is not ruled out")
    return Verdict("inconclusive", combined, f"weak evidence of shared ancestry (log10 p = {combined:.1f}), "
                                             f"below the level for a claim ({RELATED_LEVEL:.0f})")


def _penalty(n: int) -> float:
    import math

    return math.log10(n)
