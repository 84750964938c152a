"""What changed from A to B, said only as far as the evidence goes.

The verdict says *whether* two checkpoints share ancestry; this module says *how*, and every sentence it writes
is drawn from a figure in the same JSON document:

1. The layer alignment (a monotone path over the per-cell evidence, `align.align_layers`), with its ties made
   explicit. An inserted copy of a layer matches the layer it was copied from as well as the original does (the
   order tests saturate on both), so the path's pick between them is arbitrary. The tie is broken by the
   output projections (o_proj, down_proj): the original keeps A's, while a copy inserted with zeroed outputs
   (LLaMA-Pro style block expansion, the zoo's insertion) grows new ones; when they do not decide (an exact copy,
   SOLAR style), the report says that both descend from the one layer of A.
2. Which layers were examined at all. A layer with no counterpart is named so only when a test that can see
   this pair's kinship looked at it: an invariant test whose cell had the power to reach significance, or an
   order test that matched most layers of this pair (so relabelled neurons did not blind it). Otherwise it is
   "not examined", never "no counterpart".
3. Findings per component (embeddings, each layer's attention and FFN, lm_head): identical / related / no
   evidence (examined with power) / not examined, summarised as runs of layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .align import LayerAlignment, align_layers
from .checkpoint import Checkpoint
from .evidence import Evidence
from .evidence.hidden import HiddenMap
from .evidence.identical import TensorIdentity, layer_identity
from .evidence.neurons import Cell, layer_scores, unit_map
from .report.words import budget as budget_words, format_bytes, layers as layer_words, shape_value
from .stats import poisson_tail

COMPONENT_OF_TEST = {"ffn_neuron_order": "ffn", "ffn_neuron_agreement": "ffn", "ffn_neuron_rank_order": "ffn",
                     "value_row_order": "attention"}
INVARIANT_TESTS = ("ffn_neuron_agreement",)  # survive relabelled neurons and a rotated residual stream
OUTPUT_ROLES = ("attn_o", "mlp_down")  # the writers an inserted copy has zeroed
OUTPUT_ROWS = 64  # residual coordinates of each output projection read per layer compared
KEPT_MIN = 0.05  # mean |cos| above chance for "keeps A's output projections"
KEPT_RATIO = 3.0  # the keeper's excess over the others' for a tie to be decided
NEAR_ZERO = 0.05  # output-projection norm, relative to A's, below which it reads "near zero"
# A copy of a layer matches its source about as well as the original does (both saturate, or drift alike when
# trained on), while *different* layers of one real model share directions through the residual stream: on
# SmolLM2 against its rotated copy, A's layer 5 reaches -log10 p 10 against B's layer 4, whose own match is
# 300. A tie (one is a copy) is claimed only when the rival reaches this share of the matched cell's evidence.
TIE_SHARE = 0.5


@dataclass
class TestCells:
    name: str  # the Evidence name the cells come from
    cells: list[Cell]

    @property
    def component(self) -> str:
        return COMPONENT_OF_TEST.get(self.name, "ffn")

    @property
    def invariant(self) -> bool:
        return self.name in INVARIANT_TESTS


def component_of(role: str) -> str:
    if role.startswith("attn"):
        return "attention"
    if role.startswith(("mlp", "shared_mlp", "router", "expert")):
        return "ffn"
    return {"embed": "embeddings", "lm_head": "lm_head"}.get(role, "other")


# -- which layers a test examined with power ---------------------------------------------------------------------


def _cell_power(c: Cell) -> float:
    """-log10 p the cell would have shown had every tested row agreed."""
    if "null_mean" in c.extra:  # agreement cells: n counted rows against a Poisson null
        return -poisson_tail(c.n, c.extra["null_mean"])
    return math.inf  # order cells: m fixed points of m rows is far beyond any level


def examined_layers(tests: list[TestCells], scores: dict[str, np.ndarray], level: float, n_a: int, n_b: int
                    ) -> dict[str, dict[str, set[int]]]:
    """Per component, the layers of A and of B that a test able to see this pair's kinship examined."""
    out = {"ffn": {"a": set(), "b": set()}, "attention": {"a": set(), "b": set()}}
    for t in tests:
        if not t.cells or "rank_tau" in t.cells[0].extra:  # the rank test adds no coverage of its own
            continue
        if t.invariant:
            cells = [c for c in t.cells if _cell_power(c) > level]
        else:  # an order test is blind to relabelled neurons: it counts where it matched most layers
            matched_b = {j for j in range(n_b) if (scores[t.name][:, j] > level).any()}
            cells = t.cells if len(matched_b) >= max(1, math.ceil(min(n_a, n_b) / 2)) else []
        out[t.component]["a"].update(c.a.layer for c in cells if c.a.layer < n_a)
        out[t.component]["b"].update(c.b.layer for c in cells if c.b.layer < n_b)
    return out


