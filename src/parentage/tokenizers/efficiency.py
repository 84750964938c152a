"""Efficiency: bytes and characters per token on built-in samples and on the user's files.

Samples (all offline): English prose (the Python language reference shipped with every Python), code (stdlib
sources), digits and numbers (generated, seeded), and Chinese (classical texts in the public domain, and a few
modern sentences). A tokenizer that spends about one token per character on a script is flagged: that is
where weak tokenizers cost their users.

Encoding uses the `tokenizers` library: a tokenizer.json as shipped; other formats converted (merges derived
from ranks for BPE, scores for Unigram), so the counts follow each format's own model.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass
from pathlib import Path

from ..constants import TEXT_MAX_BYTES
from ..errors import FormatError
from ..safeio import read_prefix
from .bpe import canonical_merges
from .formats import SPM_SPACE, Vocab
from .health import byte_level_string

ONE_PER_CHAR = 1.15  # chars per token at or below this: about one token per character
SAMPLE_CHARS = 60_000

CHINESE = (
    "道可道，非常道。名可名，非常名。无名天地之始；有名万物之母。故常无欲，以观其妙；常有欲，以观其徼。"
    "此两者，同出而异名，同谓之玄。玄之又玄，众妙之门。"
    "天下皆知美之为美，斯恶已。皆知善之为善，斯不善已。故有无相生，难易相成，长短相形，高下相倾，音声相和，前后相随。"
    "是以圣人处无为之事，行不言之教；万物作焉而不辞，生而不有，为而不恃，功成而弗居。夫唯弗居，是以不去。"
    "不尚贤，使民不争；不贵难得之货，使民不为盗；不见可欲，使民心不乱。是以圣人之治，虚其心，实其腹，弱其志，强其骨。"
    "子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？"
    "有子曰：其为人也孝弟，而好犯上者，鲜矣；不好犯上，而好作乱者，未之有也。君子务本，本立而道生。"
    "曾子曰：吾日三省吾身：为人谋而不忠乎？与朋友交而不信乎？传不习乎？"
    "今天天气很好，我们一起去公园散步吧。人工智能正在改变我们的生活和工作方式。"
    "这个模型的词表是否来自另一个模型，需要用数据来回答，而不是凭感觉。"
)
MODERN_CHINESE = (
    "随着大型语言模型的快速发展，越来越多的公司开始发布自己的开源模型。然而，一些模型是否真正从零开始训练，"
    "常常引起争议。研究人员发现，通过比较模型权重的统计特征，可以判断两个模型之间是否存在继承关系。"
    "这种方法不需要访问训练数据，也不需要运行模型，只需要读取一小部分权重文件。"
    "在实际应用中，审核人员需要一个可靠的工具来回答这个问题，并且能够解释判断的依据和把握程度。"
    "如果一个模型声称是独立训练的，但它的词表和权重都与另一个模型高度一致，那么这个说法就值得怀疑。"
    "另一方面，两个独立训练的模型在相似的数据上也可能表现出相似的行为，因此简单的相似度指标并不能作为证据。"
    "我们需要一个零假设，并计算在这个假设下观察到当前结果的概率。只有当这个概率极小时，才能得出结论。"
    "北京是中国的首都，上海是最大的经济中心。春天的时候，公园里开满了鲜花，很多家庭会在周末出去游玩。"
    "学生们在图书馆里认真学习，准备即将到来的考试。老师说，学习最重要的是理解，而不是死记硬背。"
)


def _prose() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))[:SAMPLE_CHARS]


def _code() -> str:
    import difflib
    import json.decoder
    import textwrap

    return "\n\n".join(inspect.getsource(m) for m in (json.decoder, textwrap, difflib))[:SAMPLE_CHARS]


def _digits() -> str:
    rng = random.Random(0)
    lines = []
    for _ in range(1500):
        lines.append(f"{rng.randint(1900, 2099)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                     f"{rng.randint(0, 10**9):,} {rng.uniform(-1e4, 1e4):.3f} {rng.randint(0, 99999):05d} "
                     f"{rng.random() * 100:.1f}%")
    return "\n".join(lines)[:SAMPLE_CHARS]


def _chinese() -> str:
    return (MODERN_CHINESE + "\n" + CHINESE + "\n") * 4


SAMPLES = {"english": _prose, "code": _code, "digits": _digits, "chinese": _chinese}


def encoder(vocab: Vocab):
    """A `tokenizers.Tokenizer` that encodes like the vocabulary's own model; one clear error naming the file
    when the library refuses what parentage's own reader accepted (it is stricter about some fields)."""
    try:
        return _encoder(vocab)
    except FormatError:
        raise
    except Exception as e:  # the library raises bare Exception, TypeError, OverflowError ... from Rust
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(vocab.source, f"the tokenizers library cannot load it to measure efficiency ({first[:200]})") from None


