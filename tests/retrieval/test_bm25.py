from synthrank.data import load_beir
from synthrank.retrieval import BM25Retriever


def test_bm25_ranks_lexical_match_first(tiny_beir):
    data = load_beir(tiny_beir, "test")
    run = BM25Retriever().index(data.corpus, show_progress=False).search(data.queries, k=3, show_progress=False)
    assert next(iter(run["q1"])) == "d1"
    assert next(iter(run["q2"])) == "d2"
    assert "q3" not in run["q3"]  # BEIR rule: the query's own id is never a hit
    assert all(score > 0 for hits in run.values() for score in hits.values())


def test_query_without_known_terms_gets_no_hits(tiny_beir):
    data = load_beir(tiny_beir, "test")
    run = BM25Retriever().index(data.corpus, show_progress=False).search({"x": "zzzz qqqq"}, k=3, show_progress=False)
    assert run == {"x": {}}


def test_stemming_is_configurable(tiny_beir):
    data = load_beir(tiny_beir, "test")
    query = {"x": "feline"}  # matches "felines" only through stemming
    stemmed = BM25Retriever().index(data.corpus, show_progress=False).search(query, k=3, show_progress=False)
    plain = BM25Retriever(stemmer=None).index(data.corpus, show_progress=False).search(query, k=3, show_progress=False)
    assert {"d1", "d4"} <= set(stemmed["x"]) and plain["x"] == {}
