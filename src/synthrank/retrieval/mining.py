"""Hard negatives from BM25: the top-k passages per query that are not annotated as relevant.

Written as BEIR qrels (every mined passage with one grade, 0 by default), so a recipe can use
them as a source next to the real positives, e.g. SciFact train positives -> 3 and BM25
negatives -> 1, as the method does with MS MARCO.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from synthrank.data import Qrels, load_beir, resolve_dataset, write_qrels
from synthrank.utils import atomic_write

log = logging.getLogger(__name__)

__all__ = ["MiningResult", "mine_negatives", "select_negatives", "write_mined"]


@dataclass
class MiningResult:
    qrels: Qrels
    dataset: Path
    split: str
    top_k: int
    skip_top: int
    stats: dict = field(default_factory=dict)


def select_negatives(hits: dict[str, float], positives: set[str], top_k: int, skip_top: int = 0) -> list[str]:
    """Rank ``hits`` by score (ties by id), drop ``positives``, skip the first ``skip_top`` of
    the rest (a guard against unlabelled relevant passages), keep the next ``top_k``."""
    ranked = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
    candidates = [pid for pid, _ in ranked if pid not in positives]
    return candidates[skip_top:skip_top + top_k]


def mine_negatives(dataset: str | Path, split: str = "train", top_k: int = 30, skip_top: int = 0,
                   positive_min_grade: int = 1, retriever=None, show_progress: bool = True) -> MiningResult:
    """BM25 top-``top_k`` non-positive passages for every query judged in ``split``.

    ``retriever`` defaults to :class:`synthrank.retrieval.BM25Retriever` (Anserini settings);
    anything with ``index(corpus)`` and ``search(queries, k)`` works. Passages judged with a
    grade >= ``positive_min_grade`` for the query are never mined for it.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if skip_top < 0:
        raise ValueError(f"skip_top must be >= 0, got {skip_top}")
    folder = resolve_dataset(dataset)
    data = load_beir(folder, split)
    if not data.queries:
        raise ValueError(f"{folder}: no queries of split {split!r} are in queries.jsonl")
    if retriever is None:
        from synthrank.retrieval.bm25 import BM25Retriever

        retriever = BM25Retriever()
    try:
        retriever.index(data.corpus, show_progress=show_progress)
    except TypeError:
        retriever.index(data.corpus)
    positives = {qid: {pid for pid, grade in judged.items() if grade >= positive_min_grade}
                 for qid, judged in data.qrels.items()}
    most_positives = max((len(p) for p in positives.values()), default=0)
    depth = top_k + skip_top + most_positives
    try:
        run = retriever.search(data.queries, k=depth, show_progress=show_progress)
    except TypeError:
        run = retriever.search(data.queries, k=depth)
    qrels: Qrels = {}
    short = 0
    for qid in data.queries:
        negatives = select_negatives(run.get(qid, {}), positives.get(qid, set()), top_k, skip_top)
        if len(negatives) < top_k:
            short += 1
        if negatives:
            qrels[qid] = {pid: 0 for pid in negatives}
    stats = {"queries": len(data.queries), "queries_with_negatives": len(qrels),
             "negatives": sum(len(v) for v in qrels.values()), "queries_short": short,
             "positives_excluded": sum(len(p) for p in positives.values())}
    return MiningResult(qrels, Path(folder), split, top_k, skip_top, stats)


def write_mined(result: MiningResult, output: str | Path, grade: int = 0, retriever_settings: dict | None = None) -> Path:
    """Write the mined qrels: ``output`` ending in ``.tsv`` is the file, anything else a folder
    receiving ``qrels/<split>.tsv`` plus ``mining.json`` (how the negatives were mined)."""
    output = Path(output)
    if output.suffix.lower() == ".tsv":
        path, manifest = output, output.with_suffix(".json")
    else:
        path, manifest = output / "qrels" / f"{result.split}.tsv", output / "mining.json"
    write_qrels(path, {qid: {pid: grade for pid in judged} for qid, judged in result.qrels.items()})
    info = {"dataset": str(result.dataset), "split": result.split, "top_k": result.top_k,
            "skip_top": result.skip_top, "grade": grade, "retriever": retriever_settings or {}, **result.stats,
            "qrels": str(path.resolve())}
    with atomic_write(manifest) as handle:
        handle.write(json.dumps(info, indent=2) + "\n")
    return path
