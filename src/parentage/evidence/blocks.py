"""Sampled row blocks of the units the neuron tests compare: FFNs (dense, experts, shared experts) and value heads.

A unit is a set of matrices whose rows are the same hidden units (an FFN's gate and up rows are its neurons; a
head's value rows are its value dimensions). One contiguous block of rows [start, start + m) is read per matrix,
at the same offsets in every unit of both models, so B's block can be compared index by index with A's. The
RMSNorm gain in front of a unit is folded into its rows, because an adversary may fold it in for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checkpoint import Checkpoint, Tensor

FFN_MATRICES = (("mlp_gate", "mlp_up"), ("shared_mlp_gate", "shared_mlp_up"))
NORM_OFFSET_FAMILIES = ("gemma",)  # these store RMSNorm gains as (gain - 1)


@dataclass
class Unit:
    layer: int
    name: str  # "ffn", "expert 3", "shared", "value head 0"
    matrices: list[Tensor]  # same rows in each
    norm: Tensor | None
    down: Tensor | None = None  # an FFN's writer: its columns are the neurons again

    @property
    def n_rows(self) -> int:
        return self.matrices[0].n_rows

    @property
    def label(self) -> str:
        return f"layer {self.layer} {self.name}"


EXPERTS_PER_LAYER = 4  # routed experts tested per layer; DeepSeek-V3 has 256, every pair of units is a cell, and
# 61 layers x 5 units of 16 rows x 7168 already hold 280 MB of float32 blocks per model


def sampled_experts(n: int) -> set[int]:
    """The routed experts of a layer with `n` that the tests read: all up to EXPERTS_PER_LAYER, else that many
    spread evenly over the indices (the same ones in two models with the same count, so a copy lines up)."""
    if n <= EXPERTS_PER_LAYER:
        return set(range(n))
    return {int(i) for i in np.linspace(0, n - 1, EXPERTS_PER_LAYER).round()}


def ffn_units(ck: Checkpoint) -> dict[int, list[Unit]]:
    out: dict[int, list[Unit]] = {}
    by_layer: dict[int, list] = {}
    for role in ck.tensors:
        if role.layer is not None and role.param == "weight" and role.role in ("mlp_up", "shared_mlp_up"):
            by_layer.setdefault(role.layer, []).append(role)
    for layer, roles in sorted(by_layer.items()):
        routed = [r for r in roles if r.role == "mlp_up" and r.expert is not None]
        keep = sampled_experts(len(routed))
        roles = [r for r in roles if r.expert is None or r.role != "mlp_up" or r.expert in keep]
        norm = ck.find("mlp_norm", layer) or ck.find("attn_norm", layer)
        units = []
        for role in sorted(roles, key=lambda r: (r.role != "mlp_up", r.expert if r.expert is not None else -1)):
            gate_role = "mlp_gate" if role.role == "mlp_up" else "shared_mlp_gate"
            gate = ck.find(gate_role, layer, role.expert)
            down = ck.find("mlp_down" if role.role == "mlp_up" else "shared_mlp_down", layer, role.expert)
            mats = [m for m in (gate, ck.tensors[role]) if m is not None]
            if role.role == "shared_mlp_up":
                name = "shared" if role.expert is None else f"shared {role.expert}"
            else:
                name = "ffn" if role.expert is None else f"expert {role.expert}"
            units.append(Unit(layer, name, mats, norm, down))
        out[layer] = units
    return out


def value_units(ck: Checkpoint) -> dict[int, list[Unit]]:
    """The first value head of each layer (its rows are exchangeable under the null: the V/O gauge)."""
    hd = ck.summary.head_dim
    out = {}
    for layer in range(ck.summary.n_layers or 0):
        v = ck.find("attn_v", layer)
        if v is None or not hd or v.n_rows % hd:
            continue
        out[layer] = [Unit(layer, "value head 0", [v], ck.find("attn_norm", layer))]
    return out


def norm_gain(ck: Checkpoint, norm: Tensor | None) -> np.ndarray | None:
    """An RMSNorm's gain as the model applies it (families that store gain - 1 get the 1 back), or None."""
    if norm is None:
        return None
    gain = norm.read().reshape(-1)
    return gain + 1.0 if ck.family.name.startswith(NORM_OFFSET_FAMILIES) else gain


def fold_norm(ck: Checkpoint, norm: Tensor | None, rows: np.ndarray) -> np.ndarray:
    """rows (n, d) that read the normed stream, with the norm's gain folded in: an adversary may fold it for free."""
    gain = norm_gain(ck, norm)
    return rows * gain if gain is not None and gain.shape[0] == rows.shape[1] else rows


def read_block(ck: Checkpoint, unit: Unit, start: int, stop: int, which: tuple[int, ...] | None = None) -> list[np.ndarray]:
    """Rows [start, stop) of each matrix of the unit (or those listed in `which`), norm gain folded in:
    [(m, d) float32]."""
    gain = norm_gain(ck, unit.norm)
    out = []
    for k, t in enumerate(unit.matrices):
        if which is not None and k not in which:
            continue
        rows = t.read_rows(start, stop)  # finite: Tensor.read_rows refuses NaN and Inf
        if gain is not None and gain.shape[0] == rows.shape[1]:
            if rows.flags.writeable and rows.dtype == np.float32:
                rows *= gain  # in place: whole FFNs of large models are read through here
            else:
                rows = rows * gain
        out.append(rows)
    return out


def view(ck: Checkpoint, unit: Unit, k: int, start: int, stop: int) -> np.ndarray:
    """One of two independent descriptions of the neurons [start, stop): (gate rows, up rows) for a gated FFN,
    else (up rows, down columns). Read one at a time, so a whole FFN of a large model is held once."""
    if len(unit.matrices) == 2:
        return read_block(ck, unit, start, stop, which=(k,))[0]
    if k == 0:
        return read_block(ck, unit, start, stop)[0]
    down = unit.down.read()  # (d, n): a neuron's column spans every row, so the whole writer is read
    return np.ascontiguousarray(down[:, start:stop].T)


def has_two_views(unit: Unit) -> bool:
    return len(unit.matrices) == 2 or (unit.down is not None and unit.down.shape[-1] == unit.n_rows)

