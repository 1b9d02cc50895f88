"""Dense evaluation split over the processes of a ``torchrun`` launch.

The corpus is cut into chunks of ``chunk_size`` passages (fixed boundaries, whatever the number
of processes); rank ``r`` of ``W`` takes chunks ``r, r + W, r + 2W, ...``. For each of its
chunks a rank encodes the passages (or reads them from the embedding cache: one entry per
chunk, keyed like every other entry by the encoder fingerprint and the chunk's content, so 1, 2
or 8 processes share entries and a crash loses at most one chunk), scores them against every
query and folds them into a running top-k. Memory is bounded by a chunk, not by the corpus.
The ranks then exchange their top-k (``all_gather``) and every rank merges them; ties are broken
by passage position. A chunk is always encoded and scored alike, so for a given chunk size the
run does not depend on the number of processes (bit for bit); against the one-process path that
encodes the whole corpus at once, scores differ in the last float bits (other batch shapes).

``synthrank eval`` takes this path by itself when started by torchrun (``WORLD_SIZE`` > 1), and
in one process when ``$SYNTHRANK_EVAL_CHUNK_SIZE`` is set::

    torchrun --nproc_per_node 4 -m synthrank eval --model runs/x/model --dataset msmarco --split dev
"""

from __future__ import annotations

import os

import numpy as np

from synthrank.data.beir import Corpus
from synthrank.data.trec import Run

DEFAULT_CHUNK_SIZE = 65_536


def distributed_world() -> tuple[int, int]:
    """``(rank, world size)`` of a torchrun launch; ``(0, 1)`` outside one."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def chunking_requested() -> bool:
    """``$SYNTHRANK_EVAL_CHUNK_SIZE`` set: one process takes the chunked path too (bounded memory,
    and the very same vectors and run as any number of torchrun processes with that chunk size)."""
    return bool(os.environ.get("SYNTHRANK_EVAL_CHUNK_SIZE"))


def is_main_process() -> bool:
    return distributed_world()[0] == 0


def chunk_bounds(num_passages: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, num_passages)) for start in range(0, num_passages, chunk_size)]


def rank_chunks(num_passages: int, chunk_size: int, rank: int, world: int) -> list[tuple[int, int]]:
    """The chunks this rank encodes: every ``world``-th one, starting at its rank."""
    return chunk_bounds(num_passages, chunk_size)[rank::world]


def corpus_slice(corpus: Corpus, start: int, end: int) -> Corpus:
    return Corpus(corpus.ids[start:end], corpus.titles[start:end], corpus.texts[start:end])


def merge_top_k(scores: list[np.ndarray], indices: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of the concatenated candidates, highest score first and, among equal
    scores, lowest passage index first (padding has index -1 and score -inf; it sorts last)."""
    all_scores = np.concatenate(scores, axis=1)
    all_indices = np.concatenate(indices, axis=1)
    # lexsort sorts by the last key first: score descending, then index ascending (padding last)
    padded_index = np.where(all_indices < 0, np.iinfo(np.int64).max, all_indices)
    order = np.lexsort((padded_index, -all_scores), axis=1)[:, :k]
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_indices, order, axis=1)


