"""Exact top-k search by inner product, memory bounded for large corpora."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from synthrank.data.trec import Run


def exact_search(
    query_vectors: np.ndarray,
    passage_vectors: np.ndarray,
    k: int,
    passage_chunk: int = 262_144,
    query_chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k passages per query by dot product: returns (scores [Q, k], indices [Q, k]).

    The corpus is scored in chunks and a running top-k is merged, so peak memory is about
    ``query_chunk * passage_chunk`` floats however large the corpus is.
    """
    k = min(k, passage_vectors.shape[0])
    queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
    passages = torch.from_numpy(np.ascontiguousarray(passage_vectors, dtype=np.float32))
    all_scores = np.empty((queries.shape[0], k), dtype=np.float32)
    all_indices = np.empty((queries.shape[0], k), dtype=np.int64)
    for q_start in range(0, queries.shape[0], query_chunk):
        q = queries[q_start : q_start + query_chunk]
        best_scores = torch.full((q.shape[0], k), -torch.inf)
        best_indices = torch.zeros((q.shape[0], k), dtype=torch.long)
        for p_start in range(0, passages.shape[0], passage_chunk):
            block = q @ passages[p_start : p_start + passage_chunk].T
            top = torch.topk(block, min(k, block.shape[1]), dim=1)
            merged_scores = torch.cat([best_scores, top.values], dim=1)
            merged_indices = torch.cat([best_indices, top.indices + p_start], dim=1)
            keep = torch.topk(merged_scores, k, dim=1)
            best_scores = keep.values
            best_indices = torch.gather(merged_indices, 1, keep.indices)
        all_scores[q_start : q_start + q.shape[0]] = best_scores.numpy()
        all_indices[q_start : q_start + q.shape[0]] = best_indices.numpy()
    return all_scores, all_indices


def to_run(
    query_ids: Sequence[str],
    passage_ids: Sequence[str],
    scores: np.ndarray,
    indices: np.ndarray,
    k: int,
    drop_self_hits: bool = True,
) -> Run:
    """Turn top-k arrays into a run, keeping ``k`` hits per query.

    ``drop_self_hits`` applies BEIR's rule: a passage whose id equals the query id is not a
    hit (it matters for datasets such as ArguAna and Quora where queries are also passages).
    """
    run: Run = {}
    for row, qid in enumerate(query_ids):
        hits: dict[str, float] = {}
        for score, index in zip(scores[row], indices[row]):
            pid = passage_ids[index]
            if drop_self_hits and pid == qid:
                continue
            hits[pid] = float(score)
            if len(hits) == k:
                break
        run[qid] = hits
    return run


def search_run(
    query_ids: Sequence[str],
    query_vectors: np.ndarray,
    passage_ids: Sequence[str],
    passage_vectors: np.ndarray,
    k: int,
    drop_self_hits: bool = True,
    show_progress: bool = False,
) -> Run:
    """Exact search returning a run; asks for one extra hit so a dropped self-hit costs nothing."""
    extra = 1 if drop_self_hits else 0
    with tqdm(total=1, desc="exact search", disable=not show_progress):
        scores, indices = exact_search(query_vectors, passage_vectors, k + extra)
    return to_run(query_ids, passage_ids, scores, indices, k, drop_self_hits)
