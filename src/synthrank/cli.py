"""The ``synthrank`` command line: generate, train, eval (and the helpers around them)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="synthrank",
    help="Train dense retrievers list-wise on LLM-written multi-level ranking contexts, and evaluate them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False) -> None:
    """synthrank: generate graded synthetic data, train list-wise, evaluate on real benchmarks."""
    logging.getLogger("synthrank").setLevel(logging.INFO if verbose else logging.WARNING)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command("eval")
def eval_command(
    dataset: Annotated[str, typer.Option(help="A BEIR folder, or a dataset name under $SYNTHRANK_DATA_DIR / the cache / the BEIR mirror.")],
    model: Annotated[str, typer.Option(help="A local model folder, a bundled alias (all-MiniLM-L6-v2), or 'bm25'.")] = "all-MiniLM-L6-v2",
    split: Annotated[str, typer.Option(help="Qrels split to evaluate.")] = "test",
    output: Annotated[Optional[Path], typer.Option(help="Write the results as JSON here.")] = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Write the retrieval run (TREC format) here.")] = None,
    measures: Annotated[str, typer.Option(help="Comma-separated ir_measures names.")] = "nDCG@10,RR@10,R@100",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")] = False,
    dtype: Annotated[str, typer.Option(help="Inference precision: auto (bf16 where native), float32, bfloat16.")] = "auto",
    pooling: Annotated[Optional[str], typer.Option(help="Override pooling: mean, cls or last.")] = None,
    normalize: Annotated[Optional[bool], typer.Option("--normalize/--no-normalize", help="Override L2 normalisation.")] = None,
    query_prefix: Annotated[str, typer.Option(help="Text put before every query.")] = "",
    passage_prefix: Annotated[str, typer.Option(help="Text put before every passage.")] = "",
    max_length: Annotated[Optional[int], typer.Option(help="Max tokens for queries and passages.")] = None,
    bm25_k1: Annotated[float, typer.Option(help="BM25 k1 (Anserini default 0.9).")] = 0.9,
    bm25_b: Annotated[float, typer.Option(help="BM25 b (Anserini default 0.4).")] = 0.4,
    bm25_stemmer: Annotated[str, typer.Option(help="Snowball stemmer language, or 'none'.")] = "english",
    bm25_stopwords: Annotated[str, typer.Option(help="Stop-word list ('en') or 'none'.")] = "en",
    trust_remote_code: Annotated[bool, typer.Option(help="Allow code shipped with the model to run.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Evaluate a model (or BM25) on a dataset: nDCG@10, RR@10, R@100 by default."""
    from synthrank.data import DataFormatError, DatasetNotFoundError
    from synthrank.evaluate import evaluate_model

    if pooling not in (None, "mean", "cls", "last"):
        _fail(f"--pooling must be mean, cls or last, not {pooling!r}")
    if dtype not in ("auto", "float32", "bfloat16"):
        _fail(f"--dtype must be auto, float32 or bfloat16, not {dtype!r}")
    encoder_options = {"dtype": dtype, "pooling": pooling, "normalize": normalize, "query_prefix": query_prefix,
                       "passage_prefix": passage_prefix, "trust_remote_code": trust_remote_code}
    if max_length:
        encoder_options.update(query_max_length=max_length, passage_max_length=max_length)
    bm25_options = {"k1": bm25_k1, "b": bm25_b, "stemmer": None if bm25_stemmer == "none" else bm25_stemmer,
                    "stopwords": None if bm25_stopwords == "none" else bm25_stopwords}
    try:
        result = evaluate_model(
            model, dataset, split, measures=[m for m in measures.split(",") if m.strip()],
            use_cache=not no_cache, run_path=run, encoder_options=encoder_options,
            bm25_options=bm25_options, show_progress=not quiet,
        )
    except (DataFormatError, DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    _print_result(result)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result.to_json(), indent=2) + "\n")


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.model} on {result.dataset} ({result.split}, {result.num_queries} queries)")
    for name in result.metrics:
        table.add_column(name, justify="right")
    table.add_row(*(f"{value:.4f}" for value in result.metrics.values()))
    console = Console(file=sys.stdout)
    console.print(table)
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.timing.items())
    console.print(f"timing: {timing}" + (" (embedding cache hit)" if result.cache_hit else ""))
    if result.qrels_warnings:
        console.print(f"[yellow]qrels: {result.qrels_warnings}[/yellow]")


def main() -> None:  # pragma: no cover - console entry point
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs index building at DEBUG
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
