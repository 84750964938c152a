"""Which quantisation method a checkpoint's weights are stored in, and its weights read through it.

The method is recognised by content: the quantisation config (`quantization_config` in config.json,
AutoGPTQ's `quantize_config.json`, AutoAWQ's `quant_config.json`, MLX's `quantization` entry), else the names,
dtypes and shapes of the stored tensors (`X.qweight`, `X.weight.absmax`, `X.weight_packed`, ...), never the
file's name. The method's module claims its parts (`packed.Packed` weights); what is left over and still looks
like a quantised part means a method or layout parentage does not read, and is one clear line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedQuantizationError
from ..safeio import read_json
from . import awq, bnb, compressed, fp8, gptq, mlx
from .packed import Packed, Parts, config_str

# quant_method (lower case) -> the module that reads it
METHODS = {"gptq": gptq, "awq": awq, "bitsandbytes": bnb, "mlx": mlx, "compressed-tensors": compressed, "fp8": fp8}
ALIASES = {"compressed_tensors": "compressed-tensors", "bnb": "bitsandbytes", "autoawq": "awq", "autogptq": "gptq",
           "gptqmodel": "gptq", "fbgemm_fp8": "fp8", "finegrained_fp8": "fp8"}
NAMES = {"gptq": "GPTQ", "awq": "AWQ", "bitsandbytes": "bitsandbytes", "mlx": "MLX",
         "compressed-tensors": "compressed-tensors", "fp8": "FP8"}
# Side files some quantisers write instead of a config.json entry (first found wins).
SIDE_CONFIGS = ("quantize_config.json", "quant_config.json")
# Names of stored tensors that only ever hold a part of a quantised weight (by suffix).
PART_SUFFIXES = (".qweight", ".qzeros", ".g_idx", ".scales", ".biases", ".absmax", ".quant_map", ".nested_absmax",
                 ".nested_quant_map", ".SCB", ".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape",
                 ".weight_g_idx", "_scale_inv", ".weight_global_scale", "_blocks")


@dataclass
class Scheme:
    """What a quantised checkpoint is, for `inspect`, the compare document and the export check."""

    method: str  # a key of METHODS
    layout: str  # the method's own name for how codes are laid out ("gemm", "nf4", "pack-quantized", ...)
    config_source: str  # where the quantisation config was found ("config.json", "quantize_config.json", "tensors")
    bits: list[int] = field(default_factory=list)
    group_sizes: list[int] = field(default_factory=list)  # 0: one scale per row, per block or per tensor
    symmetric: bool | None = None
    n_quantized: int = 0
    kept: list[str] = field(default_factory=list)  # matrices stored in full precision beside the quantised ones

    def to_dict(self) -> dict:
        return {"method": self.method, "layout": self.layout, "bits": self.bits, "group_sizes": self.group_sizes,
                "symmetric": self.symmetric, "n_quantized": self.n_quantized, "kept": self.kept,
                "config_source": self.config_source}

    def short(self) -> str:
        """"GPTQ 4-bit": the method and width, for sentences."""
        return f"{NAMES[self.method]} {'/'.join(map(str, self.bits))}-bit"

    def describe(self) -> str:
        bits = "/".join(map(str, self.bits))
        groups = ", ".join("per row" if g == 0 else f"groups of {g}" for g in self.group_sizes)
        sym = "" if self.symmetric is None else ", symmetric" if self.symmetric else ", asymmetric"
        kept = f"; {len(self.kept)} matrices kept in full precision" if self.kept else ""
        return (f"{NAMES[self.method]} {bits}-bit ({self.layout}{', ' + groups if groups else ''}{sym}): "
                f"{self.n_quantized} tensors quantised{kept}")


def find_config(config: dict, side_file) -> tuple[dict | None, str]:
    """The quantisation config and where it was: config.json's `quantization_config`, a quantiser's side file
    (`side_file(name) -> Path | None`), or MLX's `quantization` entry (which names no method)."""
    qc = config.get("quantization_config")
    if isinstance(qc, dict):
        return qc, config.get("_source", "config.json")
    for name in SIDE_CONFIGS:
        path = side_file(name)
        if path is not None:
            qc = read_json(path)
            if isinstance(qc, dict):
                return qc, name
    mlx_qc = config.get("quantization")
    if isinstance(mlx_qc, dict):
        return {**mlx_qc, "quant_method": "mlx"}, config.get("_source", "config.json")
    return None, ""


