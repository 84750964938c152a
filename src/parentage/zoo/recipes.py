"""The zoo's recipes as data: sizes, the derivation list, the pairs and their truth, and the folder check.

No torch here: `parentage zoo build` checks its folder and says what it will build before torch is imported
(about 2 s).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from ..errors import FolderNotEmptyError, FormatError

MANIFEST = "manifest.json"
ZOO_MARK = "parentage-zoo"


@dataclass(frozen=True)
class Size:
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    vocab: int
    seq: int
    batch: int
    base_steps: int  # "1x compute": one base's pretraining budget
    lr: float
    n_prose_bases: int
    n_code_bases: int
    second_family: bool  # apply the hardest derivations to a second base as well
    ladder: bool = False  # continued training of the first base at every LADDER compute, with and without junk
    only_ladder: bool = False  # the bases and the ladder, none of the other derivations (power curves quickly)


SIZES = {
    # every derivation kind once, barely trained, in seconds: what the test suite builds (every pair still called right)
    "tiny": Size(32, 4, 4, 2, 64, 320, 32, 8, 30, 3e-3, 2, 1, False),
    # every derivation kind once, a few minutes on 2 cores
    "ci": Size(64, 4, 4, 2, 128, 512, 64, 16, 300, 3e-3, 3, 1, False),
    # >= 8 independent bases, wider models, the hard derivations on two families
    "full": Size(128, 6, 8, 2, 256, 1024, 64, 16, 800, 2e-3, 8, 3, True, ladder=True),
    # the ci models, with only the compute ladder derived: power curves in minutes
    "ladder": Size(64, 4, 4, 2, 128, 512, 64, 16, 300, 3e-3, 3, 1, False, ladder=True, only_ladder=True),
}
LADDER = (0.1, 0.3, 1.0, 3.0)  # continued-training compute, in units of one base's pretraining
LADDER_JUNK = 0.5  # share of junk batches on the washing rungs


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    parents: tuple[str, ...] = ()
    data: str = "prose"  # distribution trained on
    compute: float = 0.0  # in units of Size.base_steps
    lr_mult: float = 1.0
    junk: float = 0.0
    naming: str = "llama"
    tokenizer: str | None = None  # tokenizer of a base, or the new one of a tokenizer swap
    constant_lr: bool = False  # continued pretraining holds the peak lr; pretraining and fine-tunes decay it
    note: str = ""
    ladder: bool = False  # a rung of the compute ladder (bench draws power against its compute)
    export: str = ""  # export_quant: which export (zoo/quantize.py ZOO_EXPORTS)


def _derivations(root: str, tag: str) -> list[Recipe]:
    """Every derivation kind applied to one base `root`; names carry `tag` so two families do not collide."""
    r = lambda name, kind, **kw: Recipe(f"{tag}{name}", kind, **kw)  # noqa: E731
    return [
        r("ft-a", "finetune", parents=(root,), data="prose", compute=0.1, lr_mult=0.3, note="fine-tune, 0.1x at 0.3x lr"),
        r("ft-b", "finetune", parents=(root,), data="prose", compute=0.1, lr_mult=0.3, note="second fine-tune, other data order"),
        r("merge", "merge", parents=(f"{tag}ft-a", f"{tag}ft-b"), note="average of two fine-tunes"),
        r("cpt-1x", "continued", parents=(root,), constant_lr=True, data="code", compute=1.0, lr_mult=1.0,
          note="continued pretraining on the other distribution, 1x compute, full lr"),
        r("wash-3x", "continued", parents=(root,), constant_lr=True, data="code", compute=3.0, lr_mult=2.0, junk=0.5,
          note="washing: 3x compute at 2x lr, half the batches junk (token-shuffled or random)"),
        r("insert", "insert_layers", parents=(root,), data="prose", compute=0.5, note="2 layers inserted as zero-output copies, then trained"),
        r("remove", "remove_layers", parents=(root,), data="prose", compute=0.5, note="1 layer removed, then trained"),
        r("widen", "widen_ffn", parents=(root,), data="prose", compute=0.5, note="FFN widened 1.5x by neuron duplication, then trained"),
        r("tokswap", "replace_tokenizer", parents=(root,), constant_lr=True, data="code", compute=1.0, tokenizer="code",
          note="tokenizer replaced by one trained on other text; shared byte strings copied; then trained 1x"),
        r("upcycle", "upcycle", parents=(root,), data="prose", compute=0.5, naming="mixtral",
          note="dense -> 4-expert MoE (experts = FFN + noise, new router), then trained"),
        r("experts-perm", "permute_experts", parents=(f"{tag}upcycle",),
          note="the upcycled MoE with its experts reordered (router rows alike) and their neurons permuted; no training"),
        r("prune-width", "width_prune", parents=(root,), data="prose", compute=0.5,
          note="Minitron-style width pruning (3/4 of the residual channels and FFN neurons, a query head per "
               "key/value group, by weight norm, in order), then trained"),
        r("prune-depth", "depth_prune", parents=(root,), data="prose", compute=0.5,
          note="depth pruning: the two middle layers removed, then trained"),
        r("frozen", "frozen", parents=(root,), constant_lr=True, data="code", compute=1.0, note="continued 1x with the first half of the layers frozen"),
        r("prune-mag", "magnitude_prune", parents=(root,), note="half of every layer matrix's values zeroed, the smallest in each row; no training"),
        r("lora", "lora_merge", parents=(root,), note="a rank-4 update folded into every attention and FFN matrix (10% of its norm); no training"),
        r("vocab-prune", "prune_vocab", parents=(root,), tokenizer="prose-pruned",
          note="every other leaf token of the vocabulary removed, the rest kept in order with ids renumbered; no training"),
        r("obf", "obfuscate", parents=(root,), note="norms folded, residual rotated, heads/neurons permuted, gauges rescaled; no training"),
        r("obf-train", "continued", parents=(f"{tag}obf",), data="prose", compute=0.5, note="the obfuscated model, then trained"),
        r("bf16", "export_bf16", parents=(f"{tag}ft-a",), note="bf16 export of the fine-tune"),
        r("q8", "export_gguf", parents=(f"{tag}ft-a",), note="GGUF Q8_0 export of the fine-tune"),
        r("q4", "export_gguf", parents=(f"{tag}ft-a",), note="GGUF Q4_0 export of the fine-tune"),
        r("gptq", "export_quant", parents=(f"{tag}ft-a",), export="gptq",
          note="GPTQ 4-bit export of the fine-tune (act-order, groups of 32, Hessians from prose)"),
        r("awq", "export_quant", parents=(f"{tag}ft-a",), export="awq",
          note="AWQ 4-bit export of the fine-tune (input scales searched on prose, folded into the norms)"),
        r("nf4", "export_quant", parents=(f"{tag}ft-a",), export="nf4", note="bitsandbytes NF4 export (nested absmax)"),
        r("mlx", "export_quant", parents=(f"{tag}ft-a",), export="mlx", note="MLX 4-bit export of the fine-tune"),
        r("ct-int4", "export_quant", parents=(f"{tag}ft-a",), export="ct-int4",
          note="compressed-tensors INT4 export of the fine-tune (pack-quantized)"),
        r("fp8", "export_quant", parents=(f"{tag}ft-a",), export="fp8", note="compressed-tensors FP8 export"),
        r("onnx", "export_quant", parents=(f"{tag}ft-a",), export="onnx",
          note="ONNX export, 4-bit MatMulNBits weights, anonymous node names, external data"),
        r("gptq-edit", "export_quant", parents=(f"{tag}ft-a",), export="gptq-edit",
          note="GPTQ 4-bit export with one value projection swapped for another model's after quantising"),
        r("combined", "combined", parents=(root,), constant_lr=True, data="code", compute=1.0, tokenizer="code",
          note="1 layer inserted + FFN widened + tokenizer replaced + 1x continued training"),
        r("distill", "distill", parents=(root,), data="prose", compute=1.0,
          note="fresh initialisation trained to imitate the root's outputs: behaves alike, weights independent"),
    ]


def _ladder(root: str, tag: str) -> list[Recipe]:
    """Continued pretraining of `root` on the other distribution at each LADDER compute, clean and washed."""
    out = []
    for c in LADDER:
        for junk in (0.0, LADDER_JUNK):
            suffix = "-junk" if junk else ""
            out.append(Recipe(f"{tag}lad-{c:g}x{suffix}", "continued", parents=(root,), constant_lr=True, data="code",
                              compute=c, junk=junk, ladder=True,
                              note=f"compute ladder: continued pretraining {c:g}x" + (f", {junk:.0%} junk batches" if junk else "")))
    return out


def recipes(size: Size) -> list[Recipe]:
    out = []
    for i in range(size.n_prose_bases):
        naming = "qwen2" if i == size.n_prose_bases - 1 else "llama"  # one base under qwen2 naming (q/k/v biases)
        out.append(Recipe(f"base-p{i}", "base", data="prose", compute=1.0, naming=naming, tokenizer="prose",
                          note=f"independent base, prose, seed {i}"))
    for i in range(size.n_code_bases):
        out.append(Recipe(f"base-c{i}", "base", data="code", compute=1.0, tokenizer="code", note=f"independent base, code, seed {i}"))
    if size.ladder:
        out += _ladder("base-p0", "p0-")
    if size.only_ladder:
        return out
    out += _derivations("base-p0", "p0-")
    qwen_base = f"base-p{size.n_prose_bases - 1}"
    out.append(Recipe("q-ft", "finetune", parents=(qwen_base,), data="prose", compute=0.1, lr_mult=0.3, naming="qwen2",
                      note="fine-tune of the qwen2-named base"))
    if size.second_family:
        keep = {"ft-a", "cpt-1x", "wash-3x", "tokswap", "upcycle", "combined", "insert", "widen", "distill", "obf", "obf-train"}
        out += [r for r in _derivations("base-p1", "p1-") if r.name[3:] in keep]
    return out


def root_of(name: str, by_name: dict[str, Recipe]) -> str:
    """The independent initialisation a model descends from (a distilled student is its own root)."""
    r = by_name[name]
    if r.kind in ("base", "distill") or not r.parents:
        return name
    return root_of(r.parents[0], by_name)


def pairs(rs: list[Recipe]) -> list[dict]:
    by_name = {r.name: r for r in rs}
    roots = [r.name for r in rs if root_of(r.name, by_name) == r.name]
    out = [{"a": a, "b": b, "truth": "unrelated", "kind": _pair_kind(by_name[a], by_name[b])} for a, b in combinations(roots, 2)]
    for r in rs:
        root = root_of(r.name, by_name)
        if root == r.name:
            continue
        out.append({"a": root, "b": r.name, "truth": "related", "kind": r.kind})
        other = next((b for b in roots if b != root and by_name[b].kind == "base" and by_name[b].data == by_name[root].data), None)
        if other is not None:
            out.append({"a": other, "b": r.name, "truth": "unrelated", "kind": f"{r.kind} vs independent base"})
    for r in rs:
        if r.kind == "merge":
            out += [{"a": p, "b": r.name, "truth": "related", "kind": "merge vs one of its parents"} for p in r.parents]
        if r.kind in EXPORTS and r.parents:
            out.append({"a": r.parents[0], "b": r.name, "truth": "related", "kind": "export vs its source"})
        if r.kind == "permute_experts":
            out.append({"a": r.parents[0], "b": r.name, "truth": "related", "kind": "experts reordered vs its parent"})
    return out


EXPORTS = ("export_bf16", "export_gguf", "export_quant")  # recipes that store their parent's weights otherwise


def _pair_kind(a: Recipe, b: Recipe) -> str:
    if "distill" in (a.kind, b.kind):
        teacher = (b if a.kind == "distill" else a).name
        student = a if a.kind == "distill" else b
        if student.parents and student.parents[0] == teacher:
            return "distillation hard negative (student vs its teacher)"
        return "distilled student vs independent base"
    return "independent bases, same data" if a.data == b.data else "independent bases, different data"


def train_steps(r: Recipe, size: Size) -> int:
    """Optimiser steps a recipe trains for (0: made by surgery or export alone)."""
    return 0 if r.kind in UNTRAINED else max(1, round(r.compute * size.base_steps))


UNTRAINED = ("merge", "obfuscate", "export_bf16", "export_gguf", "export_quant", "magnitude_prune", "lora_merge",
             "prune_vocab", "permute_experts")


def read_manifest(folder: Path, size_name: str, seed: int) -> dict | None:
    """The manifest of a zoo being resumed (None for a new build); one clear error for a folder that is not one
    of ours, or a zoo built with other options."""
    path = folder / MANIFEST
    if path.is_file():
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise FormatError(path, "zoo manifest is not valid JSON; remove the folder and build again") from None
        if not isinstance(m, dict) or m.get("zoo") != ZOO_MARK:
            raise FolderNotEmptyError(folder, "holds a manifest.json that is not a parentage zoo")
        if (m.get("size"), m.get("seed")) != (size_name, seed):
            raise FolderNotEmptyError(folder, f"holds a zoo built with --size {m.get('size')} --seed {m.get('seed')}; "
                                      "use another folder or the same options")
        return m
    if folder.exists() and any(folder.iterdir()):
        raise FolderNotEmptyError(folder, "is not empty and holds no parentage zoo; choose an empty or new folder")
    return None


def first_line(folder: Path, size_name: str, seed: int) -> str:
    """What a build will do, said before it starts (and before torch is imported); checks the folder."""
    size = SIZES[size_name]
    rs = recipes(size)
    read_manifest(folder, size_name, seed)
    steps = sum(train_steps(r, size) for r in rs)
    return (f"zoo: building {len(rs)} models ({size_name} size, seed {seed}) in {folder}; {steps:,} training steps; "
            "training the tokenizers first")
