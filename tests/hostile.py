"""Hostile inputs for the fuzz harness: seeded generators, one family per format parentage reads.

Each generator takes a random generator and an empty folder, writes one broken, malformed or adversarial input
there (built from a valid one by a byte-level or structural mutation), and returns the command line to run on
it. The harness (`fuzz_run.py`) runs every case through the real CLI and checks the promise: exit 0 or 1, on
1 exactly one error line naming the problem, valid JSON on stdout, no hang, no memory blow-up, nothing outside
the model's place read and nothing at an output path other than a regular file replaced.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np

from parentage.synthetic import Shape, config_for, random_state_dict, write_safetensors

from .torchzip import _global, _str, _tuple, hostile_pickle, tensor_pickle

SMALL = Shape(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, ffn=64, vocab=300)

# Values that belong nowhere a number or a name is expected.
HOSTILE_VALUES = [
    float("inf"), float("-inf"), float("nan"), -1, 0, 1, 3, 2**31, 2**63, 2**64 + 7, -(2**63), 10**300,
    "x", "", "../../etc", "\ud800", "a\nb", [], [1, 2], [[[]]], {}, {"a": 1}, None, True, False, 1.5, 1e308,
]


def deep(n: int):
    """A JSON value nested n levels deep."""
    v: object = 1
    for k in range(n):
        v = [v] if k % 2 else {"a": v}
    return v


def _json_text(value) -> str:
    # allow_nan: hostile files carry the literals NaN and Infinity, which Python's json accepts
    return json.dumps(value, allow_nan=True, ensure_ascii=bool(random.getrandbits(1)))


def _paths(obj, prefix=()):
    """Every path into a JSON value (for structural mutation)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:50]):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def hostile_value(rng: random.Random):
    r = rng.random()
    if r < 0.04:
        return deep(rng.choice([50, 200, 400]))  # deeper ones are spliced in as raw text below
    if r < 0.08:  # deeper than Python's own recursion limit: spliced in as raw text
        n = rng.choice([1000, 5000, 100_000])
        return "RAW:" + "[" * n + "]" * n
    if r < 0.12:
        return "9" * rng.choice([4299, 4301, 10000])  # digits for a number field (written raw below)
    if r < 0.16:
        return "A" * rng.choice([30_000, 300_000])
    return rng.choice(HOSTILE_VALUES)


def mutate_json(doc, rng: random.Random) -> str:
    """Replace one to three values (or keys) of a JSON document by hostile ones; returns the text."""
    doc = json.loads(json.dumps(doc))
    raw = {}
    for k in range(rng.randint(1, 3)):
        paths = list(_paths(doc))
        path = rng.choice(paths)
        value = hostile_value(rng)
        if isinstance(value, str) and (value.startswith("RAW:") or (value.startswith("9999") and rng.random() < 0.7)):
            raw[f"__RAW_{k}__"] = value.removeprefix("RAW:")
            value = f"__RAW_{k}__"
        doc = _set(doc, path, value)
    text = _json_text(doc)
    for key, value in raw.items():
        text = text.replace(f'"{key}"', value)
    return text


def mutate_bytes(data: bytes, rng: random.Random, protect: int = 0) -> bytes:
    """One byte-level mutation: truncate, flip, zero or 0xFF a span, insert, duplicate a span."""
    data = bytearray(data)
    n = len(data)
    kind = rng.choice(["truncate", "flip", "zero", "ff", "insert", "dup", "flip", "flip"])
    at = rng.randrange(protect, max(protect + 1, n))
    if kind == "truncate":
        return bytes(data[:at])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(protect, max(protect + 1, n))
            if i < n:
                data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    span = rng.choice([1, 2, 4, 8, 64, 512])
    if kind == "zero":
        data[at:at + span] = b"\x00" * len(data[at:at + span])
    elif kind == "ff":
        data[at:at + span] = b"\xff" * len(data[at:at + span])
    elif kind == "insert":
        data[at:at] = bytes(rng.randrange(256) for _ in range(span))
    else:
        data[at:at] = data[at:at + span]
    return bytes(data)


# -- valid inputs to start from ---------------------------------------------------------------------------------