# -- ties between an original layer and an inserted copy --------------------------------------------------------


def _chance_abs_cos(m: int) -> float:
    """E|cos| between a fixed and a uniformly random direction in m dimensions."""
    return math.exp(math.lgamma(m / 2) - math.lgamma((m + 1) / 2)) / math.sqrt(math.pi)


def output_kept(a: Checkpoint, b: Checkpoint, hmap: HiddenMap, i: int, j: int, seed: int) -> dict | None:
    """How much B's layer j keeps the output projections of A's layer i.

    Columns of o_proj and down_proj are the output directions of head dimensions and neurons; a block of
    OUTPUT_ROWS residual coordinates of each is read in both (B's rows through the residual map, which must be a
    permutation or the identity for rows to correspond) and the columns at the same index compared by |cos|.
    Returns the mean |cos| above chance and B's row norm relative to A's, or None when not comparable.
    Descriptive, not calibrated: it only decides which of two layers that both significantly descend from one
    layer is named the copy (KEPT_MIN, KEPT_RATIO), never whether the models are related."""
    if hmap.kind not in ("identity", "permutation"):
        return None
    excess, norms = [], []
    for role in OUTPUT_ROLES:
        ta, tb = a.find(role, i), b.find(role, j)
        if ta is None or tb is None or ta.n_rows != hmap.d_a or tb.n_rows != hmap.d_b:
            continue
        r = min(OUTPUT_ROWS, ta.prefix(), tb.prefix())  # a fingerprint holds leading rows only
        complete = a.weights.complete and b.weights.complete  # else a fingerprint: its leading rows
        start = int(np.random.default_rng([seed, i, j]).integers(0, ta.n_rows - r + 1)) if complete else 0
        rows_a = np.arange(start, start + r)
        if hmap.kind == "permutation":
            keep = hmap.perm[rows_a] >= 0
            rows_a = rows_a[keep]
            rows_b, signs = hmap.perm[rows_a], hmap.signs[rows_a].astype(np.float32)
        else:
            rows_b, signs = rows_a, np.ones(len(rows_a), dtype=np.float32)
        if len(rows_a) < 8 or not tb.has_at(rows_b).all():
            continue
        xa = ta.read_at(rows_a)  # (r, n_cols_a)
        xb = tb.read_at(rows_b) * signs[:, None]
        n = min(xa.shape[1], xb.shape[1])  # a widened FFN keeps the original neurons first
        xa, xb = xa[:, :n], xb[:, :n]
        na, nb = np.linalg.norm(xa, axis=0), np.linalg.norm(xb, axis=0)
        cos = np.abs((xa * xb).sum(axis=0)) / np.maximum(na * nb, 1e-30)
        excess.append(float(cos.mean()) - _chance_abs_cos(len(rows_a)))
        norms.append(float(nb.mean() / max(na.mean(), 1e-30)))
    if not excess:
        return None
    return {"excess_abs_cos": round(float(np.mean(excess)), 3), "norm_ratio": round(float(np.mean(norms)), 3)}


