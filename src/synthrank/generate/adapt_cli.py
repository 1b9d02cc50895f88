"""``synthrank adapt``: a training folder for a retriever from a bare corpus.

The backend options are the very ones of ``synthrank generate`` (taken from its signature, so
they are declared once and stay the same). No ``from __future__ import annotations`` here: the
annotations below are evaluated when the function is defined.
"""

import inspect
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthrank.generate.cli import _backend_options, generate_command
from synthrank.generate.doc_queries import DEFAULT_STYLE
from synthrank.utils.cli import fail

_GENERATE = inspect.signature(generate_command, eval_str=True).parameters


def _as_generate(name: str):
    """The annotation (type and typer option) of ``synthrank generate``'s option ``name``."""
    return _GENERATE[name].annotation


def _generate_default(name: str):
    return _GENERATE[name].default


def adapt_command(
    corpus: Annotated[str, typer.Option("--corpus", help="corpus.jsonl, a folder holding it, or a dataset name")],
    output: Annotated[Path, typer.Option("--output", help="Output folder: the store and the BEIR training folder")],
    documents: Annotated[Optional[int], typer.Option("--documents", help="Documents to write queries for")] = 100,
    queries_per_doc: Annotated[int, typer.Option("--queries-per-doc", help="Queries written per document")] = 1,
    sampling: Annotated[str, typer.Option("--sampling", help="random, or stratified (equal shares of each "
                                                             "document-length quartile)")] = "random",
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling documents and decoding")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N sampled documents")] = None,
    min_document_words: Annotated[int, typer.Option("--min-document-words",
                                                    help="Never draw documents shorter than this")] = 20,
    style: Annotated[str, typer.Option("--style", help="What the LLM writes ('Then write STYLE.'), e.g. 'a scientific "
                                                       "claim that this abstract supports'")]
    = DEFAULT_STYLE,
    query_prompt: Annotated[Optional[Path], typer.Option("--query-prompt", help="Template file overriding the query prompt")] = None,
    system_prompt: Annotated[Optional[Path], typer.Option("--system-prompt", help="Template file overriding the system prompt")] = None,
    few_shot: Annotated[Optional[Path], typer.Option("--few-shot", help="JSON/JSONL [{document, query}] examples "
                                                                        "in your users' style (default: a built-in one)")] = None,
    no_few_shot: Annotated[bool, typer.Option("--no-few-shot", help="Send no few-shot example")] = False,
    few_shot_per_query: Annotated[Optional[int], typer.Option("--few-shot-per-query", help="Examples shown per "
                                                              "request, drawn from the few-shot file (default: all)")] = None,
    min_words: Annotated[int, typer.Option("--min-words", help="Reject queries shorter than this")] = 3,
    max_words: Annotated[int, typer.Option("--max-words", help="Reject queries longer than this")] = 32,
    max_document_words: Annotated[int, typer.Option("--max-document-words", help="Words of a document shown to the LLM")] = 256,
    max_copied: Annotated[float, typer.Option("--max-copied", help="Reject a query sharing this share of its word "
                                                                  "trigrams with the document")] = 0.8,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget per query")] = 64,
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="Answers tried per query before it is recorded as failed")] = 3,
    cut_off: Annotated[str, typer.Option("--cut-off", help="An answer cut by the token budget: first-sentence "
                                                           "(keep its first complete sentence) or reject")] = "first-sentence",
    temperature: Annotated[float, typer.Option("--temperature")] = 0.7,
    top_p: Annotated[float, typer.Option("--top-p")] = 0.95,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="Keep every query (no round-trip filter)")] = False,
    filter_top_k: Annotated[int, typer.Option("--filter-top-k", help="Keep a query if its document ranks within this")] = 20,
    filter_retriever: Annotated[str, typer.Option("--filter-retriever", help="bm25, or base (the dense --base-model)")] = "bm25",
    base_model: Annotated[str, typer.Option("--base-model", help="Dense retriever for --filter-retriever "
                                                                   "base and --neighbour-retriever base")] = "all-MiniLM-L6-v2",
    neighbours: Annotated[str, typer.Option("--neighbours", help="Neighbours' grades by rank, source not "
                                                                 "counted: FIRST-LAST=GRADE,... ('' for none)")] = "1-3=1",
    neighbour_retriever: Annotated[str, typer.Option("--neighbour-retriever", help="Whose neighbours --neighbours "
                                                                             "grades: bm25, or base (the dense "
                                                                             "--base-model)")] = "bm25",
    random_negatives: Annotated[int, typer.Option("--random-negatives", help="Random corpus documents per query at level 0")] = 0,
    grounded: Annotated[bool, typer.Option("--grounded", help="Also let the generator write the lower levels "
                                                             "relative to each source document (grounded generation)")] = False,
    grounded_levels: Annotated[int, typer.Option("--grounded-levels", help="With --grounded: the built-in scale "
                                                                          "(4, 3 or 2 levels; the top one is the document)")] = 4,
    grounded_prompt: Annotated[Optional[Path], typer.Option("--grounded-prompt", help="Template file overriding the "
                                                                                     "grounded prompt")] = None,
    retry_failed: _as_generate("retry_failed") = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="i/n: this machine's share of the documents (0 <= i < n)")] = None,
    merge_from: Annotated[Optional[list[Path]], typer.Option("--merge-from", help="Output folders of --shard runs "
                                                                                  "to merge before exporting")] = None,
    backend: _as_generate("backend") = None,
    model: _as_generate("model") = None,
    concurrency: _as_generate("concurrency") = None,
    base_url: _as_generate("base_url") = None,
    api_key_env: _as_generate("api_key_env") = _generate_default("api_key_env"),
    timeout: _as_generate("timeout") = None,
    max_retries: _as_generate("max_retries") = None,
    threads: _as_generate("threads") = None,
    quantize: _as_generate("quantize") = None,
    device: _as_generate("device") = None,
    dtype: _as_generate("dtype") = None,
    quiet: _as_generate("quiet") = False,
) -> None:
    """Adapt a retriever to a corpus from its documents alone: queries written from sampled
    documents, a round-trip filter and graded contexts, as a BEIR training folder (resumable)."""
    from synthrank.data import DataFormatError
    from synthrank.generate.adapt import adapt

    try:
        result = adapt(
            corpus, output, documents=documents, queries_per_doc=queries_per_doc, sampling=sampling, seed=seed,
            limit=limit, min_document_words=min_document_words, shard=shard, merge_from=merge_from,
            backend=backend, model=model, concurrency=concurrency, style=style, system_prompt=system_prompt,
            query_prompt=query_prompt, few_shot=False if no_few_shot else (few_shot or True),
            few_shot_per_query=few_shot_per_query, cut_off=cut_off,
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, min_words=min_words, max_words=max_words,
            max_document_words=max_document_words, max_copied_trigrams=max_copied, max_attempts=max_attempts,
            retry_failed=retry_failed, filter=not no_filter, filter_top_k=filter_top_k,
            filter_retriever=filter_retriever, base_model=base_model, neighbours=neighbours,
            neighbour_retriever=neighbour_retriever,
            random_negatives=random_negatives, grounded=grounded, grounded_levels=grounded_levels,
            grounded_prompt=grounded_prompt, progress=not quiet,
            backend_options=_backend_options(base_url, api_key_env, timeout, threads, max_retries, device, dtype,
                                             quantize),
        )
    except (DataFormatError, FileNotFoundError, ValueError, KeyError, ImportError, RuntimeError) as error:
        fail(str(error).strip("'\""))
    m = result.manifest
    q, f, c = m["query_generation"], m["filter"], m["contexts"]
    typer.echo(
        f"{q['generated']}/{q['expected']} queries written for {m['documents']['selected']} documents "
        f"({q['failed']} failed, {q['missing']} missing); "
        + (f"round-trip filter ({f['retriever']}, top {f['top_k']}): {f['kept']} kept, {f['dropped']} dropped"
           if f["enabled"] else "no filter")
        + f"\n{c['queries']} training queries, {c['passages']} passages, grades {json.dumps(c['by_grade'])} -> {output}"
        f"\nthis run: {result.summary.done} queries done, {result.summary.failed} failed, "
        f"{result.summary.already_finished} already finished; {m['seconds']['total']:.0f} s"
    )
    if q["failure_reasons"]:
        typer.echo("failure reasons: " + json.dumps(q["failure_reasons"]))
    if m["grounded"]:
        g = m["grounded"]
        typer.echo(f"grounded levels: {g['passages']} passages written, {g['failed']} failed -> {g['folder']}")
