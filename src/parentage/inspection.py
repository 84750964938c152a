"""`parentage inspect`: architecture, declared lineage, tokenizer and files of one checkpoint."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from . import __version__
from .checkpoint import Checkpoint
from .declared import declared_lineage
from .readers import GGUFFile
from .readers.gguf import LazyStrings

SIDE_FILES = ("config.json", "params.json", "generation_config.json", "README.md", "mergekit_config.yml",
              "quantize_config.json", "quant_config.json")


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _files(ckpt: Checkpoint, hash_files: bool) -> list[dict]:
    r = ckpt.resolved
    paths = list(r.weights)
    if r.index is not None:
        paths.append(r.index)
    paths += [p for p in (r.side_file(n) for n in SIDE_FILES) if p is not None]
    paths += [p for p in ckpt.tokenizer_files() if p not in paths]
    out = []
    for p in paths:
        role = "weights" if p in r.weights else "index" if p == r.index else "tokenizer" if p in ckpt.tokenizer_files() else "side"
        if not isinstance(p, Path):  # a remote file is never read whole: its hash is the one the hub lists (LFS)
            out.append({"path": str(p.path), "role": role, "size": p.size,
                        "sha256": p.content_sha256 if hash_files else None})
            continue
        out.append({"path": str(p), "role": role, "size": p.stat().st_size, "sha256": sha256_file(p) if hash_files else None})
    return out


def _tokenizer(ckpt: Checkpoint) -> dict:
    files = [p.name for p in ckpt.tokenizer_files()]
    gguf = next((x for x in ckpt.weights.readers if isinstance(x, GGUFFile)), None)
    embedded = None
    tokens = gguf.metadata.get("tokenizer.ggml.tokens") if gguf is not None else None
    if isinstance(tokens, LazyStrings):
        model = gguf.metadata.get("tokenizer.ggml.model")
        embedded = {"model": model if isinstance(model, str) else None, "n_tokens": len(tokens)}
    return {"files": files, "gguf_embedded": embedded}


def inspect_checkpoint(ref: str, hash_files: bool = False) -> dict:
    """The `inspect --format json` document (fields in DESIGN.md)."""
    t0 = time.perf_counter()
    with Checkpoint.open(ref) as ckpt:
        s = ckpt.summary
        doc = {
            "schema_version": 1,
            "tool": {"name": "parentage", "version": __version__},
            "ref": ref,
            "resolved": str(ckpt.resolved.root),
            "hub": ckpt.resolved.hub,
            "format": ckpt.format,
            "arch": s.family,
            "family_confidence": s.family_confidence,
            "n_layers": s.n_layers,
            "hidden_size": s.hidden_size,
            "intermediate_size": s.intermediate_size,
            "n_heads": s.n_heads,
            "n_kv_heads": s.n_kv_heads,
            "head_dim": s.head_dim,
            "n_experts": s.n_experts,
            "n_shared_experts": s.n_shared_experts,
            "moe_intermediate_size": s.moe_intermediate_size,
            "vocab_size": s.vocab_size,
            "tied_embeddings": s.tied_embeddings,
            "n_params": s.n_params,
            "dtypes": sorted({ckpt.weights.info(n).dtype for n in ckpt.weights.names()}),
            "quantization": quantization(ckpt),
            "n_tensors": len(ckpt.weights.names()),
            "roles": _role_counts(ckpt),
            "unmapped": ckpt.unmapped[:50],
            "declared": declared_lineage(ckpt),
            "tokenizer": _tokenizer(ckpt),
            "files": [],
            "warnings": ckpt.warnings,
        }
        cost = ckpt.cost()
        doc["files"] = _files(ckpt, hash_files)
        if hash_files:  # hashing reads every byte; say so in the cost line
            cost["bytes_read"] += sum(f["size"] for f in doc["files"])
        doc["cost"] = {**cost, "seconds": round(time.perf_counter() - t0, 4)}
    return doc


def quantization(ckpt: Checkpoint) -> dict | None:
    """How the weights are quantised: the method, its layout, bits, group sizes, how many tensors, and which
    matrices are kept in full precision; for GGUF, the block types and how many tensors each holds. None for
    plain float weights."""
    scheme = ckpt.weights.scheme
    if scheme is not None:
        return {**scheme.to_dict(), "summary": scheme.describe()}
    if ckpt.format != "gguf":
        return None
    types: dict[str, int] = {}
    for n in ckpt.weights.names():
        info = ckpt.weights.info(n)
        if len(info.shape) >= 2:
            types[info.dtype] = types.get(info.dtype, 0) + 1
    kept = [n for n in ckpt.weights.names() if len(ckpt.weights.info(n).shape) >= 2
            and ckpt.weights.info(n).dtype in FLOAT_TYPES]
    quantised = {t: k for t, k in types.items() if t not in FLOAT_TYPES}
    if not quantised:
        return None
    return {"method": "gguf", "layout": "/".join(sorted(quantised)), "bits": None, "group_sizes": None,
            "symmetric": None, "n_quantized": sum(quantised.values()), "kept": kept, "config_source": "GGUF types",
            "types": dict(sorted(types.items())),
            "summary": f"GGUF {', '.join(f'{t} ({k})' for t, k in sorted(quantised.items()))}: "
                       f"{sum(quantised.values())} matrices quantised"
                       + (f"; {len(kept)} kept in full precision" if kept else "")}


FLOAT_TYPES = ("F32", "F16", "BF16", "F64")


def _role_counts(ckpt: Checkpoint) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in ckpt.tensors:
        counts[r.role] = counts.get(r.role, 0) + 1
    return dict(sorted(counts.items()))


def format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def format_human(doc: dict) -> str:
    """Five-second read: what it is, what it claims, what it cost."""
    moe = f", {doc['n_experts']} experts (FFN {doc['moe_intermediate_size']})" if doc["n_experts"] else ""
    lines = [
        f"{doc['ref']}",
        f"  {doc['arch']} ({doc['family_confidence']}), {doc['format']}, {doc['n_params'] / 1e6:,.1f}M parameters, {'/'.join(doc['dtypes'])}",
        f"  {doc['n_layers']} layers, hidden {doc['hidden_size']}, FFN {doc['intermediate_size']}, "
        f"heads {doc['n_heads']}/{doc['n_kv_heads']} (q/kv){moe}, vocab {doc['vocab_size']}"
        + (", tied embeddings" if doc["tied_embeddings"] else ""),
    ]
    declared = doc["declared"]
    if declared:
        lines.append("  declared:")
        for source, fields in declared.items():
            text = ", ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ", ".join(map(str, fields))
            lines.append(f"    {source}: {text[:200]}")
    q = doc.get("quantization")
    if q:
        lines.append(f"  quantised: {q['summary']}")
        if q["kept"]:
            shown = ", ".join(q["kept"][:6]) + (f", ... ({len(q['kept'])} in all)" if len(q["kept"]) > 6 else "")
            lines.append(f"    kept in full precision: {shown}")
    tok = doc["tokenizer"]
    if tok["files"] or tok["gguf_embedded"]:
        emb = tok["gguf_embedded"]
        lines.append("  tokenizer: " + ", ".join(tok["files"] + ([f"embedded {emb['model']} ({emb['n_tokens']} tokens)"] if emb else [])))
    for w in doc["warnings"]:
        lines.append(f"  warning: {w}")
    total = sum(f["size"] for f in doc["files"])
    lines.append(f"  files: {len(doc['files'])} ({format_bytes(total)})")
    for f in doc["files"]:
        digest = f"  sha256 {f['sha256']}" if f["sha256"] else ""
        lines.append(f"    {Path(f['path']).name}  {format_bytes(f['size'])}{digest}")
    c = doc["cost"]
    lines.append(f"  read {format_bytes(c['bytes_read'])} of {format_bytes(c['bytes_total'])} in {c['seconds']:.2f} s")
    return "\n".join(lines)