def _tie_groups(la: LayerAlignment, score: np.ndarray, level: float) -> list[dict]:
    """Unmatched layers that also significantly match the layer their matched neighbour is paired with, about as
    strongly as the neighbour does (TIE_SHARE)."""
    match_b = {j: i for i, j in la.matched}
    match_a = {i: j for i, j in la.matched}
    groups: dict[tuple[str, int], set[int]] = {}
    def neighbours(k: int, matched: dict[int, int], n: int) -> list[int]:
        """The nearest matched layer on each side of k, past a run of unmatched ones (copies inserted twice)."""
        out = []
        for step in (-1, 1):
            m = k + step
            while 0 <= m < n and m not in matched:
                m += step
            if 0 <= m < n:
                out.append(m)
        return out

    n_a, n_b = score.shape
    for i, j in la.pairs:
        if i is None:  # B's layer j unmatched: an inserted copy of a neighbour's A layer?
            for nb in neighbours(j, match_b, n_b):
                if score[match_b[nb], j] > max(level, TIE_SHARE * score[match_b[nb], nb]):
                    groups.setdefault(("a", match_b[nb]), {nb}).add(j)
        elif j is None:
            for na in neighbours(i, match_a, n_a):
                if score[i, match_a[na]] > max(level, TIE_SHARE * score[na, match_a[na]]):
                    groups.setdefault(("b", match_a[na]), {na}).add(i)
    return [{"side": side, "layer": k, "candidates": sorted(v)} for (side, k), v in groups.items()]


def resolve_ties(a: Checkpoint, b: Checkpoint, hmap: HiddenMap, la: LayerAlignment, score: np.ndarray, level: float,
                 seed: int) -> tuple[LayerAlignment, list[dict]]:
    """Decide each tie by the output projections, or leave it stated as a tie."""
    pairs = list(la.pairs)
    out = []
    for g in _tie_groups(la, score, level):
        one, many = g["layer"], g["candidates"]
        if g["side"] == "a":  # several B layers descend from A's layer `one`
            kept = {j: output_kept(a, b, hmap, one, j, seed) for j in many}
        else:  # several A layers match B's layer `one` (a deletion next to a similar layer)
            kept = {i: output_kept(a, b, hmap, i, one, seed) for i in many}
        entry = {"side": g["side"], "layer": one, "candidates": many, "kept": {str(k): v for k, v in kept.items()},
                 "original": None, "scores": [round(float(score[one, k] if g["side"] == "a" else score[k, one]), 2)
                                              for k in many]}
        known = {k: v for k, v in kept.items() if v is not None}
        if len(known) == len(many):
            ranked = sorted(many, key=lambda k: -known[k]["excess_abs_cos"])
            top, rest = known[ranked[0]]["excess_abs_cos"], max(known[k]["excess_abs_cos"] for k in ranked[1:])
            if top >= KEPT_MIN and top >= KEPT_RATIO * max(rest, 0.01):
                entry["original"] = ranked[0]
        if entry["original"] is not None:
            orig = entry["original"]
            if g["side"] == "a":
                pairs = [(i, j) if j not in many else ((one, j) if j == orig else (None, j)) for i, j in pairs]
            else:
                pairs = [(i, j) if i not in many else ((i, one) if i == orig else (i, None)) for i, j in pairs]
        out.append(entry)
    return LayerAlignment(_monotone(pairs), la.score), out


def _monotone(pairs: list[tuple[int | None, int | None]]) -> list[tuple[int | None, int | None]]:
    """Pairs re-sorted into one path (a swap inside a tie can leave an unmatched entry out of place)."""
    matched = sorted([p for p in pairs if None not in p])
    out: list[tuple[int | None, int | None]] = []
    gaps_a = sorted(i for i, j in pairs if j is None)
    gaps_b = sorted(j for i, j in pairs if i is None)
    ia = ib = 0
    for i, j in matched + [(math.inf, math.inf)]:
        while ia < len(gaps_a) and gaps_a[ia] < i:
            out.append((gaps_a[ia], None))
            ia += 1
        while ib < len(gaps_b) and gaps_b[ib] < j:
            out.append((None, gaps_b[ib]))
            ib += 1
        if i != math.inf:
            out.append((i, j))
    return out


