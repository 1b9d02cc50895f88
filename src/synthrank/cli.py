"""The ``synthrank`` command line: generate, train, eval (and the helpers around them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

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
    from synthrank.evaluate.cli import eval_command
    from synthrank.generate.adapt_cli import adapt_command
    from synthrank.generate.cli import fidelity_command, generate_command, judge_command, merge_command
    from synthrank.train.cli import mine_command, train_command

    app.command("eval")(eval_command)
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
