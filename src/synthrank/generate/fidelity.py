"""Level fidelity: how well an independent scorer orders a generated ranking context.

For every query of a generated (or any graded) BEIR folder, each scorer scores the query
against its own passages. For every pair of levels (hi, lo) that the method relies on --
adjacent levels (3>2, 2>1, 1>0) and the extremes (3>0) -- the *ordering accuracy* is the share
of (query, hi passage, lo passage) triples where the scorer puts the higher level above the
lower one (a tie counts one half). 0.5 is chance; a generator whose levels carry signal scores
well above it before any training. Scorers: ``bm25`` (lexical, statistics of the folder's own
corpus) and ``encoder`` (a dense model, by default the bundled base encoder: cosine/dot score).

The per-query accuracies (over all of a query's level pairs) drive the optional consistency
filter, which drops the contexts that a scorer orders badly.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping

__all__ = ["level_pairs", "ordering_accuracy", "level_fidelity", "bm25_scorer", "encoder_scorer",
           "Scores", "Scorer"]

Scores = dict[str, dict[str, float]]  # query id -> passage id -> score
Scorer = Callable[[Mapping[str, str], Mapping[str, list[str]]], Scores]


def level_pairs(grades: list[int]) -> list[tuple[int, int]]:
    """Adjacent pairs from the top down, then (top, bottom) if it is not adjacent already."""
    ordered = sorted(set(grades), reverse=True)
    pairs = list(zip(ordered, ordered[1:]))
    if len(ordered) > 2:
        pairs.append((ordered[0], ordered[-1]))
    return pairs


def _pair_outcomes(scores: Mapping[str, float], grades: Mapping[str, int], hi: int, lo: int) -> list[float]:
    high = [scores[p] for p, g in grades.items() if g == hi and p in scores]
    low = [scores[p] for p, g in grades.items() if g == lo and p in scores]
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a in high for b in low]


def ordering_accuracy(scores: Scores, qrels: Mapping[str, Mapping[str, int]]) -> dict:
    """Pairwise ordering accuracy per level pair and per query, and the mean score per level."""
    grades_seen = sorted({g for judged in qrels.values() for g in judged.values()})
    pairs = level_pairs(grades_seen)
    by_pair: dict[str, list[float]] = {f"{hi}>{lo}": [] for hi, lo in pairs}
    per_query: dict[str, float] = {}
    level_scores: dict[int, list[float]] = {g: [] for g in grades_seen}
    for qid, judged in qrels.items():
        query_scores = scores.get(qid, {})
        outcomes: list[float] = []
        for hi, lo in pairs:
            results = _pair_outcomes(query_scores, judged, hi, lo)
            by_pair[f"{hi}>{lo}"].extend(results)
            outcomes.extend(results)
        if outcomes:
            per_query[qid] = sum(outcomes) / len(outcomes)
        for pid, grade in judged.items():
            if pid in query_scores:
                level_scores[grade].append(query_scores[pid])
    return {
        "pairs": {name: round(sum(v) / len(v), 4) if v else None for name, v in by_pair.items()},
        "pair_counts": {name: len(v) for name, v in by_pair.items()},
        "mean_accuracy": round(statistics.fmean(per_query.values()), 4) if per_query else None,
        "mean_score": {str(g): round(statistics.fmean(v), 4) if v else None for g, v in sorted(level_scores.items(), reverse=True)},
        "queries": len(per_query),
        "per_query": {qid: round(acc, 4) for qid, acc in per_query.items()},
    }


def bm25_scorer(corpus) -> Scorer:
    """BM25 with the statistics of ``corpus`` (a :class:`synthrank.data.Corpus`)."""
    from synthrank.retrieval.bm25 import BM25Retriever

    retriever = BM25Retriever().index(corpus, show_progress=False)
    return retriever.score_pairs


def encoder_scorer(corpus, model: str, show_progress: bool = False) -> Scorer:
    """Dense scores (the model's own similarity: dot product of its embeddings, cosine when it
    normalises) of each query against its candidates."""
    import torch

    from synthrank.models import Encoder, EncoderConfig

    encoder = Encoder(EncoderConfig(model=model))
    documents = dict(zip(corpus.ids, corpus.documents()))

    def score(queries: Mapping[str, str], candidates: Mapping[str, list[str]]) -> Scores:
        query_ids = [q for q in queries if candidates.get(q)]
        passage_ids = sorted({p for q in query_ids for p in candidates[q] if p in documents})
        if not query_ids or not passage_ids:
            return {}
        q_vectors = encoder.encode([queries[q] for q in query_ids], "query", show_progress=show_progress,
                                   desc="fidelity: queries")
        p_vectors = encoder.encode([documents[p] for p in passage_ids], "passage", show_progress=show_progress,
                                   desc="fidelity: passages")
        q_vectors, p_vectors = torch.as_tensor(q_vectors).float(), torch.as_tensor(p_vectors).float()
        row = {p: i for i, p in enumerate(passage_ids)}
        out: Scores = {}
        for i, qid in enumerate(query_ids):
            cols = [p for p in candidates[qid] if p in row]
            values = p_vectors[[row[p] for p in cols]] @ q_vectors[i]
            out[qid] = {p: float(v) for p, v in zip(cols, values)}
        return out

    return score


def level_fidelity(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                   scorers: Mapping[str, Scorer]) -> dict[str, dict]:
    """``ordering_accuracy`` under each named scorer, for the judged queries."""
    judged = {qid: dict(j) for qid, j in qrels.items() if qid in queries and j}
    candidates = {qid: list(j) for qid, j in judged.items()}
    return {name: ordering_accuracy(scorer({q: queries[q] for q in judged}, candidates), judged)
            for name, scorer in scorers.items()}
