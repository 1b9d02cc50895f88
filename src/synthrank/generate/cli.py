"""``synthrank generate``, ``synthrank generate-merge`` and ``synthrank judge``.

Typer command functions, registered by the top-level CLI. ``generate_command``'s options are
built from the fields of :class:`~synthrank.generate.options.GenerateOptions` (their single
declaration). Importing this module is cheap: model libraries are imported when a command runs.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthrank.data.config_files import parse_assignments
from synthrank.generate.options import BACKEND_HELP, BACKEND_OPTION_HELP, GenerateOptions
from synthrank.utils.cli import fail, options_command



def _parse_backend_options(items: list[str] | None) -> dict:
    try:
        return parse_assignments(items, "--backend-option")
    except ValueError as error:
        fail(str(error))


def _backend_options(base_url, api_key_env, timeout, threads, max_retries, device, dtype, quantize=None,
                     extra: list[str] | None = None) -> dict:
    """The flags the user set (each belongs to one backend; the backend's options model rejects
    the others by name) plus ``--backend-option`` pairs."""
    options = {"base_url": base_url, "api_key_env": None if api_key_env == "OPENAI_API_KEY" else api_key_env,
               "timeout": timeout, "threads": threads, "max_retries": max_retries, "device": device, "dtype": dtype,
               "quantize": quantize}
    return {**{k: v for k, v in options.items() if v is not None}, **_parse_backend_options(extra)}


# Flags for the backend options most runs need; each is declared (type, help) in the backend
# options models of synthrank.generate.backends.options and lands in generate's backend_options.
BACKEND_FLAGS = ("base_url", "api_key_env", "timeout", "max_retries", "threads", "quantize", "device", "dtype")


def _backend_flag_parameters() -> list:
    import inspect
    import types
    from typing import Union, get_args, get_origin

    from synthrank.generate.backends.options import BACKEND_OPTIONS

    parameters = []
    for name in BACKEND_FLAGS:
        owners = {backend: model.model_fields[name] for backend, model in BACKEND_OPTIONS.items()
                  if name in model.model_fields}
        info = next(iter(owners.values()))
        kind = info.annotation
        if get_origin(kind) in (Union, types.UnionType):
            (kind,) = [a for a in get_args(kind) if a is not type(None)]
        help_text = f"{'/'.join(owners)}: {info.description}"
        option = typer.Option("--" + name.replace("_", "-"), help=help_text, show_default=False)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[Optional[kind], option]))
    return parameters


def _generate_extras(
    output: Annotated[Path, typer.Option("--output", help="Output folder: the store and the BEIR export")],
    no_few_shot: Annotated[bool, typer.Option("--no-few-shot", help="Send no few-shot example (sets few_shot to false)")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Options of ``synthrank generate`` that are no generation option (see GenerateOptions)."""


# Command-line options that are no field of GenerateOptions, and the fields they set (checked by
# tests/generate/test_options.py).
CLI_ONLY = {"output": None, "no_few_shot": ("few_shot",), "quiet": None,
            **{name: ("backend_options",) for name in BACKEND_FLAGS}}


def _generate(given: dict, output: Path, no_few_shot: bool, quiet: bool, **backend_flags) -> None:
    from synthrank.data.errors import DataFormatError, error_message
    from synthrank.generate.api import GenerationShortfallError, generate
    from synthrank.generate.runner import FatalBackendError

    if no_few_shot:
        given["few_shot"] = False
    flags = {key: value for key, value in backend_flags.items() if value is not None}
    if flags:
        given["backend_options"] = {**flags, **given.get("backend_options", {})}
    try:
        result = generate(given.pop("queries"), output, progress=not quiet, **given)
    except GenerationShortfallError as error:
        _print_summary(error.result, output)
        fail(str(error), code=1)
    except FatalBackendError as error:
        fail(str(error), code=1)
    except (DataFormatError, FileNotFoundError, ValueError, KeyError, ImportError, RuntimeError) as error:
        fail(error_message(error))
    _print_summary(result, output)


# Every generation option is a field of GenerateOptions; the options below are built from them.
generate_command = options_command(
    GenerateOptions, _generate, name="generate_command",
    extras=list(inspect.signature(_generate_extras, eval_str=True).parameters.values()) + _backend_flag_parameters(),
    doc="Write passages at graded relevance levels for real queries (resumable; see --shard).")


def _print_summary(result, output: Path) -> None:
    counts = result.manifest["counts"]
    s = result.summary
    typer.echo(
        f"{counts['passages']}/{counts['expected_passages']} passages for {counts['queries']} queries "
        f"({counts['failed']} failed, {counts['missing']} missing) -> {output}\n"
        f"this run: {s.done} done, {s.failed} failed, {s.already_finished} already finished; "
        f"{s.passages_per_second:.2f} passages/s, {s.tokens_per_second:.1f} tokens/s, {s.seconds:.0f} s"
    )
    if counts["failure_reasons"]:
        typer.echo("failure reasons: " + json.dumps(counts["failure_reasons"]))
    for scorer, summary in result.manifest.get("fidelity", {}).items():
        typer.echo(_fidelity_line(scorer, summary))


