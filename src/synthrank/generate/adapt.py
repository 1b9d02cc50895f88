"""``synthrank adapt``: training data for a retriever from a bare corpus -- no queries, no labels.

1. **Documents.** ``documents`` of the corpus are drawn with a seed, at random or stratified by
   length (equal shares from each length quartile, so short and long documents are both
   represented); documents shorter than ``min_document_words`` are never drawn.
2. **Queries.** The LLM writes ``queries_per_doc`` queries per document in the style of the
   collection's users (:mod:`synthrank.generate.doc_queries`), on the store, resume, sharding,
   backends and progress of ``synthrank generate``.
3. **Round-trip filter** (on by default; the consistency filter of InPars/Promptagator): a query
   is kept only if its source document ranks within ``filter_top_k`` for it under BM25 or the
   base dense retriever.
4. **Graded contexts.** The source document is the level-3 passage (real text). Lower levels
   come from the corpus: BM25 neighbours of the query other than the source, graded by a rank
   rule (default ``"1-3=1"``: the top three get level 1, as the method treats mined negatives),
   optionally ``random_negatives`` random documents at level 0. With ``grounded``, the generator
   also writes the lower levels (2, 1, 0 on the default scale) relative to the source document
   (``synthrank generate``'s grounded mode; its store and export are in ``<output>/grounded/``).
5. **Output.** A BEIR training folder (``queries.jsonl``, ``corpus.jsonl`` with the documents
   used, ``qrels/train.tsv`` graded) plus ``manifest.json``: usable by ``synthrank train``
   recipes as is (``dataset = "<output>"``, ``split = "train"``).

The generation store (``<output>/generate.sqlite``) commits every answer as it arrives, so the
run can be killed at any point and started again; the filter and the export are cheap and are
redone at the end of every run.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from synthrank import __version__
from synthrank.data import Corpus, DataFormatError, load_corpus, resolve_dataset, write_corpus
from synthrank.data import write_qrels, write_queries
from synthrank.generate.doc_queries import DEFAULT_STYLE, QUERY_GRADE, QueryConfig, QueryGenerator, QueryPromptSet
from synthrank.generate.doc_queries import query_id
from synthrank.generate.queries import parse_shard, shard_queries
from synthrank.generate.runner import RunSummary, _derive_seed, reason_kind
from synthrank.generate.store import Store
from synthrank.utils import atomic_write

SAMPLINGS = ("random", "stratified")
RETRIEVERS = ("bm25", "base")
DEFAULT_NEIGHBOUR_RULE = "1-3=1"
STRATA = 4


@dataclass
class AdaptResult:
    manifest: dict
    output: Path
    summary: RunSummary


# --- the corpus -----------------------------------------------------------------------------

def resolve_corpus(source: str | Path) -> Path:
    """The ``corpus.jsonl`` of ``source``: the file itself, a folder holding it, or a dataset name
    (``$SYNTHRANK_DATA_DIR/<name>``, the cache, or the BEIR download)."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise FileNotFoundError(f"{path}: no corpus.jsonl in this folder")
        return path / "corpus.jsonl"
    name = str(source)
    data_dir = os.environ.get("SYNTHRANK_DATA_DIR")
    if data_dir and (Path(data_dir) / name / "corpus.jsonl").is_file():
        return Path(data_dir) / name / "corpus.jsonl"
    if "/" in name or name.startswith((".", "~")):
        raise FileNotFoundError(f"{path}: no such file or folder")
    folder = resolve_dataset(name)
    if not (folder / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"{folder}: dataset {name!r} has no corpus.jsonl")
    return folder / "corpus.jsonl"


def check_output(output: Path, corpus_path: Path) -> None:
    """Refuse an output folder whose files the export would replace but adapt did not write: the
    input corpus's own folder, or any BEIR folder without an adapt manifest."""
    if output.resolve() == corpus_path.resolve().parent:
        raise ValueError(f"{output}: this folder holds the input corpus; choose another --output")
    manifest = output / "manifest.json"
    if manifest.is_file():
        try:
            task = json.loads(manifest.read_text(encoding="utf-8")).get("task")
        except (ValueError, OSError, AttributeError):
            task = None
        if task == "adapt":
            return
        raise ValueError(f"{output} holds the output of something else than synthrank adapt ({manifest}); "
                         "choose another --output")
    foreign = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels") if (output / name).exists()]
    if foreign:
        raise ValueError(f"{output} holds {', '.join(foreign)} but no adapt manifest.json; the export would "
                         "replace them: choose another --output")


