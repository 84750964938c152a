"""Evidence tests: one module per test family, each returning `Evidence` (DESIGN: compare JSON contract).

A test that has a null distribution reports `log10_p` and may be `counted` in the verdict; a baseline or any
statistic without a calibrated null reports `log10_p=None` and `counted=False`, with its value in `effect`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# p-values below this are reported as this: beyond it floating point and the models' own assumptions dominate.
LOG10_P_FLOOR = -300.0


@dataclass
class Evidence:
    name: str
    log10_p: float | None  # None: no calibrated null
    effect: float | None  # the statistic's size on its natural scale
    counted: bool  # enters the verdict
    summary: str  # one sentence a person can read
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
