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


import pytest  # noqa: E402

from synthrank.data import Corpus  # noqa: E402
from synthrank.retrieval.bm25 import BM25Config  # noqa: E402


@pytest.mark.parametrize("options, problem", [
    ({"k1": -1.0}, "k1 must be >= 0"),
    ({"b": 1.5}, "b must be between 0 and 1"),
    ({"stemmer": "englsh"}, "unknown BM25 stemmer 'englsh'; choose 'none' or one of: .*english"),
])
def test_bad_settings_are_refused_up_front(options, problem):
    with pytest.raises(ValueError, match=problem):
        BM25Config(**options)


def test_an_empty_corpus_is_refused_with_a_message():
    with pytest.raises(ValueError, match="the corpus is empty"):
        BM25Retriever().index(Corpus(), show_progress=False)


def test_bm25s_debug_lines_stay_hidden_without_verbose(tiny_beir, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    BM25Retriever().index(load_beir(tiny_beir, "test").corpus, show_progress=False)
    assert [r for r in caplog.records if r.name.startswith("bm25s") and r.levelno < logging.WARNING] == []
