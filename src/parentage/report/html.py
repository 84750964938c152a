"""Self-contained HTML reports: one file, inline CSS and SVG, nothing fetched when it is opened.

Templates are rendered by jinja2 with autoescaping on (checkpoint metadata is untrusted text). The page holds
no timings, so the same inputs and seed give the same bytes.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import OutputPathError
from . import plots, words

MEANING = {
    "related": "The weights of B share ancestry with A: an independent initialisation would produce what was "
               "observed with a probability of about 10^{p} or less. One checkpoint was derived from the other, "
               "or both from a common parent.",
    "unrelated": "No sign of shared ancestry, in tests that would have found it had one model been derived from "
                 "the other (including after re-parameterisation, layer surgery or further training).",
    "inconclusive": "The comparison could not decide: nothing comparable could be tested with enough power, or the "
                    "evidence is too weak for a claim. This is not evidence of independence.",
}

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.verdict{padding:1rem 1.2rem;border-radius:6px;margin:1rem 0}
.related{background:#fde8e4;border-left:6px solid #d8452b}.unrelated{background:#e6f2ea;border-left:6px solid #2e8b57}
.inconclusive{background:#f3f0e0;border-left:6px solid #b59a24}
.label{font-size:1.4rem;font-weight:700;text-transform:uppercase;letter-spacing:.03em}
table{border-collapse:collapse;width:100%;font-size:.88rem;margin:.5rem 0}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#777}.no{color:#999}.plots{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
.plots svg{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2rem;border-radius:3px}
ul{margin:.3rem 0}
"""

COMPARE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>parentage: {{ short(a.ref) }} vs {{ short(b.ref) }}</title>
<style>{{ style }}</style></head><body>
<h1>Weight lineage report</h1>
<div class="muted">A: <code title="{{ a.ref }}">{{ short(a.ref) }}</code> &nbsp; B: <code title="{{ b.ref }}">{{ short(b.ref) }}</code></div>
{% if same %}<p><strong>A and B are the same checkpoint</strong> (the same weight files): the comparison below is of a model with itself.</p>{% endif %}
<div class="verdict {{ v.label }}"><div class="label">{{ v.label }}</div>
<div>combined log10 p = {{ "n/a" if v.log10_p is none else "%.1f"|format(v.log10_p) }}{% if v.log10_p is not none %} (p &le; {{ pword(v.log10_p) }}){% endif %}</div>
<p>{{ meaning }}</p><p class="muted">{{ v.summary }}</p></div>
{% if said %}<ul>{% for line in said %}<li><strong>{{ line }}</strong></li>{% endfor %}</ul>{% endif %}

<h2>Evidence</h2>
<p class="muted">Only tests with a calibrated null count towards the verdict. Baselines are shown so that a reader
sees what they say and why they mislead; they never count.</p>
<table><tr><th>test</th><th>log10 p</th><th>counted</th><th>effect</th><th>what it found</th></tr>
{% for e in evidence %}<tr><td><code>{{ e.name }}</code></td>
<td class="num">{{ "-" if e.log10_p is none else "%.1f"|format(e.log10_p) }}</td>
<td class="{{ '' if e.counted else 'no' }}">{{ "yes" if e.counted else "no" }}</td>
<td class="num">{{ effect(e) }}</td><td>{{ e.summary }}</td></tr>{% endfor %}
</table>

