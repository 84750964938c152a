"""Command line: a thin Click layer over the library.

Exit status: 0 when the command ran (whatever it found), 1 on bad input (one line on stderr naming the file and
the problem; a traceback only with --debug), 2 on a usage error.
"""

from __future__ import annotations

import sys
import warnings

import click

from . import __version__
from .errors import IndexStoreError, ParentageError, clean_text, one_line


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("debug"))


class _Group(click.Group):
    """Turns library errors into one line on stderr and exit status 1.

    Numeric warnings are silenced unless --debug: stderr carries the one error line or nothing (the inputs are
    checked for NaN and Inf where they are read, so a warning never stands for a wrong answer)."""

    def invoke(self, ctx: click.Context):
        import numpy as np

        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                if not _debug(ctx):
                    warnings.simplefilter("ignore")
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (ParentageError, OSError) as e:
            if _debug(ctx):
                raise
            message = str(e) if isinstance(e, ParentageError) else _os_error_line(e)
            click.echo(f"parentage: error: {one_line(message)}", err=True)
            ctx.exit(1)
        except MemoryError:
            if _debug(ctx):
                raise
            click.echo("parentage: error: out of memory (lower --budget, or free memory)", err=True)
            ctx.exit(1)
        except Exception as e:  # a bug of ours: still one line, with the way to the traceback
            if _debug(ctx):
                raise
            click.echo(f"parentage: internal error: {type(e).__name__}: {one_line(str(e))[:500]} "
                       "(rerun with --debug for the traceback)", err=True)
            ctx.exit(1)