def good_model(folder: Path, model_type: str = "llama", seed: int = 0) -> Path:
    """A tiny Hugging Face folder with a tokenizer (so compare has something to pair)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", random_state_dict(model_type, SMALL, seed))
    (folder / "config.json").write_text(json.dumps(config_for(model_type, SMALL)))
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_doc()))
    return folder


def tokenizer_doc(n_merges: int = 40) -> dict:
    """A byte-level BPE tokenizer.json: the 256 byte tokens and a few merges of common letter pairs."""
    from parentage.tokenizers.formats import BYTE_LEVEL_CHAR

    vocab = {BYTE_LEVEL_CHAR[b]: b for b in range(256)}
    merges = []
    letters = "etaoinshrdlucmfw"
    for a in letters:
        for b in letters:
            if len(merges) >= n_merges:
                break
            merges.append(f"{a} {b}")
            vocab[a + b] = len(vocab)
    return {"version": "1.0", "added_tokens": [{"id": len(vocab), "content": "<|end|>", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True}],
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                                  "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                      "merges": merges}}


GGUF_TYPES = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
              "u64": 10, "i64": 11, "f64": 12}
_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_value(vtype: int, value) -> bytes:
    if vtype == 8:
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        return struct.pack("<Q", len(raw)) + raw
    if vtype == 9 and isinstance(value, bytes):  # pre-encoded (arrays nested too deep to build recursively)
        return value
    if vtype == 9:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(_gguf_value(etype, v) for v in items)
    return struct.pack(_FMT[vtype], value)


def gguf_bytes(kv: list[tuple[str, int, object]], tensors: list[tuple[str, list[int], int, bytes]],
               n_tensors: int | None = None, n_kv: int | None = None, alignment: int = 32, version: int = 3) -> bytes:
    """A GGUF file written by hand, so any count, type or offset can be made to lie."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kv) if n_kv is None else n_kv)
    head += b"".join(_gguf_value(8, k) + struct.pack("<I", t) + _gguf_value(t, v) for k, t, v in kv)
    offset, infos, blobs = 0, b"", b""
    for name, dims, ggml_type, data in tensors:
        infos += _gguf_value(8, name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, offset)
        pad = -len(data) % alignment
        blobs += data + b"\x00" * pad
        offset += len(data) + pad
    out = head + infos
    return out + b"\x00" * (-len(out) % alignment) + blobs


def good_gguf_parts(seed: int = 0) -> tuple[list, list]:
    """kv and tensors of a tiny llama GGUF with its vocabulary."""
    rng = np.random.default_rng(seed)
    s = SMALL
    tok = tokenizer_doc()
    tokens = sorted(tok["model"]["vocab"], key=tok["model"]["vocab"].get)
    kv = [("general.architecture", 8, "llama"), ("general.name", 8, "tiny"),
          ("llama.block_count", 4, s.n_layers), ("llama.embedding_length", 4, s.hidden),
          ("llama.feed_forward_length", 4, s.ffn), ("llama.attention.head_count", 4, s.n_heads),
          ("llama.attention.head_count_kv", 4, s.n_kv_heads), ("llama.rope.freq_base", 6, 10000.0),
          ("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.tokens", 9, (8, tokens)),
          ("tokenizer.ggml.token_type", 9, (5, [1] * len(tokens))),
          ("tokenizer.ggml.merges", 9, (8, tok["model"]["merges"]))]
    hd = s.hidden // s.n_heads

    def t(name, *shape):
        data = (rng.standard_normal(shape) * 0.02).astype("<f4")
        return (name, list(reversed(shape)), 0, data.tobytes())

    tensors = [t("token_embd.weight", len(tokens), s.hidden)]
    for i in range(s.n_layers):
        p = f"blk.{i}."
        tensors += [t(p + "attn_norm.weight", s.hidden), t(p + "attn_q.weight", s.n_heads * hd, s.hidden),
                    t(p + "attn_k.weight", s.n_kv_heads * hd, s.hidden), t(p + "attn_v.weight", s.n_kv_heads * hd, s.hidden),
                    t(p + "attn_output.weight", s.hidden, s.n_heads * hd), t(p + "ffn_norm.weight", s.hidden),
                    t(p + "ffn_gate.weight", s.ffn, s.hidden), t(p + "ffn_up.weight", s.ffn, s.hidden),
                    t(p + "ffn_down.weight", s.hidden, s.ffn)]
    tensors.append(t("output_norm.weight", s.hidden))
    return kv, tensors


def sentencepiece_bytes(pieces: list[tuple[str, float, int]], model_type: int = 1) -> bytes:
    """A sentencepiece ModelProto: repeated piece (1: text, 2: score, 3: type), trainer spec (3: model type)."""
    def field(number, wire, payload):
        return _varint((number << 3) | wire) + payload

    out = b""
    for text, score, kind in pieces:
        raw = text.encode("utf-8", "surrogatepass")
        body = field(1, 2, _varint(len(raw)) + raw) + field(2, 5, struct.pack("<f", score)) + field(3, 0, _varint(kind))
        out += field(1, 2, _varint(len(body)) + body)
    trainer = field(3, 0, _varint(model_type))
    return out + field(2, 2, _varint(len(trainer)) + trainer)


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def good_spm_pieces() -> list[tuple[str, float, int]]:
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    pieces += [("\u2581" + w, -float(i), 1) for i, w in enumerate(["the", "of", "and", "to", "in", "a", "is"])]
    return pieces


# -- generators: (rng, folder) -> argv ---------------------------------------------------------------------------

COMMANDS = ("inspect", "compare", "tokenizer")


def _model_command(rng: random.Random, target: str, good: str) -> list[str]:
    cmd = rng.choice(("inspect", "inspect", "compare"))
    if cmd == "inspect":
        return ["inspect", target, "--format", "json"]
    return ["compare", target, good, "--format", "json"]


