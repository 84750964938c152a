"""Inline SVG plots for the HTML reports (matplotlib, Agg backend, deterministic output).

Determinism: no dates in the SVG metadata, a fixed hash salt for element ids, text kept as text; the same
document gives the same bytes.
"""

from __future__ import annotations

import io

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "parentage", "svg.fonttype": "none", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "parentage"})
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML


def _ticks(ax, n_x: int, n_y: int) -> None:
    """Every layer up to 16, then about 12 evenly spaced ticks: labels never overlap."""
    for n, set_ticks in ((n_x, ax.set_xticks), (n_y, ax.set_yticks)):
        step = 1 if n <= 16 else int(np.ceil(n / 12))
        set_ticks(range(0, n, step))


def layer_heatmap(score: list[list[float]], pairs: list[list[int | None]] | None, level: float,
                  ties: list[dict] | None = None) -> str:
    """Evidence per (layer of A, layer of B) cell in significance units: -log10 p beyond the level a cell must
    pass (1% after Bonferroni over cells). Cells below it are blank, so noise never looks like evidence; the
    line is the alignment the text reports, and circled cells are ties (a layer and its copy)."""
    plt = _pyplot()
    s = np.array(score, dtype=float)  # (n_a, n_b)
    beyond = np.ma.masked_less_equal(s - level, 0.0)
    cmap = plt.get_cmap("YlOrRd").with_extremes(bad="#f4f4f4")
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    im = ax.imshow(np.minimum(beyond, 300), cmap=cmap, origin="upper", aspect="auto", interpolation="nearest",
                   vmin=0)
    handles = []
    matched = [(i, j) for i, j in pairs or [] if i is not None and j is not None]
    if matched:
        handles += ax.plot([j for _, j in matched], [i for i, _ in matched], "o-", color="#1f3b73", ms=4, lw=1.5,
                           mec="white", mew=0.8, label="alignment (as reported)")
    tie_cells = [(t["layer"], k) if t["side"] == "a" else (k, t["layer"]) for t in ties or [] for k in t["candidates"]]
    if tie_cells:
        handles += ax.plot([j for _, j in tie_cells], [i for i, _ in tie_cells], "o", ms=11, mfc="none", mec="#000000",
                           mew=1.2, ls="none", label="tie: a layer and its copy")
    if handles:  # outside the cells, on white: readable whatever colour the cells are
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, fontsize=8, frameon=False)
    ax.set_xlabel("layer of B")
    ax.set_ylabel("layer of A")
    _ticks(ax, s.shape[1], s.shape[0])
    fig.colorbar(im, ax=ax, label=f"-log10 p beyond the level ({level:.1f})")
    return _svg(fig)


def layer_bars(score: list[list[float]], pairs: list[list[int | None]] | None, level: float) -> str:
    """Evidence per layer of A along the alignment, in the same significance units (0: no counterpart)."""
    plt = _pyplot()
    s = np.array(score, dtype=float)
    per_a = np.zeros(s.shape[0])
    for i, j in pairs or []:
        if i is not None and j is not None:
            per_a[i] = max(s[i, j] - level, 0.0)
    fig, ax = plt.subplots(figsize=(5.6, 2.2))
    ax.bar(np.arange(len(per_a)), np.minimum(per_a, 300), color="#c0392b")
    ax.set_xticks(range(0, len(per_a), max(1, int(np.ceil(len(per_a) / 16)))))
    ax.set_xlabel("layer of A")
    ax.set_ylabel("-log10 p beyond level")
    return _svg(fig)


STD_ROLES = ("attn_q", "attn_k", "attn_v", "attn_o")  # panels in the order a reader expects


def std_profiles(profiles: dict[str, dict[str, list[float]]], extra: dict[str, dict[str, list[float]]] | None = None) -> str:
    """The HonestAGI statistic drawn: per-layer std of Q, K, V, O for A and B (and unrelated references)."""
    plt = _pyplot()
    roles = [r for r in STD_ROLES if r in profiles]
    fig, axes = plt.subplots(1, max(len(roles), 1), figsize=(2.7 * max(len(roles), 1), 2.4), squeeze=False)
    for ax, role in zip(axes[0], roles):
        for label, color in (("a", "#3a6ea5"), ("b", "#ff5a36")):
            y = profiles[role][label]
            ax.plot(np.linspace(0, 1, len(y)), y, color=color, lw=1.6, label="A" if label == "a" else "B")
        for name, prof in (extra or {}).items():
            if role in prof:
                y = prof[role]
                ax.plot(np.linspace(0, 1, len(y)), y, color="#777777", lw=1, ls="--", label=f"{name[-24:]} (unrelated)")
        ax.set_title(role.replace("attn_", "").upper(), fontsize=9)
        ax.set_xticks([0, 0.5, 1])
        ax.set_xlabel("relative depth")
        ax.locator_params(axis="y", nbins=4)
    axes[0][0].set_ylabel("std of weights")
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _svg(fig)


def id_map(runs: list[list[int]], size_a: int, size_b: int) -> str:
    """Tokenizer lineage: the copied core's runs, id in A against id in B."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for a0, a1, off, _ in runs:
        ax.plot([a0, a1], [a0 + off, a1 + off], color="#3a6ea5", lw=2)
    ax.set_xlim(0, max(size_a, 1))
    ax.set_ylim(0, max(size_b, 1))
    ax.set_xlabel("token id in A")
    ax.set_ylabel("token id in B")
    return _svg(fig)


def efficiency_bars(rows: list[dict]) -> str:
    """Characters per token per sample, one group of bars per tokenizer."""
    plt = _pyplot()
    samples = [r["sample"] for r in rows[0]["samples"]]
    fig, ax = plt.subplots(figsize=(5.6, 2.6))
    width = 0.8 / max(len(rows), 1)
    for k, row in enumerate(rows):
        ax.bar(np.arange(len(samples)) + k * width, [r["chars_per_token"] for r in row["samples"]], width,
               label=row["ref"][-30:])
    ax.axhline(1.15, color="#999999", ls="--", lw=1)
    ax.set_xticks(np.arange(len(samples)) + 0.4 - width / 2, samples)
    ax.set_ylabel("characters per token")
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def power_curves(curves: list[dict], key: str, ylabel: str, only: set[str] | None = None) -> str:
    """One line per method (solid: clean continued training, dashed: with junk batches) against compute."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    for c in curves:
        if only is not None and c["name"] not in only:
            continue
        for junk, style in ((False, "-"), (True, "--")):
            pts = [p for p in c["points"] if p["junk"] == junk and p[key] is not None]
            if not pts:
                continue
            y = [p[key] / p["n"] if key == "detected" else p[key] for p in pts]
            ax.plot([p["compute"] for p in pts], y, style, marker="o", markersize=3,
                    label=c["name"] + (" (junk)" if junk else ""))
    ax.set_xscale("log")
    ax.set_xlabel("continued-training compute (x one base's pretraining)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _svg(fig)
