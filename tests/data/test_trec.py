import pytest

from synthrank.data import DataFormatError, load_run, write_run, write_trec_qrels, load_trec_qrels


def test_run_round_trip_sorted_by_score(tmp_path):
    path = tmp_path / "run.trec"
    assert write_run(path, {"q1": {"a": 0.5, "b": 2.0}, "q2": {"c": 1.0}}, tag="t") == 3
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 2.000000 t" and lines[1] == "q1 Q0 a 2 0.500000 t"
    assert load_run(path) == {"q1": {"b": 2.0, "a": 0.5}, "q2": {"c": 1.0}}


def test_bad_run_lines(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 a 1 0.5 t\nq1 Q0 b 2 high t\n")
    with pytest.raises(DataFormatError, match=r"run.trec:2: field 'score'"):
        load_run(path)
    path.write_text("q1 Q0 a 1\n")
    with pytest.raises(DataFormatError, match="expected 6 columns"):
        load_run(path)


def test_trec_qrels_round_trip(tmp_path):
    path = tmp_path / "qrels.txt"
    write_trec_qrels(path, {"q": {"a": 3, "b": 0}})
    assert path.read_text() == "q 0 a 3\nq 0 b 0\n"
    assert load_trec_qrels(path) == {"q": {"a": 3, "b": 0}}
