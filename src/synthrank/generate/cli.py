"""``synthrank generate``, ``synthrank generate-merge`` and ``synthrank judge``.

Plain typer-annotated functions, registered by the top-level CLI. Importing this module is
cheap: model libraries are imported when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthrank.data.config_files import parse_assignments
from synthrank.utils.cli import fail

BACKEND_HELP = "llama-cpp | openai | transformers | vllm (default: llama-cpp with the bundled SmolLM2 GGUF)"


BACKEND_OPTION_HELP = ("KEY=VALUE, repeatable: any option of the backend, e.g. tensor_parallel_size=4 for vllm "
                       "(VALUE read as JSON when it parses: 4, 0.9, true)")


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


def generate_command(
    queries: Annotated[str, typer.Option("--queries", help="BEIR folder, queries.jsonl, TSV (qid<TAB>text) or dataset name")],
    output: Annotated[Path, typer.Option("--output", help="Output folder: the store and the BEIR export")],
    backend: Annotated[Optional[str], typer.Option("--backend", help=BACKEND_HELP)] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="GGUF path, HF model id/path, or served model name")] = None,
    levels: Annotated[int, typer.Option("--levels", help="Built-in scale with 4 (TREC DL), 3 or 2 levels")] = 4,
    levels_file: Annotated[Optional[Path], typer.Option("--levels-file", help="JSON list of {grade, name, description}")] = None,
    per_level: Annotated[int, typer.Option("--per-level", help="Passages per level and query")] = 1,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N (selected) queries")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help="Draw N queries at random (with --seed)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling queries and decoding")] = 0,
    query_ids: Annotated[Optional[str], typer.Option("--query-ids", help="Comma-separated ids, or @file with one id per line")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="With a BEIR folder: only queries judged in this split")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Requests in flight / sequences per batch")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="i/n: this machine's share of the queries (0 <= i < n)")] = None,
    mode: Annotated[str, typer.Option("--mode", help="joint (all levels in one JSON answer, per-level fallback), "
                                                    "per-level, grounded (needs --references), or auto (grounded with --references, "
                                                    "else per-level for the bundled model, else joint)")] = "auto",
    references: Annotated[Optional[str], typer.Option("--references", help="Grounded mode: BEIR folder or dataset name "
                                                      "whose --split qrels give each query's real top-level passage, "
                                                      "or a JSONL of {query-id, corpus-id, title, text}; the model "
                                                      "writes the other levels relative to it")] = None,
    grounded_prompt: Annotated[Optional[Path], typer.Option("--grounded-prompt", help="Template file overriding the grounded prompt")] = None,
    reference_words: Annotated[int, typer.Option("--reference-words", help="Grounded mode: words of the reference shown to the model")] = 120,
    system_prompt: Annotated[Optional[Path], typer.Option("--system-prompt", help="Template file overriding the system prompt")] = None,
    joint_prompt: Annotated[Optional[Path], typer.Option("--joint-prompt", help="Template file overriding the joint prompt")] = None,
    level_prompt: Annotated[Optional[Path], typer.Option("--level-prompt", help="Template file overriding the per-level prompt")] = None,
    few_shot: Annotated[Optional[Path], typer.Option("--few-shot", help="JSON/JSONL few-shot examples (default: the built-in one)")] = None,
    no_few_shot: Annotated[bool, typer.Option("--no-few-shot", help="Send no few-shot example")] = False,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.7,
    top_p: Annotated[float, typer.Option("--top-p")] = 0.95,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget per passage")] = 200,
    min_words: Annotated[int, typer.Option("--min-words", help="Reject passages shorter than this")] = 30,
    max_words: Annotated[int, typer.Option("--max-words", help="Reject passages longer than this")] = 160,
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="Answers tried per passage before it is recorded as failed")] = 4,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Generate passages recorded as failed again")] = False,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="openai: endpoint, e.g. http://127.0.0.1:8000/v1")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="openai: environment variable holding the API key")] = "OPENAI_API_KEY",
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="openai: seconds per request")] = None,
    max_retries: Annotated[Optional[int], typer.Option("--max-retries", help="openai: retries on 429/5xx/timeouts")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="llama-cpp: CPU threads")] = None,
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="llama-cpp: re-encode the GGUF once (cached): "
                                                    "auto (Q8_0 for the bundled model), none, q8_0, f16, q4_0")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="transformers: cpu, cuda, ...")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="transformers/vllm: float32, bfloat16, ...")] = None,
    fidelity: Annotated[str, typer.Option("--fidelity", help="Scorers of level fidelity written to the manifest "
                                          "and fidelity.json: comma-separated bm25, encoder; 'none' for none")] = "bm25,encoder",
    fidelity_encoder: Annotated[Optional[str], typer.Option("--fidelity-encoder", help="Encoder for the 'encoder' "
                                                            "fidelity scorer (default: the bundled base encoder)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an export of another configuration in --output")] = False,
    min_success: Annotated[float, typer.Option("--min-success", min=0.0, max=1.0,
                                               help="Exit with status 1 when less than this share of the passages exists "
                                                    "(always when none does)")] = 0.5,
    backend_option: Annotated[Optional[list[str]], typer.Option("--backend-option", help=BACKEND_OPTION_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Write passages at graded relevance levels for real queries (resumable; see --shard)."""
    from synthrank.data.errors import DataFormatError, error_message
    from synthrank.generate.api import GenerationShortfallError, generate
    from synthrank.generate.runner import FatalBackendError

    try:
        result = generate(
            queries, output, backend=backend, model=model, concurrency=concurrency, levels=levels,
            levels_file=levels_file, per_level=per_level, limit=limit, sample=sample, seed=seed, query_ids=query_ids,
            split=split, shard=shard, mode=mode, references=references, reference_words=reference_words, system_prompt=system_prompt,
            joint_prompt=joint_prompt, level_prompt=level_prompt, grounded_prompt=grounded_prompt, few_shot=False if no_few_shot else (few_shot or True),
            temperature=temperature, top_p=top_p, max_tokens_per_passage=max_tokens, min_words=min_words,
            max_words=max_words, max_attempts=max_attempts, retry_failed=retry_failed, progress=not quiet,
            backend_options=_backend_options(base_url, api_key_env, timeout, threads, max_retries, device, dtype,
                                             quantize, backend_option),
            fidelity=[] if fidelity.strip().lower() == "none" else [f.strip() for f in fidelity.split(",") if f.strip()],
            fidelity_encoder=fidelity_encoder,
            overwrite=overwrite, min_success=min_success,
        )
    except GenerationShortfallError as error:
        _print_summary(error.result, output)
        fail(str(error), code=1)
    except FatalBackendError as error:
        fail(str(error), code=1)
    except (DataFormatError, FileNotFoundError, ValueError, KeyError, ImportError, RuntimeError) as error:
        fail(error_message(error))
    _print_summary(result, output)


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
