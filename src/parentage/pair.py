"""`parentage compare A B`: align the two checkpoints, run every evidence test, combine, explain.

Order of work (DESIGN: align, then test; read only what you need):
1. pair tokens by byte string and read their embedding rows -> the map between residual dimensions;
2. read one block of rows of every FFN unit and of the first value head of every layer, at the same offsets
   in both models -> exact index tests over all (layer of A, layer of B) cells;
3. with what the byte budget has left, read some of B's FFNs whole -> the permutation-invariant agreement test;
4. identical tensors, and the baselines that are shown and never counted;
5. a monotone layer alignment over the cells, the verdict, and notes on what changed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import __version__
from .align import align_layers, unit_rows
from .checkpoint import PLAN_SEED, Checkpoint, Tensor
from .readers.base import background_reads
from .circumstantial import circumstantial
from .declared import declared_lineage
from .evidence import Evidence
from .evidence.baselines import honestagi_std_profile, raw_cosine
from .evidence.blocks import ffn_units, has_two_views, read_block, value_units, view
from .evidence.heads import MIN_HEADS, head_layers, head_order_test, read_head_bases
from .evidence.hidden import ROTATION_MIN_GRAM, HiddenMap, align_hidden, gram_agreement
from .evidence.export import export_check
from .evidence.subsets import subsets
from .evidence.updates import ROWS as UPDATE_ROWS, update_types, wide_read_bytes
from .evidence.identical import identical_tensors
from .findings import SHAPE_FIELDS, TestCells, describe, explain
from .report.words import shape_value
from .evidence.neurons import (agreement_test, index_test, layer_scores, map_blocks, rank_order_test, read_blocks, read_raw,
                               relabelled_power,
                               split_rank_cells, token_neuron_mask, TOKEN_NEURON_QUANTILE)
from .tokenizers import checkpoint_vocab, lineage, shared_tokens
from .verdict import RELATED_LEVEL, decide

DEFAULT_BUDGET_FRACTION = 0.01  # of the bytes each checkpoint holds
MIN_BUDGET_BYTES = 64 << 20  # small models are read as much as the tests can use
TOKENS = 2048  # shared tokens read for the hidden alignment (more when a rotation must be fitted)
TOKEN_CHUNK = 128  # shared tokens are sampled in runs of consecutive ids, read as contiguous rows
MIN_SHARED_TOKENS = 32
FFN_ROWS = (16, 64, 256)  # min, default, max rows per FFN block
BLOCK_MEMORY = 256 << 20  # float32 bytes of FFN blocks held per model (an FP8 budget would decode to 4x its bytes)
VALUE_ROWS = 64
WEIGHT_ROW_LAYERS = 4  # layers whose FFN rows stand in for shared tokens
WEIGHT_ROWS = 256  # rows per layer for that
HEAD_SHARE = 0.1  # of the budget, for key and value rows of whole heads
TOKEN_NEURON_TOKENS = 8192  # shared-token embedding rows of A that token neurons are checked against
MIN_WHOLE_UNITS = 2  # B's FFNs read whole for the invariant test when the order tests decide nothing
# Where B's FFNs are read in blocks, they are sized to find a relabelled copy whose neurons' two matchings agree
# this often (a rotated copy with 1% noise agrees on nearly all; a whole-FFN read of a 100B model is gigabytes).
AGREEMENT_RECOVERY = 0.75
DECIDED_WHOLE_SHARE = 0.25  # of the default budget, for whole FFNs once the order tests have decided
EXPERT_SHARE = 0.25  # of the budget, for the expert map (A's dense FFNs read whole, or routers and experts)
UPDATE_SHARE = 0.02  # of the checkpoints' bytes, at most, for the wider rows of the update types


@dataclass(frozen=True)
class Budget:
    bytes_per_model: int
    explicit: bool = False  # the user chose it: never exceeded

    @classmethod
    def parse(cls, text: str | None, a: Checkpoint, b: Checkpoint) -> "Budget":
        held = max(a.weights.bytes_total, b.weights.bytes_total)
        if text is None:
            return cls(max(int(held * DEFAULT_BUDGET_FRACTION), MIN_BUDGET_BYTES))
        return cls(parse_budget_text(text, held), explicit=True)


SIZE_SUFFIXES = (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1))


class _Meter:
    """Weight bytes one comparison has read from each checkpoint, as its budget decisions count them: what
    opening it read (headers) and this pair's own reads; never a background test's, which land at no fixed
    moment, nor an earlier pair's (`compare A B C` reuses open checkpoints). So a decision never depends on
    thread timing or on which pairs came before."""

    def __init__(self, *cks: Checkpoint):
        self.base = {id(ck): ck.weights.foreground_bytes() - ck.opened_bytes for ck in cks}

    def spent(self, ck: Checkpoint) -> int:
        return ck.weights.foreground_bytes() - self.base[id(ck)]


def parse_budget_text(text: str, held: int) -> int:
    """'1%' (of `held`), '200MB', '2GB' or a plain byte count -> bytes."""
    t = text.strip().upper().replace(" ", "")
    try:
        if t.endswith("%"):
            value = held * float(t[:-1]) / 100
        else:
            scale = next((x for suffix, x in SIZE_SUFFIXES if t.endswith(suffix)), 1)
            value = float(t.rstrip("GMKB")) * scale
    except ValueError:
        raise ValueError(f"{text!r}: expected a percentage (1%), a size (200MB, 2GB) or a byte count") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r}: the budget must be a positive size")
    return max(1, int(value))


def _bytes_per_value(ck: Checkpoint) -> float:
    return ck.weights.bytes_total / max(ck.summary.n_params, 1)


# -- 1. hidden dimensions ------------------------------------------------------------------------------------


def _token_pairs(va, vb, ea: Tensor, eb: Tensor, notes: list[str]) -> np.ndarray:
    """(n, 2) token ids of A and B holding the same byte string."""
    if va is not None and vb is not None:
        pairs = np.array(shared_tokens(va, vb), dtype=np.int64).reshape(-1, 2)
        pairs = pairs[(pairs[:, 0] < ea.n_rows) & (pairs[:, 1] < eb.n_rows)]
        if len(va.tokens) and len(pairs) < 0.9 * min(len(va.tokens), len(vb.tokens)):
            notes.append(f"vocabularies differ: {len(pairs)} ordinary tokens shared of {len(va.tokens)} in A and "
                         f"{len(vb.tokens)} in B")
        return pairs
    if ea.n_rows == eb.n_rows:
        notes.append("no readable tokenizer on one side: tokens paired by id (same vocabulary size)")
        ids = np.arange(ea.n_rows)
        return np.stack([ids, ids], axis=1)
    notes.append("no readable tokenizer on one side and vocabulary sizes differ: hidden dimensions not aligned")
    return np.zeros((0, 2), dtype=np.int64)


def _sample_pairs(pairs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n pairs in runs of consecutive A ids, so A's rows come in contiguous spans."""
    if len(pairs) <= n:
        return pairs
    n_chunks = len(pairs) // TOKEN_CHUNK
    pick = np.sort(rng.choice(n_chunks, size=min(n_chunks, math.ceil(n / TOKEN_CHUNK)), replace=False))
    return np.concatenate([pairs[c * TOKEN_CHUNK:(c + 1) * TOKEN_CHUNK] for c in pick])[:n]