def _fidelity_line(scorer: str, summary: dict) -> str:
    pairs = ", ".join(f"{pair} {acc:.2f}" for pair, acc in summary["pairs"].items() if acc is not None)
    means = ", ".join(f"L{g} {v:.3f}" for g, v in summary["mean_score"].items() if v is not None)
    return (f"level fidelity ({scorer}): pairwise ordering accuracy {pairs}; mean {summary['mean_accuracy']} "
            f"over {summary['queries']} queries; mean score {means}")


def fidelity_command(
    dataset: Annotated[str, typer.Option("--dataset", help="A graded BEIR folder (e.g. a generate output) or dataset name")],
    split: Annotated[str, typer.Option("--split", help="Qrels split")] = "train",
    scorers: Annotated[str, typer.Option("--scorers", help="Comma-separated: bm25, encoder")] = "bm25,encoder",
    encoder: Annotated[Optional[str], typer.Option("--encoder", help="Model of the encoder scorer (default: the bundled one)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Write the results (with per-query accuracies) as JSON")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """How well independent scorers order a graded folder's levels (0.5 = chance): run it on a
    generator's output before training, or on real graded qrels (TREC DL) for comparison."""
    from synthrank.data import DataFormatError, resolve_dataset
    from synthrank.generate.api import measure_fidelity

    try:
        folder = Path(dataset) if Path(dataset).is_dir() else resolve_dataset(dataset, download=False)
        results = measure_fidelity(folder, split, [s.strip() for s in scorers.split(",") if s.strip()], encoder,
                                   progress=not quiet)
    except (DataFormatError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1) + "\n")
    for scorer, summary in results.items():
        typer.echo(_fidelity_line(scorer, summary))


def merge_command(
    output: Annotated[Path, typer.Option("--output", help="Folder for the merged store and BEIR export")],
    shards: Annotated[list[Path], typer.Argument(help="Output folders of the shards")],
    fingerprint: Annotated[Optional[str], typer.Option("--fingerprint", help="Run to export when the stores hold several")] = None,
) -> None:
    """Merge the outputs of `synthrank generate --shard i/n` runs into one BEIR folder."""
    from synthrank.data.errors import error_message
    from synthrank.generate.api import merge

    try:
        manifest = merge(output, list(shards), fingerprint)
    except (FileNotFoundError, ValueError, KeyError) as error:
        fail(error_message(error))
    counts = manifest["counts"]
    typer.echo(f"{counts['passages']}/{counts['expected_passages']} passages for {counts['queries']} queries "
               f"({counts['failed']} failed) -> {output}")


def judge_command(
    pairs: Annotated[str, typer.Option("--pairs", help="BEIR folder whose qrels give the (query, passage) pairs")],
    output: Annotated[Path, typer.Option("--output", help="Folder for judgments.jsonl and summary.json")],
    split: Annotated[str, typer.Option("--split", help="qrels split to judge")] = "test",
    backend: Annotated[Optional[str], typer.Option("--backend", help=BACKEND_HELP)] = None,
    model: Annotated[Optional[str], typer.Option("--model")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help="Judge N pairs drawn at random (with --seed)")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Judge the first N pairs")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    levels: Annotated[int, typer.Option("--levels")] = 4,
    levels_file: Annotated[Optional[Path], typer.Option("--levels-file")] = None,
    prompt: Annotated[Optional[Path], typer.Option("--prompt", help="Template file overriding the judge prompt")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency")] = None,
    relabel: Annotated[Optional[Path], typer.Option("--relabel", help="Write qrels with the judge's grades here")] = None,
    keep_agreeing: Annotated[Optional[Path], typer.Option("--keep-agreeing", help="Write qrels keeping only pairs whose grade the judge confirms")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env")] = "OPENAI_API_KEY",
    timeout: Annotated[Optional[float], typer.Option("--timeout")] = None,
    max_retries: Annotated[Optional[int], typer.Option("--max-retries")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads")] = None,
    device: Annotated[Optional[str], typer.Option("--device")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype")] = None,
    backend_option: Annotated[Optional[list[str]], typer.Option("--backend-option", help=BACKEND_OPTION_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Grade (query, passage) pairs 0-3 with an LLM: agreement with the qrels, relabelling, filtering."""
    from synthrank.data.errors import DataFormatError, error_message
    from synthrank.generate.judge import judge

    try:
        summary = judge(pairs, output, split=split, backend=backend, model=model, sample=sample, limit=limit,
                        seed=seed, levels=levels, levels_file=levels_file, prompt=prompt, concurrency=concurrency,
                        relabel=relabel, keep_agreeing=keep_agreeing, progress=not quiet,
                        backend_options=_backend_options(base_url, api_key_env, timeout, threads, max_retries, device, dtype,
                                                         extra=backend_option))
    except (DataFormatError, FileNotFoundError, ValueError, KeyError, ImportError, RuntimeError) as error:
        fail(error_message(error))
    a = summary["agreement"]
    typer.echo(f"{summary['pairs']} pairs judged ({summary['unparsed']} unparsed): exact agreement {a['exact']:.3f}, "
               f"binary (grade >= 2) agreement {a['binary']:.3f}, Cohen's kappa {a['kappa']:.3f} -> {output}")
