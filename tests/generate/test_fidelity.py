"""Level fidelity on hand-made examples, the BM25 scorer, and the recipes' consistency filter."""

from __future__ import annotations

import json

import pytest

from synthrank.data import Corpus
from synthrank.data.recipes import RecipeError, build_pools, parse_recipe
from synthrank.generate.fidelity import bm25_scorer, level_fidelity, level_pairs, ordering_accuracy


def test_level_pairs_are_adjacent_then_extremes() -> None:
    assert level_pairs([0, 1, 2, 3]) == [(3, 2), (2, 1), (1, 0), (3, 0)]
    assert level_pairs([2, 0]) == [(2, 0)]
    assert level_pairs([0, 1, 2]) == [(2, 1), (1, 0), (2, 0)]


def test_ordering_accuracy_by_hand() -> None:
    qrels = {"a": {"a3": 3, "a2": 2, "a1": 1, "a0": 0},
             "b": {"b3": 3, "b2": 2, "b1": 1, "b0": 0}}
    scores = {"a": {"a3": 4.0, "a2": 3.0, "a1": 2.0, "a0": 1.0},   # perfect: 4/4 pairs
              "b": {"b3": 1.0, "b2": 2.0, "b1": 2.0, "b0": 0.5}}   # 3<2 wrong, 2=1 tie, 1>0 right, 3>0 right
    result = ordering_accuracy(scores, qrels)
    assert result["pairs"] == {"3>2": 0.5, "2>1": 0.75, "1>0": 1.0, "3>0": 1.0}
    assert result["per_query"] == {"a": 1.0, "b": 0.625}
    assert result["mean_accuracy"] == pytest.approx(0.8125)
    assert result["mean_score"] == {"3": 2.5, "2": 2.5, "1": 2.0, "0": 0.75}
    assert result["queries"] == 2


def test_ordering_accuracy_counts_every_passage_pair_with_several_per_level() -> None:
    qrels = {"q": {"x": 2, "y": 2, "z": 0}}
    scores = {"q": {"x": 1.0, "y": -1.0, "z": 0.0}}
    result = ordering_accuracy(scores, qrels)
    assert result["pairs"] == {"2>0": 0.5} and result["pair_counts"] == {"2>0": 2}


def test_bm25_orders_lexically_graded_passages() -> None:
    corpus = Corpus(["p3", "p1", "p0", "o3", "o1", "o0"], [""] * 6, [
        "boiling eggs takes ten minutes for boiling hard eggs",
        "eggs come from chickens on farms",
        "the stock market fell on monday",
        "canberra is the capital city of australia",
        "australia has kangaroos and deserts",
        "bread is baked from flour",
    ])
    queries = {"q1": "boiling eggs minutes", "q2": "capital city of australia"}
    qrels = {"q1": {"p3": 3, "p1": 1, "p0": 0}, "q2": {"o3": 3, "o1": 1, "o0": 0}}
    result = level_fidelity(queries, qrels, {"bm25": bm25_scorer(corpus)})["bm25"]
    assert result["pairs"]["3>1"] == 1.0 and result["mean_accuracy"] > 0.8
    assert result["mean_score"]["3"] > result["mean_score"]["1"] >= result["mean_score"]["0"] == 0.0


def _graded_folder(tmp_path, accuracies: dict[str, float] | None):
    folder = tmp_path / "gen"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n" for q in "abc"))
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"{q}{g}", "title": "", "text": f"passage {q} {g}"}) + "\n" for q in "abc" for g in range(4)))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{q}{g}\t{g}\n" for q in "abc" for g in range(4)))
    if accuracies is not None:
        (folder / "fidelity.json").write_text(json.dumps({"scorers": {"bm25": {"per_query": accuracies}}}))
    return folder


def test_consistency_filter_drops_badly_ordered_contexts(tmp_path) -> None:
    folder = _graded_folder(tmp_path, {"a": 1.0, "b": 0.5, "c": 0.75})
    recipe = parse_recipe({"sources": [{"name": "gen", "dataset": str(folder), "min_fidelity": 0.75}]})
    pools = build_pools(recipe)
    assert sorted(p.qid for p in pools.queries) == ["a", "c"]
    assert pools.stats["sources"]["gen"]["consistency_filter"]["dropped"] == 1
    unfiltered = build_pools(parse_recipe({"sources": [{"dataset": str(folder)}]}))
    assert len(unfiltered.queries) == 3


def test_consistency_filter_without_fidelity_file_names_the_field(tmp_path) -> None:
    folder = _graded_folder(tmp_path, None)
    recipe = parse_recipe({"sources": [{"dataset": str(folder), "min_fidelity": 0.5}]})
    with pytest.raises(RecipeError, match=r"sources\[0\]\.min_fidelity.*fidelity.json"):
        build_pools(recipe)


def test_fidelity_command_on_a_graded_folder(tiny_beir, tmp_path) -> None:
    from typer.testing import CliRunner

    from synthrank.cli import app

    output = tmp_path / "fid.json"
    result = CliRunner().invoke(app, ["fidelity", "--dataset", str(tiny_beir), "--split", "test",
                                      "--scorers", "bm25", "--output", str(output), "--quiet"])
    assert result.exit_code == 0, result.output
    # q1: d1 (grade 3, shares "domesticated felines purr") above d4 (grade 1, shares "felines")
    assert "level fidelity (bm25): pairwise ordering accuracy 3>1 1.00" in result.output
    assert json.loads(output.read_text())["bm25"]["per_query"] == {"q1": 1.0}
    bad = CliRunner().invoke(app, ["fidelity", "--dataset", str(tiny_beir), "--split", "test", "--scorers", "tfidf"])
    assert bad.exit_code == 2 and "unknown fidelity scorer(s) tfidf" in bad.output
