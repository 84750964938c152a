"""Aligned neuron tests over every (layer of A, layer of B) cell: FFNs, experts and value heads.

Two statistics, because an adversary may or may not have relabelled B's neurons:

- `index_test` (exact null). In each cell, A's block of rows and B's block at the same offsets are paired by
  mutual nearest neighbours of summed |cosine| over the unit's matrices (gate + up; value rows), in B's
  residual basis. Under independent initialisation B's neurons are exchangeable, so the pairing is a uniformly
  random relabelling and the count of rows paired with their own offset has the fixed-point tail
  (`stats.fixed_points_tail`) whatever semantics the two models share. Fine-tuned, continued-trained, widened
  (new neurons appended), upcycled and layer-inserted models keep neuron order; a permuted model defeats it.

- `agreement_test` (analytic null, approximate). Invariant to neuron permutations: A's block is matched against
  B's neurons twice, once by gate rows and once by up rows (rectangular assignment, so widened or pruned FFNs
  work), and K counts the neurons both matchings send to the same B neuron. B's neurons are all of them where the
  budget holds the whole FFN, else a block of k rows around A's offsets (a 100B model's FFN is gigabytes): a
  relabelled copy then still puts about m k / n_B of A's neurons' partners in it, and the block is as large as
  that power needs (pair.py). For two independent matchings K ~ Poisson(m / k); the rate is raised to what the
  pair's own non-corresponding cells show (decoys), so a pair whose gate and up rows correlate inside each model
  is not mistaken for kin. The first layer of each model is left out: it reads token embeddings directly, and
  models trained on similar text grow token-detector neurons there that match across independent models (observed:
  K up to 7% of neurons at layer 0 vs <= 2.5% elsewhere for independent zoo models). The same holds for A's *token
  neurons* in any layer (rows that point along one shared token's embedding; in the last layers of real models
  with tied embeddings they are the majority): they are matched but not counted (`token_neuron_mask`).

Every cell gets a p-value; a test's p-value is the Bonferroni combination over its cells (valid whatever the
dependence between cells, and when only some layers match), and the layer alignment is drawn on the cells. The
agreement test, whose null is approximate, stands on its second-best cell on other layers of both models
instead: still a valid bound, and out of reach of one cluster of neurons two independent models happen to share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..align import unit_rows
from ..assignment import linear_sum_assignment
from ..checkpoint import Checkpoint
from ..stats import bonferroni, fixed_points_tail, inversions_tail, poisson_tail
from . import Evidence
from .blocks import Unit, has_two_views, read_block, view
from .hidden import HiddenMap
from ..verdict import RELATED_LEVEL


@dataclass
class Blocks:
    """The same row block of every unit of one model, in B's residual basis, rows unit-normalised."""

    units: list[Unit]
    mats: list[np.ndarray]  # per matrix kind: (n_units, m, d_b)

    @property
    def layers(self) -> list[int]:
        return [u.layer for u in self.units]


def read_raw(ck: Checkpoint, units: list[Unit], start: int, m: int, n_mats: int) -> list[np.ndarray]:
    """Rows [start, start + m) of every unit, as read (norm folded): per matrix kind, (n_units, m, d)."""
    per_kind: list[list[np.ndarray]] = [[] for _ in range(n_mats)]
    for block in ck.map_reads(lambda u: read_block(ck, u, start, start + m), units):
        for k, x in enumerate(block[-n_mats:]):  # gate-less units keep their up rows
            per_kind[k].append(x)
    return [np.stack(x) for x in per_kind]


def map_blocks(units: list[Unit], raw: list[np.ndarray], hmap: HiddenMap | None) -> Blocks:
    """Raw blocks in B's residual basis, rows unit-normalised."""
    out = []
    for x in raw:  # (n_units, m, d_a)
        n, m, _ = x.shape
        flat = x.reshape(n * m, -1)
        out.append(unit_rows(hmap.apply(flat) if hmap is not None else flat.copy(), inplace=True).reshape(n, m, -1))
    return Blocks(units, out)


