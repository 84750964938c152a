"""Every common tokenizer format read into one representation: each token as its raw bytes and id.

Formats: Hugging Face `tokenizer.json` (byte-level BPE; sentencepiece-style BPE and Unigram with `▁` and
`<0xNN>` byte fallback; WordPiece), sentencepiece `.model` (its protobuf parsed here, no library needed),
tiktoken rank files (`.tiktoken`: base64 token and rank per line), `vocab.json` + `merges.txt`, WordPiece
`vocab.txt`, and the vocabulary embedded in a GGUF file. Special and added control tokens are kept apart: they are names, not text.
Shipped merge lists are kept only for the health checks: converters disagree on them for the same vocabulary,
so lineage never relies on them.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..constants import MAX_VOCAB, TOKENIZER_MAX_BYTES
from ..errors import FormatError
from ..safeio import read_bounded, read_json, regular_file

SPM_SPACE = "\u2581"  # sentencepiece's visible space
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _byte_level_table() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes: printable Latin-1 bytes stand for themselves, the other 68 bytes
    take the code points from 256 upwards in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


BYTE_LEVEL = _byte_level_table()
BYTE_LEVEL_CHAR = {b: c for c, b in BYTE_LEVEL.items()}


@dataclass
class Vocab:
    source: str  # the file it came from
    format: str  # "tokenizer.json", "sentencepiece", "tiktoken", "vocab.json", "gguf"
    model: str  # "bpe", "unigram", "wordpiece"
    style: str  # how strings map to bytes: "byte_level", "sentencepiece", "wordpiece", "plain"
    size: int  # ids 0..size-1, special tokens included
    tokens: dict[int, bytes]  # ordinary tokens: id -> bytes (two ids may hold the same bytes: a health issue)
    special: dict[int, str] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)  # unigram log-probabilities
    merges: list[tuple[bytes, bytes]] | None = None  # as shipped, for the health checks only
    doc: dict | None = None  # the parsed tokenizer.json, when that is the source
    byte_ids: set[int] = field(default_factory=set)  # sentencepiece <0xNN> byte-fallback pieces
    added_ids: set[int] = field(default_factory=set)  # added ordinary tokens: matched whole, before the model runs
    defined_ids: set[int] = field(default_factory=set)  # user-defined pieces (sentencepiece type 4, GGUF type 4)

    def by_bytes(self) -> dict[bytes, int]:
        """Byte string -> lowest id holding it."""
        out: dict[bytes, int] = {}
        for i in sorted(self.tokens):
            out.setdefault(self.tokens[i], i)
        return out

    @property
    def name(self) -> str:
        return Path(self.source).parent.name + "/" + Path(self.source).name


def _utf8(text: str) -> bytes:
    # "surrogatepass": a lone surrogate (a legal JSON escape) still gives the token a byte string of its own
    return text.encode("utf-8", "surrogatepass")


def _id(value, path: Path, what: str) -> int:
    """A token id or rank: an integer in [0, MAX_VOCAB); one clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_VOCAB:
        raise FormatError(path, f"{what} must be non-negative integer ids below {MAX_VOCAB:,} "
                                f"(found {str(value)[:40]!r})")
    return value


def _decode(token: str, style: str) -> bytes | None:
    if style == "byte_level":
        try:
            return bytes(BYTE_LEVEL[c] for c in token)
        except KeyError:
            return None
    if style == "sentencepiece":
        m = _BYTE_TOKEN.match(token)
        return bytes([int(m.group(1), 16)]) if m else _utf8(token.replace(SPM_SPACE, " "))
    if style == "wordpiece":
        return _utf8(token[2:]) if token.startswith("##") else _utf8(" " + token)
    return _utf8(token)