def tie_notes(ties: list[dict]) -> list[str]:
    """One sentence per tie: what descends from what, and what (if anything) decided which is the copy."""
    out = []
    for t in ties:
        many, orig = t["candidates"], t["original"]
        if t["side"] == "a":
            head = f"B's {layer_words(many)} {'both' if len(many) == 2 else 'all'} descend from A's layer {t['layer']}"
        else:
            head = f"A's {layer_words(many)} {'both' if len(many) == 2 else 'all'} match B's layer {t['layer']}"
        if orig is None:
            why = ("their output projections do not tell which is the original" if all(t["kept"].values())
                   else "output projections not compared (the residual map is not a permutation)")
            out.append(f"{head}; one is a copy, and {why}")
            continue
        ko = t["kept"][str(orig)]
        for k in (k for k in many if k != orig):
            kk = t["kept"][str(k)]
            if kk["norm_ratio"] < NEAR_ZERO:
                why = f"its o_proj and down_proj are near zero (norm {kk['norm_ratio']:.2f} of A's)"
            else:
                why = (f"its o_proj and down_proj do not keep A's (mean |cos| {kk['excess_abs_cos']:+.2f} above "
                       f"chance, against {ko['excess_abs_cos']:+.2f} for layer {orig})")
            if t["side"] == "a":
                out.append(f"{head}; B's layer {k} looks inserted: {why}")
            else:
                out.append(f"{head}; A's layer {k} looks removed: B's layer {t['layer']} keeps the output "
                           f"projections of A's layer {orig} (mean |cos| {ko['excess_abs_cos']:+.2f} above chance, "
                           f"against {kk['excess_abs_cos']:+.2f})")
    return out


# -- per-component findings ---------------------------------------------------------------------------------------


def _identity_by_layer(identity: list[TensorIdentity]) -> dict[tuple[int | None, str], list[TensorIdentity]]:
    out: dict[tuple[int | None, str], list[TensorIdentity]] = {}
    for r in identity:
        out.setdefault((r.layer, component_of(r.role)), []).append(r)
    return out


def identity_phrase(records: list[TensorIdentity]) -> str:
    """'bit-identical' only when every row was compared; otherwise how many rows were."""
    records = [r for r in records if r.informative] or records
    if all(r.whole for r in records):
        return "bit-identical to A's"
    sampled = sorted({r.sampled for r in records})
    rows = sorted({r.rows for r in records})
    k = str(sampled[0]) if len(sampled) == 1 else f"up to {sampled[-1]}"
    n = str(rows[0]) if len(rows) == 1 else f"{rows[0]}\u2013{rows[-1]}"
    return f"bit-identical to A's in every sampled row ({k} of {n} rows per tensor)"


def _identical_status(records: list[TensorIdentity]) -> str | None:
    """'identical' only when every weight matrix of the component was compared (none quantised or reshaped)
    and every informative tensor is identical in every sampled row: a gain vector alone says nothing."""
    informative = [r for r in records if r.informative]
    matrices = [r for r in records if r.matrix]
    if (matrices and all(r.comparable and r.informative for r in matrices)
            and all(r.all_identical for r in informative)):
        return "identical"
    if any(r.identical for r in informative):
        return "partly identical"
    return None


def layer_findings(n_a: int, n_b: int, la: LayerAlignment | None, scores: dict[str, np.ndarray], tests: list[TestCells],
                   examined: dict, identity: list[TensorIdentity], level: float, ties: list[dict],
                   shifted=lambda i, j: []) -> list[dict]:
    """One entry per layer of B: its A layer on the alignment (or the layer it is a copy of), and attention and
    FFN findings."""
    match_b = {j: i for i, j in (la.matched if la else [])}
    copy_of = {k: t["layer"] for t in ties if t["side"] == "a" for k in t["candidates"] if k != t["original"]}
    by_layer = _identity_by_layer(identity)
    out = []
    for j in range(n_b):
        i = match_b.get(j)
        entry = {"layer_b": j, "layer_a": i, "copy_of": copy_of.get(j) if i is None else None,
                 "tie": any(t["side"] == "a" and t["original"] is None and j in t["candidates"] for t in ties)}
        for comp in ("attention", "ffn"):
            names = [t.name for t in tests if t.component == comp and t.name in scores]
            best = {n: round(float(scores[n][i, j] if i is not None else scores[n][:, j].max()), 2) for n in names}
            if i == j:
                records = by_layer.get((j, comp), [])
            elif i is not None:  # moved by an insertion or removal: compared with the layer it aligns to
                records = [r for r in shifted(i, j) if component_of(r.role) == comp]
            else:
                records = []
            ident = _identical_status(records)
            if ident == "identical":
                status = "identical"
            elif any(v > level for v in best.values()):
                status = "related"
            elif j in examined[comp]["b"]:
                status = "no evidence"
            else:
                status = "not examined"
            # moved: some matrix compared and found different; None when identity could not be checked (quantised
            # storage, reshaped tensors, or a layer with no aligned counterpart)
            compared = [r for r in records if r.matrix and r.comparable and r.informative]
            moved = (any(not r.all_identical for r in compared) if compared else None) if ident != "identical" else False
            entry[comp] = {"status": status, "score": best, "partly_identical": ident == "partly identical",
                           "moved": moved, "identity": identity_phrase(records) if ident == "identical" else None}
        out.append(entry)
    return out


