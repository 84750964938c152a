"""Tokenizers: vocabularies as raw bytes (formats), lineage between them, efficiency and health."""

from .formats import Vocab, checkpoint_vocab, load_file, load_tokenizer, shared_tokens
from .lineage import lineage

__all__ = ["Vocab", "checkpoint_vocab", "lineage", "load_file", "load_tokenizer", "shared_tokens"]