<h2>Alignment: what changed</h2>
{% if notes %}<ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% else %}<p class="muted">No structural change found.</p>{% endif %}
<p class="muted">Direction: {% if direction.parent %}{{ direction.parent }} is the parent: {% endif %}{{ direction.basis }}</p>
{% if heatmap %}<div class="plots"><div>{{ heatmap|safe }}<div class="muted">Evidence per (layer of A, layer of B) cell, in -log10 p beyond the level a cell must pass
({{ "%.1f"|format(level) }}: 1% after Bonferroni over cells); blank cells are not significant. The line is the alignment listed above.</div></div>
{% if bars %}<div>{{ bars|safe }}<div class="muted">Evidence per layer of A along the alignment, same units.</div></div>{% endif %}</div>{% endif %}
{% if comp %}<h3>Findings per component</h3>
<p class="muted">identical: bit-identical to A's (in every sampled row when not read whole); related: a test shows shared ancestry;
no evidence: examined by a test with the power to see it, nothing found; not examined: no such test looked.</p>
<ul>{% for r in comp.runs %}<li>{{ r }}</li>{% endfor %}</ul>
<table><tr><th>part of B</th><th>A's counterpart</th><th>attention</th><th>FFN</th></tr>
<tr><td>embeddings</td><td>embeddings</td><td colspan="2">{{ comp.embeddings.status }}: {{ comp.embeddings.basis }}</td></tr>
<tr><td>lm_head</td><td>lm_head</td><td colspan="2">{{ comp.lm_head.status }}: {{ comp.lm_head.basis }}</td></tr>
{% for f in comp.layers %}<tr><td>layer {{ f.layer_b }}</td><td>{% if f.layer_a is not none %}layer {{ f.layer_a }}{% elif f.copy_of is not none %}none: a copy of layer {{ f.copy_of }}{% if f.tie %} (tie){% endif %}{% else %}none{% endif %}</td>
<td>{{ f.attention.status }}</td><td>{{ f.ffn.status }}</td></tr>{% endfor %}</table>{% endif %}
{% if units %}<h3>Experts and FFNs</h3><table><tr><th>unit of B</th><th>came from (A)</th><th>log10 p</th></tr>
{% for u in units %}<tr><td>{{ u.b }}</td><td>{{ u.a }}</td><td class="num">{{ u.log10_p }}</td></tr>{% endfor %}</table>{% endif %}

<h2>Tokenizers</h2>
{% if tok %}<p>{{ tok.summary }}</p><p class="muted">Shown, not counted: a tokenizer can be copied onto independently
trained weights, and replaced on derived ones.</p>{% else %}<p class="muted">No readable tokenizer on one side.</p>{% endif %}