def component_runs(findings: list[dict]) -> list[str]:
    """'layers 0–1 of B: attention and FFN bit-identical ... (frozen)', one line per run of like layers."""
    def related(c: dict) -> str:
        return "related to A's" + {True: " and moved", False: "", None: " (identity not checked)"}[c["moved"]]

    def describe(f: dict) -> str:
        att, ffn = f["attention"], f["ffn"]
        if att["status"] == ffn["status"] == "identical":
            return f"attention and FFN {att['identity']}: frozen"
        if att["status"] == ffn["status"] and (att["status"] != "related" or att["moved"] == ffn["moved"]):
            return {"related": f"attention and FFN {related(att)}", "no evidence":
                    "no sign of A's in attention or FFN, examined with power",
                    "not examined": "not examined with a test that sees this pair's kinship"}[att["status"]]
        word = lambda c: {"identical": "identical to A's", "related": related(c), "no evidence":  # noqa: E731
                          "no sign of A's (examined with power)", "not examined": "not examined"}[c["status"]]
        return f"attention {word(att)}, FFN {word(ffn)}"

    runs: list[tuple[list[int], str, list]] = []
    for f in findings:
        d = describe(f)
        if f["copy_of"] is not None:
            d = f"a copy of A's layer {f['copy_of']}" + (" (which of the two is the copy is not known)" if f["tie"] else
                                                          ", inserted") + f"; {d}"
        a_layer = f["layer_a"]
        if runs and runs[-1][1] == d and runs[-1][0][-1] == f["layer_b"] - 1:
            runs[-1][0].append(f["layer_b"])
            runs[-1][2].append(a_layer)
        else:
            runs.append(([f["layer_b"]], d, [a_layer]))
    out = []
    for bs, d, as_ in runs:
        pairs = [x for x in as_ if x is not None]
        shifted = pairs and pairs != bs
        where = f" (A's {layer_words(pairs)})" if shifted and "related" in d else ""
        out.append(f"{layer_words(bs)} of B{where}: {d}")
    return out


def embedding_finding(ev_hidden: Evidence, hmap: HiddenMap, identity: list[TensorIdentity], tied: bool,
                      level: float) -> list[dict]:
    by_key = {r.role: r for r in identity if r.layer is None}
    out = []
    p = ev_hidden.log10_p
    power = ev_hidden.details.get("max_power_log10_p")
    fitted = "paired_by" not in ev_hidden.details and ev_hidden.details.get("n_tokens")
    for role, comp in (("embed", "embeddings"), ("lm_head", "lm_head")):
        r = by_key.get(role)
        entry = {"component": comp, "rows_identical": r.to_dict() if r else None}
        if role == "lm_head" and tied:
            entry.update(status="tied", basis="tied to the embeddings")
        elif r is not None and r.informative and r.all_identical:
            entry.update(status="identical", basis=identity_phrase([r]))
        elif role == "embed" and fitted and p is not None and p <= level:
            entry.update(status="related", basis=f"residual dimensions in place over shared tokens, log10 p {p:.1f}")
        elif role == "embed" and fitted and hmap.kind != "rotation" and power is not None and power <= level:
            entry.update(status="no evidence", basis="residual dimensions not in place over shared tokens")
        else:
            entry.update(status="not examined",
                         basis="the residual stream is rotated, which the order test cannot see through"
                         if role == "embed" and hmap.kind == "rotation" else "no test reads it beyond identity")
        if r is not None and r.informative and 0 < r.identical < r.sampled:
            entry["basis"] += f"; {r.identical} of {r.sampled} sampled rows bit-identical (of {r.rows})"
        out.append(entry)
    return out


