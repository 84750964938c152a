"""Circumstantial evidence: what the files say, reported beside the weights and never counted.

- config differences that matter (depth, widths, heads, rope, norms, biases, vocabulary, activation);
- modelling code shipped with a checkpoint (`modeling_*.py`, `configuration_*.py`, ...): class names and
  copyright lines, read with `ast` and never imported or executed;
- `auto_map`, `_name_or_path`, declared base models (model card, GGUF `general.base_model.*`, mergekit);
- the line "declared: X - observed: Y" when what a checkpoint declares and what the weights show disagree,
  in both directions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .checkpoint import Checkpoint
from .declared import declared_lineage
from .safeio import read_prefix

CONFIG_FIELDS = (  # (label, config keys tried in order)
    ("model type", ("model_type",)),
    ("architectures", ("architectures",)),
    ("layers", ("num_hidden_layers", "n_layer", "num_layers")),
    ("hidden size", ("hidden_size", "n_embd", "d_model")),
    ("FFN width", ("intermediate_size", "n_inner", "ffn_dim")),
    ("attention heads", ("num_attention_heads", "n_head")),
    ("KV heads", ("num_key_value_heads",)),
    ("head dim", ("head_dim",)),
    ("experts", ("num_local_experts", "num_experts", "n_routed_experts")),
    ("vocabulary", ("vocab_size",)),
    ("rope theta", ("rope_theta",)),
    ("rope scaling", ("rope_scaling",)),
    ("max positions", ("max_position_embeddings", "n_positions")),
    ("norm epsilon", ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon")),
    ("activation", ("hidden_act", "activation_function")),
    ("attention bias", ("attention_bias",)),
    ("MLP bias", ("mlp_bias",)),
    ("tied embeddings", ("tie_word_embeddings",)),
)
CODE_GLOBS = ("modeling_*.py", "configuration_*.py", "tokenization_*.py", "*.py")
MAX_CODE_BYTES = 2_000_000
COPYRIGHT = re.compile(r"copyright.*", re.IGNORECASE)


def _config_value(config: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in config:
            return config[k]
    return None


def _stated(config: dict) -> dict:
    """The compared fields a config states, with the one derived value config.json leaves implicit (head dim
    = hidden size / heads), so a GGUF's explicit key length is not a "difference" from a config without one."""
    out = {label: _config_value(config, keys) for label, keys in CONFIG_FIELDS}
    hidden, heads = out["hidden size"], out["attention heads"]
    if out["head dim"] is None and isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads == 0:
        out["head dim"] = hidden // heads
    return {k: v for k, v in out.items() if v is not None}


def config_differences(a: dict, b: dict) -> list[dict]:
    """Fields both configs state, with different values. A field one side leaves unstated (GGUF carries no
    `architectures`, many config.json files omit `rope_theta` and take the library default) is not a
    difference: what the default was is the library's business, not the file's."""
    sa, sb = _stated(a), _stated(b)
    return [{"field": label, "A": sa[label], "B": sb[label]} for label, _ in CONFIG_FIELDS
            if label in sa and label in sb and not _same(sa[label], sb[label])]


