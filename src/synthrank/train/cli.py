"""``synthrank train`` and ``synthrank mine``.

Plain typer-annotated functions, registered by the top-level CLI. Importing this module is
cheap: torch and transformers are imported when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthrank.data.config_files import parse_assignments
from synthrank.utils.cli import fail


def _parse_loss_params(items: list[str] | None) -> dict | None:
    try:
        return parse_assignments(items, "--loss-param") or None
    except ValueError as error:
        fail(str(error))


def train_command(
    data: Annotated[Optional[str], typer.Option("--data", help="Recipe file (TOML or JSON) naming the training sources")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="ws2 | infonce | kl | emd | ranknet | lambdaloss | margin_mse (default ws2)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Output folder: the trained model (sentence-transformers format) and checkpoints")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML/JSON file with any of these options (command-line options win)")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Local HF / sentence-transformers folder or bundled alias (default all-MiniLM-L6-v2)")] = None,
    group_size: Annotated[Optional[int], typer.Option("--group-size", help="Passages per query (default: the recipe's, 4)")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="graded | binary (default: the recipe's)")] = None,
    sampling: Annotated[Optional[str], typer.Option("--sampling", help="graded mode: random | top (default: the recipe's)")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Queries per device and step (default 16)")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default 1e-5)")] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Epochs (default 1)")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after N optimizer steps (overrides --epochs)")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Score temperature of the loss (default 1.0)")] = None,
    loss_param: Annotated[Optional[list[str]], typer.Option("--loss-param", help="Extra loss parameter key=value (repeatable)")] = None,
    warmup: Annotated[Optional[float], typer.Option("--warmup", help="Warm-up: fraction of steps (<1) or step count (default 0.05)")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps (default 1)")] = None,
    chunk_size: Annotated[Optional[int], typer.Option("--chunk-size", help="GradCache: texts per forward pass (large batches in bounded memory)")] = None,
    forward_batch_size: Annotated[Optional[int], typer.Option("--forward-batch-size", help="Texts per forward pass, length-sorted (default 32)")] = None,
    query_max_length: Annotated[Optional[int], typer.Option("--query-max-length", help="Max query tokens (default: the model's)")] = None,
    passage_max_length: Annotated[Optional[int], typer.Option("--passage-max-length", help="Max passage tokens (default: the model's)")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Sets both max lengths")] = None,
    pooling: Annotated[Optional[str], typer.Option("--pooling", help="mean | cls | last (default: the model folder's, else mean)")] = None,
    normalize: Annotated[Optional[bool], typer.Option("--normalize/--no-normalize", help="L2-normalise embeddings (default: the model folder's)")] = None,
    query_prefix: Annotated[Optional[str], typer.Option("--query-prefix", help="Text put before every query")] = None,
    passage_prefix: Annotated[Optional[str], typer.Option("--passage-prefix", help="Text put before every passage")] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16", help="bfloat16 mixed precision")] = None,
    fp16: Annotated[Optional[bool], typer.Option("--fp16", help="float16 mixed precision (GPU)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for data order, group draws and dropout (default 42)")] = None,
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Checkpoint every N steps (default 500)")] = None,
    save_total_limit: Annotated[Optional[int], typer.Option("--save-total-limit", help="Keep at most N checkpoints")] = None,
    logging_steps: Annotated[Optional[int], typer.Option("--logging-steps", help="Log loss and examples/s every N steps (default 10)")] = None,
    report_to: Annotated[Optional[str], typer.Option("--report-to", help="none | tensorboard | wandb | mlflow (comma-separated)")] = None,
    resume: Annotated[Optional[bool], typer.Option("--resume", help="Resume from the newest checkpoint-N in --output")] = None,
    resume_from: Annotated[Optional[Path], typer.Option("--resume-from", help="Resume from this checkpoint folder")] = None,
    trust_remote_code: Annotated[Optional[bool], typer.Option("--trust-remote-code", help="Allow code shipped with the model to run")] = None,
    quiet: Annotated[Optional[bool], typer.Option("--quiet", help="No progress bar")] = None,
) -> None:
    """Train a bi-encoder list-wise (ws2) or contrastively (infonce) on a data recipe."""
    from synthrank.data import DataFormatError, DatasetNotFoundError
    from synthrank.data.errors import error_message
    from synthrank.train.config import load_train_config

    if max_length is not None:
        query_max_length = query_max_length or max_length
        passage_max_length = passage_max_length or max_length
    overrides = {
        "data": data, "loss": loss, "output": str(output) if output is not None else None, "model": model,
        "group_size": group_size, "mode": mode, "sampling": sampling, "batch_size": batch_size, "lr": lr,
        "epochs": epochs, "max_steps": max_steps, "temperature": temperature,
        "loss_params": _parse_loss_params(loss_param), "warmup": warmup, "grad_accum": grad_accum,
        "chunk_size": chunk_size, "forward_batch_size": forward_batch_size, "query_max_length": query_max_length, "passage_max_length": passage_max_length,
        "pooling": pooling, "normalize": normalize, "query_prefix": query_prefix, "passage_prefix": passage_prefix,
        "bf16": bf16, "fp16": fp16, "seed": seed, "save_steps": save_steps, "save_total_limit": save_total_limit,
        "logging_steps": logging_steps, "report_to": report_to,
        "resume": str(resume_from) if resume_from is not None else resume,
        "trust_remote_code": trust_remote_code, "quiet": quiet,
    }
    try:
        settings = load_train_config(config, overrides)
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
