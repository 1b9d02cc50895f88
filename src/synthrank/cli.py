"""The ``synthrank`` command line: generate, train, eval (and the helpers around them)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer

from synthrank.utils.cli import fail

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


@app.command("eval")
def eval_command(
    dataset: Annotated[str, typer.Option(help="A BEIR folder, or a dataset name under $SYNTHRANK_DATA_DIR / the cache / the BEIR mirror.")],
    model: Annotated[str, typer.Option(help="A local model folder, a bundled alias (all-MiniLM-L6-v2), or 'bm25'.")] = "all-MiniLM-L6-v2",
    split: Annotated[str, typer.Option(help="Qrels split to evaluate.")] = "test",
    output: Annotated[Optional[Path], typer.Option(help="Write the results as JSON here.")] = None,
    run: Annotated[Optional[Path], typer.Option("--run", "--run-file", help="Write the retrieval run (TREC format) here "
                                                "(under torchrun use --run-file: torchrun reads --run as its --run-path).")] = None,
    measures: Annotated[str, typer.Option(help="Comma-separated ir_measures names.")] = "nDCG@10,RR@10,R@100",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")] = False,
    dtype: Annotated[str, typer.Option(help="Inference precision: auto (bf16 where native), float32, bfloat16, "
                                       "or int8 (opt-in, CPU only: dynamically quantized Linear layers; "
                                       "scores move slightly).")] = "auto",
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
        fail(f"--pooling must be mean, cls or last, not {pooling!r}")
    from synthrank.models.encoder import Dtype

    if dtype not in get_args(Dtype):
        fail(f"--dtype must be one of {', '.join(get_args(Dtype))}, not {dtype!r}")
    encoder_options = {"dtype": dtype, "pooling": pooling, "normalize": normalize, "query_prefix": query_prefix,
                       "passage_prefix": passage_prefix, "trust_remote_code": trust_remote_code}
    if max_length is not None:
        if max_length < 1:
            fail(f"--max-length must be >= 1 (tokens), not {max_length}")
        encoder_options.update(query_max_length=max_length, passage_max_length=max_length)
    bm25_options = {"k1": bm25_k1, "b": bm25_b, "stemmer": None if bm25_stemmer == "none" else bm25_stemmer,
                    "stopwords": None if bm25_stopwords == "none" else bm25_stopwords}
    # Everything that can be checked without the data is checked before the evaluation runs.
    for option, path in (("--output", output), ("--run", run)):
        if path is not None and path.is_dir():
            fail(f"{option} {path} is a folder; give a file path, e.g. {path / ('results.json' if option == '--output' else 'run.trec')}")
    try:
        from synthrank.evaluate.metrics import parse_measures
        from synthrank.retrieval.bm25 import BM25Config

        parse_measures([m for m in measures.split(",") if m.strip()])
        BM25Config(**bm25_options)
    except ValueError as error:
        fail(str(error))
    try:
        result = evaluate_model(
            model, dataset, split, measures=[m for m in measures.split(",") if m.strip()],
            use_cache=not no_cache, run_path=run, encoder_options=encoder_options,
            bm25_options=bm25_options, show_progress=not quiet,
        )
    except (DataFormatError, DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    from synthrank.evaluate.sharded import is_main_process

    if not is_main_process():  # under torchrun rank 0 prints and writes the merged result
        return
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


@app.command("experiment")
def experiment_command(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML or JSON), e.g. configs/laptop.toml.")],
    only: Annotated[Optional[str], typer.Option(help="Run one setting (or 'base') and the stages it needs.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and its cost estimate; run nothing.")] = False,
    output: Annotated[Optional[Path], typer.Option(help="Run folder (default: the config's 'output').")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Where to write the report (default RUN_DIR/report).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Run an experiment: generate -> mine -> train (each setting) -> eval, each stage cached and resumable."""
    from synthrank.data import DataFormatError
    from synthrank.experiments import load_experiment

    try:
        experiment = load_experiment(config)
    except (DataFormatError, FileNotFoundError) as error:
        fail(str(error))
    if output is not None:
        experiment.output = str(output)
    _run_experiment(experiment, only, dry_run, report, quiet)


def _run_experiment(experiment, only, dry_run, report, quiet) -> None:
    from synthrank.experiments import Runner, format_plan, plan, write_report
    from synthrank.experiments.report import collect, results_table

    try:
        stages = plan(experiment, only)
    except ValueError as error:
        fail(str(error))
    typer.echo(f"run folder: {experiment.run_dir()}")
    typer.echo(format_plan(stages, experiment.estimates))
    if dry_run:
        return
    outcomes = Runner(experiment, show_progress=not quiet, echo=typer.echo).run(only)
    out = write_report(experiment.run_dir(), report)
    typer.echo("")
    typer.echo(results_table(collect(experiment.run_dir())))
    typer.echo(f"\nreport: {out / 'report.md'}")
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failed:
        for outcome in failed:
            typer.secho(f"{outcome.status}: {outcome.stage.key}: {outcome.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by 'synthrank experiment'.")],
    output: Annotated[Optional[Path], typer.Option(help="Report folder (default RUN_DIR/report).")] = None,
) -> None:
    """Markdown table, PNG plots and a manifest for a finished (or partial) run."""
    from synthrank.experiments import write_report
    from synthrank.experiments.report import collect, results_table

    try:
        out = write_report(run_dir, output)
    except FileNotFoundError as error:
        fail(str(error))
    typer.echo(results_table(collect(run_dir)))
    typer.echo(f"report: {out / 'report.md'}")


@app.command("quickstart")
def quickstart_command(
    output: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/quickstart"),
    queries: Annotated[int, typer.Option(help="SciFact train claims to generate passages for.")] = 32,
    real_claims: Annotated[str, typer.Option(
        help="Real data (abstract -> 3, BM25 negatives -> 1) for 'all' SciFact train claims or only the "
             "'generated' ones (smaller, faster).")] = "all",
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Queries per training step.")] = 16,
    eval_dataset: Annotated[str, typer.Option(help="Evaluation dataset.")] = "scifact",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """A small end-to-end run on the bundled models: generate, mine, train (ws2), evaluate, report."""
    from synthrank.experiments.quickstart import quickstart_config

    try:
        experiment = quickstart_config(str(output), queries=queries, real_claims=real_claims, epochs=epochs,
                                       batch_size=batch_size, eval_dataset=eval_dataset)
    except ValueError as error:
        fail(f"quickstart: {error}")
    _run_experiment(experiment, None, dry_run, None, quiet)


def _register_stage_commands() -> None:
    """Stage packages expose plain typer functions; importing them is cheap (no torch)."""
    from synthrank.generate.adapt_cli import adapt_command
    from synthrank.generate.cli import fidelity_command, generate_command, judge_command, merge_command
    from synthrank.train.cli import mine_command, train_command

    app.command("adapt")(adapt_command)
    app.command("generate")(generate_command)
    app.command("generate-merge")(merge_command)
    app.command("judge")(judge_command)
    app.command("fidelity")(fidelity_command)
    app.command("mine")(mine_command)
    app.command("train")(train_command)


_register_stage_commands()


def main() -> None:  # pragma: no cover - console entry point
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs index building at DEBUG
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