def _os_error_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def _set_debug(ctx: click.Context, param, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["debug"] = True


def _set_quiet(ctx: click.Context, param, value: bool) -> None:
    if value:
        from . import progress

        progress.set_quiet(True)


def debug_option(f):
    """--debug and --quiet on every command too, so `parentage compare --debug A B` works as the error lines
    suggest."""
    f = click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True, callback=_set_quiet,
                     help="No progress displays on stderr (errors are still printed).")(f)
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                        help="Show tracebacks instead of one-line errors.")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parentage")
@debug_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Test whether one language-model checkpoint was derived from another, from the weights themselves.

    \b
    Examples:
      parentage compare ./base-model ./suspect-model --html report.html
      parentage tokenizer ./base-model ./suspect-model
      parentage inspect org/name@main --format json
      parentage index add ./models/* && parentage identify ./suspect-model
      parentage bench ./zoo/manifest.json --html bench.html
      parentage demo
    """
    ctx.ensure_object(dict)


def _emit_json(doc: dict) -> None:
    from .report.jsondoc import dumps

    click.echo(dumps(doc))


def _echo(text: str) -> None:
    click.echo(clean_text(text))


@cli.command()
@click.argument("model")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
@debug_option
@click.option("--hash", "hash_files", is_flag=True, help="Add sha256 of every file (reads every byte).")
def inspect(model: str, fmt: str, hash_files: bool) -> None:
    """Architecture, declared lineage, tokenizer and files of MODEL.

    MODEL is a model folder, a weights file (safetensors, GGUF, torch .bin/.pt), a shard index
    (*.index.json), or a Hugging Face hub id org/name[@revision] (resolved through the local cache when
    HF_HUB_OFFLINE=1). Only headers are read.

    \b
    Examples:
      parentage inspect ./Llama-3-8B
      parentage inspect model-q8_0.gguf --format json
      parentage inspect ./model --hash
    """
    from .inspection import format_human, inspect_checkpoint

    doc = inspect_checkpoint(model, hash_files=hash_files)
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(format_human(doc))


def _budget(ctx, param, value):
    if value is None:
        return None
    from .pair import parse_budget_text

    try:
        parse_budget_text(value, 1)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


FAIL_EXIT = 3  # --fail-on: the verdict is one the caller's gate refuses


@cli.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL_A MODEL_B [MODEL ...]")
@click.option("--format", "fmt", type=click.Choice(["human", "json", "csv"]), default="human", show_default=True,
              help="csv: one row per pair (a, b, label, log10_p, parent, summary).")
@debug_option
@click.option("--seed", type=int, default=0, show_default=True, help="Which rows are sampled; same seed, same result.")
@click.option("--budget", callback=_budget, metavar="SIZE",
              help="Bytes each checkpoint may be read for: '1%' of the larger one, '500MB', '2GB'. "
                   "Default: 1% (at least 64 MB). More bytes read B's FFNs whole for the permutation-invariant test.")
@click.option("--html", "html_path", default=None, metavar="FILE",
              help="Also write a self-contained HTML report (plots inline; opens without network). One pair only.")
@click.option("--reference", "references", multiple=True, metavar="MODEL",
              help="A model unrelated to both, whose std profiles the report draws beside A's and B's (repeatable).")
@click.option("--output", "-o", "output", default=None, metavar="FILE",
              help="Write the document (human, JSON or CSV) to FILE instead of stdout; written whole or not at all.")
@click.option("--fail-on", "fail_on", multiple=True, type=click.Choice(["related", "unrelated", "inconclusive", "altered"]),
              help=f"Exit with status {FAIL_EXIT} when a verdict is this label (repeatable): a gate for CI. 'altered': "
                   "one model is the other's export (a quantisation, a cast) but some tensor lies beyond that "
                   "storage's error.")
def compare(models: tuple[str, ...], fmt: str, seed: int, budget: str | None, html_path: str | None,
            references: tuple[str, ...], output: str | None, fail_on: tuple[str, ...]) -> None:
    """Test whether MODEL_B shares weight ancestry with MODEL_A, explain what changed, and say how sure.

    Each model is anything `parentage inspect` accepts. The verdict is `related` when the counted tests
    together reject independent initialisation at log10 p <= -6, `unrelated` when tests that could have seen
    kinship did not, `inconclusive` otherwise. With more than two models every pair is compared, and the
    output is their matrix (JSON: `models`, `matrix`, `pairs` with each pair's document). When one model is
    the other's export (a quantisation, a cast, a dequantised export), the document says so, names the
    parent, and lists the tensors beyond that storage's error (`alignment.export`). Exit status is 0 whatever
    the verdict, unless --fail-on names it (then 3).

    \b
    Examples:
      parentage compare ./Llama-2-7b ./suspect-7b
      parentage compare base.gguf ./finetune --format json -o verdict.json
      parentage compare ./a ./b --budget 2GB --seed 1
      parentage compare ./base ./ft-1 ./ft-2 ./other --format csv    # every pair
      parentage compare ./base ./release --fail-on unrelated --fail-on inconclusive   # CI gate
      parentage compare ./base ./base-GPTQ --fail-on altered   # a faithful quantisation, or status 3
      parentage compare Qwen/Qwen1.5-110B org/suspect@v1.0     # remote: range requests only
      parentage compare hf://org/a https://host/x/model.safetensors
    """
    from . import progress
    from .pair import add_references, compare as run, compare_all

    if len(models) < 2:
        raise click.UsageError("compare needs two models or more")
    if html_path and len(models) > 2:
        raise click.UsageError("--html writes the report of one pair; give two models")
    out_path = _checked_output(output)
    if html_path:
        from .report.html import check_output

        check_output(html_path)
    show_progress = _remote_progress(progress.wanted())  # bytes fetched over the network, on stderr
    try:
        if len(models) == 2:
            doc = add_references(run(*models, seed=seed, budget=budget, progress=progress.wanted()), references, seed)
        else:
            doc = compare_all(list(models), seed=seed, budget=budget, progress=progress.wanted())
            for pair in doc["pairs"]:
                add_references(pair, references, seed)
    finally:
        show_progress(False)
    if html_path:
        from .report.html import render_compare, write

        write(html_path, render_compare(doc))
    _put(_compare_text(doc, fmt, html_path), out_path)
    failed = [(d, label) for d in doc.get("pairs", [doc]) for label in _gate_labels(d) if label in fail_on]
    if failed:
        d, label = failed[0]
        click.echo(f"parentage: --fail-on {label}: {d['inputs'][0]['ref']} ~ {d['inputs'][1]['ref']} is "
                   f"{label}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""), err=True)
        click.get_current_context().exit(FAIL_EXIT)


def _remote_progress(on: bool):
    """The network byte counter's switch, turned to `on`; without a terminal to show it on, a no-op that
    spares every local compare the HTTP modules' start-up."""
    if not on:
        return lambda on: None
    from .remote.ranges import show_progress

    show_progress(True)
    return show_progress


def _gate_labels(doc: dict) -> list[str]:
    """The labels --fail-on can refuse in one compare document: the verdict, and "altered" when one model is
    the other's export with tensors beyond that storage's error."""
    export = (doc.get("alignment") or {}).get("export") or {}
    return [doc["verdict"]["label"]] + (["altered"] if export.get("relation") and export.get("altered") else [])


def _compare_text(doc: dict, fmt: str, html_path: str | None) -> str:
    from .report.jsondoc import dumps
    from .report.tables import matrix_human, pairs_csv
    from .report.terminal import format_human

    if fmt == "json":
        return dumps(doc)
    if fmt == "csv":
        return pairs_csv(doc.get("pairs", [doc]))
    text = matrix_human(doc) if "matrix" in doc else format_human(doc)
    return text + (f"\n\nreport: {html_path}" if html_path else "")


def _checked_output(output: str | None):
    if output is None:
        return None
    from .report.html import check_output

    return check_output(output)


def _put(text: str, out_path) -> None:
    """stdout, or the --output file (atomically: a failed run leaves no half-written file)."""
    if out_path is None:
        _echo(text)
        return
    from .report.html import write

    write(out_path, clean_text(text) + "\n")


@cli.command()
@click.argument("tokenizers", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
@debug_option
@click.option("--efficiency", "with_efficiency", is_flag=True,
              help="Characters and bytes per token on built-in samples (always on for one tokenizer).")
@click.option("--text", "files", multiple=True, metavar="FILE",
              help="Also measure efficiency on this UTF-8 file (repeatable; the first 8 MB of a larger one).")
@click.option("--html", "html_path", default=None, metavar="FILE", help="Also write a self-contained HTML report.")
def tokenizer(tokenizers: tuple[str, ...], fmt: str, with_efficiency: bool, files: tuple[str, ...],
              html_path: str | None) -> None:
    """Tokenizer lineage, efficiency and health (one: efficiency and health; two: lineage first; more: every pair).

    Each TOKENIZER is a tokenizer file (tokenizer.json, sentencepiece *.model, *.tiktoken, vocab.json with
    merges.txt beside it, a GGUF file) or a model folder or hub id holding one. Lineage says `identical`,
    `derived` (extension, id_shift, deletion_append, stitched, re_export, partial, reordered) or
    `unrelated`, from the id gaps a copied vocabulary keeps, never from plain overlap.

    \b
    Examples:
      parentage tokenizer ./Llama-3-8B/tokenizer.json
      parentage tokenizer cl100k_base.tiktoken ./Llama-3-8B --format json
      parentage tokenizer ./a ./b ./c --efficiency --text my_corpus.txt
    """
    from pathlib import Path

    from .tokenizers.report import format_human, tokenizer_report

    if html_path:
        from .report.html import check_output

        check_output(html_path)
    doc = tokenizer_report(list(tokenizers), with_efficiency or bool(html_path), [Path(f) for f in files])
    if html_path:
        from .report.html import render_tokenizer, write

        write(html_path, render_tokenizer(doc))
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(format_human(doc))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
@debug_option
@click.option("--zoo", "zoo_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Use this built zoo instead of the one in the cache.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the HTML reports (default: the parentage cache).")
@click.option("--quick", is_flag=True, help="Small numpy-generated models instead of the trained zoo (seconds).")
def demo(fmt: str, zoo_dir: str | None, out_dir: str | None, quick: bool) -> None:
    """Run the main job on built-in examples, with no download, and write HTML reports.

    With the `zoo` extra (torch) installed, builds the ci-size zoo into the parentage cache on first use
    (PARENTAGE_CACHE, default ~/.cache/parentage; a few minutes, then reused) and compares a base model with a
    model derived from it by every trick at once, and with a student distilled from it. Without torch, uses
    small numpy-generated models instead. Prints both verdicts and the paths of the two reports.

    \b
    Examples:
      parentage demo
      parentage demo --out ./reports
      parentage demo --quick
    """
    from pathlib import Path

    from .pair import add_references, compare as run
    from .report.terminal import format_human
    from .constants import cache_dir
    from .demo import zoo_pairs
    from .report.html import render_compare, write

    pairs, origin, refs = zoo_pairs(Path(zoo_dir) if zoo_dir else None, log=lambda m: click.echo(m, err=True),
                                    quick=quick)
    out = Path(out_dir) if out_dir else cache_dir() / "demo" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    docs, paths = [], []
    for k, (title, a, b) in enumerate(pairs):
        doc = add_references(run(str(a), str(b)), [str(r) for r in refs])
        docs.append(doc)
        paths.append(write(out / f"{('derived', 'independent')[k]}.html", render_compare(doc)))
    if fmt == "json":
        _emit_json({"comparisons": docs, "reports": [str(p) for p in paths], "models": origin})
        return
    for (title, _, _), doc in zip(pairs, docs):
        click.echo(f"== {title} ==")
        click.echo(format_human(doc) + "\n")
    click.echo(f"models: {origin}")
    for p in paths:
        click.echo(f"report: {p}")


@cli.group()
def zoo() -> None:
    """Model families with known ground truth (needs the optional `zoo` extra: torch, tokenizers)."""


@zoo.command("build")
@click.argument("folder", type=click.Path(file_okay=False))
@debug_option
@click.option("--size", type=click.Choice(["ci", "full", "tiny", "ladder"]), default="ci", show_default=True,
              help="ci: every derivation kind once, minutes; full: >= 8 independent bases and the compute ladder; "
                   "ladder: the ci bases and only the compute ladder (power curves); tiny: every kind once, barely "
                   "trained (seconds; the tests use it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same manifest and weights.")
def zoo_build(folder: str, size: str, seed: int) -> None:
    """Train base models and derive others from them (fine-tune, continued pretraining, washing, layers
    inserted or removed, FFN widened, tokenizer replaced, MoE upcycling, frozen layers, obfuscation, merge,
    bf16/GGUF exports, distillation), writing Hugging Face folders and FOLDER/manifest.json with the truth of
    every pair. An interrupted build resumes when run again with the same options.

    \b
    Examples:
      parentage zoo build ./zoo
      parentage zoo build ./zoo-full --size full --seed 1
    """
    from pathlib import Path

    from . import progress
    from .zoo import require_zoo_extra
    from .zoo.recipes import first_line

    require_zoo_extra()
    line = first_line(Path(folder), size, seed)  # checks the folder; said before torch loads (about 2 s)
    if not progress.quiet():
        click.echo(line, err=True)
    from .zoo.build import build_zoo

    silent = (lambda _: None) if progress.quiet() else None  # --quiet: no per-model lines, no status line
    manifest = build_zoo(folder, size=size, seed=seed, log=silent, status=silent, announce=False)
    n_rel = sum(p["truth"] == "related" for p in manifest["pairs"])
    click.echo(f"{folder}/manifest.json: {len(manifest['models'])} models, {len(manifest['pairs'])} pairs "
               f"({n_rel} related, {len(manifest['pairs']) - n_rel} unrelated)")


def _with_page(html_path: str | None, work, render):
    """Run `work`, and write `render(doc)` to html_path if given; the path is checked before the work, so a bad
    one fails fast and nothing is half-written."""
    from .report.html import check_output, write

    if html_path:
        check_output(html_path)
    doc = work()
    if html_path:
        write(html_path, render(doc))
    return doc


db_option = click.option("--db", default=None, metavar="URL",
                          help="The index: a SQLite file, sqlite:///path, or postgresql://user@host/db. Default: "
                               "$PARENTAGE_INDEX, else index.sqlite in the data folder.")


@cli.group()
def index() -> None:
    """The fingerprint index: what `identify`, `verify` and `graph` compare a model against.

    A fingerprint holds the rows the compare tests read under a fixed plan (a few hundred kB for a small model,
    tens of MB for a 7B one), so a query never rereads an indexed model's weights.

    \b
    Examples:
      parentage index add ./base-model org/other@main
      parentage index add --from models.txt --db postgresql://me@dbhost/lineage
      parentage index list
      parentage index show ./base-model
      parentage index remove org/other
    """


@index.command("add")
@click.argument("models", nargs=-1)
@db_option
@debug_option
@click.option("--from", "from_file", default=None, metavar="FILE",
              help="Also every model listed in FILE, one a line; `bases`: the shipped list of open base models.")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Processes (default: one per core).")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Run on a Ray cluster instead of local processes (needs the `ray` extra).")
@click.option("--replace", is_flag=True, help="Fingerprint again models that are indexed already.")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def index_add(models: tuple[str, ...], db: str | None, from_file: str | None, workers: int | None,
              ray_address: str | None, replace: bool, fmt: str) -> None:
    """Fingerprint MODELS into the index (idempotent per model and commit; an interrupted run resumes).

    A model that cannot be read is reported and the others go on; the exit status is then 1.

    \b
    Examples:
      parentage index add ./zoo/models/*
      parentage index add --from hub-models.txt --ray auto
      parentage index add --from bases --db bases.sqlite && parentage index export bases.pack --db bases.sqlite
    """
    from .index import add_models, read_ref_list

    refs = list(models) + (read_ref_list(from_file) if from_file else [])
    if not refs:
        raise click.UsageError("give MODELS or --from FILE")
    show = None if fmt == "json" else (lambda r: _echo(_add_line(r)))
    results = add_models(refs, db, replace=replace, workers=workers, ray=ray_address, on_result=show)
    if fmt == "json":
        _emit_json({"results": results})
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        click.echo(f"parentage: error: {len(failed)} of {len(results)} models not indexed (first: "
                   f"{one_line(failed[0]['error'])})", err=True)
        sys.exit(1)


def _add_line(r: dict) -> str:
    if r["status"] == "failed":
        return f"failed   {r['ref']}: {r['error']}"
    size = f" ({r['n_bytes'] / 1e6:.2f} MB fingerprint, {r['seconds']:.1f} s)" if r.get("n_bytes") else ""
    return f"{r['status']:<8} {r['ref']} @ {r['commit'][:12]}{size}"


@index.command("export")
@click.argument("file")
@db_option
@debug_option
@click.option("--refs", "refs", multiple=True, metavar="MODEL", help="Only these entries (repeatable; default: all).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def index_export(file: str, db: str | None, refs: tuple[str, ...], fmt: str) -> None:
    """Write the index (or the entries --refs names) as one pack FILE: sketches together, then every
    fingerprint, with an offset table and a digest per entry. Anyone can query it in place (`identify --db
    FILE|URL|hf://datasets/org/name`) or import it.

    \b
    Examples:
      parentage index export bases.pack
      parentage index export llama.pack --refs meta-llama/Llama-3.1-8B --refs meta-llama/Llama-3.1-70B
    """
    from .index import open_store
    from .index.pack import export_pack

    with open_store(db) as store:
        doc = export_pack(store, file, list(refs) or None)
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(f"wrote {doc['pack']}: {doc['n_entries']} models, {doc['n_bytes'] / 1e6:.1f} MB ({doc['scan_bytes'] / 1e3:.0f} kB "
              f"read whole by each query, {doc['sketch_bytes'] / 1e6:.1f} MB of sketches, "
              f"{doc['fingerprint_bytes'] / 1e6:.1f} MB of fingerprints)")


@index.command("import")
@click.argument("pack")
@db_option
@debug_option
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def index_import(pack: str, db: str | None, fmt: str) -> None:
    """Copy every entry of PACK (a path, a URL, or hf://datasets/org/name[/file]) into the index, each checked
    against its digest. Importing twice adds nothing; an interrupted import leaves no partial entry.

    \b
    Examples:
      parentage index import bases.pack
      parentage index import hf://datasets/org/lineage --db team.sqlite
    """
    from .index.pack import import_pack

    results = import_pack(pack, db)
    if fmt == "json":
        _emit_json({"results": results})
    else:
        for r in results:
            _echo(f"{r['status']:<16} {r['ref']} @ {r['commit'][:12]}")


@index.command("list")
@db_option
@debug_option
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def index_list(db: str | None, fmt: str) -> None:
    """List the indexed models.

    \b
    Examples:
      parentage index list
      parentage index list --db team.sqlite --format json
    """
    from .index import open_store

    with open_store(db) as store:
        entries = store.entries()
        where = store.where
    if fmt == "json":
        _emit_json({"db": where, "entries": [e.to_dict() for e in entries]})
        return
    _echo(f"{len(entries)} models in {where}")
    for e in entries:
        _echo(f"  #{e.id:<5} {e.ref}  @{e.commit[:12]}  {e.arch or '?'}  {e.n_layers or '?'} layers  "
              f"d={e.hidden_size or '?'}  {e.n_bytes / 1e6:.2f} MB")


@index.command("show")
@click.argument("model")
@db_option
@debug_option
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def index_show(model: str, db: str | None, fmt: str) -> None:
    """Show what the index holds for MODEL (its ref as indexed, #id, or a commit prefix).

    \b
    Examples:
      parentage index show ./base-model
      parentage index show '#3' --format json
    """
    from .index import open_store
    from .index.fingerprint import describe

    with open_store(db) as store:
        found = store.find(model)
        if not found:
            raise IndexStoreError(store.where, f"{model!r} is not in the index (see `parentage index list`)")
        docs = [{**e.to_dict(), "fingerprint": describe(store.load(e))} for e in found]
    if fmt == "json":
        _emit_json({"entries": docs})
        return
    for d in docs:
        f = d["fingerprint"]
        _echo(f"#{d['id']} {d['ref']} @ {d['commit']}\n  added {d['added_at']} by parentage {d['tool_version']}; "
              f"{d['n_bytes'] / 1e6:.2f} MB (plan {f['plan']})\n  {f['summary_line']}\n  holds: {f['holds_line']}")


@index.command("remove")
@click.argument("model")
@db_option
@debug_option
def index_remove(model: str, db: str | None) -> None:
    """Remove MODEL (its ref as indexed, #id, or a commit prefix) from the index.

    \b
    Examples:
      parentage index remove ./old-model
      parentage index remove '#12'
    """
    from .index import open_store

    with open_store(db) as store:
        n = store.remove(model)
        if not n:
            raise IndexStoreError(store.where, f"{model!r} is not in the index (see `parentage index list`)")
    _echo(f"removed {n} {'entry' if n == 1 else 'entries'} for {model}")


@cli.command()
@click.argument("model")
@db_option
@debug_option
@click.option("--top", type=click.IntRange(1, 10_000), default=5, show_default=True, help="Candidates to show.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--budget", callback=_budget, metavar="SIZE", help="Bytes of MODEL each comparison may read (as compare).")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Processes (default: one per core).")
@click.option("--exhaustive", is_flag=True, help="Give every indexed model the full tests (no sketch shortlist).")
@click.option("--shortlist", "k", type=click.IntRange(1, 100_000), default=None, metavar="K",
              help="Models the full tests see after the sketch ranks the index [default: as many as fit 1 GB of "
                   "fingerprints, 8 to 64].")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def identify(model: str, db: str | None, top: int, seed: int, budget: str | None, workers: int | None,
             exhaustive: bool, k: int | None, fmt: str) -> None:
    """Which indexed model does MODEL descend from? Every indexed model's sketch ranks it against MODEL; the
    first K get the compare tests; log10 p is corrected for the number of models in the whole index, and
    `none` means nothing is significant. Dates only order relatives: they never overrule the weights.

    \b
    Examples:
      parentage identify ./suspect-model
      parentage identify ./suspect-model --exhaustive
      parentage identify org/suspect@v2 --db postgresql://me@dbhost/lineage --format json
    """
    from .index.identify import identify as run
    from .report.index import identify_human

    doc = run(model, db, top=top, seed=seed, budget=budget, workers=workers, exhaustive=exhaustive, k=k)
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(identify_human(doc))


@cli.command()
@click.argument("model")
@db_option
@debug_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--budget", callback=_budget, metavar="SIZE", help="Bytes of MODEL each comparison may read (as compare).")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Processes (default: one per core).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def verify(model: str, db: str | None, seed: int, budget: str | None, workers: int | None, fmt: str) -> None:
    """Check the base model MODEL declares (card, config, GGUF metadata, merge configs) against its weights.

    \b
    Exit status (for upload pipelines):
      0  consistent, or unknown (the declared base is not indexed and nothing indexed is related)
      3  undeclared_parent: the weights relate it to an indexed model it does not declare
      4  unsupported_claim: it declares an indexed base, and the weights show no kinship with it
      1  an error (bad input, unusable index)

    \b
    Examples:
      parentage verify ./upload && echo ok
      parentage verify org/new-model --db postgresql://me@dbhost/lineage --format json
    """
    from .index.verify import verify as run

    doc = run(model, db, seed=seed, budget=budget, workers=workers)
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(f"{model}: {doc['status']}: {doc['reason']}")
    sys.exit(doc["exit_status"])


@cli.command()
@db_option
@debug_option
@click.option("--html", "html_path", default=None, metavar="FILE", help="Also write a self-contained HTML page (SVG).")
@click.option("--exhaustive", is_flag=True, help="Compare every pair, not each model's sketch shortlist.")
@click.option("--max-models", type=click.IntRange(2, None), default=None,
              help="Run --exhaustive on an index this large (every pair is compared; default limit 400).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def graph(db: str | None, html_path: str | None, exhaustive: bool, max_models: int | None, fmt: str) -> None:
    """The family tree of the index: which indexed models share weight ancestry, how, and which came first
    where the evidence says so.

    \b
    Examples:
      parentage graph
      parentage graph --db team.sqlite --html families.html --format json
      parentage graph --exhaustive
    """
    from .index.graph import MAX_MODELS, family_graph
    from .report.index import graph_html, graph_human

    doc = _with_page(html_path, lambda: family_graph(db, max_models=max_models or MAX_MODELS, exhaustive=exhaustive),
                     graph_html)
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(graph_human(doc))


@cli.command()
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="Where to listen (default: PARENTAGE_SERVE, else serve.sock in the cache folder).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Commands run at once (default: the number of cores); more wait their turn.")
@click.option("--stop", is_flag=True, help="Ask the server at the socket to stop once its running commands end.")
@debug_option
def serve(socket_path: str | None, workers: int | None, stop: bool) -> None:
    """Keep parentage warm for pipelines that run many short commands (upload checks, identify queries).

    Runs in the foreground until --stop, SIGTERM or Ctrl-C. While it runs, every `parentage` command of this
    user that finds its socket (PARENTAGE_SERVE, else the default) runs in a worker forked from it, with the
    command's own streams, folder and environment: the same output and exit status without the 0.3 s of
    start-up (imports) a fresh process pays. PARENTAGE_SERVE=off runs a command in its own process; so does
    a command of another install, or with other thread-count or locale settings.

    \b
    Examples:
      parentage serve &                       # then: parentage compare ./base ./upload  (served)
      parentage serve --socket /run/user/1000/parentage.sock --workers 4
      PARENTAGE_SERVE=/run/user/1000/parentage.sock parentage identify ./upload
      parentage serve --stop
    """
    import os
    from pathlib import Path

    from . import serve as server
    from .constants import ENV_SERVE, serve_socket

    path = Path(socket_path) if socket_path else serve_socket()
    if path is None:
        raise click.UsageError(f"{ENV_SERVE} is off: give --socket PATH")
    if stop:
        n = server.stop(path)
        click.echo(f"parentage: the server at {path} stops" + (f" after its {n} running command(s)" if n else ""),
                   err=True)
        return
    if not hasattr(os, "fork") or not hasattr(__import__("socket"), "send_fds"):
        raise click.UsageError("serve needs a Unix system (fork and Unix sockets)")
    server.serve_forever(path, workers or os.cpu_count() or 1)


@cli.command("bench")
@click.argument("manifest")
@debug_option
@click.option("--methods", "method_list", default=None, metavar="NAMES",
              help="Comma-separated: parentage, parentage:TEST, honestagi_std_profile, raw_cosine, phi_match, awm, "
                   "or module:function for your own (default: all built in).")
@click.option("--scores", "score_files", multiple=True, metavar="CSV",
              help="An outside method's scores (columns a, b, score[, decision]); repeatable.")
@click.option("--cache", "cache_dir", default=None, metavar="DIR", help="Per-pair results (default: beside the manifest).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--html", "html_path", default=None, metavar="FILE", help="Also write a self-contained HTML page.")
@click.option("--format", "fmt", type=click.Choice(["human", "json", "markdown"]), default="human", show_default=True)
def bench_cmd(manifest: str, method_list: str | None, score_files: tuple[str, ...], cache_dir: str | None, seed: int,
              html_path: str | None, fmt: str) -> None:
    """Score lineage methods on every pair of MANIFEST (a zoo's manifest.json, or {"models": [{"name", "path"}],
    "pairs": [{"a", "b", "truth", "kind"}]}): power per derivation kind, false positives, ROC AUC, cost.

    Baselines whose published rule is a threshold get it from the manifest's unrelated pairs only. Per-pair
    results are cached, so an interrupted run resumes.

    \b
    Examples:
      parentage bench ./zoo/manifest.json
      parentage bench manifest.json --methods parentage,phi_match,mypkg.lineage:score --format markdown
      parentage bench manifest.json --scores their-tool.csv --format json
    """
    from .bench import bench
    from .report.bench import bench_markdown

    methods = [m.strip() for m in method_list.split(",") if m.strip()] if method_list else None
    from .report.bench import bench_html

    doc = _with_page(html_path, lambda: bench(manifest, methods, list(score_files), cache_dir, seed,
                                               progress=True), bench_html)
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(bench_markdown(doc))


def main() -> None:
    cli(prog_name="parentage")


if __name__ == "__main__":
    sys.exit(main())
