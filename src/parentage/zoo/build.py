"""`parentage zoo build`: model families whose lineage we know because we made them.

The recipe list is data (`recipes.py`); `build_zoo` walks it in order, so every parent exists before its
children. Each model is written to a temporary folder and renamed into place, and the manifest is rewritten
(atomically) after every model: an interrupted build resumes where it stopped and never lists a half-written
model.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..progress import StatusLine, duration
from . import surgery, text
from .export import save_gguf, save_hf
from .model import ModelConfig, forward, init_params, n_params
from .recipes import (LADDER, MANIFEST, SIZES, UNTRAINED, ZOO_MARK, Recipe, Size, first_line, pairs, read_manifest,  # noqa: F401
                      recipes, root_of, train_steps)
from .train import TrainSpec, eval_loss, train_lm

# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Built:
    cfg: ModelConfig
    params: dict[str, torch.Tensor]
    tokenizer: str  # corpus name of its tokenizer
    layer_map: list[int | None] | None = None  # child layer -> parent layer
    extra: dict = field(default_factory=dict)
    stored: dict | None = None  # an export's weights as its file decodes them (movement is measured on these)


class _Zoo:
    def __init__(self, folder: Path, size_name: str, seed: int, log, status, announce: bool):
        self.folder, self.size_name, self.size, self.seed, self.log = folder, size_name, SIZES[size_name], seed, log
        self.status = status  # status(text): a line rewritten in place while a model trains
        self.announce = announce  # say what will be built (False: the caller said it before importing torch)
        self.recipes = recipes(self.size)
        self.clock = _Clock({r.name: train_steps(r, self.size) for r in self.recipes})
        self.by_name = {r.name: r for r in self.recipes}
        self.streams: dict[tuple[str, str], np.ndarray] = {}
        self.cache: dict[str, Built] = {}

    def prepare(self) -> None:
        """The corpora and their tokenizers (the first few seconds of every build)."""
        self.corpora = {k: f() for k, f in text.CORPORA.items()}
        self.tokenizers = {k: text.train_tokenizer(v, self.size.vocab) for k, v in self.corpora.items()}
        self.pruned_ids: dict[str, dict[int, int]] = {}  # a pruned tokenizer's name -> its old id -> new id
        for r in self.recipes:
            if r.kind == "prune_vocab" and r.tokenizer not in self.tokenizers:
                source = self.by_name[r.parents[0]].tokenizer
                self.tokenizers[r.tokenizer], self.pruned_ids[r.tokenizer] = text.prune_tokenizer(self.tokenizers[source])

    # -- data ----------------------------------------------------------------------------------------------------
    def stream(self, data: str, tokenizer: str) -> np.ndarray:
        key = (data, tokenizer)
        if key not in self.streams:
            self.streams[key] = text.encode(self.tokenizers[tokenizer], self.corpora[data])
        return self.streams[key]

    def model_seed(self, name: str) -> int:
        return self.seed * 1_000_003 + zlib.crc32(name.encode())

    def base_cfg(self, naming: str, tokenizer: str) -> ModelConfig:
        s = self.size
        return ModelConfig(vocab=self.tokenizers[tokenizer].get_vocab_size(), hidden=s.hidden, n_layers=s.n_layers,
                           n_heads=s.n_heads, n_kv_heads=s.n_kv_heads, ffn=s.ffn, naming=naming)

    def spec(self, r: Recipe) -> TrainSpec:
        s = self.size
        return TrainSpec(steps=train_steps(r, s), lr=s.lr * r.lr_mult, batch=s.batch, seq=s.seq,
                         warmup=max(1, min(20, round(r.compute * s.base_steps) // 10)), junk=r.junk,
                         final_lr_frac=1.0 if r.constant_lr else 0.1)

    # -- models --------------------------------------------------------------------------------------------------
    def load(self, name: str) -> Built:
        if name not in self.cache:
            from safetensors.torch import load_file

            entry = self.manifest["models"][name]
            folder = self.folder / entry["path"]
            cfg = ModelConfig(**entry["model_config"])
            # clone: tensors straight from the file may sit at addresses the CPU kernels treat differently, and
            # a resumed build must compute bit-for-bit what an uninterrupted one does
            params = {k: v.clone() for k, v in load_file(str(folder / "model.safetensors")).items()}
            self.cache[name] = Built(cfg, params, entry["tokenizer"])
        return self.cache[name]

    def make(self, r: Recipe) -> Built:
        gen = torch.Generator().manual_seed(self.model_seed(r.name))
        parent = self.load(r.parents[0]) if r.parents else None
        kind = r.kind
        if kind == "base":
            cfg = self.base_cfg(r.naming, r.tokenizer)
            return Built(cfg, init_params(cfg, gen), r.tokenizer)
        if kind == "distill":
            cfg = parent.cfg
            return Built(cfg, init_params(cfg, gen), parent.tokenizer)
        if kind in ("finetune", "continued", "frozen", "export_bf16", "export_gguf", "export_quant"):
            return Built(parent.cfg, {k: v.clone() for k, v in parent.params.items()}, parent.tokenizer)
        if kind == "magnitude_prune":
            return Built(parent.cfg, surgery.magnitude_prune(parent.params), parent.tokenizer,
                         extra={"updates": {"sparsity": 0.5, "by_magnitude": True}})
        if kind == "lora_merge":
            return Built(parent.cfg, surgery.lora_merge(parent.params, 4, gen), parent.tokenizer,
                         extra={"updates": {"low_rank": 4}})
        if kind == "prune_vocab":
            mapping = self.pruned_ids[r.tokenizer]
            cfg, params = surgery.prune_vocab(parent.cfg, parent.params, mapping)
            return Built(cfg, params, r.tokenizer, extra={"vocab_pruned": parent.cfg.vocab - len(mapping)})
        if kind == "merge":
            other = self.load(r.parents[1])
            return Built(parent.cfg, surgery.merge(parent.params, other.params), parent.tokenizer)
        if kind == "insert_layers":
            n = parent.cfg.n_layers
            cfg, params, lmap = surgery.insert_layers(parent.cfg, parent.params, [n // 4, (3 * n) // 4])
            return Built(cfg, params, parent.tokenizer, lmap)
        if kind == "remove_layers":
            cfg, params, lmap = surgery.remove_layers(parent.cfg, parent.params, [parent.cfg.n_layers // 2])
            return Built(cfg, params, parent.tokenizer, lmap)
        if kind == "widen_ffn":
            cfg, params = surgery.widen_ffn(parent.cfg, parent.params, parent.cfg.ffn * 3 // 2, gen)
            return Built(cfg, params, parent.tokenizer)
        if kind == "replace_tokenizer":
            return self._swap_tokenizer(parent, r.tokenizer, gen)
        if kind == "upcycle":
            cfg, params = surgery.upcycle(parent.cfg, parent.params, 4, gen)
            return Built(cfg, params, parent.tokenizer, extra={"experts": {"from": "dense"}})
        if kind == "permute_experts":
            params, truth = surgery.permute_experts(parent.cfg, parent.params, gen)
            return Built(parent.cfg, params, parent.tokenizer, extra={"experts": truth})
        if kind == "width_prune":
            cfg, params, truth = surgery.width_prune(parent.cfg, parent.params, hidden=0.75, ffn=0.75)
            return Built(cfg, params, parent.tokenizer, extra={"subsets": truth})
        if kind == "depth_prune":
            n = parent.cfg.n_layers
            cfg, params, lmap = surgery.remove_layers(parent.cfg, parent.params, list(range(n // 2 - 1, n // 2 + 1)))
            return Built(cfg, params, parent.tokenizer, lmap)
        if kind == "obfuscate":
            params = surgery.obfuscate(parent.cfg, parent.params, gen)
            return Built(parent.cfg, params, parent.tokenizer, extra={"function_check": self._logit_diff(parent, parent.cfg, params)})
        if kind == "combined":
            n = parent.cfg.n_layers
            cfg, params, lmap = surgery.insert_layers(parent.cfg, parent.params, [n // 2])
            cfg, params = surgery.widen_ffn(cfg, params, cfg.ffn * 3 // 2, gen)
            built = self._swap_tokenizer(Built(cfg, params, parent.tokenizer), r.tokenizer, gen)
            built.layer_map = lmap
            return built
        raise ValueError(f"unknown recipe kind {kind!r}")

    def _swap_tokenizer(self, parent: Built, new: str, gen: torch.Generator) -> Built:
        old_b = text.token_bytes(self.tokenizers[parent.tokenizer])
        new_b = text.token_bytes(self.tokenizers[new])
        cfg, params, shared = surgery.replace_tokenizer(parent.cfg, parent.params, old_b, new_b, gen)
        return Built(cfg, params, new, extra={"shared_tokens_copied": shared})

    @torch.no_grad()
    def _logit_diff(self, parent: Built, cfg: ModelConfig, params) -> dict:
        tokens = torch.from_numpy(self.stream("prose", parent.tokenizer)[: 4 * self.size.seq].reshape(4, -1))
        a, b = forward(parent.cfg, parent.params, tokens), forward(cfg, params, tokens)
        return {"max_abs_logit_diff": float((a - b).abs().max()), "max_abs_logit": float(a.abs().max())}

    def train(self, r: Recipe, built: Built) -> dict:
        if r.kind in UNTRAINED:
            return {"steps": 0, "final_loss": None}
        spec = self.spec(r)
        stream = self.stream(r.data, built.tokenizer)
        frozen = set()
        if r.kind == "frozen":
            frozen = surgery.frozen_names(built.cfg, list(range(built.cfg.n_layers // 2)))
        teacher = None
        if r.kind == "distill":
            p = self.load(r.parents[0])
            teacher = (p.cfg, p.params)
        loss = train_lm(built.cfg, built.params, stream, spec, seed=self.model_seed(r.name), frozen=frozen, teacher=teacher,
                        on_step=lambda done, steps: self.status(self.clock.line(r.name, done)))
        out = {"steps": spec.steps, "tokens": spec.steps * spec.batch * spec.seq, "lr": spec.lr, "junk": spec.junk,
               "lr_schedule": "constant after warmup" if r.constant_lr else "cosine to 10%",
               "final_loss": round(loss, 4), "eval_loss": round(eval_loss(built.cfg, built.params, stream, spec.seq), 4)}
        if frozen:
            out["frozen_tensors"] = sorted(frozen)
        return out

    # -- movement ------------------------------------------------------------------------------------------------
    def movement(self, r: Recipe, built: Built, frozen: set[str] = frozenset()) -> dict | None:
        """How far training moved the weights: per role group, ||child - parent|| / ||parent||, and for children
        of a base also / ||parent - parent's init|| (>= 1 means moved at least as far as pretraining did).
        Frozen tensors are left out: they cannot move, and are reported separately as bit-identical."""
        relabelled = ("obfuscate", "permute_experts")  # the same function under other labels: nothing moved
        if not r.parents or r.kind in relabelled + ("distill",) or self.by_name[r.parents[0]].kind in relabelled:
            return None
        parent = self.load(r.parents[0])
        built = Built(built.cfg, self._as_stored(r, built.params, built.stored), built.tokenizer, built.layer_map)
        init = None
        if self.by_name[r.parents[0]].kind == "base":
            init = init_params(parent.cfg, torch.Generator().manual_seed(self.model_seed(r.parents[0])))
        lmap = built.layer_map or list(range(built.cfg.n_layers))
        groups = {"attn": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                  "ffn": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
        out = {}
        for group, mods in groups.items():
            d2 = p2 = t2 = 0.0
            for ci, pi in enumerate(lmap):
                if pi is None:
                    continue
                for m in mods:
                    if f"model.layers.{ci}.{m}.weight" in frozen:
                        continue
                    pw = parent.params[f"model.layers.{pi}.{m}.weight"]
                    cws = self._child_matrices(built, ci, m)
                    for cw in cws:
                        if cw.shape != pw.shape:
                            cw = cw[: pw.shape[0], : pw.shape[1]] if m != "mlp.down_proj" else None
                            if cw is None or cw.shape != pw.shape:
                                continue
                        d2 += float((cw - pw).pow(2).sum()) / len(cws)
                        p2 += float(pw.pow(2).sum()) / len(cws)
                        if init is not None:
                            t2 += float((pw - init[f"model.layers.{pi}.{m}.weight"]).pow(2).sum()) / len(cws)
            if p2:
                out[group] = {"rel_change": round((d2 / p2) ** 0.5, 4)}
                if init is not None and t2:
                    out[group]["vs_parent_pretraining"] = round((d2 / t2) ** 0.5, 4)
        if built.cfg.vocab == parent.cfg.vocab:
            for name, key in (("embed", "model.embed_tokens.weight"), ("lm_head", "lm_head.weight")):
                pw, cw = parent.params[key], built.params[key]
                if cw.shape == pw.shape:  # a pruned residual stream changes the width: no movement to measure
                    out[name] = {"rel_change": round(float((cw - pw).norm() / pw.norm()), 4)}
        return out

    @staticmethod
    def _as_stored(r: Recipe, params: dict[str, torch.Tensor], stored: dict | None = None) -> dict[str, torch.Tensor]:
        """The values an export really holds (bf16 rounding, GGUF quantisation, a quantised export's decoded
        weights), for honest movement figures."""
        if stored is not None:
            return {**params, **{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in stored.items() if k in params}}
        if r.kind == "export_bf16":
            return {k: v.to(torch.bfloat16).float() for k, v in params.items()}
        if r.kind == "export_gguf":
            import gguf

            qtype = gguf.GGMLQuantizationType.Q8_0 if r.name.endswith("q8") else gguf.GGMLQuantizationType.Q4_0
            block = gguf.GGML_QUANT_SIZES[qtype][0]
            return {k: torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(v.numpy(), qtype), qtype).copy())
                    if v.ndim == 2 and v.shape[1] % block == 0 else v for k, v in params.items()}
        return params

    @staticmethod
    def _child_matrices(built: Built, layer: int, module: str) -> list[torch.Tensor]:
        key = f"model.layers.{layer}.{module}.weight"
        if key in built.params:
            return [built.params[key]]
        if built.cfg.n_experts and module.startswith("mlp."):  # experts against the dense FFN they came from
            ours = {"mlp.gate_proj": "w1", "mlp.up_proj": "w3", "mlp.down_proj": "w2"}[module]
            return [built.params[f"model.layers.{layer}.block_sparse_moe.experts.{e}.{ours}.weight"] for e in range(built.cfg.n_experts)]
        return []

    # -- writing -------------------------------------------------------------------------------------------------
    def write(self, r: Recipe, built: Built, trained: dict, seconds: float) -> dict:
        models = self.folder / "models"
        tmp = models / f".tmp-{r.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tok = self.tokenizers[built.tokenizer]
        export = None
        if r.kind == "export_gguf":
            qtype = "Q8_0" if r.name.endswith("q8") else "Q4_0"
            tmp.mkdir(parents=True)
            save_gguf(tmp / f"{r.name}.gguf", built.cfg, built.params, tok, qtype, r.name)
            fmt, rel = f"gguf-{qtype}", f"models/{r.name}/{r.name}.gguf"
            export = {"relation": "quantization", "method": f"GGUF {qtype}", "altered": []}
        elif r.kind == "export_quant":
            export = self._export(r, built, tmp)
            fmt, rel = r.export, f"models/{r.name}"
        else:
            dtype = "BF16" if r.kind == "export_bf16" else "F32"
            save_hf(tmp, built.cfg, built.params, tok, dtype)
            fmt, rel = f"safetensors-{dtype}", f"models/{r.name}"
            if r.kind == "export_bf16":
                export = {"relation": "cast", "method": "BF16", "altered": []}
        final = models / r.name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        entry = {
            "recipe": r.kind, "note": r.note, "parents": list(r.parents), "root": root_of(r.name, self.by_name),
            "seed": self.model_seed(r.name), "data": r.data if r.compute else None, "compute": r.compute,
            "ladder": r.ladder,
            "lr_mult": r.lr_mult, "arch": "mixtral" if built.cfg.n_experts else built.cfg.naming, "format": fmt,
            "path": rel, "tokenizer": built.tokenizer, "n_params": n_params(built.cfg),
            "model_config": built.cfg.to_dict(), "layer_map": built.layer_map, **trained, **built.extra,
            "movement": self.movement(r, built, set(trained.get("frozen_tensors", ()))), "build_seconds": round(seconds, 2),
        }
        if export is not None:  # the truth an export relation is checked against (zoo/truth.py)
            entry["export"] = {**export, "of": r.parents[0]}
        # exports are stored lossy; children and movement use the exact float32 parameters kept in memory
        self.cache[r.name] = built
        return entry

    def _export(self, r: Recipe, built: Built, folder: Path) -> dict:
        """Write built (its parent's weights) as a quantised export into folder; what the export truthfully is."""
        from .onnx_export import export_onnx
        from .quantize import ZOO_EXPORTS, awq_scales, export_model

        src = self.folder / self.manifest["models"][r.parents[0]]["path"]
        sd = {k: v.detach().float().numpy() for k, v in built.params.items()}
        altered = []
        if r.export.endswith("-edit"):  # another model's value projection swapped in after quantising
            layer = built.cfg.n_layers // 2
            name = f"model.layers.{layer}.self_attn.v_proj.weight"
            donor = next(x.name for x in self.recipes if x.kind == "base" and x.name != root_of(r.name, self.by_name))
            sd[name] = self.load(donor).params[name].detach().float().numpy()
            altered = [f"layers.{layer}.attn_v.weight"]
        if r.export == "onnx":
            folder.mkdir(parents=True)
            decoded = export_onnx(folder, sd, built.cfg.n_layers, "nbits4", "anonymous", external=True)
            for f in src.iterdir():
                if f.is_file() and f.suffix != ".safetensors":
                    shutil.copy2(f, folder / f.name)
            method = "ONNX MatMulNBits 4-bit"
        else:
            spec = ZOO_EXPORTS[r.export]
            stats = self._calibration(built) if spec.method in ("gptq", "awq") else None
            weights = awq_scales(sd, stats, spec.group_size) if spec.method == "awq" else sd
            hessians = {k: v["hessian"] for k, v in stats.items()} if spec.method == "gptq" else None
            decoded = export_model(src, folder, spec, weights, hessians=hessians)
            method = f"{spec.method} {spec.bits}-bit"
        built.stored = decoded
        return {"relation": "quantization", "method": method, "altered": altered}

    def _calibration(self, built: Built) -> dict:
        """Each linear layer's inputs on prose (what GPTQ and AWQ measure before quantising)."""
        from .calibrate import layer_inputs

        seq = self.size.seq
        tokens = torch.from_numpy(self.stream("prose", built.tokenizer)[: 16 * seq].reshape(16, seq).astype(np.int64))
        return layer_inputs(built.cfg, built.params, tokens)

    # -- manifest ------------------------------------------------------------------------------------------------
    def save_manifest(self, complete: bool) -> None:
        self.manifest["complete"] = complete
        self.manifest["pairs"] = pairs([r for r in self.recipes if r.name in self.manifest["models"]])
        tmp = self.folder / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1) + "\n")
        os.replace(tmp, self.folder / MANIFEST)

    def open_manifest(self) -> None:
        m = read_manifest(self.folder, self.size_name, self.seed)
        if m is not None:  # keep only models whose files are really there
            m["models"] = {k: v for k, v in m["models"].items() if (self.folder / v["path"]).exists()}
            self.manifest = m
        else:
            self.manifest = {"zoo": ZOO_MARK, "tool_version": __version__, "size": self.size_name, "seed": self.seed,
                             "size_params": asdict(self.size), "compute_unit": "1x = one base's pretraining: "
                             f"{self.size.base_steps} steps of {self.size.batch}x{self.size.seq} tokens",
                             "torch_version": torch.__version__, "models": {}, "pairs": [], "complete": False}
        for leftover in (self.folder / "models").glob(".tmp-*") if (self.folder / "models").exists() else []:
            shutil.rmtree(leftover)  # a model interrupted mid-write

    def build(self) -> dict:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.open_manifest()
        if self.announce:
            self.log(first_line(self.folder, self.size_name, self.seed))
        self.prepare()
        done = [r.name for r in self.recipes if r.name in self.manifest["models"]]
        if done:
            self.log(f"zoo: resuming: {len(done)} of {len(self.recipes)} models already built")
        self.clock.skip(done)
        for r in self.recipes:
            if r.name in self.manifest["models"]:
                continue
            t0 = time.perf_counter()
            self.status(self.clock.line(r.name, 0))
            built = self.make(r)
            trained = self.train(r, built)
            entry = self.write(r, built, trained, time.perf_counter() - t0)
            self.manifest["models"][r.name] = entry
            self.save_manifest(complete=False)
            self.clock.finish(r.name)
            loss = entry.get("final_loss")
            self.log(f"  model {self.clock.k(r.name)} of {len(self.recipes)}: {r.name:14s} {r.kind:18s} "
                     f"{entry['build_seconds']:6.1f} s" + (f"  loss {loss:.3f}" if loss else "")
                     + (f"  (about {duration(self.clock.eta())} left)" if self.clock.remaining else ""))
        self.save_manifest(complete=True)
        return self.manifest


