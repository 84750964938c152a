"""Health checks: the bugs an edited or stitched vocabulary brings.

- unreachable tokens: BPE can never produce them from their own bytes (an appended token with no merge path);
- duplicate byte strings: two ids for the same text (one of them is never produced);
- bytes with no coverage: text holding them cannot be encoded without an unknown token;
- shipped merges that reference tokens the vocabulary does not have;
- special tokens that collide with ordinary text (their content is also an ordinary token).
"""

from __future__ import annotations

from .bpe import unreachable_tokens
from .formats import BYTE_LEVEL_CHAR, Vocab, _decode

SHOW = 10  # examples listed per finding


def _show(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def health(vocab: Vocab) -> dict:
    findings: dict[str, dict] = {}
    by_bytes: dict[bytes, list[int]] = {}
    for i, t in vocab.tokens.items():
        by_bytes.setdefault(t, []).append(i)
    # sentencepiece's <0xNN> byte-fallback pieces double the single characters by design: not a finding
    dups = {t: ids for t, ids in by_bytes.items() if len([i for i in ids if i not in vocab.byte_ids]) > 1}
    findings["duplicate_byte_strings"] = {"count": len(dups),
                                          "examples": [[_show(t), ids] for t, ids in list(dups.items())[:SHOW]]}
    singles = {t[0] for t in by_bytes if len(t) == 1}
    if vocab.style in ("byte_level", "sentencepiece"):
        missing = sorted(set(range(256)) - singles) if vocab.style == "byte_level" else (
            [] if len(singles) >= 256 else None)
        if missing is None:  # sentencepiece without a full byte fallback: unknown characters become <unk>
            findings["bytes_without_coverage"] = {"count": 256 - len(singles), "note": "no full <0xNN> byte fallback"}
        else:
            findings["bytes_without_coverage"] = {"count": len(missing),
                                                  "examples": [f"0x{b:02X}" for b in missing[:SHOW]]}
    if vocab.model == "bpe":
        unreachable, how = unreachable_tokens(vocab)
        findings["unreachable_tokens"] = {"count": len(unreachable), "by": how,
                                          "examples": [[i, _show(vocab.tokens[i])] for i in unreachable[:SHOW]]}
    if vocab.merges is not None:
        have = set(by_bytes) | {_decode(t, vocab.style) or t.encode("utf-8", "surrogatepass") for t in vocab.special.values()}
        bad = [(a, b) for a, b in vocab.merges if a not in have or b not in have or a + b not in have]
        findings["merges_with_missing_tokens"] = {"count": len(bad),
                                                  "examples": [[_show(a), _show(b)] for a, b in bad[:SHOW]]}
    ordinary = set(by_bytes)
    collide = [s for s in vocab.special.values() if s.encode("utf-8", "surrogatepass") in ordinary]
    findings["special_tokens_colliding_with_text"] = {"count": len(collide), "examples": collide[:SHOW]}
    problems = sum(1 for f in findings.values() if f.get("count"))
    return {"ok": problems == 0, "n_problems": problems, "findings": findings}


def byte_level_string(token: bytes) -> str:
    """The GPT-2 printable spelling of raw bytes (what tokenizer.json and vocab.json store)."""
    return "".join(BYTE_LEVEL_CHAR[b] for b in token)
