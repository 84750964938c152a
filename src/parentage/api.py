"""The library's front door: typed results for what the commands print.

    >>> import parentage
    >>> c = parentage.compare("./base", "./suspect")
    >>> c.verdict.label, c.verdict.log10_p
    ('related', -214.74)
    >>> [e.name for e in c.evidence if e.counted and e.log10_p is not None and e.log10_p < -6]
    ['hidden_dimension_order', 'ffn_neuron_order', ...]
    >>> c.to_json() == parentage.compare("./base", "./suspect").to_json()   # same seed, same document
    True

Each function takes what the command line takes (a folder, a weights file, a shard index, a hub id or URL) and
raises the same errors (`parentage.errors`), which are also builtins (`FileNotFoundError`, `ValueError`, ...).
The full document is kept in `.document`, exactly as `--format json` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .evidence import Evidence
from .verdict import Verdict


@dataclass(frozen=True)
class Cost:
    bytes_read: int  # headers, rows and side files read, both models
    bytes_total: int  # weight bytes the two checkpoints hold
    bytes_transferred: int  # over the network (0 for local files and a warm range cache)
    n_reads: int
    seconds: float

    @property
    def fraction_read(self) -> float:
        return self.bytes_read / self.bytes_total if self.bytes_total else 0.0


@dataclass(frozen=True)
class Comparison:
    """The result of `compare`: the verdict, every test's evidence, the alignment (what was changed), the cost."""

    verdict: Verdict
    evidence: list[Evidence] = field(repr=False)
    alignment: dict | None  # layers, notes, findings per component; None when the pair is not related
    direction: dict
    cost: Cost
    document: dict = field(repr=False)  # the whole `compare --format json` document

    @property
    def related(self) -> bool:
        return self.verdict.label == "related"

    def evidence_named(self, name: str) -> Evidence:
        found = next((e for e in self.evidence if e.name == name), None)
        if found is None:
            raise KeyError(f"no evidence named {name!r}; these ran: {', '.join(e.name for e in self.evidence)}")
        return found

    def to_json(self) -> str:
        """The document `parentage compare --format json` prints."""
        from .report.jsondoc import dumps

        return dumps(self.document)

    @classmethod
    def from_document(cls, doc: dict) -> "Comparison":
        v = doc["verdict"]
        names = {f.name for f in fields(Evidence)}
        c = doc["cost"]
        return cls(verdict=Verdict(v["label"], v["log10_p"], v["summary"]),
                   evidence=[Evidence(**{k: e[k] for k in names if k in e}) for e in doc["evidence"]],
                   alignment=doc.get("alignment"), direction=doc.get("direction") or {},
                   cost=Cost(c["bytes_read"], c["bytes_total"], c.get("bytes_transferred", 0), c.get("n_reads", 0),
                             c.get("seconds", 0.0)),
                   document=doc)


@dataclass(frozen=True)
class Summary:
    """The result of `inspect`: architecture, declared lineage, tokenizer, files (the `inspect` JSON fields)."""

    ref: str
    format: str
    arch: str
    n_layers: int | None
    hidden_size: int | None
    intermediate_size: int | None
    n_heads: int | None
    n_kv_heads: int | None
    n_experts: int | None  # None for dense models
    vocab_size: int | None
    n_params: int
    declared: dict
    quantization: dict | None  # method, layout, bits, group sizes, kept matrices; None for float weights
    document: dict = field(repr=False)  # the whole `inspect --format json` document

    def to_json(self) -> str:
        from .report.jsondoc import dumps

        return dumps(self.document)


def compare(a: str | Path, b: str | Path, *, seed: int = 0, budget: str | None = None,
            references: tuple[str | Path, ...] = (), progress: bool = False) -> Comparison:
    """Does B share weight ancestry with A? `budget` as on the command line ("2GB", "5%"); `references`: models
    unrelated to A whose HonestAGI statistic is shown beside the pair's (never counted)."""
    from .pair import add_references, compare as run

    doc = run(str(a), str(b), seed=seed, budget=budget, progress=progress)
    return Comparison.from_document(add_references(doc, [str(r) for r in references], seed))


def inspect(ref: str | Path, *, hash_files: bool = False) -> Summary:
    """What a checkpoint is: architecture, declared lineage, tokenizer files, files (sha256 with hash_files)."""
    from .inspection import inspect_checkpoint

    doc = inspect_checkpoint(str(ref), hash_files)
    keys = [f.name for f in fields(Summary) if f.name != "document"]
    return Summary(**{k: doc[k] for k in keys}, document=doc)


def tokenizer_lineage(a: str | Path, b: str | Path) -> dict:
    """How two tokenizers relate (`relation`: identical | derived | unrelated, `kind`, `score` with its null,
    `notes`): each a tokenizer file, or a model folder or weights file that holds one."""
    from .tokenizers import lineage, load_tokenizer

    return lineage(load_tokenizer(str(a)), load_tokenizer(str(b)))