def method_of(qc: dict | None, parts: Parts, where: str) -> str | None:
    """The method's key: the config's word, else what the stored tensors look like; None for plain weights."""
    named = config_str(qc or {}, "quant_method")
    if named:
        named = ALIASES.get(named, named)
        if named in METHODS:
            return named
        if _has_parts(parts):
            raise UnsupportedQuantizationError(where, f"weights quantised with {named!r}, which parentage does not read "
                                                      f"(it reads {', '.join(NAMES.values())} and GGUF)")
        return None  # a config left behind on plain weights (a dequantised export)
    names = parts.names()
    for suffixes, method in ((".qweight",), "gptq"), ((".weight.absmax", ".SCB"), "bitsandbytes"), \
                            ((".weight_packed", ".weight_zero_point", ".weight_scale"), "compressed-tensors"), \
                            ((".biases",), "mlx"), (("_scale_inv",), "fp8"):
        if any(n.endswith(suffixes) for n in names):
            return "awq" if method == "gptq" and awq.looks_like(parts) else method
    return None


def attach(weights, config: dict, side_file) -> Scheme | None:
    """Read `weights` (a readers.WeightSet) through its quantisation method: its Packed weights replace their
    parts in the name space. Returns the scheme, or None for plain weights."""
    parts = Parts(weights.owner)
    where = str(weights.readers[0].path) if weights.readers else "weights"
    qc, source = find_config(config, side_file)
    method = method_of(qc, parts, where)
    packed: list[Packed] = []
    if method is not None:
        packed = METHODS[method].claim(parts, qc or {}, where)
    if method != "fp8":  # FP8 with scales rides along other methods (compressed-tensors' float-quantized)
        claimed = {p for w in packed for p in w.parts}
        packed += [w for w in fp8.claim(Parts({n: r for n, r in weights.owner.items() if n not in claimed}), {}, where)]
    _check_all_claimed(parts, packed, method, where)
    if not packed:
        return None
    weights.join(packed)
    methods = {w.method for w in packed}
    primary = method if method in methods else sorted(methods)[0]
    mine = [w for w in packed if w.method == primary]
    kept = [n for n in weights.names() if n not in weights.packed and len(weights.info(n).shape) >= 2
            and weights.info(n).dtype in ("F32", "F16", "BF16", "F64")]
    sym = {w.symmetric for w in mine}
    return Scheme(primary, "/".join(sorted({w.layout for w in mine})), source or "tensors",
                  sorted({w.bits for w in mine}), sorted({w.group_size for w in mine}),
                  sym.pop() if len(sym) == 1 else None, len(packed), kept)


def _has_parts(parts: Parts) -> bool:
    return any(n.endswith(PART_SUFFIXES) for n in parts.names())


def _check_all_claimed(parts: Parts, packed: list[Packed], method: str | None, where: str) -> None:
    claimed = {p for w in packed for p in w.parts}
    left = [n for n in parts.names() if n.endswith(PART_SUFFIXES) and n not in claimed
            and not (n.endswith(".biases") and method != "mlx")]
    if left:
        how = f"the {NAMES[method]} reader" if method else "no quantisation method parentage reads"
        raise UnsupportedQuantizationError(parts.info(left[0]).file,
                                           f"tensor {left[0]!r} looks like part of a quantised weight, but {how} "
                                           f"accounts for it ({len(left)} such tensors); the layout is not one "
                                           "parentage decodes")