def _same(x, y) -> bool:
    """Equal, counting floats equal to float32 precision (GGUF stores 1e-05 as 9.9999997e-06)."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
    if numbers:
        return abs(x - y) <= 1e-6 * max(abs(x), abs(y))
    return x == y


def stated_by_one_side(a: dict, b: dict) -> list[str]:
    sa, sb = _stated(a), _stated(b)
    return [label for label, _ in CONFIG_FIELDS if (label in sa) != (label in sb)]


def code_facts(root: Path, allowed=lambda p: True) -> list[dict]:
    """Class names and copyright lines of the Python files beside a checkpoint (parsed, never run)."""
    seen, out = set(), []
    for pattern in CODE_GLOBS:
        for path in sorted(Path(root).glob(pattern)):
            if path in seen or not path.is_file() or not allowed(path) or path.stat().st_size > MAX_CODE_BYTES:
                continue
            seen.add(path)
            source = read_prefix(path, MAX_CODE_BYTES).decode("utf-8", errors="replace")
            try:
                tree = ast.parse(source, filename=str(path))
                classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
                error = None
            except SyntaxError as e:
                classes, error = [], f"not valid Python ({e.msg}, line {e.lineno})"
            except (RecursionError, MemoryError, ValueError):  # nesting too deep for the parser, NUL bytes
                classes, error = [], "not parsed (nested too deep, or holds NUL bytes)"
            copyright_lines = sorted({m.group(0).strip().rstrip("#").strip()[:160]
                                      for m in COPYRIGHT.finditer(source[:20_000])})
            out.append({"file": path.name, "classes": classes[:40], "copyright": copyright_lines[:10], "error": error})
    return out


def _names(ck: Checkpoint) -> set[str]:
    """Names a checkpoint goes by: its folder, config `_name_or_path`, GGUF general.name / basename."""
    names = {Path(ck.ref).name, Path(str(ck.resolved.root)).name}
    if ck.resolved.hub:
        names.add(str(ck.resolved.hub).split("@")[0])
    for key in ("_name_or_path",):
        if isinstance(ck.config.get(key), str):
            names.add(ck.config[key])
    d = declared_lineage(ck).get("gguf", {})
    for key in ("general.name", "general.basename"):
        if isinstance(d.get(key), str):
            names.add(d[key])
    return {n.strip().lower() for n in names if n and n.strip() and n not in (".", "/")}


def declared_bases(ck: Checkpoint) -> list[str]:
    d = declared_lineage(ck)
    out: list[str] = []
    card = d.get("model_card", {}).get("base_model")
    out += card if isinstance(card, list) else ([card] if card else [])
    out += [v for k, v in d.get("gguf", {}).items() if k.startswith("general.base_model.") and k.endswith(".name")
            and isinstance(v, str)]
    out += d.get("mergekit", [])
    base = d.get("config", {}).get("base_model")
    if isinstance(base, str):
        out.append(base)
    return [x for x in dict.fromkeys(out) if x]


def mentions(declared: list[str], names: set[str]) -> bool:
    for base in declared:
        b = base.lower()
        for n in names:
            tail = n.split("/")[-1]
            if b == n or b.split("/")[-1] == tail or (len(tail) >= 4 and tail in b):
                return True
    return False


def declared_vs_observed(a: Checkpoint, b: Checkpoint, label: str) -> list[str]:
    """Lines where a declaration and the weight verdict disagree (or agree, when a parent is declared)."""
    lines = []
    for me, other, tag, other_tag in ((b, a, "B", "A"), (a, b, "A", "B")):
        bases = declared_bases(me)
        names_other = _names(other)
        if bases and mentions(bases, names_other):
            if label == "unrelated":
                lines.append(f"declared: {tag} derives from {', '.join(bases)} - observed: no shared weight ancestry "
                             f"with {other_tag}")
            elif label == "related":
                lines.append(f"declared: {tag} derives from {', '.join(bases)} - observed: consistent (related to "
                             f"{other_tag})")
        elif label == "related":
            said = f"{tag} declares {', '.join(bases)} as its base" if bases else f"{tag} declares no base model"
            lines.append(f"declared: {said} - observed: {tag} shares weight ancestry with {other_tag}")
    # one line per direction is noise when both sides declare nothing: keep the one about B
    if label == "related" and all("declares no base model" in x for x in lines):
        lines = lines[:1]
    return lines


def circumstantial(a: Checkpoint, b: Checkpoint, label: str) -> dict:
    return {
        "config_differences": config_differences(a.config, b.config),
        "config_stated_by_one_side": stated_by_one_side(a.config, b.config),
        "code": {"A": code_facts(a.resolved.root, a.resolved.allowed) if a.resolved.side_file("config.json") else [],
                 "B": code_facts(b.resolved.root, b.resolved.allowed) if b.resolved.side_file("config.json") else []},
        "auto_map": {"A": a.config.get("auto_map"), "B": b.config.get("auto_map")},
        "name_or_path": {"A": a.config.get("_name_or_path"), "B": b.config.get("_name_or_path")},
        "declared_bases": {"A": declared_bases(a), "B": declared_bases(b)},
        "declared_vs_observed": declared_vs_observed(a, b, label),
    }
