"""Sharded evaluation: chunks per rank, cached per chunk, top-k merged across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from synthrank.data.beir import Corpus
from synthrank.evaluate.sharded import chunk_bounds, merge_top_k, rank_chunks, search_chunks
from synthrank.retrieval.exact import exact_search


def test_ranks_take_every_world_th_chunk_and_cover_the_corpus_once():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert rank_chunks(10, 4, 0, 2) == [(0, 4), (8, 10)]
    assert rank_chunks(10, 4, 1, 2) == [(4, 8)]
    assert rank_chunks(10, 4, 3, 4) == []
    covered = sorted(i for rank in range(3) for s, e in rank_chunks(101, 7, rank, 3) for i in range(s, e))
    assert covered == list(range(101))


def test_merge_keeps_the_best_and_breaks_ties_by_passage_position():
    scores = [np.array([[0.9, 0.5]], np.float32), np.array([[0.5, -np.inf]], np.float32)]
    indices = [np.array([[7, 9]]), np.array([[2, -1]])]
    top_scores, top_indices = merge_top_k(scores, indices, 3)
    assert top_indices.tolist() == [[7, 2, 9]] and top_scores[0].tolist() == pytest.approx([0.9, 0.5, 0.5])


def _corpus(n):
    return Corpus([f"d{i}" for i in range(n)], [""] * n, [f"text {i}" for i in range(n)])


def test_chunked_search_over_all_ranks_equals_exact_search_and_caches_each_chunk(tmp_path):
    from synthrank.retrieval.cache import EmbeddingCache

    rng = np.random.default_rng(0)
    table = rng.normal(size=(23, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return table[[int(t.split()[1]) for t in texts]]

    corpus = _corpus(23)
    cache = EmbeddingCache(tmp_path / "cache")
    per_rank = [search_chunks(encode, corpus, queries, 6, rank_chunks(23, 4, rank, 3), cache, "fp")
                for rank in range(3)]
    scores, indices = merge_top_k([p[0] for p in per_rank], [p[1] for p in per_rank], 6)
    want_scores, want_indices = exact_search(queries, table, 6)
    assert indices.tolist() == want_indices.tolist()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    assert calls == [4, 4, 4, 4, 4, 3] and not any(p[2] for p in per_rank)
    # one process over the same chunks reads every chunk from the cache: nothing is encoded again
    again = search_chunks(encode, corpus, queries, 6, rank_chunks(23, 4, 0, 1), cache, "fp")
    assert again[2] is True and len(calls) == 6
    assert again[1].tolist() == want_indices.tolist()


def test_a_rank_with_fewer_passages_than_k_pads():
    table = np.eye(3, dtype=np.float32)
    scores, indices, _ = search_chunks(lambda texts: table[[int(t.split()[1]) for t in texts]], _corpus(3),
                                       np.ones((1, 3), np.float32), 5, [(0, 3)])
    assert indices.shape == (1, 5) and indices[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 3:]).all()


def _torchrun_eval(tmp_path, model, beir, name, nproc):
    env = {**os.environ, "SYNTHRANK_EVAL_CHUNK_SIZE": "2", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    command = launcher + ["-m", "synthrank", "eval", "--model", str(model), "--dataset", str(beir), "--split", "test",
                          "--run-file", str(tmp_path / f"{name}.run"), "--output", str(tmp_path / f"{name}.json"),
                          "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return (tmp_path / f"{name}.run").read_text(), json.loads((tmp_path / f"{name}.json").read_text())


@pytest.mark.slow
def test_two_torchrun_processes_give_the_one_process_run_and_metrics(tmp_path, tiny_beir, tiny_model_dir):
    """2 CPU processes (gloo) and 1 process, chunks of 2 passages (3 chunks): the same run file
    and metrics, bit for bit; and the same ranking and metrics as the ordinary whole-corpus path.
    (``--run-file``: torchrun's own parser takes ``--run`` for an abbreviation of its ``--run-path``.)"""
    from synthrank.data.trec import load_run
    from synthrank.evaluate import evaluate_model

    two_run, two = _torchrun_eval(tmp_path, tiny_model_dir, tiny_beir, "two", 2)
    one_run, one = _torchrun_eval(tmp_path, tiny_model_dir, tiny_beir, "one", 1)
    assert two_run == one_run and two_run.count("\n") == 3 * 6 - 1  # q3's self-hit is dropped
    assert two["metrics"] == one["metrics"]
    assert two["settings"]["sharded"] == {"world_size": 2, "chunk_size": 2}
    assert one["settings"]["sharded"] == {"world_size": 1, "chunk_size": 2}

    whole = evaluate_model(str(tiny_model_dir), str(tiny_beir), "test", run_path=tmp_path / "whole.run",
                           use_cache=False, show_progress=False)
    assert whole.metrics == pytest.approx(two["metrics"], abs=1e-12)
    sharded_run, whole_run = load_run(tmp_path / "two.run"), load_run(tmp_path / "whole.run")
    for qid, hits in whole_run.items():
        assert sorted(hits, key=hits.get, reverse=True) == sorted(sharded_run[qid], key=sharded_run[qid].get, reverse=True)
        assert sharded_run[qid] == pytest.approx(hits, abs=1e-5)
