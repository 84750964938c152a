"""Lineage between two vocabularies: identical, derived (and how), or unrelated.

Plain overlap is not evidence: independently trained vocabularies of similar size share most short tokens,
and even their rank orders correlate (frequent merges come early in both; Spearman 0.5-0.86 between unrelated
real vocabularies). What a derivation keeps and independent training does not is the *exact id gap* between
consecutive tokens: copying a vocabulary and then appending, shifting, or deleting tokens leaves long runs of
shared tokens whose ids differ by one constant offset.

Statistic: over the shared multi-byte tokens in A's id order (single bytes are the alphabet and carry no
lineage), count consecutive pairs whose id gap is the same in B ("preserved"). Null: independent vocabularies
match a gap only by coincidence; the pair's own coincidence rate is measured by the *reflected* gaps (B's gap
equal to minus A's), which a derivation never produces and which a coincidence produces about as often. The
p-value is the Poisson tail of the preserved count at that rate; an approximate null, so `compare` shows it and
does not count it.

The runs of constant offset form the shared core and its id map; their layout names the kind of derivation.

Only the *learned* vocabulary is compared. Tokens a person put in (added tokens, byte fallback, user-defined
pieces, and constructed series such as 2..31 tabs or <unused0>..<unused98> at consecutive ids) are set aside:
one maker's independently trained vocabularies share such a block at the same ids (Gemma 1 and Gemma 3 share
30 runs of tabs at ids 255969-255998 and 207 placeholder tokens), which says who wrote the template, not that
one learned vocabulary was derived from the other. A shared block is reported as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from ..stats import poisson_tail
from .formats import Vocab, shared_tokens

MIN_RUN = 8  # consecutive shared tokens at one offset that count as copied
DERIVED_LEVEL = -6.0  # log10 p for a derivation claim
MIN_CORE = 32  # copied tokens needed, whatever the p-value says
FULL = 0.99  # "all of A's tokens" allowing for a handful of edits
SAME_SET = 0.995  # shared tokens over the larger vocabulary: the same vocabulary, whatever the order
MIN_SET = 1000  # below this a full overlap may be a small alphabet


SERIES_MIN = 4  # consecutive ids that extend one pattern: a constructed series, not learned merges
MAX_UNIT = 4  # bytes in the repeated unit of a series of runs ("\t", "  ", "▁")
_NUMBERED = re.compile(rb"^(\D*?)(\d{1,6})(\D*)$")


def _period(t: bytes) -> bytes:
    """The shortest p with t == p * k."""
    for n in range(1, min(len(t), MAX_UNIT) + 1):
        if len(t) % n == 0 and t[:n] * (len(t) // n) == t:
            return t[:n]
    return t


def _extends(t: bytes, u: bytes) -> bool:
    """u is the next member of a constructed series after t: one more repeated unit, or the next number."""
    p = _period(t)
    if len(p) <= MAX_UNIT and u == t + p:
        return True
    mt, mu = _NUMBERED.match(t), _NUMBERED.match(u)
    return bool(mt and mu and mt.group(1) == mu.group(1) and mt.group(3) == mu.group(3)
                and int(mu.group(2)) == int(mt.group(2)) + 1)


def hand_defined(v: Vocab) -> set[int]:
    """Ids of ordinary tokens a person put in rather than the trainer learned (see the module docstring)."""
    out = set(v.added_ids) | set(v.byte_ids) | set(v.defined_ids)
    ids = sorted(v.tokens)
    run = ids[:1]
    for i, j in zip(ids, ids[1:]):
        if j == i + 1 and len(v.tokens[i]) >= 2 and _extends(v.tokens[i], v.tokens[j]):
            run.append(j)
            continue
        if len(run) >= SERIES_MIN:
            out.update(run)
        run = [j]
    if len(run) >= SERIES_MIN:
        out.update(run)
    return out


def _learned(v: Vocab, defined: set[int]) -> Vocab:
    return replace(v, tokens={i: t for i, t in v.tokens.items() if i not in defined})


@dataclass
class Run:
    a_start: int
    a_end: int  # inclusive
    offset: int  # id in B minus id in A
    length: int  # shared tokens in the run

    def to_list(self) -> list[int]:
        return [self.a_start, self.a_end, self.offset, self.length]


def _runs(pairs: np.ndarray) -> list[Run]:
    """Maximal stretches (in A's order) of shared tokens at one constant id offset."""
    if len(pairs) == 0:
        return []
    offset = pairs[:, 1] - pairs[:, 0]
    breaks = np.flatnonzero(np.diff(offset) != 0) + 1
    out = []
    for seg in np.split(np.arange(len(pairs)), breaks):
        if len(seg) >= MIN_RUN:
            out.append(Run(int(pairs[seg[0], 0]), int(pairs[seg[-1], 0]), int(offset[seg[0]]), len(seg)))
    return out


def lineage(a: Vocab, b: Vocab) -> dict:
    if a.tokens == b.tokens:
        return _lineage(a, b, None)
    defined_a, defined_b = hand_defined(a), hand_defined(b)
    block = _defined_block(a, b, defined_a, defined_b)
    return _lineage(_learned(a, defined_a), _learned(b, defined_b), block)


def _defined_block(a: Vocab, b: Vocab, defined_a: set[int], defined_b: set[int]) -> dict:
    """Hand-defined multi-byte tokens both hold (single bytes are the alphabet), and the runs they form at one
    id offset."""
    pairs = np.array([(i, j) for i, j in shared_tokens(a, b) if (i in defined_a or j in defined_b) and len(a.tokens[i]) >= 2],
                     dtype=np.int64).reshape(-1, 2)
    runs = _runs(pairs)
    return {"size_a": len(defined_a), "size_b": len(defined_b), "shared": int(len(pairs)),
            "same_offset": sum(r.length for r in runs), "runs": [r.to_list() for r in runs[:50]],
            "what": "added tokens, byte fallback, user-defined pieces and constructed series (runs of a repeated "
                    "unit or numbered placeholders at consecutive ids); left out of the lineage statistic"}


def _lineage(a: Vocab, b: Vocab, block: dict | None) -> dict:
    pairs = np.array(shared_tokens(a, b), dtype=np.int64).reshape(-1, 2)
    multi = np.array([len(a.tokens[i]) >= 2 for i in pairs[:, 0]], dtype=bool) if len(pairs) else np.zeros(0, bool)
    m = pairs[multi]
    n_multi_a = sum(len(t) >= 2 for t in a.by_bytes())
    n_multi_b = sum(len(t) >= 2 for t in b.by_bytes())
    gaps_a, gaps_b = np.diff(m[:, 0]), np.diff(m[:, 1])
    preserved = int((gaps_a == gaps_b).sum())
    reflected = int((gaps_b == -gaps_a).sum())
    null_count = max(reflected, 1)
    log10_p = poisson_tail(preserved, null_count)
    runs = _runs(m)
    core = sum(r.length for r in runs)
    notes: list[str] = []
    score = {
        "name": "preserved_id_gaps",
        "value": round(preserved / max(len(gaps_a), 1), 6),
        "preserved": preserved, "pairs": int(len(gaps_a)),
        "null": {"expected": null_count, "rate": round(null_count / max(len(gaps_a), 1), 6),
                 "how": "coincidence rate of the pair measured by reflected gaps (B's gap = -A's gap)"},
        "log10_p": round(log10_p, 2),
    }
    spearman = _spearman(m)
    common = {
        "shared_tokens": int(len(pairs)), "shared_multibyte": int(len(m)),
        "overlap_a": round(len(pairs) / max(len(a.tokens), 1), 4), "overlap_b": round(len(pairs) / max(len(b.tokens), 1), 4),
        "rank_spearman": spearman,
        "core": {"size": core, "coverage_a": round(core / max(n_multi_a, 1), 4), "coverage_b": round(core / max(n_multi_b, 1), 4),
                 "runs": [r.to_list() for r in runs[:200]], "n_runs": len(runs),
                 "id_map": "runs of [first id in A, last id in A, id in B minus id in A, shared tokens]"},
        "score": score,
        "hand_defined": block,
    }
    if a.tokens == b.tokens:
        kind = "re_export" if a.format != b.format else None
        if block is not None and (block["size_a"] != block["size_b"] or block["shared"] < block["size_a"]):
            notes.append(f"the same learned tokens at the same ids; hand-defined tokens differ ({block['size_a']:,} in "
                         f"A, {block['size_b']:,} in B, {block['shared']:,} shared)")
            kind = kind or "special_tokens"
        elif a.special != b.special:
            notes.append(f"same ordinary tokens and ids; special tokens differ ({len(a.special)} in A, {len(b.special)} in B)")
            kind = kind or "special_tokens"
        if a.format != b.format:
            notes.append(f"the same vocabulary exported as {a.format} (A) and {b.format} (B)")
        if a.size != b.size and not notes:
            notes.append(f"same ordinary tokens; id space {a.size} in A, {b.size} in B")
        return {"relation": "identical", "kind": kind, **common, "notes": notes}
    same_set = len(pairs) / max(len(a.by_bytes()), len(b.by_bytes()), 1)
    if (log10_p > DERIVED_LEVEL or core < MIN_CORE) and same_set >= SAME_SET and len(pairs) >= MIN_SET:
        # Every token of both, in another order (e.g. ids re-sorted by frequency, as RoBERTa did with GPT-2's
        # BPE): independent training never reproduces a whole vocabulary, whatever it does to short tokens.
        notes.append(f"the same {len(pairs):,} byte strings in both, in another id order (rank correlation {spearman}): "
                     "a re-export with the ids permuted")
        return {"relation": "derived", "kind": "reordered", **common, "notes": notes}
    pruned = _pruned(a, b, m)
    if pruned is not None and (log10_p > DERIVED_LEVEL or core < MIN_CORE):
        # Every token of one, kept in the other's order with the ids renumbered: no gap survives a dense pruning,
        # but independent training never yields one vocabulary inside another in the same order.
        notes.append(pruned)
        return {"relation": "derived", "kind": "pruned", **common, "notes": notes}
    if log10_p > DERIVED_LEVEL or core < MIN_CORE:
        notes.append(f"{len(pairs):,} tokens shared ({100 * common['overlap_a']:.0f}% of A), rank correlation "
                     f"{spearman}, but only {preserved} of {len(gaps_a):,} id gaps preserved (coincidence rate "
                     f"{reflected} reflected): no copied core")
        if block and block["same_offset"] >= MIN_RUN:
            notes.append(_block_note(block))
        return {"relation": "unrelated", "kind": None, **common, "notes": notes}
    kind = _kind(a, b, runs, core, n_multi_a, n_multi_b, pairs, notes)
    return {"relation": "derived", "kind": kind, **common, "notes": notes}


def _pruned(a: Vocab, b: Vocab, m: np.ndarray) -> str | None:
    """One vocabulary is the other's with tokens removed, the rest kept in their order and the ids renumbered
    (vocabulary trimming): the sentence saying so, or None. `m`: the shared multi-byte (A id, B id) pairs."""
    if len(m) < MIN_CORE:
        return None
    multi_a = {t for t in a.by_bytes() if len(t) >= 2}
    multi_b = {t for t in b.by_bytes() if len(t) >= 2}
    by_a = m[np.argsort(m[:, 0], kind="stable")]
    in_order = float((np.diff(by_a[:, 1]) > 0).mean()) if len(by_a) > 1 else 0.0
    if in_order < FULL:
        return None
    for parent, child, big, small in (("A", "B", multi_a, multi_b), ("B", "A", multi_b, multi_a)):
        if len(small) < FULL * len(big) and len(small - big) <= (1 - FULL) * len(small):
            return (f"{child}'s vocabulary is {parent}'s minus {len(big - small):,} of its {len(big):,} multi-byte "
                    f"tokens, the other {len(small & big):,} kept in {parent}'s order with their ids renumbered "
                    "(pruned)")
    return None


def _block_note(block: dict) -> str:
    runs = block["runs"]
    spans = ", ".join(f"{r[0]}-{r[1]}" + (f" (B: {r[0] + r[2]}-{r[1] + r[2]})" if r[2] else "") for r in runs[:3])
    more = f" and {len(runs) - 3} more runs" if len(runs) > 3 else ""
    return (f"they share only a hand-defined block: {block['same_offset']:,} tokens at one id offset (ids {spans}{more} "
            "in A: added tokens, placeholders, constructed runs), the template of one maker or convention, not a "
            "sign that either learned vocabulary was derived from the other")


def _spearman(m: np.ndarray) -> float | None:
    if len(m) < 3:
        return None
    ra, rb = np.argsort(np.argsort(m[:, 0])), np.argsort(np.argsort(m[:, 1]))
    return round(float(np.corrcoef(ra, rb)[0, 1]), 3)


def _kind(a: Vocab, b: Vocab, runs: list[Run], core: int, n_a: int, n_b: int, pairs: np.ndarray, notes: list[str]) -> str:
    cov_a, cov_b = core / max(n_a, 1), core / max(n_b, 1)
    offsets = {}
    for r in runs:
        offsets[r.offset] = offsets.get(r.offset, 0) + r.length
    main_offset, main_len = max(offsets.items(), key=lambda kv: kv[1])
    b_ids = [r.offset + r.a_start for r in runs]
    monotone = all(x < y for x, y in zip(b_ids, b_ids[1:]))
    hi_a = max(r.a_end for r in runs)
    hi_b = max(r.a_end + r.offset for r in runs)
    extra_b = sorted(i for i in b.tokens if i > hi_b)
    tail_a = [i for i in a.tokens if i > hi_a and len(a.tokens[i]) >= 2]
    in_a_core = {ib for ia, ib in pairs if ia <= hi_a}
    reused = [i for i in extra_b if i in in_a_core and len(b.tokens[i]) >= 2]
    dup_b = len(b.tokens) - len(b.by_bytes())

    # A second vocabulary appended after A's block re-learns many of the common tokens A's block already has:
    # they come back out of order (or as duplicates). A plain extension appends tokens A does not have.
    if len(extra_b) >= MIN_CORE and (len(reused) >= 0.2 * len(extra_b) or dup_b >= MIN_CORE):
        notes.append(f"B holds {core:,} of A's {n_a:,} multi-byte tokens at their ids' offsets ({len(runs)} runs, up "
                     f"to id {hi_b} of B), then {len(extra_b):,} tokens of which {len(reused):,} repeat A's out of "
                     f"order and {dup_b:,} byte strings appear twice: a second vocabulary stitched on")
        return "stitched"
    if cov_a >= FULL and main_len >= FULL * core:
        if main_offset == 0:
            if cov_b >= FULL:  # B inside A
                notes.append(f"A = B + {len(a.tokens) - len(b.tokens):,} tokens (A extends B; ids of B's tokens unchanged)")
            else:
                notes.append(f"B = A + {len(b.tokens) - core - (len(a.tokens) - n_a):,} tokens appended "
                             f"(A's ids unchanged; B's new ids from {hi_b + 1})")
            return "extension"
        notes.append(f"B = A with every id shifted by {main_offset:+d}")
        return "id_shift"
    if cov_b >= FULL and main_len >= FULL * core and main_offset == 0:
        notes.append(f"A = B + {len(a.tokens) - len(b.tokens):,} tokens (A extends B)")
        return "extension"
    pruned = _pruned(a, b, pairs[np.array([len(a.tokens[i]) >= 2 for i in pairs[:, 0]], dtype=bool)])
    if pruned is not None:
        notes.append(pruned)
        return "pruned"
    if len(tail_a) >= MIN_CORE and len([i for i in extra_b if len(b.tokens[i]) >= 2]) >= MIN_CORE:
        notes.append(f"A and B share a copied core of {core:,} tokens (ids up to {hi_a} in A, {hi_b} in B) and each "
                     f"continues differently ({len(tail_a):,} more in A, {len(extra_b):,} in B): siblings of a common "
                     "parent, or one partly derived from the other")
        return "partial"
    if monotone and max(cov_a, cov_b) >= 0.5:
        parent, child, n_parent = ("A", "B", n_a) if cov_a >= cov_b else ("B", "A", n_b)
        pv, cv = (a, b) if parent == "A" else (b, a)
        p_multi = {t for t in pv.by_bytes() if len(t) >= 2}
        c_multi = {t for t in cv.by_bytes() if len(t) >= 2}
        deleted, new = len(p_multi - c_multi), len(c_multi - p_multi)
        moved = n_parent - core - deleted  # in both, but outside the runs kept in order
        notes.append(f"{child} = {parent} with {deleted:,} of {parent}'s {n_parent:,} multi-byte tokens deleted"
                     + (f", {moved:,} kept out of order" if moved > 0 else "")
                     + f" and {new:,} new ones added; the other {core:,} keep their order ({len(runs)} runs, offsets "
                     f"{runs[0].offset:+d} .. {runs[-1].offset:+d})")
        return "deletion_append"
    notes.append(f"{100 * cov_a:.0f}% of A's multi-byte tokens are copied in {len(runs)} runs "
                 f"({100 * cov_b:.0f}% of B's)")
    return "partial"
