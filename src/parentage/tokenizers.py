"""Vocabularies as raw bytes: each ordinary token id -> the bytes it stands for.

The compare command needs one thing from tokenizers: which tokens two checkpoints share, matched by their byte
strings rather than by id or by how a converter spelled them. Supported here: Hugging Face `tokenizer.json`
(byte-level BPE, sentencepiece-style BPE/Unigram with `▁` and `<0xNN>` byte fallback, WordPiece), a `vocab.json`
byte-level vocabulary, and the vocabulary embedded in a GGUF file. Special and added control tokens are kept
apart: they are names, not text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FormatError
from .refs import read_json

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


@dataclass
class Vocab:
    source: str  # the file it came from
    style: str  # "byte_level", "sentencepiece", "wordpiece", "plain"
    size: int  # ids 0..size-1 (including special tokens)
    tokens: dict[int, bytes]  # ordinary tokens only
    special: dict[int, str] = field(default_factory=dict)

    def by_bytes(self) -> dict[bytes, int]:
        """Byte string -> lowest id holding it (a vocabulary may spell one string twice; the first wins)."""
        out: dict[bytes, int] = {}
        for i in sorted(self.tokens):
            out.setdefault(self.tokens[i], i)
        return out


def _decode(token: str, style: str) -> bytes | None:
    if style == "byte_level":
        try:
            return bytes(BYTE_LEVEL[c] for c in token)
        except KeyError:
            return None
    if style == "sentencepiece":
        m = _BYTE_TOKEN.match(token)
        return bytes([int(m.group(1), 16)]) if m else token.replace(SPM_SPACE, " ").encode()
    if style == "wordpiece":
        return token[2:].encode() if token.startswith("##") else (" " + token).encode()
    return token.encode()


def _style_of(doc: dict) -> str:
    model = doc.get("model") or {}
    kinds = {str((doc.get(k) or {}).get("type")) for k in ("pre_tokenizer", "decoder")}
    for k in ("pre_tokenizer", "decoder"):  # sequences nest their parts
        for part in (doc.get(k) or {}).get("pretokenizers", []) + (doc.get(k) or {}).get("decoders", []):
            kinds.add(str(part.get("type")))
    if "ByteLevel" in kinds:
        return "byte_level"
    if model.get("type") == "WordPiece":
        return "wordpiece"
    if model.get("byte_fallback") or "Metaspace" in kinds or model.get("type") == "Unigram":
        return "sentencepiece"
    return "plain"


def from_tokenizer_json(path: Path) -> Vocab:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise FormatError(path, "no 'model' object: not a Hugging Face tokenizer.json")
    model = doc["model"]
    raw = model.get("vocab")
    if isinstance(raw, dict):  # BPE, WordPiece: token -> id
        pairs = [(int(i), t) for t, i in raw.items()]
    elif isinstance(raw, list):  # Unigram: [token, score] in id order
        pairs = [(i, entry[0]) for i, entry in enumerate(raw)]
    else:
        raise FormatError(path, f"model type {model.get('type')!r} has no vocabulary this tool can read")
    special = {int(t["id"]): str(t["content"]) for t in doc.get("added_tokens") or [] if t.get("special")}
    style = _style_of(doc)
    tokens = {}
    for i, t in pairs:
        if i in special:
            continue
        decoded = _decode(t, style)
        if decoded is not None:
            tokens[i] = decoded
        else:  # not a byte-level string: an added control token spelled as text
            special[i] = t
    ids = [i for i, _ in pairs] + list(special)
    return Vocab(str(path), style, max(ids) + 1 if ids else 0, tokens, special)


def from_vocab_json(path: Path) -> Vocab:
    doc = read_json(path)
    if not isinstance(doc, dict) or not all(isinstance(v, int) for v in doc.values()):
        raise FormatError(path, "expected a JSON object mapping tokens to integer ids")
    tokens, special = {}, {}
    for t, i in doc.items():
        decoded = _decode(t, "byte_level")
        (tokens.__setitem__(i, decoded) if decoded is not None else special.__setitem__(i, t))
    return Vocab(str(path), "byte_level", max(doc.values(), default=-1) + 1, tokens, special)


def from_gguf(reader) -> Vocab | None:
    if "tokenizer.ggml.tokens" not in reader.metadata:
        return None
    strings = reader.strings("tokenizer.ggml.tokens")
    types = reader.metadata.get("tokenizer.ggml.token_type")
    model = str(reader.metadata.get("tokenizer.ggml.model", ""))
    style = {"gpt2": "byte_level", "llama": "sentencepiece", "bert": "wordpiece"}.get(model, "plain")
    tokens, special = {}, {}
    for i, t in enumerate(strings):
        kind = int(types[i]) if types is not None and i < len(types) else 1
        decoded = _decode(t, style) if kind in (1, 6) else None  # 1 normal, 6 byte; 3 control, 4 user-defined
        (tokens.__setitem__(i, decoded) if decoded is not None else special.__setitem__(i, t))
    return Vocab(str(reader.path), style, len(strings), tokens, special)


def checkpoint_vocab(ckpt) -> Vocab | None:
    """The vocabulary shipped with a checkpoint, or None when it ships none this module reads."""
    files = {p.name: p for p in ckpt.tokenizer_files()}
    if "tokenizer.json" in files:
        return from_tokenizer_json(files["tokenizer.json"])
    if "vocab.json" in files:
        return from_vocab_json(files["vocab.json"])
    for r in ckpt.weights.readers:
        if r.format == "gguf":
            return from_gguf(r)
    return None


def shared_tokens(a: Vocab, b: Vocab) -> list[tuple[int, int]]:
    """(id in A, id in B) for every ordinary byte string both vocabularies hold, in A's id order."""
    in_b = b.by_bytes()
    return [(ia, in_b[s]) for s, ia in sorted(a.by_bytes().items(), key=lambda kv: kv[1]) if s in in_b]
