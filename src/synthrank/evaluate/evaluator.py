"""Evaluate a dense model or BM25 on a BEIR folder: encode (or index), search, score."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthrank.data import load_beir, resolve_dataset, write_run
from synthrank.data.trec import Run
from synthrank.evaluate.metrics import DEFAULT_MEASURES, compute_metrics, parse_measures, retrieval_depth
from synthrank.evaluate.options import EvalOptions
from synthrank.evaluate.sharded import chunking_requested, distributed_world, is_main_process

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    model: str
    dataset: str
    split: str
    num_queries: int
    metrics: dict[str, float]
    timing: dict[str, float]
    settings: dict = field(default_factory=dict)
    qrels_warnings: str | None = None
    cache_hit: bool | None = None
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)  # query id -> measure -> value

    def to_json(self) -> dict:
        return asdict(self)


class _Stopwatch:
    def __init__(self):
        self.timing: dict[str, float] = {}
        self._start = time.perf_counter()

    def stage(self, name: str):
        watch = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                watch.timing[name] = round(watch.timing.get(name, 0.0) + time.perf_counter() - self.t0, 3)

        return _Stage()

    def total(self) -> dict[str, float]:
        return {**self.timing, "total": round(time.perf_counter() - self._start, 3)}


def evaluate(options: EvalOptions | None = None, *, run_path: str | Path | None = None, show_progress: bool = True,
             **fields) -> EvalResult:
    """What ``synthrank eval`` does, from Python: ``options`` as an :class:`EvalOptions`, or its
    fields as keywords (``evaluate(dataset="scifact", model="runs/x/model", dtype="int8")``);
    keywords given with ``options`` override its fields. Bad options raise pydantic's
    ``ValidationError`` naming the field."""
    if options is None:
        options = EvalOptions(**fields)
    elif fields:
        options = EvalOptions(**{**options.model_dump(exclude_unset=True), **fields})
    return evaluate_model(options.model, options.dataset, options.split, measures=options.measures,
                          use_cache=options.cache, run_path=run_path, encoder_options=options.encoder_options(),
                          bm25_options=options.bm25_options(), show_progress=show_progress)


def evaluate_model(
    model: str,
    dataset: str,
    split: str = "test",
    measures: Iterable[str] = DEFAULT_MEASURES,
    use_cache: bool = True,
    run_path: str | Path | None = None,
    encoder_options: dict | None = None,
    bm25_options: dict | None = None,
    show_progress: bool = True,
) -> EvalResult:
    """Score ``model`` (a model folder, a bundled alias, or ``"bm25"``) on ``dataset``/``split``:
    the engine under :func:`evaluate`, taking the encoder's and BM25's options as the keyword
    dicts of ``EncoderConfig`` and ``BM25Config`` (``EvalSettings.encoder_options()`` makes them)."""
    measures = list(measures)
    depth = retrieval_depth(parse_measures(measures))
    watch = _Stopwatch()
    with watch.stage("load_data"):
        folder = resolve_dataset(dataset)
        data = load_beir(folder, split)
    query_ids = list(data.queries)
    problems = [] if data.qrels_report.clean else [data.qrels_report.describe()]
    self_judged = self_judged_queries(data.qrels, query_ids)
    if self_judged:
        problems.append(f"{len(self_judged)} queries have a relevant passage with the query's own id "
                        f"(e.g. {', '.join(self_judged[:3])}); BEIR's rule drops such a hit from every run, so it "
                        f"counts as never found")
    warning = "; ".join(problems) or None
    if warning:
        log.warning("%s/%s: %s", folder, split, warning)
    if model.lower() == "bm25":
        run, settings, cache_hit = _bm25_run(data, query_ids, depth, watch, bm25_options or {}, show_progress)
    else:
        run, settings, cache_hit = _dense_run(model, data, query_ids, depth, watch, encoder_options or {},
                                              use_cache, show_progress)
    with watch.stage("metrics"):
        means, per_query = compute_metrics(data.qrels, run, measures, query_ids=query_ids)
    if run_path is not None and is_main_process():  # under torchrun every rank holds the merged run
        write_run(run_path, run, tag=Path(str(model)).name or "synthrank")
    return EvalResult(
        model=str(model), dataset=str(dataset), split=split, num_queries=len(query_ids),
        metrics=means, timing=watch.total(), settings=settings,
        qrels_warnings=warning, cache_hit=cache_hit, per_query=per_query,
    )


def self_judged_queries(qrels, query_ids) -> list[str]:
    """Queries judged to have a relevant (grade > 0) passage whose id is the query's own id."""
    return [qid for qid in query_ids if qrels.get(qid, {}).get(qid, 0) > 0]


def _bm25_run(data, query_ids, depth, watch, options, show_progress) -> tuple[Run, dict, None]:
    from synthrank.retrieval.bm25 import BM25Retriever

    retriever = BM25Retriever(**options)
    with watch.stage("index"):
        retriever.index(data.corpus, show_progress=show_progress)
    with watch.stage("search"):
        run = retriever.search({q: data.queries[q] for q in query_ids}, k=depth, show_progress=show_progress)
    return run, {"bm25": asdict(retriever.config)}, None


def _dense_run(model, data, query_ids, depth, watch, options, use_cache, show_progress) -> tuple[Run, dict, bool]:
    from synthrank.models import Encoder, EncoderConfig
    from synthrank.retrieval.cache import EmbeddingCache
    from synthrank.retrieval.exact import search_run

    if distributed_world()[1] > 1 or chunking_requested():  # torchrun, or a corpus too big for memory
        from synthrank.evaluate.sharded import sharded_dense_run
        return sharded_dense_run(model, data, query_ids, depth, watch, options, use_cache, show_progress)
    with watch.stage("load_model"):
        encoder = Encoder(EncoderConfig(model=model, **options), show_progress=show_progress)
    corpus = data.corpus

    def encode_corpus():
        return encoder.encode(corpus.documents(), "passage", show_progress=show_progress, desc="encode corpus")

    with watch.stage("encode_corpus"):
        if use_cache:
            fingerprint = encoder.fingerprint()
            passage_vectors, hit = EmbeddingCache().get_or_compute(
                fingerprint, corpus, encode_corpus, meta={"model": model, "dataset": str(data.path)}
            )
        else:
            passage_vectors, hit = encode_corpus(), False
    with watch.stage("encode_queries"):
        query_vectors = encoder.encode([data.queries[q] for q in query_ids], "query",
                                       show_progress=show_progress, desc="encode queries")
    with watch.stage("search"):
        run = search_run(query_ids, query_vectors, corpus.ids, passage_vectors, depth)
    settings = {"encoder": {**encoder.config.encoding_settings(), "model_path": encoder.model_path}}
    return run, settings, hit if use_cache else None