<h2>The HonestAGI statistic, and why it does not count</h2>
<p>Per-layer standard deviations of the attention matrices, correlated across depth: value
{{ "n/a" if honest is none or honest.effect is none else "%.2f"|format(honest.effect) }} on this pair.
{% if ref_values %}The same statistic between A and models unrelated to it:
{% for name, r in ref_values %}<strong>{{ "n/a" if r is none else "%.2f"|format(r) }}</strong> for <code>{{ short(name) }}</code>{{ "; " if not loop.last else "." }}{% endfor %}
Put the pair's value beside these (dashed curves below): the statistic has no calibrated null, so neither a
high nor a low value counts, and a model unrelated to A can score as high as a derived one.
{% else %}It has no null model: nothing here says what an unrelated pair would score, so the value is not evidence
either way (pass <code>--reference MODEL</code> with an unrelated model to draw its curve and value beside the pair's).{% endif %}</p>
{% if std_plot %}<div class="plots">{{ std_plot|safe }}</div>{% endif %}

<h2>Circumstantial evidence (never counted)</h2>
{% if circ.config_differences %}<table><tr><th>config field</th><th>A</th><th>B</th></tr>
{% for d in circ.config_differences %}<tr><td>{{ d.field }}</td><td>{{ value(d.A) }}</td><td>{{ value(d.B) }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">Configs agree on every field both state.</p>{% endif %}
{% if circ.config_stated_by_one_side %}<p class="muted">Stated by one side only (not compared): {{ circ.config_stated_by_one_side|join(", ") }}.</p>{% endif %}
<ul><li>declared bases: A {{ value(circ.declared_bases.A or none) }}; B {{ value(circ.declared_bases.B or none) }}</li>
<li><code>_name_or_path</code>: A {{ value(circ.name_or_path.A) }}; B {{ value(circ.name_or_path.B) }}</li>
<li><code>auto_map</code>: A {{ value(circ.auto_map.A) }}; B {{ value(circ.auto_map.B) }}</li>
{% for side in ["A", "B"] %}{% for f in circ.code[side] %}<li>{{ side }} ships <code>{{ f.file }}</code> (parsed, never run):
classes {{ f.classes|join(", ") or "none" }}{% if f.copyright %}; {{ f.copyright|join("; ") }}{% endif %}{% if f.error %}; {{ f.error }}{% endif %}</li>{% endfor %}{% endfor %}</ul>

<h2>Inputs and reproduction</h2>
<table><tr><th></th><th>ref</th><th>format</th><th>family</th><th>layers</th><th>hidden</th><th>FFN</th><th>experts</th><th>vocab</th><th>bytes read / held</th></tr>
{% for label, i, c in inputs %}<tr><td>{{ label }}</td><td><code>{{ i.ref }}</code></td><td>{{ i.format }}</td><td>{{ i.arch }}</td>
<td class="num">{{ i.n_layers }}</td><td class="num">{{ i.hidden_size }}</td><td class="num">{{ i.intermediate_size }}</td>
<td class="num">{{ i.n_experts or "-" }}</td><td class="num">{{ i.vocab_size }}</td>
<td class="num">{{ "{:,}".format(c.bytes_read) }} / {{ "{:,}".format(c.bytes_total) }}</td></tr>{% endfor %}</table>
<p class="muted">parentage {{ tool.version }}, seed {{ seed }}, budget {{ "{:,}".format(budget) }} bytes per model.
Rerun: <code>parentage compare {{ a.ref }} {{ b.ref }} --seed {{ seed }}</code></p>
</body></html>
"""

TOKENIZER = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>parentage: tokenizers</title><style>{{ style }}</style></head><body>
<h1>Tokenizer report</h1>
{% if doc.get("relation") %}<div class="verdict {{ 'related' if doc.relation != 'unrelated' else 'unrelated' }}">
<div class="label">{{ doc.relation }}{% if doc.kind %} ({{ doc.kind }}){% endif %}</div>
{% for n in doc.notes %}<p>{{ n }}</p>{% endfor %}
<p class="muted">Preserved id gaps: {{ "{:,}".format(doc.score.preserved) }} of {{ "{:,}".format(doc.score.pairs) }} consecutive
shared multi-byte tokens; coincidences expected {{ doc.score.null.expected }}; log10 p {{ doc.score.log10_p }}.
Shared tokens {{ "{:,}".format(doc.shared_tokens) }}, rank correlation {{ doc.rank_spearman }}: overlap and rank
correlation alone are not evidence.</p></div>
{% if idmap %}<div class="plots">{{ idmap|safe }}</div>{% endif %}{% endif %}
{% if doc.get("pairs") %}<h2>Every pair</h2><table><tr><th>A</th><th>B</th><th>relation</th><th>kind</th></tr>
{% for p in doc.pairs %}<tr><td>{{ p.a }}</td><td>{{ p.b }}</td><td>{{ p.relation }}</td><td>{{ p.kind or "" }}</td></tr>{% endfor %}</table>
{% for s in doc.stitched %}<p><strong>{{ s.tokenizer }}</strong> is stitched from {{ s.parents[0] }} and {{ s.parents[1] }}.</p>{% endfor %}{% endif %}
<h2>Tokenizers</h2><table><tr><th>ref</th><th>format</th><th>model</th><th>ids</th><th>ordinary</th><th>special</th></tr>
{% for t in doc.tokenizers %}<tr><td><code>{{ t.ref }}</code></td><td>{{ t.format }}</td><td>{{ t.model }}</td>
<td class="num">{{ "{:,}".format(t.size) }}</td><td class="num">{{ "{:,}".format(t.ordinary_tokens) }}</td><td class="num">{{ t.special_tokens }}</td></tr>{% endfor %}</table>
{% if doc.get("efficiency") %}<h2>Efficiency</h2><div class="plots">{{ eff_plot|safe }}</div>
<table><tr><th>tokenizer</th>{% for r in doc.efficiency[0].samples %}<th>{{ r.sample }}</th>{% endfor %}</tr>
{% for e in doc.efficiency %}<tr><td><code>{{ e.ref }}</code></td>{% for r in e.samples %}<td class="num">{{ "%.2f"|format(r.chars_per_token) }}
{% if r.about_one_token_per_char %}<strong>({{ per_char(r.chars_per_token) }})</strong>{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>
<p class="muted">Characters per token; below the dashed line a tokenizer spends about one token per character.</p>{% endif %}
<h2>Health</h2>{% for t, h in health %}<h3><code>{{ t.ref }}</code></h3>
{% if h.ok %}<p>No problems found.</p>{% else %}<ul>{% for name, f in h.findings.items() %}{% if f.count %}
<li>{{ "{:,}".format(f.count) }} {{ name.replace("_", " ") }}{% if f.examples %}: {{ value(f.examples[:5]) }}{% endif %}</li>{% endif %}{% endfor %}</ul>{% endif %}{% endfor %}
<p class="muted">parentage {{ doc.tool.version }}</p>
</body></html>
"""


def _env():
    import jinja2

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


EFFECT_UNITS = {  # what each test's effect value measures, so a bare number never stands alone
    "hidden_dimension_order": "{:.0%} of dimensions in place",
    "ffn_neuron_order": "{:.0%} of rows in place (best cell)",
    "value_row_order": "{:.0%} of rows in place (best cell)",
    "ffn_neuron_agreement": "{:.0%} of neurons agree (best cell)",
    "ffn_neuron_rank_order": "Kendall's tau {:.2f}",
    "attention_head_order": "{:.0%} of heads in place",
    "identical_tensors": "{:.0%} of tensors identical",
    "tokenizer_lineage": "{:.1%} of id gaps kept",
    "baseline_honestagi_std_profile": "r = {:.2f}",
    "baseline_raw_cosine": "cosine {:.2f}",
}


def _effect(e: dict) -> str:
    if e["effect"] is None:
        return "-"
    return EFFECT_UNITS.get(e["name"], "{:.3g}").format(e["effect"])


def _per_char(chars_per_token: float) -> str:
    """0.33 chars/token reads as '3.0 tokens per character'."""
    return f"{1 / chars_per_token:.1f} tokens per character" if chars_per_token < 1 else "about one token per character"


def render_compare(doc: dict) -> str:
    """The compare report, drawn from the compare document alone (references: `compare.add_references`)."""
    al = doc["alignment"]
    by_name = {e["name"]: e for e in doc["evidence"]}
    honest = by_name.get("baseline_honestagi_std_profile")
    profiles = (honest or {}).get("details", {}).get("profiles") or {}
    heatmap = bars = None
    level = al.get("significance_level") or 0.0
    if al.get("score_matrix"):
        heatmap = plots.layer_heatmap(al["score_matrix"], al.get("layers"), level, al.get("ties"))
        if al.get("layers"):  # no alignment, nothing to draw per layer
            bars = plots.layer_bars(al["score_matrix"], al["layers"], level)
    refs = (honest or {}).get("details", {}).get("references") or {}
    ref_values = [(name, r["value"]) for name, r in refs.items()]
    references = {name: r["profiles"] for name, r in refs.items()}
    a, b = doc["inputs"]
    return _env().from_string(COMPARE).render(
        style=STYLE, a=a, b=b, same=doc.get("same_checkpoint") or a["ref"] == b["ref"], short=words.shorten_path, pword=words.p_value, value=words.value,
        effect=_effect, v=doc["verdict"], meaning=MEANING[doc["verdict"]["label"]]
        .replace("10^{p}", words.p_value(doc["verdict"]["log10_p"] or 0)),
        said=doc.get("circumstantial", {}).get("declared_vs_observed", []),
        evidence=doc["evidence"], notes=al["notes"], direction=doc["direction"], heatmap=heatmap, bars=bars, level=level,
        comp=al.get("components"), units=al.get("units") or [], tok=by_name.get("tokenizer_lineage"), honest=honest,
        ref_values=ref_values, std_plot=plots.std_profiles(profiles, references) if profiles else None,
        circ=doc["circumstantial"], inputs=list(zip("AB", doc["inputs"], doc["cost"]["per_input"])), tool=doc["tool"],
        seed=doc["seed"], budget=doc["budget_bytes_per_model"])


def render_tokenizer(doc: dict) -> str:
    idmap = None
    if doc.get("relation") and doc.get("core", {}).get("runs"):
        idmap = plots.id_map(doc["core"]["runs"], doc["tokenizers"][0]["size"], doc["tokenizers"][1]["size"])
    eff = plots.efficiency_bars(doc["efficiency"]) if doc.get("efficiency") else None
    return _env().from_string(TOKENIZER).render(style=STYLE, doc=doc, idmap=idmap, eff_plot=eff, per_char=_per_char, value=words.value,
                                                health=list(zip(doc["tokenizers"], doc["health"])))


def check_output(path: str | Path) -> Path:
    """The output path, if writing there can only create or replace a regular file; else one clear error.

    A symlink, FIFO, device or folder at the path is refused rather than replaced (run as root, replacing
    /dev/full or a link to a system file would be damage). Checked before the work starts and again on write."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise OutputPathError(path, "its folder does not exist") from None
        return path
    if not stat.S_ISREG(st.st_mode):
        kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode)
                else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or special file")
        raise OutputPathError(path, f"is {kind}; a report replaces only a regular file (choose another path)")
    return path


def write(path: str | Path, html: str) -> Path:
    """Atomic: a half-written report never replaces a good one, and only a regular file (or nothing) is
    replaced. The file gets the mode any new file of the user's would (umask), not mkstemp's 0600."""
    path = check_output(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o666 & ~_umask())
        check_output(path)  # nothing swapped in meanwhile
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