def _style_of(doc: dict) -> str:
    model = doc.get("model") or {}
    kinds = set()
    for key in ("pre_tokenizer", "decoder", "normalizer"):
        part = doc.get(key)
        if not isinstance(part, dict):
            continue
        kinds.add(str(part.get("type")))
        for sub_key in ("pretokenizers", "decoders", "normalizers"):
            subs = part.get(sub_key)
            for sub in subs if isinstance(subs, list) else []:
                if isinstance(sub, dict):
                    kinds.add(str(sub.get("type")))
    if "ByteLevel" in kinds:
        return "byte_level"
    if model.get("type") == "WordPiece":
        return "wordpiece"
    if model.get("byte_fallback") or "Metaspace" in kinds or model.get("type") == "Unigram" or "Replace" in kinds:
        return "sentencepiece"
    return "plain"


def _merge_pair(entry, style: str, path: Path) -> tuple[bytes, bytes] | None:
    parts = entry.split(" ", 1) if isinstance(entry, str) else entry
    if not isinstance(parts, (list, tuple)) or len(parts) != 2 or not all(isinstance(p, str) for p in parts):
        raise FormatError(path, f"merge {entry!r} is not a pair of tokens")
    a, b = _decode(parts[0], style), _decode(parts[1], style)
    return (a, b) if a is not None and b is not None else None


def from_tokenizer_json(path: Path, doc: dict | None = None) -> Vocab:
    doc = read_json(path, max_depth=None) if doc is None else doc  # fields used are type-checked
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise FormatError(path, "no 'model' object: not a Hugging Face tokenizer.json")
    model = doc["model"]
    kind = str(model.get("type") or ("BPE" if "merges" in model else "")).lower()
    raw = model.get("vocab")
    scores = {}
    if isinstance(raw, dict):  # BPE, WordPiece: token -> id
        pairs = [(_id(i, path, "model.vocab"), t) for t, i in raw.items()]
    elif isinstance(raw, list):  # Unigram: [token, score] in id order
        if not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], (int, float))
                   for e in raw):
            raise FormatError(path, "model.vocab of a Unigram model must be a list of [token, score] pairs")
        pairs = [(i, entry[0]) for i, entry in enumerate(raw)]
        scores = {i: float(entry[1]) for i, entry in enumerate(raw)}
    else:
        raise FormatError(path, f"model type {model.get('type')!r} has no vocabulary this tool can read")
    if kind not in ("bpe", "unigram", "wordpiece"):
        raise FormatError(path, f"unknown tokenizer model type {model.get('type')!r} (expected BPE, Unigram or WordPiece)")
    added_list = doc.get("added_tokens") or []
    if not isinstance(added_list, list) or not all(
            isinstance(t, dict) and isinstance(t.get("id"), int) and isinstance(t.get("content"), str) for t in added_list):
        raise FormatError(path, "added_tokens must be a list of objects with an integer id and a string content")
    for t in added_list:
        _id(t["id"], path, "added_tokens")
    special = {t["id"]: t["content"] for t in added_list if t.get("special")}
    added = {t["id"]: t["content"] for t in added_list if not t.get("special")}
    style = _style_of(doc)
    tokens = {}
    byte_ids = {i for i, t in pairs if style == "sentencepiece" and _BYTE_TOKEN.match(t)}
    for i, t in pairs:
        if i in special:
            continue
        decoded = _decode(t, style)
        if decoded is not None:
            tokens[i] = decoded
        else:  # not a byte-level string: an added control token spelled as text
            special[i] = t
    for i, t in added.items():  # added ordinary tokens are text, matched before the model runs
        if i not in tokens and i not in special:  # the model's own spelling wins when it has the id
            tokens[i] = _utf8(t)
    merges = None
    if kind == "bpe" and isinstance(model.get("merges"), list):
        merges = [m for m in (_merge_pair(e, style, path) for e in model["merges"]) if m is not None]
    ids = [i for i, _ in pairs] + list(special) + list(added)
    return Vocab(str(path), "tokenizer.json", kind, style, max(ids) + 1 if ids else 0, tokens, special, scores, merges, doc,
                 byte_ids, set(added) - set(special))