def gen_safetensors(rng: random.Random, folder: Path, good: str) -> list[str]:
    m = folder / "m"
    good_model(m)
    path = m / "model.safetensors"
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    r = rng.random()
    if r < 0.45:  # structural: a hostile value in the header, lengths kept consistent
        text = mutate_json(header, rng).encode("utf-8", "surrogatepass")
        text += b" " * (-len(text) % 8)
        path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    elif r < 0.55:  # a hostile config beside good weights
        cfg = json.loads((m / "config.json").read_text())
        (m / "config.json").write_text(mutate_json(cfg, rng), encoding="utf-8", errors="surrogatepass")
    elif r < 0.6:  # a tensor name with a huge layer or expert index
        name = rng.choice(["model.layers.999999999.mlp.up_proj.weight", "model.layers.1.mlp.experts.4000000000.up_proj.weight",
                           "model.layers." + "9" * 5000 + ".input_layernorm.weight"])
        k = rng.choice([k for k in header if k != "__metadata__"])
        header[name] = header.pop(k)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    else:
        path.write_bytes(mutate_bytes(data, rng))
    return _model_command(rng, str(m if rng.random() < 0.7 else path), good)


def gen_shards(rng: random.Random, folder: Path, good: str) -> list[str]:
    m = folder / "m"
    m.mkdir()
    sd = random_state_dict("llama", SMALL)
    names = list(sd)
    half = len(names) // 2
    write_safetensors(m / "model-00001-of-00002.safetensors", {k: sd[k] for k in names[:half]})
    write_safetensors(m / "model-00002-of-00002.safetensors", {k: sd[k] for k in names[half:]})
    index = {"metadata": {"total_size": 0}, "weight_map": {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors"
                                                          for i, k in enumerate(names)}}
    (m / "config.json").write_text(json.dumps(config_for("llama", SMALL)))
    r = rng.random()
    if r < 0.6:
        text = mutate_json(index, rng)
    elif r < 0.7:
        index["weight_map"][names[0]] = rng.choice(["../../etc/passwd", "/etc/passwd", ["a"], 5, "missing.safetensors", "."])
        text = json.dumps(index)
    else:
        text = mutate_bytes(json.dumps(index).encode(), rng).decode("utf-8", "replace")
    (m / "model.safetensors.index.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    target = str(m if rng.random() < 0.6 else m / "model.safetensors.index.json")
    return _model_command(rng, target, good)


def gen_gguf(rng: random.Random, folder: Path, good: str) -> list[str]:
    kv, tensors = good_gguf_parts(rng.randrange(3))
    kw: dict = {}
    r = rng.random()
    if r < 0.35:  # one metadata value of the wrong type or range
        i = rng.randrange(len(kv))
        key = kv[i][0]
        vtype, value = rng.choice([
            (8, "x"), (8, "9" * 40), (6, float("inf")), (6, float("nan")), (12, -1.0), (4, 0), (4, 2**32 - 1),
            (10, 2**64 - 1), (11, -5), (7, True), (9, (4, [1, 2, 3])), (9, (8, [])), (9, (9, [(4, [1])] * 3)),
            (9, (6, [float("nan")] * 4)), (9, (8, ["a"] * 3)), (4, 7), (8, "\ud800"),
        ])
        kv[i] = (key, vtype, value)
    elif r < 0.45:  # counts that lie
        kw = rng.choice([{"n_tensors": len(tensors) - 1}, {"n_tensors": len(tensors) + 1}, {"n_kv": len(kv) + 1},
                         {"n_kv": len(kv) - 1}, {"n_tensors": 2**24}, {"n_kv": 2**24 - 1}, {"n_tensors": 2**63},
                         {"alignment": rng.choice([1, 3, 64])}, {"version": rng.choice([1, 2, 4, 2**24])}])
        if "alignment" in kw:
            kv.append(("general.alignment", 4, kw["alignment"]))
    elif r < 0.55:  # tensor table lies: dims, types, names, offsets
        i = rng.randrange(len(tensors))
        name, dims, gtype, data = tensors[i]
        choice = rng.randrange(6)
        if choice == 0:
            dims = [d * rng.choice([2, 1000, 2**40]) for d in dims]
        elif choice == 1:
            gtype = rng.choice([2, 8, 13, 99, 2**31])
        elif choice == 2:
            name = rng.choice(["", tensors[0][0], "blk.99999999999.ffn_up.weight", "blk.0.\n.weight", "a" * 70000])
        elif choice == 3:
            dims = dims + [1] * rng.choice([1, 7, 60])
        elif choice == 4:
            dims = [0] + dims[1:]
        else:
            data = data[: len(data) // 2]
        tensors[i] = (name, dims, gtype, data)
    elif r < 0.62:  # deeply nested or huge metadata arrays
        depth = rng.choice([3, 100, 1000, 5000])
        # depth arrays of one array each, around one array of one uint32
        value = struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", 4, 1) + struct.pack("<I", 1)
        kv.append(("x.nested", 9, value))
    elif r < 0.67:  # a split name
        name = rng.choice(["m-00001-of-00000.gguf", "m-00002-of-00001.gguf", "m-00000-of-00002.gguf", "m-99999-of-99999.gguf"])
        (folder / name).write_bytes(gguf_bytes(kv, tensors))
        return _model_command(rng, str(folder / name), good)
    data = gguf_bytes(kv, tensors, **kw)
    if r >= 0.67:
        data = mutate_bytes(data, rng, protect=4)
    path = folder / "m.gguf"
    path.write_bytes(data)
    if rng.random() < 0.25:
        return ["tokenizer", str(path), "--format", "json"]
    return _model_command(rng, str(path), good)


def _dag_pickle(depth: int) -> bytes:
    """A pickle that reuses one dict at every level: 2^depth paths to flatten from a few hundred bytes."""
    out = b"\x80\x02}q\x00"  # empty dict, memo 0
    for level in range(1, depth + 1):
        prev = b"h" + bytes([level - 1])  # BINGET of the level below: the same dict under both keys
        out += b"}q" + bytes([level]) + b"(U\x01a" + prev + b"U\x01b" + prev + b"u"
    return out + b"."


def gen_torch(rng: random.Random, folder: Path, good: str) -> list[str]:
    m = folder / "m"
    m.mkdir()
    (m / "config.json").write_text(json.dumps(config_for("llama", SMALL)))
    sd = {k: v for k, v in random_state_dict("llama", SMALL).items()}
    path = m / "pytorch_model.bin"
    r = rng.random()
    keys = list(sd)
    if r < 0.12:
        pickle_bytes = rng.choice([
            hostile_pickle("touch " + str(folder / "PWNED")), _dag_pickle(rng.choice([30, 60, 200])),
            b"\x80\x02" + b"(" * 2000 + b"t" * 2000 + b".",
            b"\x80\x02" + b"]" * 1 + b"(" + b"]" * 3000 + b"e" + b".",
            b"\x80\x02" + _global("builtins", "eval") + _tuple([_str("1")]) + b"R.",
            b"\x80\x02" + _global("torch", "FloatStorage\nos") + b".",
            b"\x80\x02X\x05\x00\x00\x00a\nbcd" + b".",
        ])
        write_torch_zip_raw(path, pickle_bytes, {})
    elif r < 0.45:  # pickled tensor table that lies: shapes, strides, offsets, storage keys, dtypes
        entries = []
        for i, k in enumerate(keys):
            v = sd[k]
            stride = tuple(int(np.prod(v.shape[j + 1:])) for j in range(v.ndim))
            entries.append([k, "FloatStorage", str(i), v.size, v.shape, stride, 0])
        e = rng.choice(entries)
        field = rng.randrange(6)
        if field == 0:
            e[4] = tuple(min(d * rng.choice([2, 2**20, 2**31 - 1]), 2**31 - 1) for d in e[4])  # BININT range
        elif field == 1:
            e[5] = tuple(rng.choice([0, -1, 2**31 - 1, 3]) for _ in e[5])
        elif field == 2:
            e[6] = rng.choice([-1, 2**31 - 1, e[3]])
        elif field == 3:
            e[2] = rng.choice(["999", "../x", "a\nb"])
        elif field == 4:
            e[1] = rng.choice(["BFloat16Storage", "LongStorage", "BoolStorage", "ComplexFloatStorage"])
        else:
            e[0] = rng.choice(["model.layers.999999999.mlp.up_proj.weight", "a\nb", ""])
        blobs = {str(i): sd[k].tobytes() for i, k in enumerate(keys)}
        write_torch_zip_raw(path, tensor_pickle([tuple(x) for x in entries]), blobs)
    elif r < 0.6:  # zip container tricks: compression, encryption flag, CRC, names
        entries, blobs = [], {}
        for i, k in enumerate(keys):
            v = sd[k]
            stride = tuple(int(np.prod(v.shape[j + 1:])) for j in range(v.ndim))
            entries.append((k, "FloatStorage", str(i), v.size, v.shape, stride, 0))
            blobs[str(i)] = v.tobytes()
        trick = rng.choice(["deflate", "bzip2", "lzma", "encrypted", "crc", "bomb", "name"])
        write_torch_zip_raw(path, tensor_pickle(entries), blobs, trick=trick)
    else:
        from .torchzip import write_torch_zip

        write_torch_zip(path, sd)
        path.write_bytes(mutate_bytes(path.read_bytes(), rng))
    return _model_command(rng, str(m if rng.random() < 0.5 else path), good)


def write_torch_zip_raw(path: Path, pickle_bytes: bytes, blobs: dict[str, bytes], trick: str | None = None) -> None:
    method = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA,
              "bomb": zipfile.ZIP_DEFLATED}.get(trick or "", zipfile.ZIP_STORED)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3\n")
        for key, blob in blobs.items():
            if trick == "bomb" and key == "0":
                blob = blob + b"\x00" * (200 << 20)  # inflates far past what the tensor needs
            z.writestr(zipfile.ZipInfo(f"archive/data/{key}"), blob, compress_type=method)
    data = bytearray(path.read_bytes())
    if trick == "encrypted":  # set the encryption flag on every member (local and central headers)
        for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = data.find(sig)
            while i >= 0:
                data[i + at] |= 1
                i = data.find(sig, i + 4)
    elif trick == "crc":
        i = data.find(b"PK\x01\x02")
        while i >= 0:
            data[i + 16] ^= 0xFF
            i = data.find(b"PK\x01\x02", i + 4)
    elif trick == "name":
        i = data.find(b"archive/version")
        while i >= 0:
            data[i:i + 7] = b"\xff\xfechiv"
            i = data.find(b"archive/version", i + 4)
    path.write_bytes(bytes(data))


def gen_config(rng: random.Random, folder: Path, good: str) -> list[str]:
    m = good_model(folder / "m")
    cfg = json.loads((m / "config.json").read_text())
    cfg.update(rng.choice([{}, {"num_nextn_predict_layers": 1}, {"text_config": {"hidden_size": 32}},
                           {"new_decoder_architecture": True}, {"multi_query": True}]))
    key = rng.choice(["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                      "intermediate_size", "vocab_size", "model_type", "num_nextn_predict_layers", "rope_theta",
                      "architectures", "text_config", "num_local_experts", "_name_or_path", "auto_map"])
    if rng.random() < 0.7:
        value = hostile_value(rng)
        if isinstance(value, str) and value.startswith(("9999", "RAW:")):
            text = json.dumps(cfg)[:-1] + f', "{key}": {value.removeprefix("RAW:")}}}'
        else:
            cfg[key] = value
            text = _json_text(cfg)
    else:
        text = mutate_json(cfg, rng)
    (m / "config.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    side = rng.random()
    if side < 0.15:
        (m / "README.md").write_text("---\nbase_model: " + "x" * rng.choice([10, 5_000_000]) + "\n---\n")
    elif side < 0.25:
        (m / "mergekit_config.yml").write_text("models:\n" + "  - model: a\n" * rng.choice([3, 400_000]))
    elif side < 0.3:
        (m / "modeling_x.py").write_text(rng.choice(["(" * 5000, "\x00", "class A:\n  pass\n" * 10, "def f(:\n"]))
    return _model_command(rng, str(m), good)


def gen_tokenizer_json(rng: random.Random, folder: Path, good: str) -> list[str]:
    doc = tokenizer_doc()
    r = rng.random()
    if r < 0.5:
        text = mutate_json(doc, rng)
    elif r < 0.7:
        model = doc["model"]
        choice = rng.randrange(7)
        if choice == 0:
            model["vocab"]["zz"] = rng.choice([2**63, 2**40, 10**30, -1, 1.5])
        elif choice == 1:
            model["merges"].append(rng.choice(["qq zz", "a", ["a", "b", "c"], 5, "\ud800 e"]))
        elif choice == 2:
            model["vocab"]["e" * 30000] = len(model["vocab"]) + 1
        elif choice == 3:
            model["vocab"]["\ud800"] = len(model["vocab"]) + 1
        elif choice == 4:
            model["type"] = rng.choice(["Unigram", "WordLevel", 5, None])
        elif choice == 5:
            model["vocab"] = [["a", "x"], ["b"], 5] if rng.random() < 0.5 else [["a", float("nan")]]
        else:
            doc["added_tokens"].append({"id": rng.choice([2**63, -5, "1", 10**9]), "content": "x", "special": False})
        text = _json_text(doc)
    else:
        text = mutate_bytes(json.dumps(doc).encode(), rng).decode("utf-8", "replace")
    name = rng.choice(["tokenizer.json", "tokenizer.json", "tok.json", "tokenizer"])
    path = folder / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    if rng.random() < 0.3:  # the same tokenizer inside a model folder, through compare
        m = good_model(folder / "m")
        (m / "tokenizer.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        return ["compare", str(m), good, "--format", "json"]
    return ["tokenizer", str(path), "--format", "json"]


def gen_sentencepiece(rng: random.Random, folder: Path, good: str) -> list[str]:
    pieces = good_spm_pieces()
    r = rng.random()
    if r < 0.3:
        i = rng.randrange(len(pieces))
        text, score, kind = pieces[i]
        pieces[i] = rng.choice([(text, float("nan"), kind), (text, score, 99), ("\ud800", score, 1),
                                ("x" * 30000, score, 1), (text, float("inf"), 1)])
        data = sentencepiece_bytes(pieces, rng.choice([1, 2, 7]))
    else:
        data = mutate_bytes(sentencepiece_bytes(pieces), rng)
    path = folder / rng.choice(["tokenizer.model", "tokenizer.model.v3", "spm"])
    path.write_bytes(data)
    return ["tokenizer", str(path), "--format", "json"]


def gen_tiktoken(rng: random.Random, folder: Path, good: str) -> list[str]:
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    lines += [f"{base64.b64encode(w.encode()).decode()} {256 + i}" for i, w in enumerate(["th", "he", " t", "the"])]
    r = rng.random()
    if r < 0.4:
        i = rng.randrange(len(lines))
        tok = lines[i].split()[0]
        lines[i] = rng.choice([f"{tok} {2**63}", f"{tok} -1", f"{tok} {2**32}", f"{tok} 1e5", f"{tok}", "=== 5",
                               f"{base64.b64encode(b'x' * 30000).decode()} 300", f"{tok} {'9' * 5000}"])
        data = "\n".join(lines).encode()
    else:
        data = mutate_bytes("\n".join(lines).encode(), rng)
    path = folder / rng.choice(["cl.tiktoken", "ranks"])
    path.write_bytes(data)
    return ["tokenizer", str(path), "--format", "json"]


def gen_vocab_merges(rng: random.Random, folder: Path, good: str) -> list[str]:
    doc = tokenizer_doc()
    vocab, merges = doc["model"]["vocab"], doc["model"]["merges"]
    r = rng.random()
    if r < 0.4:
        vtext = mutate_json(vocab, rng)
        mtext = "#version: 0.2\n" + "\n".join(merges)
    else:
        vtext = json.dumps(vocab)
        extra = rng.choice(["qq zz", "a b c", "\udc80 e", "", "x" * 30000 + " y"])
        mtext = "#version: 0.2\n" + "\n".join(merges + [extra])
        if rng.random() < 0.5:
            mtext = mutate_bytes(mtext.encode("utf-8", "surrogateescape"), rng).decode("utf-8", "surrogateescape")
    (folder / "vocab.json").write_text(vtext, encoding="utf-8", errors="surrogatepass")
    (folder / "merges.txt").write_bytes(mtext.encode("utf-8", "surrogateescape"))
    if rng.random() < 0.3:
        (folder / "vocab.txt").write_bytes(mutate_bytes(b"[PAD]\n[UNK]\nthe\n##s\n", rng))
        return ["tokenizer", str(folder / "vocab.txt"), "--format", "json"]
    return ["tokenizer", str(folder / "vocab.json"), "--format", "json"]


def gen_hub_cache(rng: random.Random, folder: Path, good: str) -> list[str]:
    """A hub cache (HF_HUB_CACHE is set to folder/hub by the harness) whose refs or typed revision point away."""
    hub = folder / "hub"
    repo = hub / "models--org--name"
    commit = "0123456789abcdef0123456789abcdef01234567"
    good_model(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    secret = good_model(folder / "secret")  # a model outside the cache that must never be read
    (secret / "README.md").write_text("---\nbase_model: SECRET-OUTSIDE-THE-CACHE\n---\n")
    choice = rng.randrange(6)
    ref = "org/name"
    if choice == 0:
        (repo / "refs" / "main").write_text(rng.choice(["../../../secret", "../../..", str(secret), "/", "..", ""]))
    elif choice == 1:
        (repo / "refs" / "main").write_text(commit)
        ref = "org/name@" + rng.choice(["../../../secret", "../../x", "/etc", "..", "main/../../..", "a\nb"])
    elif choice == 2:  # the snapshot folder itself is a symlink out of the cache
        (repo / "refs" / "main").write_text("evil")
        os.symlink(secret, repo / "snapshots" / "evil")
    elif choice == 3:  # a file of the snapshot links out of the cache
        (repo / "refs" / "main").write_text(commit)
        snap = repo / "snapshots" / commit
        os.unlink(snap / "README.md") if (snap / "README.md").exists() else None
        os.symlink(secret / "README.md", snap / "README.md")
        os.unlink(snap / "model.safetensors")
        os.symlink(secret / "model.safetensors", snap / "model.safetensors")
    elif choice == 4:
        (repo / "refs" / "main").write_bytes(mutate_bytes(commit.encode(), rng))
    else:
        (repo / "refs" / "main").write_text(commit)
        ref = rng.choice(["org/name@" + commit, "hf://org/name", "org/name@main", "org/../name", "org/name@" + "a" * 5000])
    return _model_command(rng, ref, good)


QUANTISED_EXPORTS = [("gptq", 4, 16, {}), ("gptq", 3, 32, {"v1": False}), ("gptq", 8, 16, {"act_order": True}),
                     ("awq", 4, 16, {}), ("awq", 4, 16, {"version": "gemv"}), ("nf4", 4, 64, {}),
                     ("int8", 8, 0, {}), ("mlx", 4, 16, {}), ("mlx", 3, 32, {}), ("compressed", 4, 16, {}),
                     ("compressed", 4, 16, {"sym": False}), ("fp8", 8, 0, {})]


def gen_quantised(rng: random.Random, folder: Path, good: str) -> list[str]:
    """A quantised checkpoint (each method's parts, written by zoo/quantize.py) with a hostile part, config,
    quant-state blob or byte."""
    from parentage.zoo.quantize import Export, export_model

    src = good_model(folder / "src")
    method, bits, group, options = rng.choice(QUANTISED_EXPORTS)
    m = folder / "m"
    sd = random_state_dict("llama", SMALL, 0)
    export_model(src, m, Export(method, bits, group, dict(options)), sd)
    path = m / "model.safetensors"
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    parts = [k for k in header if k != "__metadata__" and not k.endswith(("norm.weight", "embed_tokens.weight"))]
    r = rng.random()
    if r < 0.3:  # a part's dtype, shape or offsets made hostile, lengths kept consistent
        name = rng.choice(parts)
        field = rng.choice(["dtype", "shape", "shape", "data_offsets"])
        header[name][field] = hostile_value(rng) if rng.random() < 0.5 else rng.choice(
            {"dtype": ["I32", "U8", "F32", "I64", "BF16", "F8_E4M3"], "shape": [[1], [3, 5], [0, 4], [2, 2, 2]],
             "data_offsets": [[0, 4], [0, 0]]}[field])
        text = json.dumps(header, allow_nan=True).encode()
        text += b" " * (-len(text) % 8)
        path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    elif r < 0.5:  # a hostile quantisation config
        cfg = json.loads((m / "config.json").read_text())
        key = "quantization" if "quantization" in cfg else "quantization_config"
        if rng.random() < 0.5 and isinstance(cfg.get(key), dict):
            qc = cfg[key]
            qc[rng.choice(list(qc) + ["bits", "group_size", "checkpoint_format", "version", "format", "mode"])] = \
                hostile_value(rng) if rng.random() < 0.6 else rng.choice([1, 5, 7, 16, -1, 0, "marlin", "gemv_fast"])
            (m / "config.json").write_text(json.dumps(cfg, allow_nan=True))
        else:
            (m / "config.json").write_text(mutate_json(cfg, rng), encoding="utf-8", errors="surrogatepass")
    elif r < 0.6:  # a part dropped or renamed (half a weight)
        name = rng.choice(parts)
        header[name.rsplit(".", 1)[0] + "." + rng.choice(["qzeros", "g_idx", "scales", "absmax", "SCB", "biases",
                                                          "weight_zero_point", "weight_shape"])] = header.pop(name)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    else:  # bytes: codes, scales, group indices, the bitsandbytes blob
        path.write_bytes(mutate_bytes(data, rng, protect=8 + n if rng.random() < 0.7 else 0))
    return _model_command(rng, str(m), good)


def gen_onnx(rng: random.Random, folder: Path, good: str) -> list[str]:
    """An ONNX export (zoo/onnx_export.py) with a byte of its protobuf or external data mutated, an external data
    location pointing away, or a tensor re-encoded with hostile dims, type or offsets."""
    from parentage.zoo.onnx_export import export_onnx, f_bytes, f_int, tensor_proto

    m = folder / "m"
    weights = rng.choice(["F32", "F16", "int8", "nbits4"])
    export_onnx(m, random_state_dict("llama", SMALL, 0), SMALL.n_layers, weights, rng.choice(["torch", "genai", "anonymous"]),
                external=rng.random() < 0.5)
    (m / "config.json").write_text(json.dumps(config_for("llama", SMALL)))
    model = m / "model.onnx"
    r = rng.random()
    if r < 0.5:
        model.write_bytes(mutate_bytes(model.read_bytes(), rng))
    elif r < 0.65 and (m / "model.onnx_data").exists():
        data = m / "model.onnx_data"
        data.write_bytes(mutate_bytes(data.read_bytes(), rng))
    elif r < 0.8:  # a tensor appended to the graph with hostile fields, consumed by a MatMul
        dims = rng.choice([(1 << 40, 1 << 40), (0, 4), (4,), (2, 2, 2), (3, 5), (1 << 62, 2)])
        raw = b"\0" * rng.choice([0, 4, 64, 60])
        external = rng.choice([None, ("../secret", 0), ("/etc/passwd", 0), ("model.onnx_data", 1 << 50),
                               ("model.onnx_data", -4), ("\0", 0)])
        try:
            t = tensor_proto("w_hostile", rng.choice(["F32", "I8", "U8", "F16", "I64"]), dims, raw, external)
        except (ValueError, OverflowError):
            t = tensor_proto("w_hostile", "F32", (4, 4), raw)
        node = f_bytes(1, "x") + f_bytes(1, "w_hostile") + f_bytes(2, "y") + f_bytes(3, "/model/layers.0/mlp/up_proj/MatMul") \
            + f_bytes(4, rng.choice(["MatMul", "Gemm", "Gather", "MatMulNBits", "DequantizeLinear"]))
        graph = f_bytes(1, node) + f_bytes(5, t)
        model.write_bytes(f_int(1, 10) + f_bytes(7, graph))
    else:  # nesting, a huge claimed length, a wire type ONNX never uses
        model.write_bytes(rng.choice([f_int(1, 10) + b"\x3a" + b"\xff" * 9 + b"\x01",
                                      f_int(1, 10) + b"\x3a\x05" + b"\x0a\x03" * 40,
                                      f_int(1, 10) + bytes([0x3b]) + b"\x00" * 16, f_int(1, 10) + b"\x0f" * 64]))
    return _model_command(rng, str(m if rng.random() < 0.7 else model), good)


def gen_special(rng: random.Random, folder: Path, good: str) -> list[str]:
    """FIFOs, devices and links where files are expected, at inputs and at output paths."""
    choice = rng.randrange(7)
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    if choice == 0:
        return ["tokenizer", good, "--text", rng.choice([str(fifo), "/dev/zero", "/dev/urandom", str(folder)]),
                "--format", "json"]
    if choice == 1:
        return [rng.choice(["inspect", "tokenizer"]), rng.choice([str(fifo), "/dev/zero", "/dev/null"])]
    if choice == 2:  # a model folder whose files are FIFOs or devices
        m = good_model(folder / "m")
        victim = m / rng.choice(["config.json", "tokenizer.json", "model.safetensors", "README.md"])
        victim.unlink(missing_ok=True)
        if rng.random() < 0.5:
            os.mkfifo(victim)
        else:
            os.symlink("/dev/zero", victim)
        return _model_command(rng, str(m), good)
    # an output path that is not a regular file: it must be left as it is
    target = folder / "report.html"
    kind = rng.choice(["symlink", "fifo", "device", "dir", "dangling"])
    if kind == "symlink":
        (folder / "precious").write_text("keep me")
        os.symlink(folder / "precious", target)
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private copy of /dev/null
    elif kind == "dir":
        target.mkdir()
    else:
        os.symlink(folder / "nowhere", target)
    if rng.random() < 0.5:
        return ["tokenizer", good, "--html", str(target)]
    return ["compare", good, good, "--html", str(target)]


_PRISTINE_INDEX: dict[str, bytes] = {}


def _pristine_index(good: str, scratch: Path) -> bytes:
    """The bytes of an index holding the good model (made once per process: indexing costs a second)."""
    if good not in _PRISTINE_INDEX:
        from parentage.index import add_models

        db = scratch / "pristine.sqlite"
        other = good_model(scratch / "pristine-other", seed=1)  # a second entry, so identify scans a sketch
        add_models([good, str(other)], str(db), workers=1)
        with sqlite3.connect(db) as c:  # one file, no write-ahead log beside it
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.execute("PRAGMA journal_mode=DELETE")
        _PRISTINE_INDEX[good] = db.read_bytes()
        db.unlink()
    return _PRISTINE_INDEX[good]


def gen_index(rng: random.Random, folder: Path, good: str) -> list[str]:
    """An index database (fingerprints, sketches, the schema's version) with a hostile byte, row or value, then
    a command that reads it: identify, index list or show, graph."""
    db = folder / "index.sqlite"
    db.write_bytes(_pristine_index(good, folder.parent))
    choice = rng.randrange(9)
    if choice == 0:
        db.write_bytes(mutate_bytes(db.read_bytes(), rng, protect=100))
    elif choice == 1:
        data = db.read_bytes()
        db.write_bytes(data[: rng.randrange(len(data))])
    else:
        with sqlite3.connect(db) as c:
            if choice == 2:
                for digest, scan in c.execute("SELECT digest, scan FROM sketches").fetchall():
                    c.execute("UPDATE sketches SET scan = ? WHERE digest = ?", (mutate_bytes(bytes(scan), rng), digest))
            elif choice == 3:
                for digest, data in c.execute("SELECT digest, data FROM sketches").fetchall():
                    c.execute("UPDATE sketches SET data = ? WHERE digest = ?", (mutate_bytes(bytes(data), rng), digest))
            elif choice == 4:
                c.execute("UPDATE sketches SET version = ?", (rng.choice([0, 2, 99, -1, 2 ** 62]),))
            elif choice == 5:
                c.execute("UPDATE parentage_meta SET value = ?", (rng.choice(["99", "x", "-1", "2", "1", ""]),))
            elif choice == 6:
                c.execute(rng.choice(["DELETE FROM sketches", "DROP TABLE sketches", "DELETE FROM blobs",
                                      "UPDATE fingerprints SET n_bytes = -5", "UPDATE fingerprints SET declared = '['"]))
            elif choice == 7:
                for digest, blob in c.execute("SELECT digest, data FROM blobs").fetchall():
                    c.execute("UPDATE blobs SET data = ? WHERE digest = ?", (mutate_bytes(bytes(blob), rng, protect=16), digest))
            else:
                c.execute("INSERT INTO pairs (a, b, setting, doc) SELECT digest, digest, 'x', ? FROM blobs",
                          (rng.choice(["{", "[]", "null", '{"log10_p": "x"}']),))
    command = rng.choice([["identify", good, "--db", str(db), "--format", "json"],
                          ["identify", good, "--db", str(db), "--exhaustive"],
                          ["index", "list", "--db", str(db), "--format", "json"],
                          ["index", "show", good, "--db", str(db)],
                          ["graph", "--db", str(db), "--format", "json"]])
    return command


_PRISTINE_PACK: dict[str, bytes] = {}


def gen_pack(rng: random.Random, folder: Path, good: str) -> list[str]:
    """A pack (index/pack.py) with a hostile byte, header value, offset or digest, then a command that reads it:
    identify against it in place, import it, list it."""
    import json as _json
    import struct as _struct

    from parentage.index import open_store
    from parentage.index.pack import MAGIC, export_pack

    if good not in _PRISTINE_PACK:
        db = folder.parent / "pack-source.sqlite"
        db.write_bytes(_pristine_index(good, folder.parent))
        with open_store(str(db)) as store:
            export_pack(store, folder.parent / "pristine.pack")
        _PRISTINE_PACK[good] = (folder.parent / "pristine.pack").read_bytes()
    data = _PRISTINE_PACK[good]
    n = _struct.unpack("<IQ", data[len(MAGIC):len(MAGIC) + 12])[1]
    head, body = data[len(MAGIC) + 12:len(MAGIC) + 12 + n], data[len(MAGIC) + 12 + n:]
    choice = rng.randrange(4)
    if choice == 0:
        data = mutate_bytes(data, rng)
    elif choice == 1:
        data = data[: rng.randrange(len(data))]
    else:
        raw = mutate_json(_json.loads(head), rng).encode()
        version = 1 if choice == 2 else rng.choice([0, 2, 2 ** 32 - 1])
        data = MAGIC + _struct.pack("<IQ", version, len(raw)) + raw + body
    pack = folder / "lineage.pack"
    pack.write_bytes(data)
    return rng.choice([["identify", good, "--db", str(pack), "--format", "json"],
                       ["identify", good, "--db", str(pack), "--exhaustive"],
                       ["index", "import", str(pack), "--db", str(folder / "imported.sqlite")],
                       ["index", "list", "--db", str(pack), "--format", "json"]])


GENERATORS = {
    "safetensors": gen_safetensors, "shards": gen_shards, "gguf": gen_gguf, "torch": gen_torch, "config": gen_config,
    "tokenizer_json": gen_tokenizer_json, "sentencepiece": gen_sentencepiece, "tiktoken": gen_tiktoken,
    "vocab_merges": gen_vocab_merges, "hub_cache": gen_hub_cache, "special": gen_special, "quantised": gen_quantised,
    "onnx": gen_onnx, "index": gen_index, "pack": gen_pack,
}