def summary_notes(findings: list[dict], embeds: list[dict], examined: dict) -> list[str]:
    """The few sentences a reader quotes: which parts share ancestry, which are frozen."""
    notes = []
    frozen = [f["layer_b"] for f in findings if f["attention"]["status"] == f["ffn"]["status"] == "identical"]
    moved = [f["layer_b"] for f in findings if f["layer_b"] not in frozen
             and "related" in (f["attention"]["status"], f["ffn"]["status"])
             and (f["attention"]["moved"] or f["ffn"]["moved"])]
    emb = embeds[0]["status"] if embeds else None
    if frozen:
        notes.append(f"{layer_words(frozen)} of B frozen: attention and FFN "
                     f"{findings[frozen[0]]['attention']['identity']}" + (f"; {layer_words(moved)} moved and related"
                                                                           if moved else ""))
    related_layers = [f["layer_b"] for f in findings if {"related", "identical"} & {f["attention"]["status"], f["ffn"]["status"]}]
    if emb in ("related", "identical") and not related_layers:
        looked = sorted(examined["ffn"]["b"] | examined["attention"]["b"])
        seen = (f"{layer_words(looked)} of B examined with power show none" if looked else
                "no layer could be examined with a test that sees through relabelled neurons")
        notes.append(f"only the embeddings share ancestry ({embeds[0]['basis']}): no transformer layer matches A's "
                     f"({seen}); consistent with layers trained from a fresh initialisation on copied embeddings")
    return notes


def frozen_tensors(records: list[TensorIdentity], whole_layers: set[int]) -> list[dict]:
    """Runs of B's layers whose same tensors are bit-identical to A's, in layers not frozen whole:
    [{"layers": [...], "tensors": ["attn_o.weight", "experts.*.mlp_up.weight (256 of 256)"]}]."""
    per_layer: dict[int, dict[str, set]] = {}
    for r in records:
        if r.layer is None or r.layer in whole_layers or not (r.comparable and r.informative and r.matrix):
            continue
        label = r.key.split(".", 2)[2]
        expert = None
        if label.startswith("experts."):
            _, expert, label = label.split(".", 2)
            label = f"experts.*.{label}"
        entry = per_layer.setdefault(r.layer, {}).setdefault(label, set())
        entry.add((expert, r.all_identical))
    runs: list[dict] = []
    for layer in sorted(per_layer):
        labels = []
        for label, seen in sorted(per_layer[layer].items()):
            same = [e for e, ok in seen if ok]
            if not same:
                continue
            labels.append(label if len(seen) == 1 else f"{label} ({len(same)} of {len(seen)} compared)")
        if not labels:
            continue
        if runs and runs[-1]["tensors"] == labels and runs[-1]["layers"][-1] == layer - 1:
            runs[-1]["layers"].append(layer)
        else:
            runs.append({"layers": [layer], "tensors": labels})
    return runs


def frozen_tensor_notes(runs: list[dict]) -> list[str]:
    return [f"frozen in {layer_words(r['layers'])} of B (bit-identical to A's in every sampled row): "
            f"{', '.join(r['tensors'])}" for r in runs]


# -- the alignment section ----------------------------------------------------------------------------------------


SHAPE_FIELDS = (("FFN width", "intermediate_size"), ("hidden size", "hidden_size"), ("layers", "n_layers"),
                ("query heads", "n_heads"), ("key/value heads", "n_kv_heads"), ("experts", "n_experts"),
                ("vocabulary", "vocab_size"))  # what differs in shape, in the order told


def _slot(k: int, matched: list[tuple[int, int]], n_other: int) -> range:
    """The other side's layers a gap at layer k could still align to on a monotone path: strictly between the
    counterparts of its matched neighbours. (matched: (this side, other side) pairs.)"""
    before = [o for m, o in matched if m < k]
    after = [o for m, o in matched if m > k]
    return range(max(before, default=-1) + 1, min(after, default=n_other))