def from_vocab_merges(vocab_path: Path, merges_path: Path | None) -> Vocab:
    doc = read_json(vocab_path, max_depth=None)
    if not isinstance(doc, dict):
        raise FormatError(vocab_path, "expected a JSON object mapping tokens to integer ids")
    for t, i in doc.items():
        _id(i, vocab_path, "vocab.json values")
    tokens, special = {}, {}
    for t, i in doc.items():
        decoded = _decode(t, "byte_level")
        (tokens.__setitem__(i, decoded) if decoded is not None else special.__setitem__(i, t))
    merges = None
    if merges_path is not None:
        merges = []
        try:
            merge_lines = read_bounded(merges_path, TOKENIZER_MAX_BYTES, "merges file").decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise FormatError(merges_path, f"not UTF-8 text ({e})") from None
        for n, line in enumerate(merge_lines, 1):
            if not line.strip() or line.startswith("#version"):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise FormatError(merges_path, f"line {n}: expected two tokens separated by one space")
            pair = _merge_pair(parts, "byte_level", merges_path)
            if pair is not None:
                merges.append(pair)
    return Vocab(str(vocab_path), "vocab.json", "bpe", "byte_level", max(doc.values(), default=-1) + 1, tokens, special,
                 merges=merges)


def from_vocab_txt(path: Path) -> Vocab:
    """A WordPiece vocabulary (BERT's vocab.txt): one token per line, the line number is the id."""
    try:
        lines = read_bounded(path, TOKENIZER_MAX_BYTES, "vocabulary file").decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise FormatError(path, f"not UTF-8 text ({e})") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise FormatError(path, "no tokens")
    if len(lines) > MAX_VOCAB:
        raise FormatError(path, f"{len(lines):,} lines: more tokens than any real vocabulary ({MAX_VOCAB:,})")
    tokens, special = {}, {}
    for i, t in enumerate(lines):
        if re.fullmatch(r"\[[A-Za-z_0-9]+\]", t):  # [CLS], [SEP], [unused12]
            special[i] = t
        else:
            tokens[i] = _decode(t, "wordpiece")
    return Vocab(str(path), "vocab.txt", "wordpiece", "wordpiece", len(lines), tokens, special)


