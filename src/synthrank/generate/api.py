"""The Python API behind ``synthrank generate``: input selection, backend, run, export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from synthrank.data.config_files import validation_summary
from synthrank.generate.backends import make_backend
from synthrank.generate.backends.base import Backend
from synthrank.generate.export import export_beir
from synthrank.generate.levels import default_levels, load_levels
from synthrank.generate.options import FIDELITY_SCORERS, GenerateOptions
from synthrank.generate.prompts import PromptSet
from synthrank.generate.references import load_references
from synthrank.generate.queries import (
    load_query_source, parse_shard, read_id_list, select_queries, shard_queries,
)
from synthrank.generate.runner import GenerationConfig, Generator, RunSummary
from synthrank.generate.store import Store

DEFAULT_CONCURRENCY = {"llama-cpp": 16, "openai": 8, "transformers": 8, "vllm": 256}


def default_backend() -> str:
    """The backend that serves the bundled GGUF best on a CPU: llama.cpp with batched decoding."""
    return "llama-cpp"


@dataclass
class GenerateResult:
    summary: RunSummary
    manifest: dict
    output: Path


class ExportConflictError(ValueError):
    """The output folder holds the export of another configuration (pass overwrite=True)."""


class GenerationShortfallError(RuntimeError):
    """Fewer passages than ``min_success`` asks for were generated; ``result`` says what was."""

    def __init__(self, message: str, result: GenerateResult):
        super().__init__(message)
        self.result = result


def _show(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_differences(old: dict, new: dict) -> list[str]:
    """What differs between two run configurations (as the manifest and ``Generator.run_config``
    record them): backend identity, prompts, and each generation parameter."""
    differences = []
    old_backend, new_backend = old.get("backend_identity") or {}, new.get("backend") or {}
    for key in sorted(set(old_backend) | set(new_backend)):
        if old_backend.get(key) != new_backend.get(key):
            differences.append(f"backend {key}: {_show(old_backend.get(key))} -> {_show(new_backend.get(key))}")
    if old.get("prompt_hash") != new.get("prompt_hash"):
        differences.append("prompts (system/joint/level templates or few-shot examples) changed")
    old_params, new_params = old.get("parameters") or {}, new.get("parameters") or {}
    for key in sorted(set(old_params) | set(new_params)):
        if old_params.get(key) != new_params.get(key):
            differences.append(f"{key}: {_show(old_params.get(key))} -> {_show(new_params.get(key))}")
    return differences


def check_export_target(output: str | Path, fingerprint: str, run_config: dict) -> None:
    """Refuse to write into a folder that holds another configuration's BEIR export (or a BEIR
    folder synthrank did not write): the export would replace its corpus. The same configuration
    resumes and adds to its own export, so it passes."""
    output = Path(output)
    manifest_path = output / "manifest.json"
    hint = "pass --overwrite (overwrite=True) to replace it, or choose another --output"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as error:
            raise ExportConflictError(f"{manifest_path}: unreadable ({error}); {hint}") from None
        if manifest.get("fingerprint") == fingerprint:
            return
        differences = describe_differences(manifest, run_config) or [
            f"run fingerprint {manifest.get('fingerprint')} -> {fingerprint}"]
        passages = (manifest.get("counts") or {}).get("passages")
        raise ExportConflictError(
            f"{output} holds the export of another generation configuration ({passages} passages); "
            f"what differs: {'; '.join(differences)}. {hint[0].upper() + hint[1:]}")
    foreign = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels") if (output / name).exists()]
    if foreign:
        raise ExportConflictError(f"{output} holds {', '.join(foreign)} but no manifest.json: not a synthrank "
                                  f"generate output, and the export would replace them. {hint[0].upper() + hint[1:]}")


def check_success(result: GenerateResult, min_success: float) -> None:
    """Raise :class:`GenerationShortfallError` when nothing, or less than ``min_success`` of the
    expected passages, exists in the export."""
    counts = result.manifest["counts"]
    expected, passages = counts["expected_passages"], counts["passages"]
    if not expected or (passages and passages >= min_success * expected):
        return
    reasons = ", ".join(f"{reason} ({n})" for reason, n in list(counts["failure_reasons"].items())[:3])
    raise GenerationShortfallError(
        f"only {passages} of {expected} passages were generated ({passages / expected:.0%}; "
        f"at least {min_success:.0%} asked by --min-success)" + (f"; failure reasons: {reasons}" if reasons else ""),
        result)


def build_backend(backend: str | None, model: str | None, concurrency: int | None, **options) -> Backend:
    name = backend or default_backend()
    k = concurrency if concurrency is not None else DEFAULT_CONCURRENCY.get(name, 1)
    options = {key: value for key, value in options.items() if value is not None}
    return make_backend(name, model, concurrency=k, **options)


def resolve_mode(mode: str, engine: Backend) -> str:
    """``auto``: one request per level for the bundled 135M model, which rarely writes a whole
    valid JSON object (most joint answers ran to max_tokens and fell back to per-level requests;
    50 MS MARCO queries took 8 min 13 s that way); its per-level prompts also share all but the
    query, which the llama-cpp engine decodes once. One joint JSON request per query for any
    other model."""
    if mode != "auto":
        return mode
    return "per-level" if getattr(engine, "bundled", False) else "joint"


def generate(
    queries: str | Path | None,
    output: str | Path,
    *,
    progress: bool = True,
    backend_instance: Backend | None = None,
    options: GenerateOptions | None = None,
    **kwargs,
) -> GenerateResult:
    """Generate graded passages for the selected queries into ``output`` (a store and a BEIR folder).

    The options are those of :class:`~synthrank.generate.options.GenerateOptions` (their single
    declaration, with defaults and help), given as keyword arguments (``generate(q, out,
    levels=3, temperature=0.2)``) and/or as ``options``; an unknown keyword is a TypeError and
    a bad value a ValueError naming the option. ``backend_instance`` replaces the backend the
    options describe (tests, reuse across calls).

    ``references`` switches to grounded mode (``mode`` "auto" or "grounded"): a BEIR folder or
    dataset name whose ``split`` qrels give each query's real top-level passage, or a JSONL file
    of ``{"query-id", "corpus-id", "title", "text"}``; the model writes the other levels relative
    to it. Only queries that have a reference are selected.

    ``output`` may hold this configuration's earlier export (the run resumes), but another
    configuration's only with ``overwrite``. Raises :class:`GenerationShortfallError` (after
    exporting) when fewer than ``min_success`` of the expected passages exist."""
    opts = resolve_options(queries, options, kwargs)
    queries, split, references, seed = opts.queries, opts.split, opts.references, opts.seed
    all_queries = load_query_source(queries, split=split)
    reference_map = None
    if references is not None:
        reference_map = load_references(references, split, all_queries)
        if not reference_map:
            raise ValueError(f"{references}: no reference passage for any of the {len(all_queries)} queries")
        all_queries = {qid: text for qid, text in all_queries.items() if qid in reference_map}
    ids = read_id_list(opts.query_ids) if isinstance(opts.query_ids, str) else opts.query_ids
    selected = select_queries(all_queries, ids=ids, sample=opts.sample, seed=seed, limit=opts.limit)
    shard_spec = parse_shard(opts.shard)
    selected = shard_queries(selected, shard_spec)
    level_list = load_levels(opts.levels_file) if opts.levels_file else default_levels(opts.levels)
    prompts = PromptSet.load(opts.system_prompt, opts.joint_prompt, opts.level_prompt, opts.few_shot,
                             grounded=(opts.grounded_prompt or True) if reference_map else None)
    owned = backend_instance is None
    engine = backend_instance or build_backend(opts.backend, opts.model, opts.concurrency, **opts.backend_options)
    try:
        config = GenerationConfig(levels=level_list, per_level=opts.per_level,
                                  mode="grounded" if reference_map else resolve_mode(opts.mode, engine),
                                  temperature=opts.temperature, top_p=opts.top_p,
                                  max_tokens_per_passage=opts.max_tokens_per_passage, min_words=opts.min_words,
                                  max_words=opts.max_words, max_attempts=opts.max_attempts, seed=seed,
                                  reference_words=opts.reference_words)
        generator = Generator(engine, prompts, config,
                              {qid: reference_map[qid] for qid in selected} if reference_map else None)
        if not opts.overwrite:
            check_export_target(output, generator.fingerprint, generator.run_config())
        summary = generator.run(selected, output, shard=opts.shard, retry_failed=opts.retry_failed, progress=progress)
        runtime = engine.runtime()
    finally:
        if owned:
            engine.close()
    with Store.in_dir(output) as store:
        manifest = export_beir(store, generator.fingerprint, output,
                               extra={"shard": opts.shard, "this_session": {**_session_stats(summary), "runtime": runtime}})
    if opts.fidelity and manifest["counts"]["passages"]:
        manifest = add_fidelity(output, manifest, opts.fidelity, opts.fidelity_encoder, progress)
    result = GenerateResult(summary, manifest, Path(output))
    check_success(result, opts.min_success)
    return result


def resolve_options(queries, options: GenerateOptions | None, kwargs: dict) -> GenerateOptions:
    """``options`` updated with ``kwargs`` (and ``queries`` when given), validated."""
    fields = GenerateOptions.model_fields
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise TypeError(f"generate() got unknown option(s) {', '.join(unknown)}; options: {', '.join(fields)}")
    data = options.model_dump(exclude_unset=True) if options is not None else {}
    data.update(kwargs)
    if queries is not None:
        data["queries"] = queries
    try:
        return GenerateOptions.model_validate(data)
    except ValidationError as error:
        raise ValueError(validation_summary(error)) from None


def measure_fidelity(folder: str | Path, split: str = "train", scorers=("bm25", "encoder"),
                     encoder: str | None = None, progress: bool = False) -> dict[str, dict]:
    """Level fidelity of any graded BEIR folder and split (see :mod:`synthrank.generate.fidelity`)."""
    from synthrank.data import load_beir
    from synthrank.generate.fidelity import bm25_scorer, encoder_scorer, level_fidelity
    from synthrank.models.bundled import DEFAULT_ENCODER

    unknown = sorted(set(scorers) - set(FIDELITY_SCORERS))
    if unknown:
        raise ValueError(f"unknown fidelity scorer(s) {', '.join(unknown)}; known: {', '.join(FIDELITY_SCORERS)}")
    data = load_beir(folder, split)
    if not len(data.corpus):
        return {}
    build = {"bm25": lambda: bm25_scorer(data.corpus),
             "encoder": lambda: encoder_scorer(data.corpus, encoder or DEFAULT_ENCODER, show_progress=progress)}
    results = level_fidelity(data.queries, data.qrels, {name: build[name]() for name in scorers})
    if "encoder" in results:
        results["encoder"]["model"] = encoder or DEFAULT_ENCODER
    return results


def add_fidelity(folder: str | Path, manifest: dict, scorers, encoder: str | None = None,
                 progress: bool = False) -> dict:
    """Score the exported levels with independent scorers, write ``fidelity.json`` (with
    per-query accuracies, for the consistency filter of recipes) and the summary into
    ``manifest.json``."""
    from synthrank.utils import atomic_write

    folder = Path(folder)
    results = measure_fidelity(folder, "train", scorers, encoder, progress)
    if not results:
        return manifest
    with atomic_write(folder / "fidelity.json") as handle:
        json.dump({"scorers": results}, handle, indent=1)
        handle.write("\n")
    manifest["fidelity"] = {name: {k: v for k, v in result.items() if k != "per_query"}
                            for name, result in results.items()}
    with atomic_write(folder / "manifest.json") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return manifest


def _session_stats(summary: RunSummary) -> dict:
    return {"already_finished": summary.already_finished, "done": summary.done, "failed": summary.failed,
            "requests": summary.requests, "tokens_in": summary.tokens_in, "tokens_out": summary.tokens_out,
            "seconds": round(summary.seconds, 3), "passages_per_second": round(summary.passages_per_second, 4),
            "tokens_per_second": round(summary.tokens_per_second, 2)}


def merge(output: str | Path, sources: list[str | Path], fingerprint: str | None = None) -> dict:
    """Merge the stores of shard outputs into ``output`` and export the union as one BEIR folder."""
    with Store.in_dir(output) as store:
        for source in sources:
            store.merge_from(source)
        fingerprints = store.fingerprints()
        if fingerprint is None:
            if len(fingerprints) != 1:
                raise ValueError(f"{output}: the merged store holds {len(fingerprints)} runs "
                                 f"({', '.join(fingerprints) or 'none'}); pass the fingerprint to export")
            fingerprint = fingerprints[0]
        return export_beir(store, fingerprint, output, extra={"merged_from": [str(s) for s in sources]})
