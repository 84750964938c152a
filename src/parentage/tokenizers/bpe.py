"""Canonical BPE merges derived from token ranks, the way a rank-based BPE (tiktoken) applies them.

A token of rank r is produced by running BPE on its own bytes (characters, for sentencepiece vocabularies)
with only the merges of rank below r; it is reachable when that ends in exactly two parts, and those two parts
are its canonical merge. Shipped merge lists differ between converters for the same vocabulary; this
derivation does not.
"""

from __future__ import annotations

from .formats import Vocab


def ranks(vocab: Vocab) -> dict[bytes, int]:
    return vocab.by_bytes()


def _initial(token: bytes, style: str) -> list[bytes]:
    if style == "sentencepiece":  # sentencepiece merges characters; multi-byte characters are atomic
        text = token.decode("utf-8", errors="surrogateescape")
        return [c.encode("utf-8", errors="surrogateescape") for c in text]
    return [token[i:i + 1] for i in range(len(token))]


SHORT_TOKEN = 24  # parts; below this rescanning every pair beats a heap (and almost every real token is short)


def _bpe_scan(parts: list[bytes], rank_of, max_rank: int | None) -> list[bytes]:
    """The same merges as `_bpe`, by rescanning the pairs after each one: O(n^2), fastest for short tokens."""
    while len(parts) > 1:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            r = rank_of(parts[i], parts[i + 1])
            if r is not None and (max_rank is None or r < max_rank) and (best_rank is None or r < best_rank):
                best_rank, best_i = r, i
        if best_i < 0:
            break
        parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _bpe(parts: list[bytes], rank_of, max_rank: int | None = None) -> list[bytes]:
    """Merge adjacent parts, lowest rank first (leftmost on a tie), until no pair of rank below max_rank is left.

    A heap over the live pairs of a linked list: O(n log n) in the token's length, where rescanning every pair
    after each merge is O(n^2) and a 30,000-byte token (hostile, or a long run of spaces) took minutes."""
    n = len(parts)
    if n < 2:
        return parts
    if n <= SHORT_TOKEN:
        return _bpe_scan(parts, rank_of, max_rank)
    import heapq

    nxt = list(range(1, n)) + [-1]
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap: list[tuple[int, int, bytes, bytes]] = []

    def push(i: int) -> None:
        j = nxt[i]
        if j >= 0:
            r = rank_of(parts[i], parts[j])
            if r is not None and (max_rank is None or r < max_rank):
                heapq.heappush(heap, (r, i, parts[i], parts[j]))

    for i in range(n - 1):
        push(i)
    while heap:
        r, i, left, right = heapq.heappop(heap)
        j = nxt[i]
        if not alive[i] or j < 0 or parts[i] is not left or parts[j] is not right:
            continue  # stale: one side was merged since this pair was pushed
        parts[i] = left + right
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[j] >= 0:
            prv[nxt[j]] = i
        if prv[i] >= 0:
            push(prv[i])
        push(i)
    return [parts[i] for i in range(n) if alive[i]]


def bpe_parts(token: bytes, rank: dict[bytes, int], max_rank: int, style: str = "byte_level") -> list[bytes]:
    """Apply merges of rank < max_rank, lowest first, to the token's bytes: the parts left."""
    return _bpe(_initial(token, style), lambda a, b: rank.get(a + b), max_rank)


def canonical_merges(vocab: Vocab) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """(merges in rank order, ids of multi-part tokens no merge sequence produces)."""
    rank = ranks(vocab)
    merges, unreachable = [], []
    for token, r in sorted(rank.items(), key=lambda kv: kv[1]):
        if r in vocab.added_ids or len(_initial(token, vocab.style)) < 2:
            continue
        parts = bpe_parts(token, rank, r, vocab.style)
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
        else:
            unreachable.append(r)
    return merges, unreachable


def merge_parts(token: bytes, merge_rank: dict[tuple[bytes, bytes], int], style: str = "byte_level") -> list[bytes]:
    """Apply a shipped merge list (pair -> rank), lowest rank first, to the token's bytes: the parts left."""
    return _bpe(_initial(token, style), lambda a, b: merge_rank.get((a, b)))


def unreachable_tokens(vocab: Vocab) -> tuple[list[int], str]:
    """Ids of multi-part ordinary tokens that BPE never produces from their own bytes, and which merges decided:
    the shipped list when there is one (that is what the tokenizer runs), else merges derived from ranks."""
    if vocab.doc is not None and (vocab.doc.get("model") or {}).get("ignore_merges"):
        return [], "not checked: ignore_merges maps whole pre-tokenized words straight to their tokens"
    if vocab.merges:
        merge_rank: dict[tuple[bytes, bytes], int] = {}
        for r, pair in enumerate(vocab.merges):
            merge_rank.setdefault(pair, r)
        out = [i for t, i in vocab.by_bytes().items() if i not in vocab.added_ids
               and len(_initial(t, vocab.style)) >= 2 and merge_parts(t, merge_rank, vocab.style) != [t]]
        return sorted(out), "shipped merges"
    return canonical_merges(vocab)[1], "merges derived from ranks"
