import math

import pytest

from synthrank.evaluate import compute_metrics, parse_measures, retrieval_depth


def dcg(gains):
    return sum((2**g - 1) / math.log2(rank + 2) for rank, g in enumerate(gains))


def test_graded_ndcg_rr_recall_by_hand():
    qrels = {"q": {"a": 3, "b": 1, "c": 0, "z": 2}}
    run = {"q": {"b": 3.0, "c": 2.0, "a": 1.0}}
    means, per_query = compute_metrics(qrels, run, ["nDCG@10", "RR@10", "R@100", "RR(rel=2)@10"])
    ideal = dcg([3, 2, 1])
    # trec_eval's nDCG uses the grade itself as gain (not 2^g - 1)
    linear = (1 / math.log2(2) + 0 + 3 / math.log2(4)) / (3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4))
    assert means["nDCG@10"] == pytest.approx(linear, abs=1e-4)
    assert ideal > 0
    assert means["RR@10"] == pytest.approx(1.0)  # "b" (grade 1) is relevant at rank 1
    assert means["RR(rel=2)@10"] == pytest.approx(1 / 3)  # first grade >= 2 is "a" at rank 3
    assert means["R@100"] == pytest.approx(2 / 3)  # a, b found; z never retrieved
    assert per_query["q"]["R@100"] == pytest.approx(2 / 3)


def test_query_without_hits_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    means, per_query = compute_metrics(qrels, {"q1": {"a": 1.0}, "q2": {}}, ["nDCG@10"])
    assert per_query["q2"]["nDCG@10"] == 0.0 and means["nDCG@10"] == pytest.approx(0.5)


def test_restricting_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    means, _ = compute_metrics(qrels, {"q1": {"a": 1.0}}, ["nDCG@10"], query_ids=["q1"])
    assert means["nDCG@10"] == pytest.approx(1.0)


def test_measure_names():
    assert [str(m) for m in parse_measures(["nDCG@10", "RR@10", "R@100", "AP"])] == ["nDCG@10", "RR@10", "R@100", "AP"]
    with pytest.raises(ValueError, match="unknown measure 'NOPE@3'"):
        parse_measures(["NOPE@3"])
    assert retrieval_depth(parse_measures(["nDCG@10", "R@1000"])) == 1000
    assert retrieval_depth(parse_measures(["nDCG@10"])) == 100
    assert retrieval_depth(parse_measures(["AP"])) == 1000


@pytest.mark.parametrize("names, problem", [
    (["nDCG@0"], "cutoff after '@' must be a whole number >= 1"),  # pytrec_eval would abort the process
    (["RR@0"], "cutoff after '@' must be a whole number >= 1"),
    ([], "no measure given"),
])
def test_measures_pytrec_eval_cannot_take_are_refused(names, problem):
    with pytest.raises(ValueError, match=problem):
        parse_measures(names)