class _Clock:
    """Models and training steps done and left, for "model k of n, step s of S" and an ETA from the pace so far
    (steps are the cost: writing a model takes a fraction of a second)."""

    def __init__(self, steps: dict[str, int]):
        self.steps, self.order = steps, list(steps)
        self.total = sum(steps.values())
        self.left = dict(steps)
        self.t0, self.done_steps = time.perf_counter(), 0

    def skip(self, names: list[str]) -> None:  # models a resumed build already has
        for n in names:
            self.left.pop(n, None)
        self.t0, self.done_steps = time.perf_counter(), 0

    @property
    def remaining(self) -> int:
        return len(self.left)

    def k(self, name: str) -> int:
        return self.order.index(name) + 1

    def finish(self, name: str) -> None:
        self.done_steps += self.left.pop(name, 0)

    def eta(self, step: int = 0) -> float:
        """Seconds left at the pace so far, `step` steps into the current model (NaN before the first step)."""
        done = self.done_steps + step
        todo = sum(self.left.values()) - step
        return (time.perf_counter() - self.t0) / done * todo if done else float("nan")

    def line(self, name: str, step: int) -> str:
        steps = self.steps[name]
        what = f"step {step} of {steps}" if steps else "no training"
        eta = self.eta(step)
        left = f", about {duration(eta)} left" if eta == eta else ""  # NaN until the first step is timed
        return f"zoo: model {self.k(name)} of {len(self.order)} ({name}), {what}{left}"


def build_zoo(folder: str | Path, size: str = "ci", seed: int = 0, log=None, status=None, announce: bool = True) -> dict:
    """Build (or resume) a zoo in `folder`; returns the manifest.

    log(msg): one line per event (default: stderr); status(text): the line a terminal shows while a model trains
    (default: rewritten in place on a terminal, at most 5 times a second; nothing elsewhere)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}")
    line = StatusLine()
    status = status or line.show
    if log is None:
        def log(msg: str) -> None:
            line.clear()
            print(msg, file=sys.stderr, flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a fixed thread count keeps float reductions, hence the weights, reproducible
    try:
        return _Zoo(Path(folder), size, seed, log, status, announce).build()
    finally:
        line.clear()
        torch.set_num_threads(threads)