def _hidden(a: Checkpoint, b: Checkpoint, vocabs, budget: Budget, rng, notes: list[str]
            ) -> tuple[HiddenMap, Evidence, np.ndarray]:
    """The residual map, its order test, and the shared-token pairs it was fitted on ((0, 2) when none)."""
    none = np.zeros((0, 2), dtype=np.int64)
    ea, eb = a.find("embed") or a.find("lm_head"), b.find("embed") or b.find("lm_head")
    d_a, d_b = a.summary.hidden_size or 0, b.summary.hidden_size or 0
    fallback = HiddenMap("identity" if d_a == d_b else "truncate", d_a, d_b)
    if ea is None or eb is None:
        return (*_hidden_from_weights(a, b, rng, "no embedding matrix on one side", fallback), none)
    d_a, d_b = ea.shape[-1], eb.shape[-1]
    pairs = _token_pairs(*vocabs, ea, eb, notes)
    pairs = pairs[ea.has_at(pairs[:, 0]) & eb.has_at(pairs[:, 1])]  # a fingerprint holds its canonical tokens only
    if len(pairs) < MIN_SHARED_TOKENS:
        return (*_hidden_from_weights(a, b, rng, f"only {len(pairs)} shared tokens", fallback), none)
    per_token = (d_a + d_b) * max(_bytes_per_value(a), _bytes_per_value(b))
    n_tok = int(min(len(pairs), TOKENS, max(MIN_SHARED_TOKENS, budget.bytes_per_model // 4 / per_token)))
    sample = _sample_pairs(pairs, n_tok, rng)
    x = ea.read_at(sample[:, 0])
    y = eb.read_at(sample[:, 1])
    hmap, ev = align_hidden(x, y)
    geometry = None  # computed only where it decides something: whether a rotation is worth fitting
    if hmap.kind not in ("permutation", "rotation") and len(pairs) > len(sample):
        geometry = gram_agreement(x, y)
        if geometry >= ROTATION_MIN_GRAM:
            # Not a permutation: fitting a rotation needs at least as many tokens as dimensions.
            more = _sample_pairs(pairs, int(min(len(pairs), max(d_a, d_b) * 5 // 4)), rng)
            x = ea.read_at(more[:, 0])
            y = eb.read_at(more[:, 1])
            hmap, ev = align_hidden(x, y)
        else:
            notes.append(f"no rotation of the residual stream fitted: the shared tokens' embeddings do not share "
                         f"their geometry (Gram correlation {geometry:.2f}), which any rotation would keep")
    ev.details["gram_correlation"] = None if geometry is None else round(geometry, 4)
    ev.details["shared_tokens"] = int(len(pairs))
    return hmap, ev, pairs


def _hidden_from_weights(a: Checkpoint, b: Checkpoint, rng, why: str, fallback: HiddenMap) -> tuple[HiddenMap, Evidence]:
    """Without shared tokens, FFN rows stand in for them: the gate/up rows at the same offsets of the first
    layers of both models are paired samples of the residual stream if B kept its neurons in order (most
    derivations do). The order test stays exact either way: the samples are chosen by offset, blind to B's
    residual labels."""
    ua, ub = ffn_units(a), ffn_units(b)
    layers = [l for l in sorted(set(ua) & set(ub))][:WEIGHT_ROW_LAYERS]
    if not layers:
        return fallback, Evidence("hidden_dimension_order", None, None, False, f"{why} and no FFN rows to use instead", {})
    n_min = min(u.n_rows for l in layers for u in ua[l][:1] + ub[l][:1])
    m = min(n_min, WEIGHT_ROWS, *(t.prefix() for l in layers for u in ua[l][:1] + ub[l][:1] for t in u.matrices))
    if m < FFN_ROWS[0]:
        return fallback, Evidence("hidden_dimension_order", None, None, False, f"{why}; too few FFN rows to use instead", {})
    start = int(rng.integers(0, n_min - m + 1)) if _complete(a, b) else 0  # a fingerprint holds leading rows
    x = np.concatenate([r for l in layers for r in read_block(a, ua[l][0], start, start + m)])
    y = np.concatenate([r for l in layers for r in read_block(b, ub[l][0], start, start + m)])
    if x.shape[0] != y.shape[0]:
        return fallback, Evidence("hidden_dimension_order", None, None, False, f"{why}; FFN layouts differ", {})
    hmap, ev = align_hidden(x, y)
    hmap.fitted_on = (start, start + m)  # the FFN order test must not test these rows through this map
    ev.summary = ev.summary.replace("shared tokens", "FFN rows at the same offsets")
    ev.details["paired_by"] = f"FFN rows at the same offsets of layers {layers[0]}-{layers[-1]} ({why})"
    return hmap, ev


# -- 2.-3. neurons ---------------------------------------------------------------------------------------------


def _token_mask(a: Checkpoint, pairs: np.ndarray, raw_a: list[np.ndarray], budget: Budget,
                rng: np.random.Generator, hmap: HiddenMap) -> tuple[np.ndarray | None, str]:
    """A's token neurons in the sampled blocks (evidence.neurons.token_neuron_mask), checked against as many of
    A's shared-token embedding rows as TOKEN_NEURON_TOKENS and a tenth of the budget allow. Only under a fitted
    residual map: token neurons become twins across models because the map sends A's token directions onto B's;
    without one (no alignment found) nothing does (and a 100B model's check reads 134 MB of embeddings)."""
    ea = a.find("embed") or a.find("lm_head")
    if ea is None or len(pairs) < MIN_SHARED_TOKENS:
        return None, "not checked: the residual map was not fitted on shared tokens"
    if hmap.kind not in ("permutation", "rotation"):
        return None, "not checked: no residual map was fitted, so no token direction of A is carried onto B's"
    per_token = ea.shape[-1] * _bytes_per_value(a)
    n = int(min(len(pairs), TOKEN_NEURON_TOKENS, max(MIN_SHARED_TOKENS, budget.bytes_per_model * 0.1 / per_token)))
    sample = _sample_pairs(pairs, n, rng)
    mask, threshold = token_neuron_mask(raw_a, ea.read_at(sample[:, 0]), rng)
    note = (f"{int(mask.sum())} of {mask.size} sampled neurons of A read one token's direction (max |cos| with one "
            f"of {len(sample):,} of the {len(pairs):,} shared tokens' embeddings above {threshold:.3f}, the "
            f"{TOKEN_NEURON_QUANTILE:.0%} quantile for random directions) and are not counted")
    return mask, note


def _ffn(a, b, hmap, budget: Budget, meter: "_Meter", rng, notes, token_pairs: np.ndarray,
         token_rng: np.random.Generator) -> tuple[list[Evidence], list, list, list, HiddenMap]:
    """The FFN tests: evidence, the order test's cells, the agreement test's cells, its rank cells, and the
    residual map they found best, which the later tests use."""
    ua = [u for units in ffn_units(a).values() for u in units]
    ub = [u for units in ffn_units(b).values() for u in units]
    if not ua or not ub:
        notes.append("no FFN on one side: neuron tests not run")
        return [], [], [], [], hmap
    n_mats = 2 if all(len(u.matrices) == 2 for u in ua + ub) else 1
    n_min = min(u.n_rows for u in ua + ub)
    d = max(a.summary.hidden_size or 1, b.summary.hidden_size or 1)
    share = budget.bytes_per_model * 0.25 / (n_mats * max(len(ua), len(ub)) * d * max(_bytes_per_value(a), _bytes_per_value(b)))
    held = BLOCK_MEMORY / (n_mats * max(len(ua), len(ub)) * d * 4)  # the blocks are held as float32
    m = int(min(n_min, max(FFN_ROWS[0], min(FFN_ROWS[2], share, held))))
    if n_min >= 4 * FFN_ROWS[0]:  # leave a disjoint block for fitting a residual map on FFN rows
        m = min(m, n_min // 2)
    m = min(m, *(t.prefix() for u in ua + ub for t in u.matrices))  # a fingerprint's recorded rows
    if m < 2:
        notes.append("too few FFN rows recorded on one side: neuron tests not run")
        return [], [], [], [], hmap
    start = int(rng.integers(0, n_min - m + 1)) if _complete(a, b) else 0
    raw_a = read_raw(a, ua, start, m, n_mats)
    blocks_b = read_blocks(b, ub, start, m, n_mats, None)
    what = "FFN neurons" if n_mats == 1 else "FFN neurons (gate and up rows)"
    # The residual map from embeddings can be wrong in ways the weights are not: embeddings re-initialised
    # with a new tokenizer give a confident but meaningless rotation. So the order test tries every candidate
    # map and pays for the choice (Bonferroni over candidates); none of them looks at the tested block of B.
    candidates, n_candidates = _candidate_maps(a, b, hmap, ua, ub, start, m, n_min)
    tried = []
    for source, make in candidates:
        cand = make()
        if cand is None:
            continue
        ev_c, cells_c = index_test("ffn_neuron_order", map_blocks(ua, raw_a, cand), blocks_b, what)
        tried.append((ev_c.log10_p, source, cand, ev_c, cells_c))
        if ev_c.log10_p <= RELATED_LEVEL - 1:  # decided: the other maps need not be read or tried
            break
    best = min(tried, key=lambda t: t[0])
    # Later tests (agreement, values, heads) keep the embedding map unless another map made the neurons line
    # up unmistakably: among maps that all fail, the smallest p is noise, and a wrong map blinds them.
    chosen = best if best[0] <= RELATED_LEVEL else tried[0]
    _, source, hmap, ev_index, cells_index = chosen
    # Bonferroni over every candidate that could have been tried, so stopping early keeps the p-value valid.
    ev_index.log10_p = min(0.0, best[0] + math.log10(n_candidates))
    ev_index.details["block"] = [start, start + m]
    ev_index.details["residual_map"] = {"chosen": source, "best": best[1], "candidates": n_candidates,
                                        "tried": [{"source": t[1], "kind": t[2].kind, "log10_p": round(t[0], 2)}
                                                  for t in tried]}
    blocks_a = map_blocks(ua, raw_a, hmap)
    del blocks_b  # the order tests are done with B's blocks: a DeepSeek-V3 set is hundreds of MB
    out, cells_k, cells_rank = [ev_index], [], []
    if len({len(u.matrices) for u in ua + ub}) > 1:  # gated on one side, ungated on the other
        out.append(Evidence("ffn_neuron_agreement", None, None, False,
                            "not run: one model's FFNs are gated (gate and up rows), the other's are not, so the two "
                            "descriptions of a neuron the test matches do not exist on both sides", {}))
    elif all(has_two_views(u) for u in ua + ub):
        spent = max(meter.spent(a), meter.spent(b))
        # Without a verdict from the order tests, only a permutation-invariant test can tell "unrelated" from
        # "relabelled copy", so the default budget stretches to read a few of B's FFNs whole.
        decided = ev_index.log10_p is not None and ev_index.log10_p <= RELATED_LEVEL - 1
        floor = 0 if (budget.explicit or decided) else MIN_WHOLE_UNITS
        left = budget.bytes_per_model - spent
        if decided and not budget.explicit:  # corroboration only: a 100B model's FFN is gigabytes
            left = min(left, DECIDED_WHOLE_SHARE * budget.bytes_per_model)
        if not budget.explicit:  # B's own share: a 7B model beside a 671B one is not read at 1% of the 671B
            left = min(left, Budget.parse(None, b, b).bytes_per_model - meter.spent(b))
        chosen = _whole_units(b, ub, left)
        spans = [(0, u.n_rows) for u in chosen]
        # Undecided, and too few whole FFNs fit (a 7B model's is 180 MB, a 110B's 1.6 GB): blocks of B's rows
        # instead, as many as the power against a relabelled copy needs, not as many as the budget would allow.
        in_blocks = floor > len(chosen) and bool(_whole_units(b, ub, 0, floor))  # B's rows held (not a fingerprint)
        if n_mats == 1 and not all(u.down.has(0, u.down.n_rows) for u in ua):
            chosen, in_blocks = [], False  # A's ungated views need its down projections whole, which a fingerprint does not hold
        if chosen or in_blocks:
            first = (min(u.layer for u in ua), min(u.layer for u in ub))
            if n_mats == 2:  # the gate and up blocks are already read and mapped
                views = [(blocks_a.mats[0][i], blocks_a.mats[1][i]) for i in range(len(ua))]
                stacks = tuple(x.reshape(-1, x.shape[-1]) for x in blocks_a.mats)  # the same rows, not copied
            else:
                views = [tuple(unit_rows(hmap.apply(view(a, u, k, start, start + m)), inplace=True) for k in (0, 1)) for u in ua]
                stacks = None
            mask, token_note = _token_mask(a, token_pairs, raw_a, budget, token_rng, hmap)
            del raw_a
            if in_blocks:
                chosen = _whole_units(b, ub, 0, floor)  # spread over depth
                counted = m if mask is None else int(np.median((~mask).sum(axis=1)))
                spans = _agreement_blocks(chosen, start, m, counted, len(ua))
            ev_k, cells_k = agreement_test(ua, views, b, chosen, first, mask, token_note, stacks, spans)
            cells_k, cells_rank = split_rank_cells(cells_k)
            out.append(ev_k)
            if cells_rank:
                out.append(rank_order_test(cells_rank))
        else:
            out.append(Evidence("ffn_neuron_agreement", None, None, False,
                                "not run: reading B's FFNs whole does not fit the byte budget (raise --budget)", {}))
    return out, cells_index, cells_k, cells_rank, hmap


def _candidate_maps(a, b, hmap: HiddenMap, ua, ub, start: int, m: int, n_min: int) -> tuple[list, int]:
    """Residual maps to try, in order, as (source, thunk) pairs, and how many there are: the embedding map, the
    identity when widths agree, and a map fitted on FFN rows of the first layers outside the tested block (so
    B's order there stays a fair test). Thunks, so rows are read only if the earlier maps failed."""
    d_a, d_b = hmap.d_a, hmap.d_b
    overlaps = hmap.fitted_on is not None and hmap.fitted_on[0] < start + m and start < hmap.fitted_on[1]
    if overlaps:  # fitted on the very rows under test: it would put them in place by construction
        hmap = HiddenMap("identity" if d_a == d_b else "truncate", d_a, d_b)
    out = [("embeddings" if hmap.kind in ("permutation", "rotation") else "none", lambda: hmap)]
    if d_a == d_b and hmap.kind != "identity":
        out.append(("identity", lambda: HiddenMap("identity", d_a, d_b)))
    spans, need = [], m  # up to m rows outside the tested block
    for lo, hi in ((start + m, n_min), (0, start)):
        if hi > lo and need > 0:
            take = min(need, hi - lo)
            spans.append((lo, lo + take))
            need -= take
    layers_a = [u for u in ua if u.name in ("ffn", "expert 0")][:WEIGHT_ROW_LAYERS]
    layers_b = [u for u in ub if u.name in ("ffn", "expert 0")][:WEIGHT_ROW_LAYERS]

    # the matrices both sides have: gate and up rows, or only the up rows when one side's FFN is ungated
    n_mats = min(len(u.matrices) for u in layers_a + layers_b) if layers_a and layers_b else 1

    def rows(ck, u, lo, hi) -> list[np.ndarray]:
        return read_block(ck, u, lo, hi, which=tuple(range(len(u.matrices) - n_mats, len(u.matrices))))

    def from_rows() -> HiddenMap | None:
        x = np.concatenate([r for u in layers_a for lo, hi in spans for r in rows(a, u, lo, hi)])
        y = np.concatenate([r for u in layers_b for lo, hi in spans for r in rows(b, u, lo, hi)])
        if gram_agreement(x, y) < ROTATION_MIN_GRAM:  # not the same neurons in any basis: no map to fit (d x d)
            return None
        row_map, _ = align_hidden(x, y)
        return row_map if row_map.kind in ("permutation", "rotation") else None

    held = all(t.has(lo, hi) for u in layers_a + layers_b for t in u.matrices for lo, hi in spans)
    if sum(hi - lo for lo, hi in spans) >= FFN_ROWS[0] and layers_a and len(layers_a) == len(layers_b) and held:
        out.append(("FFN rows of the first layers", from_rows))
    return out, len(out)


def _whole_units(b: Checkpoint, units: list, budget_left: float, floor: int = 0) -> list:
    """B's units to read whole, spread over depth, as many as the budget allows but at least `floor` (the first
    layer never)."""
    first = min(u.layer for u in units)
    candidates = [u for u in units if u.layer != first and has_two_views(u) and _held_whole(u)]
    if not candidates:
        return []
    cost = _whole_cost(b, candidates[0])
    n = max(int(budget_left // max(cost, 1)), floor)
    if n <= 0:
        return []
    if n >= len(candidates):
        return candidates
    idx = np.unique(np.linspace(0, len(candidates) - 1, n).round().astype(int))
    return [candidates[i] for i in idx]


def _agreement_blocks(units: list, start: int, m: int, counted: int, n_a_units: int) -> list[tuple[int, int]]:
    """B's neurons [lo, hi) to read of each unit: a block around A's offsets [start, start + m) (an unrelabelled
    copy keeps its partners there), of the fewest rows that find a relabelled copy of which only part of the
    neurons still agree (log10 p at RELATED_LEVEL over all cells, at AGREEMENT_RECOVERY); whole when no block does."""
    n_b = min(u.n_rows for u in units)
    n_cells = n_a_units * len(units)

    def enough(k: int) -> bool:
        return relabelled_power(counted, k, n_b, n_cells, recovery=AGREEMENT_RECOVERY) <= RELATED_LEVEL

    lo, hi = min(n_b, 4 * m), n_b  # the smallest k with enough(k), by bisection (power grows with k)
    if enough(lo):
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    k = hi
    spans = []
    for u in units:
        first = int(np.clip(start + m // 2 - k // 2, 0, max(0, u.n_rows - k)))
        spans.append((first, min(u.n_rows, first + k)))
    return spans


def _whole_cost(b: Checkpoint, unit) -> float:
    """Bytes of one of B's FFNs read whole (gate and up rows, or up rows and down columns)."""
    return 2 * unit.n_rows * (b.summary.hidden_size or 1) * _bytes_per_value(b)


def _widen(b: Checkpoint, plan: Budget, spent: int) -> tuple[int, int, int] | None:
    """(budget, bytes per B FFN read whole, bytes read from B beyond the budget) for the note on layers left
    unmapped, when B's FFNs can be read whole."""
    units = [u for us in ffn_units(b).values() for u in us if has_two_views(u) and _held_whole(u)]
    if not units:
        return None
    return plan.bytes_per_model, int(max(_whole_cost(b, u) for u in units)), max(0, spent - plan.bytes_per_model)


def _values(a, b, hmap, rng) -> tuple[list[Evidence], list]:
    va, vb = value_units(a), value_units(b)
    hd_a, hd_b = a.summary.head_dim, b.summary.head_dim
    if not va or not vb or hd_a != hd_b:
        return [], []
    ua = [u for us in va.values() for u in us]
    ub = [u for us in vb.values() for u in us]
    m = min(VALUE_ROWS, hd_a, *(u.matrices[0].prefix() for u in ua + ub))
    if m < 2:
        return [], []
    start = int(rng.integers(0, hd_a - m + 1)) if _complete(a, b) else 0
    ev, cells = index_test("value_row_order", read_blocks(a, ua, start, m, 1, hmap), read_blocks(b, ub, start, m, 1, None),
                           "value rows of the first head")
    ev.details["block"] = [start, start + m]
    return [ev], cells


def _heads(a, b, hmap, budget: Budget, rng, ffn_cells: list) -> list[Evidence]:
    la, lb = head_layers(a), head_layers(b)
    sa, sb = a.summary, b.summary
    if not la or not lb or sa.head_dim != sb.head_dim:
        return []
    n_kv = min(sa.n_kv_heads, sb.n_kv_heads)
    per_head = 2 * sa.head_dim * max(sa.hidden_size or 1, sb.hidden_size or 1) * max(_bytes_per_value(a), _bytes_per_value(b))
    n = int(min(n_kv, budget.bytes_per_model * HEAD_SHARE // (per_head * max(len(la), len(lb)))))
    recorded = min(ck.find(role, i).prefix() // sa.head_dim for ck, layers in ((a, la), (b, lb)) for i in layers
                   for role in ("attn_k", "attn_v"))
    if recorded < n:
        n = recorded
        if n < MIN_HEADS:
            return [Evidence("attention_head_order", None, None, False,
                             "not run: the fingerprint holds fewer than two whole KV heads per layer", {})]
    if n < MIN_HEADS:
        return [Evidence("attention_head_order", None, None, False,
                         "not run: too few KV heads per layer, or the byte budget does not fit two per layer", {})]
    first = int(rng.integers(0, n_kv - n + 1)) if _complete(a, b) else 0
    # Layers paired without looking at attention weights, so head counts stay independent under the null.
    pairs, paired_by = [], "the FFN layer alignment"
    if ffn_cells:
        score = layer_scores(ffn_cells, sa.n_layers, sb.n_layers)
        pairs = [(i, j) for i, j in align_layers(score, 2.0 + math.log10(score.size)).matched if i in la and j in lb]
    if not pairs:
        paired_by = "relative depth"
        pairs = sorted({(i, lb[round(k * (len(lb) - 1) / max(len(la) - 1, 1))]) for k, i in enumerate(la)})
    index_a, index_b = {x: k for k, x in enumerate(la)}, {x: k for k, x in enumerate(lb)}
    bases_a = read_head_bases(a, la, first, n, hmap)
    bases_b = read_head_bases(b, lb, first, n, None)
    ev = head_order_test(bases_a, bases_b, [(index_a[i], index_b[j]) for i, j in pairs], paired_by)
    ev.details["layer_pairs"] = [list(p) for p in pairs]
    ev.details["heads"] = [first, first + n]
    return [ev]


def _tokenizer_evidence(va, vb) -> list[Evidence]:
    """Shown beside the weights, never counted: its null (coincidences measured by reflected id gaps) is
    approximate, and a tokenizer can be copied onto independently trained weights."""
    if va is None or vb is None:
        return []
    doc = lineage(va, vb)
    kind = f" ({doc['kind']})" if doc["kind"] else ""
    summary = f"tokenizers: {doc['relation']}{kind}" + (f"; {doc['notes'][0]}" if doc["notes"] else "")
    details = {k: doc[k] for k in ("relation", "kind", "score", "notes", "shared_tokens", "rank_spearman")}
    details["core_size"] = doc["core"]["size"]
    return [Evidence("tokenizer_lineage", None, doc["score"]["value"], False, summary, details)]


# -- 5. alignment, direction, report --------------------------------------------------------------------------



def _say_power(evidence: list[Evidence]) -> None:
    """A counted test whose best possible p here falls short of a claim says so beside its count: "8 of 8 heads
    in place" next to log10 p -1.2 would read as a contradiction."""
    for e in evidence:
        most = e.details.get("max_power_log10_p")
        if e.counted and most is not None and most > RELATED_LEVEL and "no p-value" not in e.summary:
            e.summary += (f"; at most log10 p {most:.1f} is reachable here (too few units compared to decide "
                          "alone)")


def _identity_and_export(a: Checkpoint, b: Checkpoint, seed: int):
    """The identity test, then the export check on the same sampled rows (read once)."""
    ev, identity = identical_tensors(a, b, seed)
    return (ev, identity), export_check(a, b, seed, identity)


def _direction(a: Checkpoint, b: Checkpoint, label: str, export: dict | None = None) -> dict:
    """Weights show shared ancestry, not its direction: growing A into B (layers inserted, FFN widened, experts
    upcycled) and pruning B into A leave the same trace. So no parent is named, except where one checkpoint is
    the other's export (a quantisation, a cast, a dequantised export: evidence/export.py); the basis says what
    differs."""
    if label != "related":
        return {"parent": None, "basis": "no shared ancestry shown"}
    if export and export["parent"]:
        return {"parent": export["parent"], "basis": export["summary"]}
    changes = [f"{what} {shape_value(getattr(a.summary, f), f)} in A, {shape_value(getattr(b.summary, f), f)} in B"
               for what, f in SHAPE_FIELDS if getattr(a.summary, f) != getattr(b.summary, f)]
    if not changes:
        return {"parent": None, "basis": "same shape: the weights do not say which came first"}
    return {"parent": None, "basis": "; ".join(changes) + ": growth from A and pruning from B leave the same trace, "
                                      "so the weights do not say which came first"}


def _update_rows(a: Checkpoint, b: Checkpoint, plan: Budget, meter: "_Meter") -> int:
    """Rows per matrix for the update types: the identity test's, already read; more (a rank up to 31 can then
    be told from a full update) when that costs little of the checkpoints and fits what is left of the budget."""
    cost = wide_read_bytes(b, b.summary.n_layers or 0)
    left = plan.bytes_per_model - max(meter.spent(a), meter.spent(b))
    cheap = cost <= UPDATE_SHARE * min(a.weights.bytes_total, b.weights.bytes_total)
    return UPDATE_ROWS[1] if cheap and cost <= left else UPDATE_ROWS[0]


def _shares(plan: Budget, meter: "_Meter", a: Checkpoint, b: Checkpoint) -> tuple[float, float]:
    """What the head map and the expert map may read (per checkpoint): their shares of the budget, and never,
    together, past what is left of a budget the user chose."""
    head, experts = HEAD_SHARE * plan.bytes_per_model, EXPERT_SHARE * plan.bytes_per_model
    if not plan.explicit:
        return head, experts
    left = max(0.0, plan.bytes_per_model - max(meter.spent(a), meter.spent(b)))
    scale = min(1.0, left / (head + experts))
    return head * scale, experts * scale


def _same_basis(hmap: HiddenMap) -> bool:
    """Whether B's residual coordinates are A's own (a rotation or relabelling changes every value)."""
    if hmap.kind == "identity":
        return True
    return hmap.kind == "permutation" and hmap.perm is not None and hmap.d_a == hmap.d_b and \
        bool(np.all(hmap.perm == np.arange(hmap.d_a)))


def _same_files(a: Checkpoint, b: Checkpoint) -> bool:
    """Both references name the same weight files (after links), e.g. one path given twice."""
    return a.weights.file_names() == b.weights.file_names()


def _complete(a: Checkpoint, b: Checkpoint) -> bool:
    """Both checkpoints are live, so any row can be read; else one is a fingerprint and the tests read the rows
    of the canonical plan (index/fingerprint.py): leading rows, canonical tokens, the seed the plan used."""
    return a.weights.complete and b.weights.complete


def _held_whole(u) -> bool:
    return all(t.has(0, t.n_rows) for t in u.matrices) and (len(u.matrices) == 2 or u.down is None
                                                            or u.down.has(0, u.down.n_rows))


def _input(ck: Checkpoint) -> dict:
    s = ck.summary
    hub = ck.resolved.hub or {}
    return {"ref": ck.ref, "source": ck.resolved.source, "revision": hub.get("revision"), "commit": hub.get("commit"),
            "format": ck.format, "arch": s.family, "n_layers": s.n_layers, "hidden_size": s.hidden_size,
            "intermediate_size": s.intermediate_size, "n_experts": s.n_experts, "vocab_size": s.vocab_size,
            "n_params": s.n_params}


STAGES = ("hidden dimensions", "FFN neurons", "value rows", "attention heads", "identical tensors", "tokenizers",
          "baselines")


def compare_checkpoints(a: Checkpoint, b: Checkpoint, seed: int = 0, budget: str | None = None,
                        progress: bool = False, detail: bool = True) -> dict:
    """The compare document. detail=False (identify's screening of many candidates) leaves out what does not
    enter the verdict: the explanation (alignment null), the tokenizer lineage and the circumstantial part."""
    t0 = time.perf_counter()
    plan = Budget.parse(budget, a, b)
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    stage = _Stages(progress)
    stage.next()
    sample_seed = seed if _complete(a, b) else PLAN_SEED  # a fingerprint's sampled rows are the plan's
    # The identity test needs nothing the others compute: it runs beside them, on the second core (its rows
    # are chosen by seed alone, so the document does not depend on the interleaving).
    meter = _Meter(a, b)
    identity_run = _background(_identity_and_export, a, b, sample_seed)
    try:
        vocabs = checkpoint_vocab(a), checkpoint_vocab(b)
        hmap, ev_hidden, token_pairs = _hidden(a, b, vocabs, plan, rng, notes)
        stage.next()
        # its own generator, so checking A's token neurons leaves every other test's sampled rows as they were
        ev_ffn, cells_ffn, cells_k, cells_rank, hmap = _ffn(a, b, hmap, plan, meter, rng, notes, token_pairs,
                                                np.random.default_rng([seed, 1]))
        stage.next()
        ev_val, cells_val = _values(a, b, hmap, rng)
        stage.next()
        ev_heads = _heads(a, b, hmap, plan, rng, cells_ffn + cells_k)
        stage.next()
    except BaseException:
        identity_run.exception()  # let it finish before the caller closes the checkpoints under it
        raise
    (ev_identical, identity), export = identity_run.result()
    stage.next()
    ev_tok = _tokenizer_evidence(*vocabs) if detail else []
    stage.next()
    if _complete(a, b):
        baselines = [honestagi_std_profile(a, b, seed), raw_cosine(a, b, seed)]
    else:  # shown, never counted; they need raw sampled values, of which a fingerprint keeps digests only
        baselines = [Evidence(name, None, None, False, "not run: a fingerprint keeps digests of sampled rows, not "
                              "their values", {})
                     for name in ("baseline_honestagi_std_profile", "baseline_raw_cosine")]
    evidence = [ev_hidden, *ev_ffn, *ev_val, *ev_heads, ev_identical, *ev_tok, *baselines]
    _say_power(evidence)
    stage.done()
    verdict = decide(evidence)
    tests = [TestCells("ffn_neuron_order", cells_ffn), TestCells("value_row_order", cells_val),
             TestCells("ffn_neuron_agreement", cells_k)]
    alignment = explain(a, b, tests, hmap, identity, ev_hidden, verdict.label == "related", notes, RELATED_LEVEL,
                        sample_seed, _widen(b, plan, meter.spent(b))) if detail else None
    if alignment is not None:
        related = verdict.label == "related"
        export = export if export and (export["relation"] or related) else None
        # how the matrices were changed, where the layers line up (an export's changes are its storage's)
        updates = update_types(a, b, alignment.get("layers") or [], _same_basis(hmap), sample_seed,
                               _update_rows(a, b, plan, meter)) \
            if related and _complete(a, b) and not (export and export["relation"]) else None
        order = next((e for e in ev_ffn if e.name == "ffn_neuron_order"), None)
        in_place = order is not None and order.log10_p is not None and order.log10_p <= RELATED_LEVEL
        kept = subsets(a, b, hmap, alignment.get("layers") or [], cells_rank, in_place,
                       *_shares(plan, meter, a, b), sample_seed) \
            if related and _complete(a, b) else None
        describe(alignment, export, updates, kept, ev_tok[0].details if ev_tok and related else {})
    ca, cb = a.cost(), b.cost()
    return {
        "schema_version": 1,
        "tool": {"name": "parentage", "version": __version__},
        "inputs": [_input(a), _input(b)],
        "verdict": verdict.to_dict(),
        "evidence": [_rounded(e.to_dict()) for e in evidence],
        "alignment": alignment,
        "direction": _direction(a, b, verdict.label, export),
        "declared": {"A": declared_lineage(a), "B": declared_lineage(b)},
        "circumstantial": circumstantial(a, b, verdict.label) if detail else None,
        "same_checkpoint": _same_files(a, b),
        "seed": seed,
        "budget_bytes_per_model": plan.bytes_per_model,
        "cost": {"bytes_read": ca["bytes_read"] + cb["bytes_read"], "bytes_total": ca["bytes_total"] + cb["bytes_total"],
                 "n_reads": ca["n_reads"] + cb["n_reads"],
                 "bytes_transferred": ca["bytes_transferred"] + cb["bytes_transferred"], "per_input": [ca, cb],
                 "seconds": round(time.perf_counter() - t0, 3)},
    }


def add_references(doc: dict, refs, seed: int = 0) -> dict:
    """The HonestAGI statistic between A and models unrelated to it, into the baseline's details (so the report
    draws them and every figure it states is in the JSON): {name: {"value": r, "profiles": per-role stds}}."""
    from .evidence.baselines import profile_correlation, std_profiles

    honest = next((e for e in doc["evidence"] if e["name"] == "baseline_honestagi_std_profile"), None)
    if honest is None or not refs:
        return doc
    profile_a = {role: p["a"] for role, p in (honest["details"].get("profiles") or {}).items()}
    out = {}
    for ref in refs:
        with Checkpoint.open(ref) as ck:
            prof = std_profiles(ck, seed)
        value = profile_correlation(profile_a, prof)[0]
        out[str(ref)] = {"value": None if value is None else round(value, 4), "profiles": _rounded(prof)}
    honest["details"]["references"] = out
    return doc


_BACKGROUND = None


def _background(fn, *args):
    """fn(*args) on a worker thread, its reads counted as background reads (never in a budget decision);
    .result() returns it (or raises what it raised)."""
    global _BACKGROUND
    if _BACKGROUND is None:
        from concurrent.futures import ThreadPoolExecutor

        _BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="parentage-side")

    def run():
        with background_reads():
            return fn(*args)
    return _BACKGROUND.submit(run)


class _Stages:
    """"compare: FFN neurons (2 of 7)" on stderr while a pair runs (the CLI turns it on for a terminal, whatever
    the output format), cleared at the end."""

    def __init__(self, on: bool):
        from .progress import StatusLine

        self.line, self.k = (StatusLine(every=0.0) if on else None), 0

    def next(self) -> None:
        if self.line and self.k < len(STAGES):
            self.line.show(f"compare: {STAGES[self.k]} ({self.k + 1} of {len(STAGES)})")
        self.k += 1

    def done(self) -> None:
        if self.line:
            self.line.clear()


def compare(ref_a: str, ref_b: str, seed: int = 0, budget: str | None = None, progress: bool = False) -> dict:
    t0 = time.perf_counter()
    with Checkpoint.open(ref_a) as a, Checkpoint.open(ref_b) as b:
        doc = compare_checkpoints(a, b, seed, budget, progress)
    doc["cost"]["seconds"] = round(time.perf_counter() - t0, 3)
    return doc


def compare_all(refs: list[str], seed: int = 0, budget: str | None = None, progress: bool = False) -> dict:
    """Every pair of several models (A B C: A~B, A~C, B~C), each checkpoint opened once: the compare documents
    and their matrix of labels and log10 p (row model as A)."""
    from contextlib import ExitStack

    t0 = time.perf_counter()
    n = len(refs)
    with ExitStack() as stack:
        cks = [stack.enter_context(Checkpoint.open(r)) for r in refs]
        docs = []
        for i, j in ((i, j) for i in range(n) for j in range(i + 1, n)):
            docs.append(compare_checkpoints(cks[i], cks[j], seed, budget, progress))
        costs = [ck.cost() for ck in cks]  # a pair's own cost counts what its models had read before it too
    label = [[None] * n for _ in range(n)]
    log10_p = [[None] * n for _ in range(n)]
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            v = docs[k]["verdict"]
            label[i][j] = label[j][i] = v["label"]
            log10_p[i][j] = log10_p[j][i] = v["log10_p"]
            k += 1
    return {"schema_version": 1, "tool": {"name": "parentage", "version": __version__}, "models": list(refs),
            "matrix": {"label": label, "log10_p": log10_p}, "pairs": docs,
            "cost": {"bytes_read": sum(c["bytes_read"] for c in costs), "bytes_total": sum(c["bytes_total"] for c in costs),
                     "bytes_transferred": sum(c["bytes_transferred"] for c in costs), "per_input": costs,
                     "seconds": round(time.perf_counter() - t0, 3)}}


def _rounded(x):
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    if isinstance(x, np.generic):
        return _rounded(x.item())
    return x
