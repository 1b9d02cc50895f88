"""``synthrank eval``.

A typer command function, registered by the top-level CLI. Its options are built from the fields
of :class:`~synthrank.evaluate.options.EvalOptions` (their single declaration). Importing this
module is cheap: torch is imported when the command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthrank.data.config_files import validation_summary
from synthrank.evaluate.options import EvalOptions
from synthrank.utils.cli import fail, options_command


def _eval_extras(
    output: Annotated[Optional[Path], typer.Option(help="Write the results as JSON here.")] = None,
    run: Annotated[Optional[Path], typer.Option("--run", "--run-file", help="Write the retrieval run (TREC format) here "
                                                "(under torchrun use --run-file: torchrun reads --run as its --run-path).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Options of ``synthrank eval`` that are no evaluation option: where results go, progress."""


# Command-line options that are no field of EvalOptions (checked by tests/test_options.py).
CLI_ONLY = {"output": None, "run": None, "quiet": None}


def _eval(given: dict, output: Path | None, run: Path | None, quiet: bool) -> None:
    from pydantic import ValidationError

    from synthrank.data import DataFormatError, DatasetNotFoundError
    from synthrank.evaluate import evaluate

    try:
        options = EvalOptions(**given)
    except ValidationError as error:
        fail(validation_summary(error, command_line=EvalOptions))
    # Everything that can be checked without the data is checked before the evaluation runs.
    for option, path in (("--output", output), ("--run", run)):
        if path is not None and path.is_dir():
            fail(f"{option} {path} is a folder; give a file path, e.g. {path / ('results.json' if option == '--output' else 'run.trec')}")
    try:
        result = evaluate(options, run_path=run, show_progress=not quiet)
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


# Every evaluation option is a field of EvalOptions; the options below are built from them.
eval_command = options_command(
    EvalOptions, _eval, extras=_eval_extras, name="eval_command",
    doc="Evaluate a model (or BM25) on a dataset: nDCG@10, RR@10, R@100 by default.")