def _unmapped_note(where: str, n_more: int, widen: tuple[int, int] | None) -> str:
    """Why layers are left unmapped, and (when only B's FFNs read whole could map them) what that would cost."""
    out = f"{where}: not mapped (neither they nor their possible counterparts were examined by a test that " \
          "sees this pair's kinship"
    if widen is None:
        return out + "; raise --budget to read more layers whole)"
    if not n_more:  # only the first layer is left, which the invariant test leaves out at any budget
        return out + "; the neuron agreement test leaves out the first layer, whose token-detector neurons match " \
                     "across independent models)"
    budget, per_layer, overspent = widen
    # A larger budget also widens the token and block reads made before any FFN is read whole (each at most a
    # quarter of the budget, with the rows a residual map is fitted on): three times the missing bytes on top
    # of what this run read leaves the whole FFNs at least what they need.
    enough = budget + overspent + 3 * n_more * per_layer
    return (out + f"). The budget was too small for a whole map: where neurons are relabelled only B's FFNs read "
            f"whole place a layer, and the {n_more} left need about {format_bytes(n_more * per_layer)} more than "
            f"this run's {format_bytes(budget + overspent)}; --budget {budget_words(enough)} leaves room for them)")


def explain(a: Checkpoint, b: Checkpoint, tests: list[TestCells], hmap: HiddenMap, identity: list[TensorIdentity],
            ev_hidden: Evidence, related: bool, notes: list[str], related_level: float, seed: int,
            widen: tuple[int, int] | None = None) -> dict:
    """The alignment section. widen: (budget, bytes per B layer read whole) when only the invariant test, which
    reads B's FFNs whole, could place layers: the note on unmapped layers then says what mapping them costs."""
    n_a, n_b = a.summary.n_layers or 0, b.summary.n_layers or 0
    out: dict = {"layers": None, "notes": [], "units": [], "units_note": None, "hidden_map": hmap.to_dict(), "ties": [],
                 "components": None,
                 "not_examined": {"a": [], "b": []}}
    for label, f in SHAPE_FIELDS:
        x, y = getattr(a.summary, f), getattr(b.summary, f)
        if x != y:
            out["notes"].append(f"{label} {shape_value(x, f)} -> {shape_value(y, f)}")
    if related and hmap.kind == "rotation":
        out["notes"].append("B's residual stream is a rotation of A's (re-parameterised)")
    tests = [t for t in tests if t.cells]
    if not related or not n_a or not n_b:
        out["notes"] += notes
        return out
    scores = {t.name: layer_scores(t.cells, n_a, n_b) for t in tests}
    score = sum(scores.values()) if scores else np.zeros((n_a, n_b))
    level = 2.0 + math.log10(n_a * n_b)  # a cell must be significant at 1% after Bonferroni over cells
    out["score_matrix"] = np.round(score, 2).tolist()
    out["significance_level"] = round(level, 2)
    examined = examined_layers(tests, scores, level, n_a, n_b)
    out["examined"] = {c: {s: sorted(v) for s, v in sides.items()} for c, sides in examined.items()}
    la = align_layers(score, level) if tests else None
    if la is not None and la.matched:
        la, ties = resolve_ties(a, b, hmap, la, score, level, seed)
        out["ties"] = ties
        out["notes"] += tie_notes(ties)
        in_tie = {("b" if t["side"] == "a" else "a", k) for t in ties for k in t["candidates"]}
        ex = {"b": examined["ffn"]["b"] | examined["attention"]["b"], "a": examined["ffn"]["a"] | examined["attention"]["a"]}
        gaps = {"b": [j for i, j in la.pairs if i is None], "a": [i for i, j in la.pairs if j is None]}
        # A gap is a claim ("no counterpart") only when it and every layer of the other side it could align to
        # were examined: a layer whose possible counterparts were never read has no evidence either way.
        matched = {"a": la.matched, "b": [(j, i) for i, j in la.matched]}
        n_other = {"a": n_b, "b": n_a}
        unseen = {side: [g for g in gaps[side] if (side, g) not in in_tie and
                         (g not in ex[side] or any(o not in ex["b" if side == "a" else "a"]
                                                   for o in _slot(g, matched[side], n_other[side])))]
                  for side in "ab"}
        for side, own, other in (("b", "B", "A"), ("a", "A", "B")):
            seen = [g for g in gaps[side] if g not in unseen[side] and (side, g) not in in_tie]
            if seen:
                out["notes"].append(f"{layer_words(seen)} of {own} {'has' if len(seen) == 1 else 'have'} no "
                                    f"counterpart in {other}")
        if unseen["a"] or unseen["b"]:
            where = (f"{layer_words(unseen['a'])} of A and of B" if unseen["a"] == unseen["b"] else
                     " and ".join(f"{layer_words(unseen[s])} of {s.upper()}" for s in "ab" if unseen[s]))
            first_b = min((c.b.layer for t in tests for c in t.cells), default=0)  # never read whole
            on_path = {j for _, j in la.matched}
            n_more = len([j for j in range(n_b) if j not in ex["b"] | on_path and j != first_b])
            out["notes"].append(_unmapped_note(where, n_more, widen))
        # A layer nothing examined is left out of the path: neither matched nor claimed inserted or removed.
        out["layers"] = [list(p) for p in la.pairs if not ((p[0] is None and p[1] in unseen["b"])
                                                           or (p[1] is None and p[0] in unseen["a"]))]
        out["not_examined"] = unseen
        if a.summary.n_experts or b.summary.n_experts:
            cells = [c for t in tests for c in t.cells]
            out["units"] = [u for u in unit_map(cells, related_level) if "value" not in u["b"]]
            upcycled = [u for u in out["units"] if "expert" in u["b"] and u["a"].endswith(" ffn")]
            sampled = {c.b.label for c in cells if "expert" in c.b.name}
            if upcycled:  # said by `describe` unless the expert map says it of every expert
                out["units_note"] = (f"{len(upcycled)} of the {len(sampled)} experts of B the neuron tests sampled "
                                     f"match A's dense FFNs (upcycled)")
    cache: dict[tuple[int, int], list[TensorIdentity]] = {}

    def shifted(i: int, j: int) -> list[TensorIdentity]:
        if (i, j) not in cache:
            cache[(i, j)] = layer_identity(a, b, i, j, seed)
        return cache[(i, j)]

    findings = layer_findings(n_a, n_b, la, scores, tests, examined, identity, level, out["ties"], shifted)
    embeds = embedding_finding(ev_hidden, hmap, identity, bool(a.summary.tied_embeddings or b.summary.tied_embeddings),
                               related_level)
    whole = {f["layer_b"] for f in findings if f["attention"]["status"] == f["ffn"]["status"] == "identical"}
    aligned = {j: i for i, j in (la.pairs if la is not None and la.matched else [])}
    compared = [r for r in identity if aligned.get(r.layer, r.layer) == r.layer] + [r for rs in cache.values() for r in rs]
    frozen = frozen_tensors(compared, whole)
    out["components"] = {"embeddings": embeds[0], "lm_head": embeds[1], "layers": findings,
                         "runs": component_runs(findings), "frozen_tensors": frozen}
    out["notes"] = summary_notes(findings, embeds, examined) + frozen_tensor_notes(frozen) + out["notes"] + notes
    return out


def describe(al: dict, export: dict | None, updates: dict | None, subsets: dict | None, tokenizer: dict) -> None:
    """The descriptive sections beside the layer map, into the alignment section with their sentences: the export
    relation first (what a reader of an upload wants first), then the update types, what B kept of A, the units
    map's sentence (unless the expert map says it of every expert), and the tokenizer's lineage when derived."""
    al["export"], al["updates"], al["subsets"] = export, updates, subsets
    if export:
        al["notes"].insert(0, export["summary"])
    al["notes"] += (updates or {}).get("notes", [])
    if al.get("units_note") and not ((subsets or {}).get("experts") or {}).get("kind"):
        al["notes"].append(al["units_note"])
    al["notes"] += (subsets or {}).get("notes", [])
    if tokenizer.get("relation") == "derived" and tokenizer.get("kind") and tokenizer.get("notes"):
        al["notes"].append(f"tokenizer: {tokenizer['notes'][0]}")
