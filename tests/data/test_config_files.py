"""JSON / JSONL record files (few-shot examples): one reader, errors that name file and line."""

import pytest

from synthrank.data.config_files import read_json_records
from synthrank.generate.doc_queries import load_query_few_shot
from synthrank.generate.prompts import load_few_shot


def test_json_list_object_and_jsonl_read_alike(tmp_path):
    records = [{"query": "q1", "passages": {"3": "a"}}, {"query": "q2", "passages": {"0": "b"}}]
    (tmp_path / "list.json").write_text('[{"query": "q1", "passages": {"3": "a"}}, {"query": "q2", "passages": {"0": "b"}}]')
    (tmp_path / "lines.jsonl").write_text('{"query": "q1", "passages": {"3": "a"}}\n\n{"query": "q2", "passages": {"0": "b"}}\n')
    (tmp_path / "one.json").write_text('{"query": "q1", "passages": {"3": "a"}}')
    assert read_json_records(tmp_path / "list.json", "x") == records
    assert read_json_records(tmp_path / "lines.jsonl", "x") == records
    assert read_json_records(tmp_path / "one.json", "x") == records[:1]


@pytest.mark.parametrize("loader", [load_few_shot, load_query_few_shot])
def test_few_shot_loaders_name_the_file_and_line(tmp_path, loader):
    bad = tmp_path / "shots.jsonl"
    bad.write_text('{"query": "q", "document": "d", "passages": {"3": "a"}}\n{"query": "q2",\n')
    with pytest.raises(ValueError, match=r"shots\.jsonl:2: malformed JSON"):
        loader(bad)
    with pytest.raises(FileNotFoundError, match="few-shot examples not found"):
        loader(tmp_path / "missing.json")
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"query": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.json: not valid UTF-8 \(byte 0xe9\)"):
        loader(latin)
