import json

import pytest

from synthrank.data import (
    DataFormatError, check_qrels, load_beir, load_corpus, load_qrels, load_queries, write_corpus, write_qrels,
    write_queries,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(call, *args):
    with pytest.raises(DataFormatError) as info:
        call(*args)
    return info.value


def test_loads_tiny_dataset(tiny_beir):
    data = load_beir(tiny_beir, "test")
    assert data.corpus.ids == ["d1", "d2", "d3", "d4", "d5", "q3"]
    assert data.corpus.documents()[0] == "Cats Cats are small domesticated felines that purr."
    assert data.corpus.documents()[2] == "The stock market fell sharply on Monday."  # no leading space
    assert list(data.queries) == ["q1", "q2", "q3"]
    assert data.qrels == {"q1": {"d1": 3, "d4": 1}, "q2": {"d2": 2}, "q3": {"q3": 1}}
    assert data.qrels_report.clean


@pytest.mark.parametrize("line, field, problem", [
    ('{"_id": "a", "text": "x"\n', None, "malformed JSON"),
    ('{"text": "x"}\n', "_id", "missing"),
    ('{"_id": "a"}\n', "text", "missing"),
    ('{"_id": "a", "text": "   "}\n', "text", "empty"),
    ('{"_id": "", "text": "x"}\n', "_id", "empty"),
    ('{"_id": "a", "text": 5}\n', "text", "expected a string"),
    ('["a", "b"]\n', None, "expected a JSON object"),
])
def test_corpus_errors_name_file_line_and_field(tmp_path, line, field, problem):
    path = write(tmp_path / "corpus.jsonl", '{"_id": "ok", "text": "fine"}\n' + line)
    error = error_of(load_corpus, path)
    assert error.line == 2 and error.field == field and problem in error.problem
    assert f"{path}:2:" in str(error)
    if field:
        assert f"field '{field}'" in str(error)


def test_duplicate_ids_are_errors(tmp_path):
    corpus = write(tmp_path / "corpus.jsonl", '{"_id": "a", "text": "x"}\n\n{"_id": "a", "text": "y"}\n')
    error = error_of(load_corpus, corpus)
    assert error.line == 3 and error.field == "_id" and "first on line 1" in error.problem
    queries = write(tmp_path / "queries.jsonl", '{"_id": "q", "text": "x"}\n{"_id": "q", "text": "y"}\n')
    assert error_of(load_queries, queries).line == 2


def test_title_only_passage_is_kept_but_empty_query_is_not(tmp_path):
    corpus = load_corpus(write(tmp_path / "c.jsonl", '{"_id": "a", "title": "Only a title", "text": ""}\n'))
    assert corpus.documents() == ["Only a title"]
    error = error_of(load_queries, write(tmp_path / "q.jsonl", '{"_id": "q", "text": ""}\n'))
    assert error.field == "text" and error.problem == "empty"


@pytest.mark.parametrize("row, field, problem", [
    ("q1\td1\thigh\n", "score", "not an integer grade"),
    ("q1\td1\t1.5\n", "score", "not an integer grade"),
    ("q1\td1\n", None, "expected 3 (BEIR) or 4 (TREC) columns"),
    ("q0\td0\t1\n", "corpus-id", "duplicate judgement"),
    ("q1\td1\tinf\n", "score", "not an integer grade: 'inf'"),
    ("q1\td1\tnan\n", "score", "not an integer grade: 'nan'"),
    ("q1\td1\t1e30\n", "score", "grade '1e30' out of range"),
    ("q1\td1\t-1\n", "score", "grade '-1' out of range"),
])
def test_qrels_errors(tmp_path, row, field, problem):
    path = write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\nq0\td0\t1\n" + row)
    error = error_of(load_qrels, path)
    assert error.line == 3 and error.field == field and problem in error.problem


def test_trec_qrels_and_float_integer_grades(tmp_path):
    path = write(tmp_path / "qrels.txt", "19335 0 1017759 0\n19335 0 1082489 2.0\n")
    assert load_qrels(path) == {"19335": {"1017759": 0, "1082489": 2}}


def test_unknown_ids_are_counted_not_dropped(tiny_beir):
    with open(tiny_beir / "qrels" / "test.tsv", "a") as handle:
        handle.write("q1\tmissing-doc\t2\nghost\td1\t1\nghost\td2\t1\n")
    data = load_beir(tiny_beir, "test")
    report = data.qrels_report
    assert (report.num_rows, report.unknown_query_rows, report.unknown_passage_rows) == (7, 2, 1)
    assert "missing-doc" in report.describe() and "ghost" in report.describe()
    assert data.qrels["q1"]["missing-doc"] == 2  # kept: it still counts against recall
    assert "ghost" in data.qrels and "ghost" not in data.queries


def test_check_qrels_without_passages():
    report = check_qrels({"q": {"x": 1}}, ["q"], None)
    assert report.clean


def test_missing_split_lists_available(tiny_beir):
    with pytest.raises(FileNotFoundError, match="available splits: \\['test'\\]"):
        load_beir(tiny_beir, "dev")


def test_writers_round_trip(tmp_path):
    passages = [{"_id": "p1", "title": "T", "text": "text one"}, {"_id": "p2", "text": "text \u00e9 two"}]
    assert write_corpus(tmp_path / "corpus.jsonl", passages) == 2
    write_queries(tmp_path / "queries.jsonl", {"q1": "a question"})
    assert write_qrels(tmp_path / "qrels" / "train.tsv", {"q1": {"p1": 3, "p2": 0}}) == 2
    data = load_beir(tmp_path, "train")
    assert data.corpus.texts == ["text one", "text \u00e9 two"] and data.corpus.titles == ["T", ""]
    assert data.queries == {"q1": "a question"} and data.qrels == {"q1": {"p1": 3, "p2": 0}}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    assert json.loads((tmp_path / "corpus.jsonl").read_text().splitlines()[1])["title"] == ""


def test_numeric_ids_are_read_as_strings(tmp_path):
    corpus = load_corpus(write(tmp_path / "c.jsonl", '{"_id": 42, "text": "x"}\n'))
    assert corpus.ids == ["42"]


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels.tsv", "run.trec"])
def test_non_utf8_bytes_name_file_line_and_column(tmp_path, name):
    from synthrank.data import load_run

    rows = {"corpus.jsonl": ['{"_id": "a", "text": "fine"}', '{"_id": "b", "text": "caf\xe9"}'],
            "queries.jsonl": ['{"_id": "a", "text": "fine"}', '{"_id": "b", "text": "caf\xe9"}'],
            "qrels.tsv": ["a\td\t1", "b\tcaf\xe9\t1"], "run.trec": ["a Q0 d 1 1.0 t", "b Q0 caf\xe9 1 1.0 t"]}[name]
    path = tmp_path / name
    path.write_bytes("\n".join(rows).encode("latin-1") + b"\n")
    reader = {"corpus.jsonl": load_corpus, "queries.jsonl": load_queries, "qrels.tsv": load_qrels,
              "run.trec": load_run}[name]
    error = error_of(reader, path)
    assert error.path == path and error.line == 2 and "not valid UTF-8 (byte 0xe9 at column" in error.problem


def test_a_byte_order_mark_before_the_qrels_header_is_ignored(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_bytes("query-id\tcorpus-id\tscore\nq1\td1\t2\n".encode("utf-8-sig"))
    assert load_qrels(path) == {"q1": {"d1": 2}}
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes('{"_id": "a", "text": "fine"}\n'.encode("utf-8-sig"))
    assert load_corpus(corpus).ids == ["a"]


@pytest.mark.parametrize("name, empty, problem", [
    ("queries.jsonl", "", "no queries (the file is empty)"),
    ("corpus.jsonl", "\n", "no passages (the file is empty)"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\n", "no judgements"),
])
def test_empty_files_are_errors_naming_the_file(tiny_beir, name, empty, problem):
    (tiny_beir / name).write_text(empty)
    error = error_of(load_beir, tiny_beir, "test")
    assert error.path == tiny_beir / name and error.problem.startswith(problem)


@pytest.mark.parametrize("reader, text", [
    (load_corpus, '{"_id": "doc 1", "text": "x"}\n'),
    (load_queries, '{"_id": "q\\t1", "text": "x"}\n'),
])
def test_ids_with_whitespace_are_rejected_at_load(tmp_path, reader, text):
    error = error_of(reader, write(tmp_path / "f.jsonl", text))
    assert error.line == 1 and error.field == "_id" and "contains whitespace" in error.problem
