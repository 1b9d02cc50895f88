"""``synthrank train`` and ``synthrank mine``.

Typer command functions, registered by the top-level CLI. ``train_command``'s options are built
from the fields of :class:`~synthrank.train.config.TrainConfig` (their single declaration).
Importing this module is cheap: torch and transformers are imported when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthrank.train.config import TrainConfig
from synthrank.utils.cli import fail, options_command


def _train_extras(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML/JSON file with any of these options (command-line options win)")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Sets --query-max-length and --passage-max-length (where not given)")] = None,
    resume_from: Annotated[Optional[Path], typer.Option("--resume-from", help="Resume from this checkpoint folder (sets resume to its path)")] = None,
) -> None:
    """Options of ``synthrank train`` that are no training option: the config file and two
    shortcuts that set fields of :class:`~synthrank.train.config.TrainConfig`."""


# Command-line options that are no field of TrainConfig, and the fields they set (checked by tests/train/test_options.py).
CLI_ONLY = {"config": None, "max_length": ("query_max_length", "passage_max_length"), "resume_from": ("resume",)}


def _train(given: dict, config: Path | None, max_length: int | None, resume_from: Path | None) -> None:
    from synthrank.data import DataFormatError, DatasetNotFoundError
    from synthrank.data.errors import error_message
    from synthrank.train.config import load_train_config

    if max_length is not None:
        given.setdefault("query_max_length", max_length)
        given.setdefault("passage_max_length", max_length)
    if resume_from is not None:
        given["resume"] = str(resume_from)
    try:
        settings = load_train_config(config, given)
    except (DataFormatError, FileNotFoundError) as error:
        fail(str(error))
    try:
        from synthrank.train.trainer import train

        result = train(settings)
    except (DataFormatError, DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        fail(error_message(error))
    if result is not None:
        typer.echo(json.dumps({"output": str(result.output), "global_step": result.global_step,
                               "train_loss": result.train_loss, "first_loss": result.first_loss,
                               **{k: v for k, v in result.metrics.items() if k != "train_loss"}}, indent=2))


# Every training option is a field of TrainConfig; the options below are built from them.
train_command = options_command(
    TrainConfig, _train, extras=_train_extras, required=False, name="train_command",
    doc="Train a bi-encoder list-wise (ws2) or contrastively (infonce) on a data recipe.")


def mine_command(
    dataset: Annotated[str, typer.Option("--dataset", help="BEIR folder or dataset name (SYNTHRANK_DATA_DIR)")],
    output: Annotated[Path, typer.Option("--output", help="Folder (receives qrels/<split>.tsv and mining.json) or a .tsv file")],
    split: Annotated[str, typer.Option("--split", help="Qrels split whose queries get negatives")] = "train",
    top_k: Annotated[int, typer.Option("--top-k", help="Negatives per query")] = 30,
    skip_top: Annotated[int, typer.Option("--skip-top", help="Skip the N best-ranked non-positives (false-negative guard)")] = 0,
    grade: Annotated[int, typer.Option("--grade", help="Grade written for every mined negative")] = 0,
    positive_min_grade: Annotated[int, typer.Option("--positive-min-grade", help="Judged grades >= this are positives, never mined")] = 1,
    k1: Annotated[float, typer.Option("--k1", help="BM25 k1 (Anserini default 0.9)")] = 0.9,
    b: Annotated[float, typer.Option("--b", help="BM25 b (Anserini default 0.4)")] = 0.4,
    stemmer: Annotated[str, typer.Option("--stemmer", help="Snowball stemmer language, or 'none'")] = "english",
    stopwords: Annotated[str, typer.Option("--stopwords", help="Stop-word list ('en') or 'none'")] = "en",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars")] = False,
) -> None:
    """Mine BM25 hard negatives (annotated positives excluded) for a dataset's queries, as qrels."""
    from synthrank.data import DataFormatError, DatasetNotFoundError
    from synthrank.data.errors import error_message
    from synthrank.retrieval.bm25 import BM25Retriever
    from synthrank.retrieval.mining import mine_negatives, write_mined

    settings = {"k1": k1, "b": b, "stemmer": None if stemmer == "none" else stemmer,
                "stopwords": None if stopwords == "none" else stopwords}
    try:
        result = mine_negatives(dataset, split=split, top_k=top_k, skip_top=skip_top,
                                positive_min_grade=positive_min_grade, retriever=BM25Retriever(**settings),
                                show_progress=not quiet)
        path = write_mined(result, output, grade=grade, retriever_settings={"name": "bm25", **settings})
    except (DataFormatError, DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        fail(error_message(error))
    typer.echo(json.dumps({"qrels": str(path), **result.stats}, indent=2))