def read_blocks(ck: Checkpoint, units: list[Unit], start: int, m: int, n_mats: int, hmap: HiddenMap | None) -> Blocks:
    return map_blocks(units, read_raw(ck, units, start, m, n_mats), hmap)


SIMILARITY_CHUNK = 1 << 24  # floats per similarity slab: bounds memory when both models have many experts


def _in_place_counts(a: Blocks, b: Blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (A unit, B unit) cell: rows paired by mutual nearest neighbours of summed |cosine|, how many of them
    pair with their own offset, and the mean |cosine| of rows at the same offset (per matrix). Returns three
    (n_a, n_b) arrays."""
    na, m, _ = a.mats[0].shape
    nb = b.mats[0].shape[0]
    n_mutual = np.zeros((na, nb), dtype=np.int64)
    n_in_place = np.zeros((na, nb), dtype=np.int64)
    cos_in_place = np.zeros((na, nb), dtype=np.float64)
    step = max(1, SIMILARITY_CHUNK // (m * nb * m))
    for lo in range(0, na, step):
        hi = min(na, lo + step)
        s = np.zeros(((hi - lo) * m, nb * m), dtype=np.float32)
        for xa, xb in zip(a.mats, b.mats):
            prod = xa[lo:hi].reshape((hi - lo) * m, -1) @ xb.reshape(nb * m, -1).T
            s += np.abs(prod, out=prod)  # in place: one slab-sized temporary, not two
        s = s.reshape(hi - lo, m, nb, m)
        row_best = s.argmax(axis=3)  # (chunk, m, n_b): B row nearest each A row
        col_best = s.argmax(axis=1)  # (chunk, n_b, m): A row nearest each B row
        ia, k, ib = np.indices(row_best.shape)
        mutual = col_best[ia, ib, row_best] == k  # (chunk, m, n_b)
        n_mutual[lo:hi] = mutual.sum(axis=1)
        n_in_place[lo:hi] = (mutual & (row_best == k)).sum(axis=1)
        cos_in_place[lo:hi] = np.einsum("ikjk->ij", s) / (m * len(a.mats))
    return n_mutual, n_in_place, cos_in_place


@dataclass
class Cell:
    a: Unit
    b: Unit
    log10_p: float
    stat: int  # fixed points (index test) or agreements K (agreement test)
    n: int  # rows tested
    extra: dict

    def to_dict(self) -> dict:
        return {"a": self.a.label, "b": self.b.label, "log10_p": round(self.log10_p, 2), "stat": self.stat, "n": self.n, **self.extra}


MAX_CELLS = 200_000  # beyond this (many experts on both sides), only units at similar relative depth are paired
DEPTH_WINDOW = 0.15  # relative depth within which units are paired then


def _subset(x: Blocks, idx: list[int]) -> Blocks:
    if idx == list(range(len(x.units))):  # all of them: a 110B model's blocks are 255 MB, not copied
        return x
    return Blocks([x.units[i] for i in idx], [mat[idx] for mat in x.mats])


def index_test(name: str, a: Blocks, b: Blocks, what: str) -> tuple[Evidence, list[Cell]]:
    m = a.mats[0].shape[1]
    cells = []
    if len(a.units) * len(b.units) <= MAX_CELLS:
        groups = [(list(range(len(a.units))), list(range(len(b.units))))]
    else:  # the window is fixed before looking at any weight, so the cells' p-values stay valid
        depth_a, depth_b = (np.array(x.layers) / max(max(x.layers), 1) for x in (a, b))
        groups = []
        for layer in sorted(set(a.layers)):
            ia = [i for i, u in enumerate(a.units) if u.layer == layer]
            ib = list(np.flatnonzero(np.abs(depth_b - depth_a[ia[0]]) <= DEPTH_WINDOW))
            groups.append((ia, ib))
    for ia, ib in groups:
        sub_a, sub_b = _subset(a, ia), _subset(b, ib)
        n_mutual, n_in_place, cos_in_place = _in_place_counts(sub_a, sub_b)
        for i, ua in enumerate(sub_a.units):
            for j, ub in enumerate(sub_b.units):
                f, nm = int(n_in_place[i, j]), int(n_mutual[i, j])
                cells.append(Cell(ua, ub, fixed_points_tail(f, nm, m), f, m,
                                  {"mutual_pairs": nm, "in_place_cos": round(float(cos_in_place[i, j]), 6)}))
    log10_p = bonferroni([c.log10_p for c in cells])
    best = min(cells, key=lambda c: c.log10_p)
    n_sig = sum(c.log10_p < -2 - math.log10(len(cells)) for c in cells)
    summary = (f"{what}: best cell {best.a.label} ~ {best.b.label} keeps {best.stat} of {m} sampled rows in place; "
               f"{n_sig} of {len(cells)} cells significant")
    details = {
        "rows_per_block": m,
        "null": "fixed points of a uniformly random relabelling (B's rows are exchangeable); Bonferroni over cells",
        "max_power_log10_p": bonferroni([fixed_points_tail(m, m, m)] * len(cells)),
        "cells": [c.to_dict() for c in cells if c.log10_p < -2],
        "cell_log10_p": [round(c.log10_p, 3) for c in cells],
        "closeness": _closeness(cells),
    }
    return Evidence(name, log10_p, best.stat / m, True, summary, details), cells


def _closeness(cells: list[Cell], key: str = "in_place_cos") -> float | None:
    """Descriptive, never counted: over A's units whose best cell is significant, the mean |cos| of the rows the
    test paired in that cell (at the same offset, or the agreed neurons): 1 for an exact copy, and two fine-tunes
    of one base sit below a base and its fine-tune. `identify` orders significant candidates by it."""
    best: dict[str, Cell] = {}
    for c in cells:
        if c.a.label not in best or c.log10_p < best[c.a.label].log10_p:
            best[c.a.label] = c
    level = -2 - math.log10(max(len(cells), 1))
    kept = [c.extra[key] for c in best.values() if c.log10_p < level]
    return round(float(np.mean(kept)), 6) if kept else None


TOKEN_NEURON_QUANTILE = 0.99  # of max |cos| for random directions: above it a row reads one token's direction
NULL_DIRECTIONS = 1000  # enough for a 99% quantile to within a few thousandths of a cosine
MIN_COUNTED_ROWS = 16  # a block with fewer non-token neurons than this is not tested


def token_neuron_mask(raw: list[np.ndarray], token_rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Which of A's sampled neurons read (or write) one token's embedding direction: (n_units, m) bool, threshold.

    Why: the residual map is fitted on the embeddings of tokens both vocabularies hold, so it sends token t's
    direction in A onto token t's direction in B. A neuron that reads one token (first layers: detectors; last
    layers, with tied embeddings: the output token) then has a "twin" in any model that has a neuron for that
    token, ancestry or not. Measured on SmolLM2-135M vs Gemma 3 270M (independent): the last layers' matchings
    agree on 13-16 of 256 neurons, 50 times the null rate, all of them such token neurons (max |cos| with a
    token embedding 0.42 against 0.24 for the rest); after a random rotation of A's basis, 0. So token neurons
    are left out of the count. The choice looks only at A (its rows and its own embeddings), never at B, so it
    cannot manufacture agreement.

    raw: per matrix kind (n_units, m, d_a), rows in A's coordinates with the norm folded in; token_rows:
    (n_tokens, d_a) A's embedding rows of shared tokens. Threshold: the TOKEN_NEURON_QUANTILE quantile of the
    same score for random directions against the same embeddings (centred, so a common mean direction does not
    make every row look like every token)."""
    e = unit_rows(token_rows - token_rows.mean(axis=0), inplace=False)  # (n_tokens, d_a)
    d = e.shape[1]
    null_dirs = unit_rows(rng.standard_normal((NULL_DIRECTIONS, d)).astype(np.float32), inplace=True)
    threshold = float(np.quantile(np.abs(null_dirs @ e.T).max(axis=1), TOKEN_NEURON_QUANTILE))
    n_units, m = raw[0].shape[:2]
    score = np.zeros(n_units * m, dtype=np.float32)
    for x in raw:
        rows = x.reshape(n_units * m, -1)  # not copied: normalised a slab at a time (DeepSeek-V3's are 300 MB)
        for lo in range(0, rows.shape[0], 1024):  # (1024, n_tokens) slabs bound memory
            slab = unit_rows(rows[lo:lo + 1024], inplace=False)
            score[lo:lo + 1024] = np.maximum(score[lo:lo + 1024], np.abs(slab @ e.T).max(axis=1))
    return (score > threshold).reshape(n_units, m), threshold


def _assignment(score: np.ndarray) -> np.ndarray:
    """For each row of score (m, n_b), its column under the maximum-score one-to-one assignment (n_b >= m).

    Solved on the union of each row's m best columns: some optimal assignment lies there (a row sent elsewhere
    could move to one of its m best columns, of which the other m - 1 rows hold at most m - 1, and score no
    less), and a 64 x 49,152 problem shrinks to 64 x at most 4,096."""
    m, n = score.shape
    out = np.full(m, -1)
    if n > 4 * m:
        cols = np.unique(np.argpartition(score, n - m, axis=1)[:, n - m:])
        rows, sub = linear_sum_assignment(-score[:, cols])
        out[rows] = cols[sub]
        return out
    rows, cols = linear_sum_assignment(-score)
    out[rows] = cols
    return out


WHOLE_CHUNK_VALUES = 1 << 24  # B's whole FFN is read this many values at a time (64 MB as float32)


def _abs_cos_whole(stacked: np.ndarray, b_ck: Checkpoint, ub: Unit, k: int, span: tuple[int, int]) -> np.ndarray:
    """|cos| of A's stacked unit rows (sum of m, d) with B's neurons [lo, hi) of the unit in view k:
    (sum of m, hi - lo). B is read in row chunks, so a whole FFN of a 100B model (gigabytes) is never held at
    once; each entry is the same dot product as from one read (BLAS may sum it in another order: last-bit
    differences only)."""
    lo, hi = span
    if len(ub.matrices) != 2 and k == 1:  # down columns: the whole writer is read anyway (small models)
        return np.abs(stacked @ unit_rows(view(b_ck, ub, k, lo, hi), inplace=True).T)
    out = np.empty((stacked.shape[0], hi - lo), dtype=np.float32)
    step = max(1, WHOLE_CHUNK_VALUES // max(stacked.shape[1], 1))
    for s in range(lo, hi, step):
        e = min(hi, s + step)
        np.abs(stacked @ unit_rows(view(b_ck, ub, k, s, e), inplace=True).T, out=out[:, s - lo:e - lo])
    return out


def relabelled_power(m: int, k: int, n_b: int, n_cells: int, inflation: float = 1.0, recovery: float = 1.0) -> float:
    """log10 p the agreement test reaches on a relabelled copy, all cells alike: of A's m counted neurons per
    cell, about m k / n_B have their partner among the k of B's n_B neurons read, and a share `recovery` of them
    agrees; two independent matchings agree on Poisson(m / k). Bonferroni over the cells."""
    return bonferroni([poisson_tail(int(int(m * k / n_b) * recovery), m / k * inflation)] * n_cells)


def agreement_test(a_units: list[Unit], a_views: list[tuple[np.ndarray, np.ndarray]], b_ck: Checkpoint,
                   b_units: list[Unit], skip_layers: tuple[int, int],
                   token_mask: np.ndarray | None = None, token_note: str = "",
                   stacks: tuple[np.ndarray, np.ndarray] | None = None,
                   b_spans: list[tuple[int, int]] | None = None) -> tuple[Evidence, list[Cell]]:
    """a_views: per A unit, its block's two views (gate and up rows, or up rows and down columns) in B's basis,
    rows unit-normalised; b_units: the B units to read; b_spans: the neurons [lo, hi) read of each (all of them
    when None); token_mask: (n_units, m) A's token neurons, which are matched (the assignment stays one-to-one
    over the whole block) but not counted."""
    b_spans = b_spans or [(0, u.n_rows) for u in b_units]
    span_of = {id(u): sp for u, sp in zip(b_units, b_spans)}
    raw = []  # (A unit, B unit, K, lambda0)
    ranks: list[Cell] = []
    sizes = [v[0].shape[0] for v in a_views]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    if stacks is None:  # `stacks`: the views already stacked in one array each (saves a copy of every block)
        stacks = (np.concatenate([v[0] for v in a_views]), np.concatenate([v[1] for v in a_views]))
    stack1, stack2 = stacks  # (sum of m, d_b)
    for ub in b_units:
        if ub.layer == skip_layers[1]:
            continue
        if not has_two_views(ub):
            continue
        # One product per view for all of A's blocks, (sum of m, n_b); B's view is read, used and dropped.
        span = span_of[id(ub)]
        n_read = span[1] - span[0]
        s1, s2 = (_abs_cos_whole(stacked, b_ck, ub, k, span) for k, stacked in ((0, stack1), (1, stack2)))
        for i, (ua, m) in enumerate(zip(a_units, sizes)):
            counted = np.ones(m, dtype=bool) if token_mask is None else ~token_mask[i]
            if ua.layer == skip_layers[0] or n_read < m or counted.sum() < MIN_COUNTED_ROWS:
                continue
            rows = slice(offsets[i], offsets[i] + m)
            to_b = _assignment(s1[rows])
            agree = (to_b == _assignment(s2[rows])) & counted
            # descriptive: how alike the agreed neurons are, in both views (1 for a relabelled exact copy)
            idx = np.arange(m)[agree]
            matched = float((s1[rows][idx, to_b[idx]].mean() + s2[rows][idx, to_b[idx]].mean()) / 2) if idx.size else 0.0
            raw.append((ua, ub, int(agree.sum()), int(counted.sum()) / n_read, matched))
            ranks.append(Cell(ua, ub, *_rank_order(to_b[agree])))
        del s1, s2
    if not raw:
        return Evidence("ffn_neuron_agreement", None, None, False, "not run: no FFN pairs beyond the first layers", {}), []
    inflation = _decoy_inflation(raw)
    cells = [Cell(ua, ub, poisson_tail(k, lam0 * inflation), k, int(round(lam0 * _n_read(span_of[id(ub)]))),
                  {"null_mean": round(lam0 * inflation, 3), "matched_cos": round(cos, 6)}) for ua, ub, k, lam0, cos in raw]
    best, second = _best_two(cells)
    # The test stands on the second-best cell: n_cells * p of any cell but the best is still a valid p-value
    # (it is at least the Bonferroni bound of the minimum), and a derived model matches in many layers while a
    # cluster of neurons that independent models happen to share ("twins") sits in one place.
    log10_p = 0.0 if second is None else min(0.0, second.log10_p + math.log10(len(cells)))
    pair = "gate and up rows" if len(best.b.matrices) == 2 else "up rows and down columns"
    summary = (f"neuron matchings by {pair} agree on {best.stat} of {best.n} neurons at "
               f"{best.a.label} ~ {best.b.label} (null mean {best.extra['null_mean']:.2f})"
               + (f" and on {second.stat} at {second.a.label} ~ {second.b.label}" if second is not None else "")
               + "; permutation-invariant")
    m = min(c.n for c in cells)  # counted rows (token neurons left out): the weakest cell bounds the power
    partial = [(sp, u.n_rows) for u, sp in zip(b_units, b_spans) if _n_read(sp) < u.n_rows]
    needed = None
    if partial and second is not None:
        (lo, hi), n_b = partial[0]
        partners = int(m * (hi - lo) / n_b)
        # the fewest agreements in a cell that would have reached RELATED_LEVEL: what the budget left of the power
        needed = next((k for k in range(1, partners + 1)
                       if bonferroni([poisson_tail(k, m / (hi - lo) * inflation)] * len(cells)) <= RELATED_LEVEL), None)
        summary += (f"; B's neurons read in blocks ({hi - lo:,} of {n_b:,} per layer; whole FFNs do not fit the "
                    f"budget): a relabelled copy puts about {partners} of each cell's partners there, and is found "
                    f"where "
                    + (f"{needed} of them agree" if needed else "not even if all of them agree")
                    + " (raise --budget to read whole FFNs)")
    if second is None:  # the count alone is no evidence here: say why there is no p-value beside it
        read = sorted({c.b.layer for c in cells})
        why = (f"only {len(read)} of B's layers was read (raise --budget to read two)" if len(read) < 2 else
               "every other cell shares a layer with the best one")
        summary += f"; no p-value: the test stands on a second cell on other layers of both models, and {why}"
    details = {
        "null": "agreements of two independent matchings ~ Poisson(m / k), k of B's neurons read, rate raised to the pair's decoy cells "
                "(approximate); the second-best cell on other layers of both models, times the number of cells; "
                "first layers and A's token neurons left out",
        "invariant": True,  # survives relabelled neurons and a rotated residual stream
        "decoy_inflation": round(inflation, 3),
        "best_cell_bonferroni_log10_p": round(min(0.0, best.log10_p + math.log10(len(cells))), 3),
        "token_neurons": token_note or None,
        "b_layers_read_whole": sorted({c.b.layer for c in cells if _n_read(span_of[id(c.b)]) == c.b.n_rows}),
        "b_rows_read": {c.b.label: list(span_of[id(c.b)]) for c in cells},
        "agreements_needed": needed,  # in blocks: per cell, for a relabelled copy to reach RELATED_LEVEL
        # against a relabelled copy (unrelabelled, A's block lies inside B's and all m can agree)
        "max_power_log10_p": (max(relabelled_power(m, _n_read(sp), u.n_rows, len(cells), inflation)
                                  for u, sp in zip(b_units, b_spans)) if second is not None else 0.0),
        "cells": [c.to_dict() for c in cells if c.log10_p < -2],
        "cell_log10_p": [round(c.log10_p, 3) for c in cells],
        "closeness": _closeness(cells, "matched_cos"),
    }
    return Evidence("ffn_neuron_agreement", log10_p, best.stat / best.n, True, summary, details), cells + ranks


def _n_read(span: tuple[int, int]) -> int:
    return span[1] - span[0]


def _best_two(cells: list[Cell]) -> tuple[Cell, Cell | None]:
    """The best cell, and the best one on a different layer of A and a different layer of B."""
    ranked = sorted(cells, key=lambda c: c.log10_p)
    best = ranked[0]
    second = next((c for c in ranked[1:] if c.a.layer != best.a.layer and c.b.layer != best.b.layer), None)
    return best, second


MIN_RANK_PAIRS = 8


def _rank_order(b_index: np.ndarray) -> tuple[float, int, int, dict]:
    """Do neurons both matchings agree on keep their relative order in B (pruning, interleaved widening)?

    b_index: B's labels for the agreed neurons, in A's order. Under the null the labels are a uniformly random
    relabelling, so the number of pairs out of order (Kendall's tau's inversions) has the exact distribution
    `stats.inversions_tail` computes."""
    n = len(b_index)
    if n < MIN_RANK_PAIRS:
        return 0.0, 0, n, {"rank_tau": None}
    inversions = _inversions(np.asarray(b_index))
    tau = 1.0 - 4.0 * inversions / (n * (n - 1))
    return inversions_tail(inversions, n), int(round(tau * 100)), n, {"rank_tau": round(tau, 3)}


def _inversions(x: np.ndarray) -> int:
    """Pairs i < j with x[i] > x[j]; (rows, n) comparisons a slab at a time."""
    n, total = len(x), 0
    for lo in range(0, n, 1024):
        part = x[lo:lo + 1024, None] > x[None, :]  # (rows, n): x[i] > x[j]
        total += int(np.triu(part, k=lo + 1).sum())  # only j > i
    return total


def split_rank_cells(cells: list[Cell]) -> tuple[list[Cell], list[Cell]]:
    rank = [c for c in cells if "rank_tau" in c.extra]
    return [c for c in cells if "rank_tau" not in c.extra], rank


def rank_order_test(cells: list[Cell]) -> Evidence:
    """The exact companion of the agreement test: order kept among the neurons both matchings agree on."""
    tested = [c for c in cells if c.extra["rank_tau"] is not None]
    if not tested:
        return Evidence("ffn_neuron_rank_order", None, None, False,
                        f"not run: no cell with {MIN_RANK_PAIRS} or more agreed neurons", {})
    log10_p = bonferroni([c.log10_p for c in cells])
    best = min(tested, key=lambda c: c.log10_p)
    summary = (f"agreed neurons keep their order (Kendall's tau {best.extra['rank_tau']:.2f} over {best.n}) at "
               f"{best.a.label} ~ {best.b.label}; survives pruning and widening that keep neuron order")
    details = {"null": "Kendall's inversions under a uniformly random relabelling of B's neurons (exact tail); "
                       "Bonferroni over cells",
               "max_power_log10_p": None, "cells": [c.to_dict() for c in tested if c.log10_p < -2],
               "cell_log10_p": [round(c.log10_p, 3) for c in cells]}
    return Evidence("ffn_neuron_rank_order", log10_p, best.extra["rank_tau"], True, summary, details)


def _decoy_inflation(raw: list) -> float:
    """How far the pair's non-corresponding cells sit above the independent-matchings rate (never below 1).

    Decoys: every cell except the best one in its A row and the best one in its B column, i.e. cells that
    cannot all be true correspondences under a monotone alignment."""
    best_row: dict = {}
    best_col: dict = {}
    for n, (ua, ub, k, *_) in enumerate(raw):
        if ua.label not in best_row or k > raw[best_row[ua.label]][2]:
            best_row[ua.label] = n
        if ub.label not in best_col or k > raw[best_col[ub.label]][2]:
            best_col[ub.label] = n
    exclude = set(best_row.values()) | set(best_col.values())
    decoys = [(k, lam) for n, (_, _, k, lam, _) in enumerate(raw) if n not in exclude]
    if len(decoys) < 2:
        return 1.0
    observed = sum(k for k, _ in decoys)
    expected = sum(lam for _, lam in decoys)
    return max(1.0, observed / max(expected, 1e-12))


def layer_scores(cells: list[Cell], n_a: int, n_b: int) -> np.ndarray:
    """(n_a, n_b) evidence that layer i of A and j of B correspond: -log10 p of the best unit pair, Bonferroni
    over the unit pairs of the cell (many experts give many chances)."""
    best = np.zeros((n_a, n_b))
    count = np.zeros((n_a, n_b))
    for c in cells:
        i, j = c.a.layer, c.b.layer
        if i < n_a and j < n_b:
            best[i, j] = max(best[i, j], -c.log10_p)
            count[i, j] += 1
    return np.where(count > 0, np.maximum(best - np.log10(np.maximum(count, 1)), 0.0), 0.0)


def unit_map(cells: list[Cell], level: float) -> list[dict]:
    """For each B unit, the A unit it most likely came from (when significant): the expert -> FFN map."""
    by_b: dict[str, Cell] = {}
    for c in cells:
        if c.b.label not in by_b or c.log10_p < by_b[c.b.label].log10_p:
            by_b[c.b.label] = c
    return [{"b": c.b.label, "a": c.a.label, "log10_p": round(c.log10_p, 2)}
            for c in sorted(by_b.values(), key=lambda c: (c.b.layer, c.b.name)) if c.log10_p <= level]
