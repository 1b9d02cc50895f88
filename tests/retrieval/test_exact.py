import numpy as np
import pytest

from synthrank.retrieval import exact_search, search_run


@pytest.mark.parametrize("passage_chunk, query_chunk", [(7, 3), (1000, 1000), (1, 1)])
def test_exact_search_matches_brute_force(passage_chunk, query_chunk):
    rng = np.random.default_rng(0)
    queries, passages = rng.normal(size=(11, 8)), rng.normal(size=(53, 8))
    scores, indices = exact_search(queries, passages, k=5, passage_chunk=passage_chunk, query_chunk=query_chunk)
    full = queries @ passages.T
    expected = np.argsort(-full, axis=1)[:, :5]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), rtol=1e-5)


def test_k_larger_than_corpus():
    scores, indices = exact_search(np.eye(2), np.eye(2)[:1], k=10)
    assert indices.shape == (2, 1)


def test_self_hits_are_dropped_and_k_kept():
    passages = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]])
    run = search_run(["a", "z"], np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "b", "c"], passages, k=2)
    assert list(run["a"]) == ["b", "c"]  # "a" would rank first but is the query itself
    assert list(run["z"]) == ["c", "b"]
    kept = search_run(["a"], np.array([[1.0, 0.0]]), ["a", "b", "c"], passages, k=2, drop_self_hits=False)
    assert list(kept["a"]) == ["a", "b"]
