"""Command line: a thin Click layer over the library.

Exit status: 0 when the command ran (whatever it found), 1 on bad input (one line on stderr naming the file and
the problem; a traceback only with --debug), 2 on a usage error.
"""

from __future__ import annotations

import json
import math
import sys
import warnings

import click

from . import __version__
from .errors import ParentageError, clean_text, one_line


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


# Every command takes --debug too, so `parentage compare --debug A B` works as the error lines suggest.
debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="Show tracebacks instead of one-line errors.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parentage")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Test whether one language-model checkpoint was derived from another, from the weights themselves.

    \b
    Examples:
      parentage compare ./base-model ./suspect-model --html report.html
      parentage tokenizer ./base-model ./suspect-model
      parentage inspect org/name@main --format json
      parentage demo
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = ctx.obj.get("debug") or debug


def _emit_json(doc: dict) -> None:
    """Strict JSON: NaN and Infinity (which a hostile config may carry) become null, text is valid UTF-8."""
    click.echo(json.dumps(json_safe(doc), indent=2, allow_nan=False))


def _echo(text: str) -> None:
    click.echo(clean_text(text))


def json_safe(obj):
    """A value json.dumps can write as standard JSON: numpy scalars and arrays as Python values, non-finite
    floats as null, lone surrogates replaced, anything else as its string."""
    import numpy as np

    if isinstance(obj, dict):
        return {clean_text(str(k)): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return clean_text(obj)
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    return clean_text(str(obj))


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
    from .compare import parse_budget_text

    try:
        parse_budget_text(value, 1)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@cli.command()
@click.argument("model_a")
@click.argument("model_b")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
@debug_option
@click.option("--seed", type=int, default=0, show_default=True, help="Which rows are sampled; same seed, same result.")
@click.option("--budget", callback=_budget, metavar="SIZE",
              help="Bytes each checkpoint may be read for: '1%' of the larger one, '500MB', '2GB'. "
                   "Default: 1% (at least 64 MB). More bytes read B's FFNs whole for the permutation-invariant test.")
@click.option("--html", "html_path", default=None, metavar="FILE",
              help="Also write a self-contained HTML report (plots inline; opens without network).")
@click.option("--reference", "references", multiple=True, metavar="MODEL",
              help="A model unrelated to both, whose std profiles the report draws beside A's and B's (repeatable).")
def compare(model_a: str, model_b: str, fmt: str, seed: int, budget: str | None, html_path: str | None,
            references: tuple[str, ...]) -> None:
    """Test whether MODEL_B shares weight ancestry with MODEL_A, explain what changed, and say how sure.

    Each model is anything `parentage inspect` accepts. The verdict is `related` when the counted tests
    together reject independent initialisation at log10 p <= -6, `unrelated` when tests that could have seen
    kinship did not, `inconclusive` otherwise. Exit status is 0 whatever the verdict.

    \b
    Examples:
      parentage compare ./Llama-2-7b ./suspect-7b
      parentage compare base.gguf ./finetune --format json
      parentage compare ./a ./b --budget 2GB --seed 1
      parentage compare Qwen/Qwen1.5-110B org/suspect@v1.0     # remote: range requests only
      parentage compare hf://org/a https://host/x/model.safetensors
    """
    from .compare import add_references, compare as run
    from .remote.ranges import show_progress
    from .report.terminal import format_human

    if html_path:
        from .report.html import check_output

        check_output(html_path)
    progress = fmt == "human" and sys.stderr.isatty()
    show_progress(sys.stderr.isatty())  # bytes fetched over the network, on stderr
    try:
        doc = add_references(run(model_a, model_b, seed=seed, budget=budget, progress=progress), references, seed)
    finally:
        show_progress(False)
    if html_path:
        from .report.html import render_compare, write

        write(html_path, render_compare(doc))
    if fmt == "json":
        _emit_json(doc)
    else:
        _echo(format_human(doc))
        if html_path:
            _echo(f"\nreport: {html_path}")


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

    from .compare import add_references, compare as run
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
@click.option("--size", type=click.Choice(["ci", "full", "tiny"]), default="ci", show_default=True,
              help="ci: every derivation kind once, minutes; full: >= 8 independent bases; tiny: smoke tests only.")
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
    from .zoo import require_zoo_extra

    require_zoo_extra()
    from .zoo.build import build_zoo

    manifest = build_zoo(folder, size=size, seed=seed)
    n_rel = sum(p["truth"] == "related" for p in manifest["pairs"])
    click.echo(f"{folder}/manifest.json: {len(manifest['models'])} models, {len(manifest['pairs'])} pairs "
               f"({n_rel} related, {len(manifest['pairs']) - n_rel} unrelated)")


def main() -> None:
    cli(prog_name="parentage")


if __name__ == "__main__":
    sys.exit(main())