def load_documents(path: Path) -> Corpus:
    """Read and check the corpus: errors name the file, line and field (missing or empty text,
    duplicate ids); an empty corpus is an error too."""
    corpus = load_corpus(path)
    if not len(corpus):
        raise DataFormatError(path, None, None, "the corpus has no documents")
    return corpus


def document_text(corpus: Corpus, row: int) -> str:
    """What the LLM reads: the title on its own line, then the text."""
    title, text = corpus.titles[row].strip(), corpus.texts[row].strip()
    return f"{title}\n{text}" if title else text


def sample_documents(corpus: Corpus, n: int | None, *, seed: int = 0, sampling: str = "random",
                     min_words: int = 1) -> list[int]:
    """Rows of ``n`` documents (all eligible ones when ``n`` is None or larger), in file order.

    ``random``: a uniform draw. ``stratified``: documents sorted by length are cut into
    ``STRATA`` equal bins and the draw is shared equally between them (short and long documents
    are both represented whatever the length distribution)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
    if n is not None and n < 1:
        raise ValueError(f"documents must be >= 1, got {n}")
    lengths = [len(document_text(corpus, row).split()) for row in range(len(corpus))]
    eligible = [row for row in range(len(corpus)) if lengths[row] >= min_words]
    if not eligible:
        raise ValueError(f"no document has at least {min_words} words (min_document_words)")
    if n is None or n >= len(eligible):
        return eligible
    rng = random.Random(seed)
    if sampling == "random":
        return sorted(rng.sample(eligible, n))
    by_length = sorted(eligible, key=lambda row: (lengths[row], row))
    strata = min(STRATA, n)
    bins = [by_length[len(by_length) * i // strata: len(by_length) * (i + 1) // strata] for i in range(strata)]
    chosen: list[int] = []
    for i, rows in enumerate(bins):
        share = n // strata + (1 if i < n % strata else 0)
        chosen.extend(rng.sample(rows, min(share, len(rows))))
    return sorted(chosen)


# --- grading rule ---------------------------------------------------------------------------

_BAND = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*=\s*(\d+)\s*$")


def parse_neighbour_rule(rule: str) -> list[tuple[int, int, int]]:
    """``"1-3=1,4-10=0"`` -> ``[(1, 3, 1), (4, 10, 0)]``: BM25 neighbours at ranks 1 to 3 (the
    source document not counted) get level 1, ranks 4 to 10 level 0; other ranks are not used.
    An empty rule uses no neighbours."""
    bands: list[tuple[int, int, int]] = []
    for part in filter(None, (p.strip() for p in rule.split(","))):
        match = _BAND.match(part)
        if not match:
            raise ValueError(f"neighbour rule {rule!r}: {part!r} is not FIRST-LAST=GRADE (e.g. 1-3=1)")
        first, last, grade = int(match[1]), int(match[2] or match[1]), int(match[3])
        if first < 1 or last < first:
            raise ValueError(f"neighbour rule {rule!r}: ranks in {part!r} must satisfy 1 <= first <= last")
        if grade >= QUERY_GRADE:
            raise ValueError(f"neighbour rule {rule!r}: grade {grade} in {part!r} must be below the "
                             f"source document's {QUERY_GRADE}")
        for other in bands:
            if first <= other[1] and other[0] <= last:
                raise ValueError(f"neighbour rule {rule!r}: ranks {first}-{last} overlap {other[0]}-{other[1]}")
        bands.append((first, last, grade))
    return sorted(bands)


def grade_neighbours(ranked: list[str], source: str, bands: list[tuple[int, int, int]]) -> dict[str, int]:
    """Grades of the neighbours in ``ranked`` (best first) by the rule; the source is skipped
    and does not take a rank."""
    others = [pid for pid in ranked if pid != source]
    graded: dict[str, int] = {}
    for first, last, grade in bands:
        for pid in others[first - 1:last]:
            graded[pid] = grade
    return graded


# --- retrieval for the filter and the neighbours --------------------------------------------

def bm25_rankings(corpus: Corpus, queries: dict[str, str], depth: int, progress: bool = False) -> dict[str, list[str]]:
    from synthrank.retrieval.bm25 import BM25Retriever

    retriever = BM25Retriever().index(corpus, show_progress=progress)
    run = retriever.search(queries, k=depth, drop_self_hits=False, show_progress=progress)
    return {qid: [pid for pid, _ in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))] for qid, hits in run.items()}


def dense_rankings(corpus: Corpus, queries: dict[str, str], depth: int, model: str,
                   progress: bool = False) -> dict[str, list[str]]:
    """Top-``depth`` documents per query under the base dense retriever (corpus vectors cached)."""
    from synthrank.models import Encoder, EncoderConfig
    from synthrank.retrieval.cache import EmbeddingCache
    from synthrank.retrieval.exact import search_run

    encoder = Encoder(EncoderConfig(model=model))
    vectors, _ = EmbeddingCache().get_or_compute(
        encoder.fingerprint(), corpus,
        lambda: encoder.encode(corpus.documents(), "passage", show_progress=progress, desc="encode corpus"),
        meta={"model": model})
    ids = list(queries)
    query_vectors = encoder.encode([queries[q] for q in ids], "query", show_progress=progress, desc="encode queries")
    run = search_run(ids, query_vectors, corpus.ids, vectors, depth, drop_self_hits=False)
    return {qid: [pid for pid, _ in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))] for qid, hits in run.items()}


def source_rank(ranked: list[str], source: str) -> int | None:
    """1-based rank of the source document, None when it is not retrieved at all."""
    return ranked.index(source) + 1 if source in ranked else None


def round_trip(queries: dict[str, str], sources: dict[str, str], ranking: dict[str, list[str]],
               top_k: int) -> tuple[dict[str, str], list[dict]]:
    """The consistency filter: queries whose source document ranks within ``top_k`` are kept;
    the others are returned with the rank their source got (None: not retrieved)."""
    kept: dict[str, str] = {}
    dropped = []
    for qid, text in queries.items():
        rank = source_rank(ranking.get(qid, []), sources[qid])
        if rank is None or rank > top_k:
            dropped.append({"query_id": qid, "document": sources[qid], "query": text, "source_rank": rank})
        else:
            kept[qid] = text
    return kept, dropped


def build_contexts(queries: dict[str, str], sources: dict[str, str], ranking: dict[str, list[str]],
                   bands: list[tuple[int, int, int]], docs: Corpus, random_negatives: int,
                   seed: int) -> tuple[dict[str, dict[str, int]], int]:
    """Each query's graded real documents: its source at level 3, its neighbours in ``ranking``
    (BM25 or the base retriever) graded by the rule, ``random_negatives`` random documents at 0.
    Also returns how many queries got fewer neighbours than the rule asks for (BM25 found too few
    documents sharing a term)."""
    wanted = sum(last - first + 1 for first, last, _ in bands)
    qrels: dict[str, dict[str, int]] = {}
    short = 0
    for qid in queries:
        source = sources[qid]
        context = {source: QUERY_GRADE}
        context.update(grade_neighbours(ranking.get(qid, []), source, bands))
        short += len(context) - 1 < wanted
        if random_negatives:
            context.update(_random_negatives(docs, qid, context, set(ranking.get(qid, [])), random_negatives, seed))
        qrels[qid] = context
    return qrels, short


# --- the pipeline ---------------------------------------------------------------------------

def adapt(
    corpus: str | Path,
    output: str | Path,
    *,
    documents: int | None = 100,
    queries_per_doc: int = 1,
    sampling: str = "random",
    seed: int = 0,
    limit: int | None = None,
    min_document_words: int = 20,
    shard: str | None = None,
    merge_from: list[str | Path] | None = None,
    backend: str | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    style: str = DEFAULT_STYLE,
    system_prompt: str | Path | None = None,
    query_prompt: str | Path | None = None,
    few_shot: str | Path | bool = True,
    few_shot_per_query: int | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_tokens: int = 64,
    min_words: int = 3,
    max_words: int = 32,
    max_document_words: int = 256,
    max_copied_trigrams: float = 0.8,
    max_attempts: int = 3,
    cut_off: str = "first-sentence",
    retry_failed: bool = False,
    filter: bool = True,
    filter_top_k: int = 20,
    filter_retriever: str = "bm25",
    base_model: str = "all-MiniLM-L6-v2",
    neighbours: str = DEFAULT_NEIGHBOUR_RULE,
    neighbour_retriever: str = "bm25",
    random_negatives: int = 0,
    grounded: bool = False,
    grounded_levels: int = 4,
    grounded_prompt: str | Path | None = None,
    progress: bool = True,
    backend_instance=None,
    backend_options: dict | None = None,
) -> AdaptResult:
    """Write queries for sampled documents of ``corpus``, filter them, grade contexts around the
    source documents and export a BEIR training folder with a manifest into ``output``."""
    if filter_retriever not in RETRIEVERS:
        raise ValueError(f"filter_retriever must be one of {', '.join(RETRIEVERS)}, not {filter_retriever!r}")
    if neighbour_retriever not in RETRIEVERS:
        raise ValueError(f"neighbour_retriever must be one of {', '.join(RETRIEVERS)}, not {neighbour_retriever!r}")
    if filter_top_k < 1:
        raise ValueError(f"filter_top_k must be >= 1, got {filter_top_k}")
    if random_negatives < 0:
        raise ValueError(f"random_negatives must be >= 0, got {random_negatives}")
    if queries_per_doc < 1:
        raise ValueError(f"queries_per_doc must be >= 1, got {queries_per_doc}")
    bands = parse_neighbour_rule(neighbours)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    corpus_path = resolve_corpus(corpus)
    output = Path(output)
    check_output(output, corpus_path)
    docs = load_documents(corpus_path)
    rows = sample_documents(docs, documents, seed=seed, sampling=sampling, min_words=min_document_words)
    if limit is not None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        rows = rows[:limit]
    selected = shard_queries({docs.ids[row]: document_text(docs, row) for row in rows}, parse_shard(shard))
    output = Path(output)
    if merge_from:
        with Store.in_dir(output) as store:
            for source in merge_from:
                store.merge_from(source)
    timings["load"] = time.perf_counter() - started

    from synthrank.generate.api import build_backend

    config = QueryConfig(per_level=queries_per_doc, temperature=temperature, top_p=top_p,
                         max_tokens_per_passage=max_tokens, min_words=min_words, max_words=max_words,
                         max_attempts=max_attempts, seed=seed, style=style, max_document_words=max_document_words,
                         max_copied_trigrams=max_copied_trigrams, few_shot_per_query=few_shot_per_query,
                         cut_off=cut_off)
    prompts = QueryPromptSet.load(system_prompt, query_prompt, few_shot)
    owned = backend_instance is None
    engine = backend_instance or build_backend(backend, model, concurrency, **(backend_options or {}))
    try:
        return _adapt_with(engine, prompts, config, docs, corpus_path, selected, output, timings, started,
                           documents=documents, queries_per_doc=queries_per_doc, sampling=sampling, seed=seed,
                           limit=limit, min_document_words=min_document_words, shard=shard,
                           retry_failed=retry_failed, filter=filter, filter_top_k=filter_top_k,
                           filter_retriever=filter_retriever, base_model=base_model, neighbours=neighbours,
                           neighbour_retriever=neighbour_retriever, bands=bands,
                           random_negatives=random_negatives, grounded=grounded, grounded_levels=grounded_levels,
                           grounded_prompt=grounded_prompt, progress=progress)
    finally:
        if owned:
            engine.close()


def _adapt_with(engine, prompts: QueryPromptSet, config: QueryConfig, docs: Corpus, corpus_path: Path,
                selected: dict[str, str], output: Path, timings: dict[str, float], started: float, *,
                documents, queries_per_doc, sampling, seed, limit, min_document_words, shard, retry_failed, filter,
                filter_top_k, filter_retriever, base_model, neighbours, neighbour_retriever, bands, random_negatives,
                grounded, grounded_levels, grounded_prompt, progress) -> AdaptResult:
    """The steps after the backend is built: queries, filter, contexts, grounded levels, export."""
    generator = QueryGenerator(engine, prompts, config)
    step = time.perf_counter()
    summary = generator.run(selected, output, shard=shard, retry_failed=retry_failed, progress=progress)
    timings["generate_queries"] = time.perf_counter() - step

    step = time.perf_counter()
    with Store.in_dir(output) as store:
        run_config = store.config(generator.fingerprint)
        totals = store.totals(generator.fingerprint)
        generated: dict[str, tuple[str, str]] = {}  # query id -> (source document id, query text)
        failures = []
        for item in store.items(generator.fingerprint):
            if item.qid not in selected:
                continue
            if item.status == "done":
                generated[query_id(item.qid, item.k)] = (item.qid, item.text)
            else:
                failures.append({"document": item.qid, "index": item.k, "attempts": item.attempts,
                                 "reason": item.reason})
    # Store order follows completion; sort so that the export does not depend on timing.
    order = {doc_id: i for i, doc_id in enumerate(selected)}
    generated = dict(sorted(generated.items(), key=lambda kv: (order[kv[1][0]], kv[0])))
    query_texts = {qid: text for qid, (_, text) in generated.items()}
    sources = {qid: doc_id for qid, (doc_id, _) in generated.items()}
    neighbour_depth = max((last for _, last, _ in bands), default=0) + 1  # +1: the source may rank among them
    # One ranking per retriever, deep enough for every use of it (filter window, neighbour bands).
    depths = {"bm25": 0, "base": 0}
    if filter:
        depths[filter_retriever] = filter_top_k
    depths[neighbour_retriever] = max(depths[neighbour_retriever], neighbour_depth)
    rankings = {"bm25": bm25_rankings, "base": partial(dense_rankings, model=base_model)}
    ranked = {name: rankings[name](docs, query_texts, depth, progress=progress) if query_texts and depth else {}
              for name, depth in depths.items()}
    filter_ranking = ranked[filter_retriever]
    timings["retrieve"] = time.perf_counter() - step

    if filter:
        kept, dropped = round_trip(query_texts, sources, filter_ranking, filter_top_k)
    else:
        kept, dropped = dict(query_texts), []
    qrels, short_contexts = build_contexts(kept, sources, ranked[neighbour_retriever], bands, docs,
                                           random_negatives, seed)
    row_of = docs.index()
    used = dict.fromkeys(pid for judged in qrels.values() for pid in judged)
    passages = [{"_id": pid, "title": docs.titles[row_of[pid]], "text": docs.texts[row_of[pid]]} for pid in used]
    grounded_info = None
    if grounded and kept:
        step = time.perf_counter()
        generated_passages, grounded_info = _grounded_levels(
            engine, output / "grounded", kept, sources, docs, row_of, seed=seed, levels=grounded_levels,
            prompt=grounded_prompt, retry_failed=retry_failed, progress=progress)
        for qid, judged in generated_passages.items():
            for pid, (grade, text) in judged.items():
                qrels[qid][pid] = grade
                passages.append({"_id": pid, "title": "", "text": text})
        timings["grounded_levels"] = time.perf_counter() - step
    grade_counts = Counter(grade for judged in qrels.values() for grade in judged.values())
    write_corpus(output / "corpus.jsonl", passages)
    write_queries(output / "queries.jsonl", kept)
    write_qrels(output / "qrels" / "train.tsv", qrels)
    timings["total"] = time.perf_counter() - started

    reasons: dict[str, int] = {}
    for failure in failures:
        kind = reason_kind(failure["reason"])
        reasons[kind] = reasons.get(kind, 0) + 1
    expected = len(selected) * queries_per_doc
    manifest = {
        "synthrank_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": "adapt",
        "corpus": str(corpus_path),
        "corpus_documents": len(docs),
        "documents": {"requested": documents, "sampling": sampling, "seed": seed, "limit": limit,
                      "min_document_words": min_document_words, "shard": shard, "selected": len(selected)},
        "query_generation": {
            "fingerprint": generator.fingerprint,
            "backend": run_config["backend"].get("backend"),
            "model": run_config["backend"].get("model"),
            "backend_identity": run_config["backend"],
            "prompt_hash": run_config["prompt_hash"],
            "parameters": run_config["parameters"],
            "expected": expected,
            "generated": len(generated),
            "failed": len(failures),
            "missing": expected - len(generated) - len(failures),
            "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "tokens_in": totals["tokens_in"],
            "tokens_out": totals["tokens_out"],
            "requests": totals["requests"],
            "wall_seconds": totals["wall_seconds"],
            "sessions": totals["sessions"],
            "this_session": {"done": summary.done, "failed": summary.failed,
                             "already_finished": summary.already_finished, "seconds": round(summary.seconds, 3),
                             "runtime": engine.runtime()},
        },
        "filter": {
            "enabled": filter, "retriever": filter_retriever if filter else None,
            "base_model": base_model if filter and filter_retriever == "base" else None,
            "top_k": filter_top_k if filter else None,
            "generated": len(generated), "kept": len(kept), "dropped": len(dropped),
            "yield": round(len(kept) / len(generated), 4) if generated else None,
        },
        "contexts": {
            "queries": len(kept), "neighbour_rule": neighbours, "neighbour_retriever": neighbour_retriever,
            "neighbour_model": base_model if neighbour_retriever == "base" else None,
            "random_negatives": random_negatives, "passages": len(passages),
            "by_grade": {str(g): grade_counts[g] for g in sorted(grade_counts, reverse=True)},
            "short_contexts": short_contexts,
        },
        "grounded": grounded_info,
        "seconds": {name: round(value, 3) for name, value in timings.items()},
        "failures": failures,
        "dropped": dropped,
        "files": {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels/train.tsv",
                  "store": "generate.sqlite"},
    }
    with atomic_write(output / "manifest.json") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return AdaptResult(manifest, output, summary)


def _random_negatives(docs: Corpus, qid: str, context: dict[str, int], retrieved: set[str], count: int,
                      seed: int) -> dict[str, int]:
    """``count`` documents drawn at random (per query, from the seed) among those neither in the
    context nor retrieved for the query (level 0). Rejection sampling keeps this cheap on large
    corpora; on a corpus so small that retrieval returns nearly all of it, retrieved documents
    outside the context are allowed after a while."""
    rng = random.Random(_derive_seed(seed, qid, "random-negatives"))
    picked: dict[str, int] = {}
    for excluded in (retrieved, set()):
        for _ in range(20 * count):
            if len(picked) == count:
                return picked
            pid = docs.ids[rng.randrange(len(docs))]
            if pid not in context and pid not in excluded:
                picked[pid] = 0
    return picked


def _grounded_levels(engine, folder: Path, kept: dict[str, str], sources: dict[str, str], docs: Corpus,
                     row_of: dict[str, int], *, seed: int, levels: int, prompt, retry_failed: bool,
                     progress: bool) -> tuple[dict[str, dict[str, tuple[int, str]]], dict]:
    """Lower levels written by the generator relative to each kept query's source document
    (``synthrank generate``'s grounded mode, resumable in ``folder``). Returns, per query,
    ``passage id -> (grade, text)`` for the generated passages (the top level is the real
    document, already in the context under its own id) and a summary for the manifest."""
    from synthrank.data import load_beir
    from synthrank.generate.api import generate

    folder.mkdir(parents=True, exist_ok=True)
    write_queries(folder / "input-queries.jsonl", kept)
    with atomic_write(folder / "references.jsonl") as handle:
        for qid in kept:
            row = row_of[sources[qid]]
            handle.write(json.dumps({"query-id": qid, "corpus-id": sources[qid], "title": docs.titles[row],
                                     "text": docs.texts[row] or docs.titles[row]}, ensure_ascii=False) + "\n")
    # The folder is adapt's own: a new set of kept queries replaces its export (the store keeps
    # every passage), and a shortfall is reported in the manifest instead of stopping the run.
    result = generate(folder / "input-queries.jsonl", folder, backend_instance=engine, mode="grounded",
                      references=folder / "references.jsonl", levels=levels, grounded_prompt=prompt, seed=seed,
                      retry_failed=retry_failed, progress=progress, overwrite=True, min_success=0.0,
                      fidelity=["bm25"])  # adapt reports BM25 fidelity only (generate()'s default adds the encoder)
    data = load_beir(folder, "train")
    top = result.manifest["grounded"]["reference_level"]
    texts = dict(zip(data.corpus.ids, data.corpus.texts))
    generated = {qid: {pid: (grade, texts[pid]) for pid, grade in judged.items() if grade != top}
                 for qid, judged in data.qrels.items() if qid in kept}
    counts = result.manifest["counts"]
    info = {"folder": str(folder), "levels": levels, "reference_level": top,
            "passages": sum(len(v) for v in generated.values()),
            "failed": counts["failed"], "failure_reasons": counts["failure_reasons"],
            "by_level": counts["by_level"], "fidelity": result.manifest.get("fidelity"),
            "fingerprint": result.manifest["fingerprint"]}
    return generated, info