def from_tiktoken(path: Path) -> Vocab:
    tokens: dict[int, bytes] = {}
    for n, line in enumerate(read_bounded(path, TOKENIZER_MAX_BYTES, "tiktoken file").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2 or not parts[1].isdigit() or len(parts[1]) > 9:
                raise ValueError("expected a base64 token and a rank")
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
            if rank >= MAX_VOCAB:
                raise ValueError(f"rank {rank} is beyond any real vocabulary")
        except (ValueError, binascii.Error) as e:
            raise FormatError(path, f"line {n}: not a tiktoken rank line ({e})") from None
        if rank in tokens:
            raise FormatError(path, f"line {n}: rank {rank} appears twice")
        tokens[rank] = token
    if not tokens:
        raise FormatError(path, "no token lines")
    return Vocab(str(path), "tiktoken", "bpe", "byte_level", max(tokens) + 1, tokens)


# -- sentencepiece: a protobuf read by hand (ModelProto: 1 = repeated SentencePiece, 2 = TrainerSpec) ----------

SPM_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}
SPM_MODELS = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _varint(buf: bytes, pos: int, path: Path) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise FormatError(path, "truncated or invalid protobuf varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, pos


def _fields(buf: bytes, path: Path):
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, path)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, path)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, path)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise FormatError(path, f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise FormatError(path, "truncated protobuf message")
        yield number, wire, value


def from_sentencepiece(path: Path) -> Vocab:
    buf = read_bounded(path, TOKENIZER_MAX_BYTES, "sentencepiece model")
    tokens, special, scores, byte_ids, defined = {}, {}, {}, set(), set()
    model_type = "unigram"
    i = 0
    for number, wire, value in _fields(buf, path):
        if number == 1 and wire == 2:
            piece, score, kind = "", 0.0, 1
            for n2, w2, v2 in _fields(value, path):
                if n2 == 1 and w2 == 2:
                    try:
                        piece = v2.decode("utf-8")
                    except UnicodeDecodeError:
                        raise FormatError(path, f"piece {i} is not UTF-8") from None
                elif n2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif n2 == 3 and w2 == 0:
                    kind = v2
            if SPM_TYPES.get(kind) in ("normal", "byte", "user_defined"):
                tokens[i] = _decode(piece, "sentencepiece")
                if SPM_TYPES.get(kind) == "byte":
                    byte_ids.add(i)
                elif SPM_TYPES.get(kind) == "user_defined":
                    defined.add(i)
            else:
                special[i] = piece
            scores[i] = score
            i += 1
        elif number == 2 and wire == 2:
            for n2, w2, v2 in _fields(value, path):
                if n2 == 3 and w2 == 0:
                    model_type = SPM_MODELS.get(v2, "unigram")
    if not i:
        raise FormatError(path, "no pieces: not a sentencepiece model")
    return Vocab(str(path), "sentencepiece", model_type, "sentencepiece", i, tokens, special, scores, byte_ids=byte_ids,
                 defined_ids=defined)


def from_gguf(reader) -> Vocab | None:
    import numpy as np

    if "tokenizer.ggml.tokens" not in reader.metadata:
        return None
    strings = reader.strings("tokenizer.ggml.tokens")
    types = reader.metadata.get("tokenizer.ggml.token_type")
    if types is not None and not (isinstance(types, np.ndarray) and np.issubdtype(types.dtype, np.integer)
                                  and types.ndim == 1 and len(types) == len(strings)):
        raise FormatError(reader.path, "tokenizer.ggml.token_type is not an integer array with one entry per token")
    model = reader.metadata.get("tokenizer.ggml.model", "")
    model = model if isinstance(model, str) else ""
    style = {"gpt2": "byte_level", "llama": "sentencepiece", "bert": "wordpiece"}.get(model, "plain")
    kind = {"gpt2": "bpe", "llama": "unigram" if "tokenizer.ggml.merges" not in reader.metadata else "bpe",
            "bert": "wordpiece"}.get(model, "bpe")
    tokens, special, byte_ids, defined = {}, {}, set(), set()
    for i, t in enumerate(strings):
        token_type = int(types[i]) if types is not None else 1
        if token_type == 6:
            byte_ids.add(i)
        elif token_type == 4:
            defined.add(i)
        decoded = _decode(t, style) if token_type in (1, 4, 6) else None  # normal, user-defined, byte
        (tokens.__setitem__(i, decoded) if decoded is not None else special.__setitem__(i, t))
    return Vocab(str(reader.path), "gguf", kind, style, len(strings), tokens, special, byte_ids=byte_ids,
                 defined_ids=defined)


# -- finding and loading --------------------------------------------------------------------------------------


def sniff(path: Path) -> str | None:
    """The tokenizer format from the file's first bytes, whatever its name (`tokenizer.model.v3`, `ranks`)."""
    with open(path, "rb") as f:
        head = f.read(256)
    if head[:4] == b"GGUF":
        return "gguf"
    if head.lstrip()[:1] == b"{":  # every JSON tokenizer format is an object
        return "json"
    if re.match(rb"^[A-Za-z0-9+/=]+ \d+\r?\n", head):
        return "tiktoken"
    if head[:1] == b"\x0a":  # protobuf field 1 (a piece), length-delimited: a sentencepiece ModelProto
        return "sentencepiece"
    return None


def load_file(path: Path) -> Vocab:
    """One tokenizer file, recognised by content (the name decides only between look-alike text formats)."""
    path = Path(path)
    if not path.exists():
        raise FormatError(path, "no such tokenizer file")
    regular_file(path)
    name = path.name
    merges = path.parent / "merges.txt"
    kind = sniff(path)
    if kind == "gguf":
        from ..readers.gguf import GGUFFile

        r = GGUFFile(path)
        try:
            vocab = from_gguf(r)
        finally:
            r.close()
        if vocab is None:
            raise FormatError(path, "this GGUF file carries no tokenizer.ggml.tokens")
        return vocab
    if kind == "json":  # tokenizer.json under any name, or a vocab.json (beside merges.txt)
        doc = read_json(path, max_depth=None)
        if isinstance(doc, dict) and "model" not in doc and (name == "vocab.json" or merges.is_file()):
            return from_vocab_merges(path, merges if merges.is_file() else None)
        return from_tokenizer_json(path, doc)
    if kind == "tiktoken" or name.endswith(".tiktoken"):
        return from_tiktoken(path)
    if kind == "sentencepiece" or ".model" in name:
        return from_sentencepiece(path)
    if name == "vocab.txt" or name.endswith(".txt"):
        return from_vocab_txt(path)
    raise FormatError(path, "not a tokenizer format this tool reads (tokenizer.json, sentencepiece model, tiktoken "
                            "ranks, vocab.json + merges.txt, vocab.txt, GGUF)")


FOLDER_ORDER = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt")


def load_tokenizer(ref: str | Path) -> Vocab:
    """A tokenizer file, a folder holding one, or a model reference (folder, hub id) whose tokenizer to read."""
    path = Path(ref)
    if path.is_file():
        return load_file(path)
    if path.is_dir():
        for name in FOLDER_ORDER:
            if (path / name).is_file():
                return load_file(path / name)
        found = [p for pattern in ("tokenizer.model.v*", "*.tiktoken", "*.gguf") for p in sorted(path.glob(pattern))
                 if p.is_file()]
        if found:
            return load_file(found[0])
        raise FormatError(path, "no tokenizer file (tokenizer.json, tokenizer.model, *.tiktoken, vocab.json, GGUF)")
    from ..refs import resolve

    resolved = resolve(str(ref))  # a hub id: only files inside its cache entry are read
    files = {p.name: p for p in resolved.tokenizer_files()}
    for name in FOLDER_ORDER:
        if name in files:
            return load_file(files[name])
    first = resolved.weights[0] if resolved.weights else None
    if isinstance(first, Path) and first.suffix == ".gguf":
        return load_file(first)
    if first is not None and not isinstance(first, Path) and str(first.path).endswith(".gguf"):  # a remote GGUF
        from ..readers.gguf import GGUFFile

        r = GGUFFile(first)
        try:
            return from_gguf(r)
        finally:
            r.close()
    raise FormatError(ref, "no tokenizer file (tokenizer.json, tokenizer.model, *.tiktoken, vocab.json, GGUF)")


def checkpoint_vocab(ckpt) -> Vocab | None:
    """The vocabulary shipped with a checkpoint, or None when it ships none this module reads."""
    if ckpt.resolved.source == "fingerprint":
        return ckpt.resolved.vocab  # stored when the model was indexed
    if "_vocab" not in vars(ckpt):  # parsed once per checkpoint (identify compares one query many times)
        ckpt._vocab = _load_checkpoint_vocab(ckpt)
    return ckpt._vocab


def _load_checkpoint_vocab(ckpt) -> Vocab | None:
    files = {p.name: p for p in ckpt.tokenizer_files()}
    for name in FOLDER_ORDER:
        if name in files:
            return load_file(files[name])
    for r in ckpt.weights.readers:
        if r.format == "gguf":
            return from_gguf(r)
    return None


def shared_tokens(a: Vocab, b: Vocab) -> list[tuple[int, int]]:
    """(id in A, id in B) for every ordinary byte string both vocabularies hold, in A's id order."""
    in_b = b.by_bytes()
    return [(ia, in_b[s]) for s, ia in sorted(a.by_bytes().items(), key=lambda kv: kv[1]) if s in in_b]
