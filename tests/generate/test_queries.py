from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthrank.data import DataFormatError
from synthrank.generate.queries import (
    load_query_source, parse_shard, read_id_list, select_queries, shard_of, shard_queries,
)


def test_jsonl_tsv_and_beir_folder(tmp_path, queries_file):
    assert list(load_query_source(queries_file))[:2] == ["q1", "q2"]
    tsv = tmp_path / "q.tsv"
    tsv.write_text("query-id\ttext\n7\tfirst query\n8\tsecond\tquery with tab\n")
    assert load_query_source(tsv) == {"7": "first query", "8": "second\tquery with tab"}
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text(queries_file.read_text())
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td\t1\n")
    assert len(load_query_source(folder)) == 5
    assert load_query_source(folder, split="dev") == {"q2": "capital of australia"}


def test_bad_tsv_names_file_and_line(tmp_path):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("1\tok\n2 no tab here\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv:2"):
        load_query_source(tsv)
    tsv.write_text("1\tok\n1\tagain\n")
    with pytest.raises(DataFormatError, match="duplicate id"):
        load_query_source(tsv)


def test_selection_limit_sample_ids():
    queries = {str(i): f"query {i}" for i in range(100)}
    assert list(select_queries(queries, limit=3)) == ["0", "1", "2"]
    a = select_queries(queries, sample=10, seed=1)
    assert len(a) == 10 and a == select_queries(queries, sample=10, seed=1)
    assert a != select_queries(queries, sample=10, seed=2)
    assert list(a) == sorted(a, key=int)  # file order kept
    assert list(select_queries(queries, ids=["5", "3"])) == ["5", "3"]
    with pytest.raises(KeyError, match="not in the input"):
        select_queries(queries, ids=["nope"])


def test_id_lists(tmp_path):
    assert read_id_list("1, 2,3") == ["1", "2", "3"]
    f = tmp_path / "ids.txt"
    f.write_text("9\n8\n")
    assert read_id_list(f"@{f}") == ["9", "8"]


def test_shards_partition_the_queries():
    queries = {str(i): "q" for i in range(200)}
    parts = [shard_queries(queries, (i, 3)) for i in range(3)]
    assert sum(len(p) for p in parts) == 200
    assert set().union(*[set(p) for p in parts]) == set(queries)
    assert all(len(p) > 40 for p in parts)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


# sha1 of the UTF-8 id, first 8 bytes big-endian, modulo n: a change to the rule moves queries
# between shards, so jobs of one sharded run started by different versions would overlap or
# leave gaps.
KNOWN_SHARDS = {"0": 220, "123": 291, "q1": 6, "PLAIN-1008": 429, "é-query": 52}


def test_shard_of_is_pinned():
    assert {qid: shard_of(qid, 1000) for qid in KNOWN_SHARDS} == KNOWN_SHARDS


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_shard_of_is_the_same_in_another_process(hash_seed):
    """Shards are computed by separate jobs (torchrun ranks, cluster tasks); Python's hash() of
    a str differs between processes, so a rule built on it would split the queries differently
    in each. Computed here and in a child with another PYTHONHASHSEED, they must agree."""
    ids = [f"q{i}" for i in range(200)] + ["é-query", "PLAIN-1008", ""]
    script = ("import json, sys\nfrom synthrank.generate.queries import shard_of\n"
              "print(json.dumps([shard_of(qid, 97) for qid in json.loads(sys.stdin.read())]))")
    source = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    child = subprocess.run([sys.executable, "-c", script], input=json.dumps(ids), env=env,
                           capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(child.stdout) == [shard_of(qid, 97) for qid in ids]