def _encoder(vocab: Vocab):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if vocab.format == "tokenizer.json":
        return Tokenizer.from_file(vocab.source)
    if vocab.model == "unigram" and vocab.scores:
        pieces = [(_spm_string(vocab, i), vocab.scores.get(i, 0.0)) for i in range(vocab.size)]
        unk = next((i for i, s in vocab.special.items() if s == "<unk>"), None)
        tok = Tokenizer(models.Unigram(pieces, unk_id=unk, byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM_SPACE, prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement=SPM_SPACE, prepend_scheme="always")
        return tok
    if vocab.model == "bpe":
        merges, _ = canonical_merges(vocab)
        spell = byte_level_string if vocab.style == "byte_level" else _spm_bytes
        table = {spell(t): i for t, i in vocab.by_bytes().items()}
        tok = Tokenizer(models.BPE(table, [(spell(a), spell(b)) for a, b in merges], byte_fallback=vocab.style != "byte_level",
                                   ignore_merges=False))
        if vocab.style == "byte_level":
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
            tok.decoder = decoders.ByteLevel()
        else:
            tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM_SPACE, prepend_scheme="always")
        return tok
    if vocab.model == "wordpiece":
        table = {(t[1:].decode() if t.startswith(b" ") else "##" + t.decode()): i for t, i in vocab.by_bytes().items()}
        unk = next((s for s in vocab.special.values() if "unk" in s.lower()), "[UNK]")
        table.setdefault(unk, vocab.size)
        tok = Tokenizer(models.WordPiece(table, unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        return tok
    raise FormatError(vocab.source, f"cannot encode with a {vocab.model} model of style {vocab.style}")


def _spm_bytes(token: bytes) -> str:
    if len(token) == 1 and token[0] >= 0x80:
        return f"<0x{token[0]:02X}>"
    return token.decode("utf-8", errors="replace").replace(" ", SPM_SPACE)


def _spm_string(vocab: Vocab, i: int) -> str:
    if i in vocab.special:
        return vocab.special[i]
    t = vocab.tokens.get(i)
    if t is None:
        return f"<unused_{i}>"
    if len(t) == 1 and (t[0] >= 0x80 or t[0] < 0x20):
        return f"<0x{t[0]:02X}>"
    return t.decode("utf-8", errors="replace").replace(" ", SPM_SPACE)


@dataclass
class Measure:
    sample: str
    chars: int
    bytes: int
    tokens: int

    def to_dict(self) -> dict:
        cpt = self.chars / max(self.tokens, 1)
        return {"sample": self.sample, "chars": self.chars, "bytes": self.bytes, "tokens": self.tokens,
                "chars_per_token": round(cpt, 3), "bytes_per_token": round(self.bytes / max(self.tokens, 1), 3),
                "about_one_token_per_char": cpt <= ONE_PER_CHAR}


def read_text_sample(path: str | Path) -> tuple[str, bool]:
    """The user's text file as (text, truncated): regular files only, at most TEXT_MAX_BYTES read (a rate per
    token needs no more), cut back to a whole UTF-8 character."""
    raw = read_prefix(path, TEXT_MAX_BYTES + 1)
    truncated = len(raw) > TEXT_MAX_BYTES
    raw = raw[:TEXT_MAX_BYTES]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if not truncated or e.start < len(raw) - 3:
            raise FormatError(path, f"is not UTF-8 text ({e.reason} at byte {e.start})") from None
        text = raw[:e.start].decode("utf-8")  # the cut fell inside a character
    return text, truncated


def load_texts(files: list[Path]) -> dict[str, tuple[str, bool]]:
    """Read once, before any tokenizer is loaded, so a bad --text file fails fast with its own line."""
    return {Path(f).name: read_text_sample(f) for f in files}


def efficiency(vocab: Vocab, files: list[Path] = (), texts: dict[str, tuple[str, bool]] | None = None) -> list[dict]:
    tok = encoder(vocab)
    samples = {name: (make(), False) for name, make in SAMPLES.items()}
    samples.update(texts if texts is not None else load_texts(list(files)))
    out = []
    for name, (text, truncated) in samples.items():
        chunks = [text[i:i + 4096] for i in range(0, len(text), 4096)]  # long inputs encode faster in pieces
        try:
            n = sum(len(e.ids) for e in tok.encode_batch(chunks, add_special_tokens=False))
        except Exception as e:  # the library's own refusal, from Rust
            raise FormatError(vocab.source, f"the tokenizers library cannot encode with it ({str(e)[:200]})") from None
        doc = Measure(name, len(text), len(text.encode("utf-8", "surrogatepass")), n).to_dict()
        if truncated:
            doc["truncated_to_bytes"] = TEXT_MAX_BYTES
        out.append(doc)
    return out