def _pad(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, indices
    rows = scores.shape[0]
    return (np.concatenate([scores, np.full((rows, missing), -np.inf, dtype=np.float32)], axis=1),
            np.concatenate([indices, np.full((rows, missing), -1, dtype=np.int64)], axis=1))


def search_chunks(encode, corpus: Corpus, query_vectors: np.ndarray, k: int, chunks: list[tuple[int, int]],
                  cache=None, encoder_fingerprint: str | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Top-k over the given chunks: ``(scores [Q, k], global passage indices [Q, k], all cached)``.
    ``encode(texts)`` embeds passages; with ``cache`` each chunk is read from / written to it."""
    from synthrank.retrieval.exact import exact_search

    best_scores = np.full((query_vectors.shape[0], 0), -np.inf, dtype=np.float32)
    best_indices = np.zeros((query_vectors.shape[0], 0), dtype=np.int64)
    all_hits = bool(chunks)
    for start, end in chunks:
        part = corpus_slice(corpus, start, end)
        if cache is not None:
            vectors, hit = cache.get_or_compute(encoder_fingerprint, part, lambda: encode(part.documents()),
                                                meta={"chunk": [start, end]})
        else:
            vectors, hit = encode(part.documents()), False
        all_hits = all_hits and hit
        scores, local = exact_search(query_vectors, vectors, k)
        best_scores, best_indices = merge_top_k([best_scores, scores], [best_indices, local + start], k)
    return _pad(best_scores, best_indices, k) + (all_hits,)


def gather_top_k(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's top-k merged into the global top-k, on every rank."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    world = dist.get_world_size()
    mine_scores = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)).to(device)
    mine_indices = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(device)
    all_scores = [torch.empty_like(mine_scores) for _ in range(world)]
    all_indices = [torch.empty_like(mine_indices) for _ in range(world)]
    dist.all_gather(all_scores, mine_scores)
    dist.all_gather(all_indices, mine_indices)
    return merge_top_k([t.cpu().numpy() for t in all_scores], [t.cpu().numpy() for t in all_indices], k)


def init_process_group() -> None:
    """Join torchrun's process group (gloo on CPU, NCCL on GPUs) unless already joined."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")


def sharded_dense_run(model: str, data, query_ids: list[str], depth: int, watch, options: dict, use_cache: bool,
                      show_progress: bool, chunk_size: int | None = None) -> tuple[Run, dict, bool | None]:
    """The sharded counterpart of the evaluator's single-process dense run (same return value).
    ``chunk_size`` defaults to ``$SYNTHRANK_EVAL_CHUNK_SIZE``, else 65,536 passages."""
    import torch

    from synthrank.models import Encoder, EncoderConfig
    from synthrank.retrieval.cache import EmbeddingCache
    from synthrank.retrieval.exact import to_run

    chunk_size = chunk_size or int(os.environ.get("SYNTHRANK_EVAL_CHUNK_SIZE", DEFAULT_CHUNK_SIZE))
    if chunk_size < 1:
        raise ValueError(f"SYNTHRANK_EVAL_CHUNK_SIZE must be >= 1, got {chunk_size}")
    rank, world = distributed_world()
    if world > 1:
        init_process_group()
    if torch.cuda.is_available() and not options.get("device"):
        options = {**options, "device": f"cuda:{torch.cuda.current_device()}"}
    with watch.stage("load_model"):
        encoder = Encoder(EncoderConfig(model=model, **options), show_progress=show_progress)
    with watch.stage("encode_queries"):
        query_vectors = encoder.encode([data.queries[q] for q in query_ids], "query",
                                       show_progress=show_progress and rank == 0, desc="encode queries")
    k = depth + 1  # one extra hit so that a dropped self-hit costs nothing (as search_run does)
    chunks = rank_chunks(len(data.corpus), chunk_size, rank, world)

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, "passage", show_progress=False)

    with watch.stage("encode_corpus_and_search"):
        scores, indices, hit = search_chunks(encode, data.corpus, query_vectors, k, chunks,
                                             EmbeddingCache() if use_cache else None,
                                             encoder.fingerprint() if use_cache else None)
    k = min(k, len(data.corpus))
    if world > 1:
        with watch.stage("merge"):
            scores, indices = gather_top_k(scores, indices, k)
    else:
        scores, indices = scores[:, :k], indices[:, :k]
    run = to_run(query_ids, data.corpus.ids, scores, indices, depth)
    settings = {"encoder": {**encoder.config.encoding_settings(), "model_path": encoder.model_path},
                "sharded": {"world_size": world, "chunk_size": chunk_size}}
    return run, settings, hit if use_cache else None
