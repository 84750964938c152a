"""Declared lineage: what the files *say* about where a model came from.

Reported beside the weight evidence, never counted (DESIGN principle 5): config `_name_or_path`,
`architectures`, `auto_map` (remote code, listed and never run), model-card `base_model`, GGUF
`general.base_model.*` and `general.source.*`, safetensors `__metadata__`, and a mergekit config if present.
"""

from __future__ import annotations

import re
from pathlib import Path

from .constants import CARD_MAX_BYTES
from .readers import GGUFFile
from .readers.gguf import LazyStrings
from .safeio import read_prefix

_CONFIG_FIELDS = ("_name_or_path", "architectures", "auto_map", "model_type", "base_model", "transformers_version")
_CARD_FIELDS = ("base_model", "base_model_relation", "license", "model_name")


def front_matter(text: str) -> dict[str, object]:
    """The few model-card YAML keys we report, from the `---` block at the top of a README.

    A deliberately small reader (scalars and `- item` lists) so the core needs no YAML dependency.
    """
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    out: dict[str, object] = {}
    key = None
    for line in text[3:end].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][\w-]*):\s*(.*)$", line)
        if m:
            key, value = m.group(1), m.group(2).strip()
            if key in _CARD_FIELDS:
                if value.startswith("[") and value.endswith("]"):
                    out[key] = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
                elif value:
                    out[key] = value.strip("'\"")
                else:
                    out[key] = []
            continue
        m = re.match(r"^\s*-\s*(.+)$", line)
        if m and key in _CARD_FIELDS and isinstance(out.get(key), list):
            out[key].append(m.group(1).strip().strip("'\""))
    return out


def _gguf_declared(r: GGUFFile) -> dict:
    out = {}
    for key, value in r.metadata.items():
        if key.startswith(("general.base_model.", "general.source.", "general.dataset")) or key in (
            "general.name", "general.basename", "general.organization", "general.finetune", "general.version",
        ):
            if not isinstance(value, (LazyStrings, list)) and not hasattr(value, "dtype"):
                out[key] = value
    return out


def declared_lineage(ckpt) -> dict:
    """Everything the checkpoint's own files declare about its identity and ancestry."""
    if ckpt.resolved.source == "fingerprint":
        return ckpt.resolved.declared  # read from the files when the model was indexed
    out: dict[str, object] = {}
    config = ckpt.config
    cfg = {k: config[k] for k in _CONFIG_FIELDS if k in config}
    if cfg:
        out["config"] = cfg
    readme = ckpt.resolved.side_file("README.md")
    if readme is not None:
        card = front_matter(read_prefix(readme, CARD_MAX_BYTES).decode("utf-8", errors="replace"))
        if card:
            out["model_card"] = card
    metadata = {}
    for r in ckpt.weights.readers:
        if isinstance(r, GGUFFile):
            g = _gguf_declared(r)
            if g:
                out["gguf"] = g
        elif r.metadata:
            metadata.update({k: v for k, v in r.metadata.items() if isinstance(v, str)})
    if metadata:
        out["safetensors_metadata"] = metadata
    mergekit = ckpt.resolved.side_file("mergekit_config.yml")
    if mergekit is not None:
        text = read_prefix(mergekit, CARD_MAX_BYTES).decode("utf-8", errors="replace")
        models = re.findall(r"^\s*-?\s*(?:model|base_model):\s*([^\s#]+)", text, flags=re.M)
        out["mergekit"] = sorted(set(models))
    # Only a model folder's own code: a lone weights file's folder may hold anything.
    code = sorted(p.name for p in Path(ckpt.resolved.root).glob("*.py")
                  if ckpt.resolved.allowed(p)) if ckpt.resolved.side_file("config.json") else []
    if code:
        out["remote_code_files"] = code  # listed, never imported or executed
    return out
