"""Training text from what every Python installation carries, and byte-level BPE tokenizers trained on it.

Two distributions that differ the way pretraining and continued-pretraining data do:
- prose: the language reference in `pydoc_data.topics` and the docstrings of a fixed list of stdlib modules;
- code: the source of a fixed list of stdlib modules.
Nothing is downloaded. The module lists are fixed so the text (and hence the zoo) is reproducible for a given
Python version.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from pathlib import Path

import numpy as np

PROSE_MODULES = (
    "argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime", "decimal", "email",
    "enum", "fractions", "functools", "heapq", "http.client", "inspect", "itertools", "json", "logging",
    "pathlib", "pickle", "random", "re", "shutil", "sqlite3", "statistics", "string", "subprocess", "tarfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile",
)
CODE_MODULES = (
    "argparse", "ast", "calendar", "configparser", "csv", "dataclasses", "difflib", "enum", "fractions",
    "ftplib", "gettext", "heapq", "imaplib", "ipaddress", "locale", "mailbox", "optparse", "pprint", "queue",
    "shlex", "smtplib", "string", "tarfile", "textwrap", "tokenize", "turtle", "wave", "zipfile",
)


def _docstrings(module_name: str) -> list[str]:
    with warnings.catch_warnings():  # touching deprecated attributes (typing.io) warns
        warnings.simplefilter("ignore", DeprecationWarning)
        return _docstrings_of(importlib.import_module(module_name))


def _docstrings_of(mod) -> list[str]:
    out = [inspect.getdoc(mod) or ""]
    for name in sorted(vars(mod)):
        obj = getattr(mod, name)
        if getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            out.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                out += [inspect.getdoc(m) or "" for _, m in sorted(vars(obj).items()) if inspect.isfunction(m)]
    return [d for d in out if len(d) > 40]


def prose() -> str:
    from pydoc_data.topics import topics

    parts = [topics[k] for k in sorted(topics)]
    for m in PROSE_MODULES:
        parts += _docstrings(m)
    return "\n\n".join(parts)


def code() -> str:
    parts = []
    for m in CODE_MODULES:
        path = inspect.getsourcefile(importlib.import_module(m))
        parts.append(Path(path).read_text(encoding="utf-8"))
    return "\n\n".join(parts)


CORPORA = {"prose": prose, "code": code}


def train_tokenizer(text: str, vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 style pre-tokenisation), deterministic for a given text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    # Feed fixed-size chunks in order: the trainer's result depends only on the text.
    chunks = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    tok.train_from_iterator(chunks, trainer=trainer)
    return tok


def encode(tok, text: str) -> np.ndarray:
    ids: list[int] = []
    for i in range(0, len(text), 1 << 16):
        ids += tok.encode(text[i : i + (1 << 16)]).ids
    return np.asarray(ids, dtype=np.int64)


def token_bytes(tok) -> dict[int, bytes]:
    """Each token id -> the raw bytes it stands for (byte-level BPE maps bytes to printable characters)."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # GPT-2's byte<->unicode table: printable bytes map to themselves, the rest to 256+n in order.
    byte_of = {}
    n = 0
    for b in range(256):
        ch = chr(b)
        if ch in alphabet and (33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255):
            byte_of[ch] = b
        else:
            byte_of[chr(256 + n)] = b
            n += 1
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    out = {}
    for token, idx in vocab.items():
        try:
            out[idx] = bytes(byte_of[c] for c in token)
        except KeyError:  # special tokens are not byte-level strings
            out[idx] = token.encode()
    return out


def prune_tokenizer(tok, every: int = 2):
    """`prune_tokenizer_doc` on a `tokenizers.Tokenizer`: (the new tokenizer, {old id: new id} of the kept tokens)."""
    from tokenizers import Tokenizer

    doc, mapping = prune_tokenizer_doc(json.loads(tok.to_str()), every)
    return Tokenizer.from_str(json.dumps(doc)), mapping


def prune_tokenizer_doc(doc: dict, every: int = 2) -> tuple[dict, dict[int, int]]:
    """A BPE tokenizer.json trimmed as vocabulary-pruning tools do: tokens removed across the id range, the rest
    kept in their order with ids renumbered. Only leaf tokens are removed (no kept merge builds on them: every
    other one, in id order), with the merges that made them, so the tokenizer stays whole. Returns (the new
    document, {old id: new id} of the kept tokens)."""
    doc = json.loads(json.dumps(doc))  # a copy: the caller's stays as it was
    vocab: dict[str, int] = doc["model"]["vocab"]
    merges = [m if isinstance(m, list) else m.split(" ") for m in doc["model"]["merges"]]
    parts = {x for m in merges for x in m}
    special = {t["content"] for t in doc.get("added_tokens", [])}
    leaves = sorted((i, t) for t, i in vocab.items() if t not in parts and t not in special and len(t) > 1)
    removed = {t for k, (_, t) in enumerate(leaves) if k % every == every - 1}
    kept = sorted((i, t) for t, i in vocab.items() if t not in removed)
    mapping = {old: new for new, (old, _) in enumerate(kept)}
    doc["model"]["vocab"] = {t: mapping[i] for i, t in kept}
    doc["model"]["merges"] = [m for m in merges if "".join(m) not in removed]
    for t in doc.get("added_tokens", []):
        t["id"] = mapping[t["id"]]
    return doc, mapping
