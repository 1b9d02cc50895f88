"""BM25 hard-negative mining: ranking, positive exclusion, output formats, and SciFact (slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synthrank.data import load_qrels, write_corpus, write_qrels, write_queries
from synthrank.retrieval.mining import mine_negatives, select_negatives, write_mined

DATA_DIR = Path(os.environ.get("SYNTHRANK_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


def test_select_negatives_ranks_excludes_positives_and_skips():
    hits = {"p1": 9.0, "p2": 8.0, "p3": 8.0, "p4": 5.0, "p5": 1.0}
    assert select_negatives(hits, {"p2"}, top_k=3) == ["p1", "p3", "p4"]
    assert select_negatives(hits, {"p1"}, top_k=2, skip_top=1) == ["p3", "p4"]
    assert select_negatives(hits, set(), top_k=10) == ["p1", "p2", "p3", "p4", "p5"]


@pytest.fixture()
def lexical(tmp_path) -> Path:
    folder = tmp_path / "lex"
    topics = ["apple banana", "cherry grape", "lemon mango", "peach plum"]
    passages, queries, qrels = [], {}, {}
    for t, words in enumerate(topics):
        for j in range(5):
            passages.append({"_id": f"t{t}-{j}", "title": "", "text": f"{words} " * (5 - j) + f"filler {j} text"})
        queries[f"q{t}"] = words
        qrels[f"q{t}"] = {f"t{t}-0": 2, f"t{t}-1": 1, f"t{t}-4": 0}
    write_corpus(folder / "corpus.jsonl", passages)
    write_queries(folder / "queries.jsonl", queries)
    write_qrels(folder / "qrels" / "train.tsv", qrels)
    return folder


def test_mine_excludes_annotated_positives(lexical):
    result = mine_negatives(lexical, "train", top_k=3, show_progress=False)
    assert set(result.qrels) == {"q0", "q1", "q2", "q3"}
    for t in range(4):
        mined = result.qrels[f"q{t}"]
        # the positives (grades 2 and 1) are the best BM25 hits, but never mined; the judged
        # non-relevant t-4 may be (grade 0 is not a positive)
        assert list(mined) == [f"t{t}-2", f"t{t}-3", f"t{t}-4"]
        assert set(mined.values()) == {0}
    assert result.stats["negatives"] == 12 and result.stats["positives_excluded"] == 8

    stricter = mine_negatives(lexical, "train", top_k=3, positive_min_grade=2, show_progress=False)
    assert list(stricter.qrels["q0"]) == ["t0-1", "t0-2", "t0-3"]


def test_mine_with_custom_retriever_and_skip(lexical):
    class Fake:
        def index(self, corpus):
            self.ids = corpus.ids

        def search(self, queries, k):
            return {q: {pid: float(len(self.ids) - i) for i, pid in enumerate(self.ids)} for q in queries}

    result = mine_negatives(lexical, "train", top_k=2, skip_top=1, retriever=Fake(), show_progress=False)
    assert list(result.qrels["q0"]) == ["t0-3", "t0-4"]  # t0-2 skipped, positives t0-0/t0-1 excluded
    assert list(result.qrels["q1"]) == ["t0-1", "t0-2"]


def test_write_mined_file_and_folder(lexical, tmp_path):
    result = mine_negatives(lexical, "train", top_k=2, show_progress=False)
    folder_path = write_mined(result, tmp_path / "mined", grade=1, retriever_settings={"name": "bm25"})
    assert folder_path == tmp_path / "mined" / "qrels" / "train.tsv"
    assert load_qrels(folder_path) == {q: {p: 1 for p in judged} for q, judged in result.qrels.items()}
    manifest = json.loads((tmp_path / "mined" / "mining.json").read_text())
    assert manifest["top_k"] == 2 and manifest["grade"] == 1 and manifest["retriever"] == {"name": "bm25"}
    file_path = write_mined(result, tmp_path / "neg.tsv")
    assert file_path == tmp_path / "neg.tsv" and (tmp_path / "neg.json").is_file()
    assert load_qrels(file_path) == result.qrels


def test_mine_rejects_bad_arguments(lexical):
    with pytest.raises(ValueError, match="top_k"):
        mine_negatives(lexical, "train", top_k=0)
    with pytest.raises(ValueError, match="skip_top"):
        mine_negatives(lexical, "train", top_k=1, skip_top=-1)
    with pytest.raises(FileNotFoundError, match="dev"):
        mine_negatives(lexical, "dev", top_k=1)


def test_mine_command(lexical, tmp_path):
    import typer
    from typer.testing import CliRunner

    from synthrank.train.cli import mine_command

    app = typer.Typer()
    app.command("mine")(mine_command)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["mine", "--dataset", str(lexical), "--output", str(tmp_path / "m"),
                                      "--top-k", "2", "--grade", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["negatives"] == 8
    assert set(load_qrels(tmp_path / "m" / "qrels" / "train.tsv")["q0"].values()) == {1}
    result = CliRunner().invoke(app, ["mine", "--dataset", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x")])
    assert result.exit_code == 2 and "error" in result.output


@pytest.mark.slow
@pytest.mark.skipif(not (DATA_DIR / "scifact").is_dir(), reason="SciFact not available")
def test_mine_scifact_train(tmp_path):
    from synthrank.data import load_beir

    result = mine_negatives(DATA_DIR / "scifact", "train", top_k=30, show_progress=False)
    train = load_beir(DATA_DIR / "scifact", "train")
    assert len(result.qrels) == 809 == len(train.queries)
    assert result.stats["negatives"] >= 809 * 30 - 30
    corpus_ids = set(train.corpus.ids)
    for qid, mined in result.qrels.items():
        assert len(mined) <= 30
        assert not set(mined) & {p for p, g in train.qrels[qid].items() if g > 0}
        assert set(mined) <= corpus_ids
    path = write_mined(result, tmp_path / "scifact-bm25")
    assert sum(len(v) for v in load_qrels(path).values()) == result.stats["negatives"]
