import json

import pytest

from synthrank.evaluate import evaluate_model


def test_bm25_on_tiny(tiny_beir):
    result = evaluate_model("bm25", str(tiny_beir), "test", show_progress=False)
    assert result.num_queries == 3 and set(result.metrics) == {"nDCG@10", "RR@10", "R@100"}
    assert result.metrics["RR@10"] == pytest.approx(2 / 3)  # q1, q2 found first; q3 only has itself
    assert {"load_data", "index", "search", "metrics", "total"} <= set(result.timing)


def test_dense_uses_cache_and_writes_run(tiny_beir, tiny_model_dir, tmp_path):
    options = {"dtype": "float32"}
    first = evaluate_model(str(tiny_model_dir), str(tiny_beir), encoder_options=options,
                           run_path=tmp_path / "run.trec", show_progress=False)
    second = evaluate_model(str(tiny_model_dir), str(tiny_beir), encoder_options=options, show_progress=False)
    off = evaluate_model(str(tiny_model_dir), str(tiny_beir), encoder_options=options, use_cache=False,
                         show_progress=False)
    assert (first.cache_hit, second.cache_hit, off.cache_hit) == (False, True, None)
    assert first.metrics == second.metrics == off.metrics
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines and all(len(line.split()) == 6 for line in lines)
    assert not any(line.split()[0] == line.split()[2] for line in lines)  # no self-hit for q3
    json.dumps(first.to_json())


def test_changed_corpus_misses_the_cache(tiny_beir, tiny_model_dir):
    options = {"dtype": "float32"}
    evaluate_model(str(tiny_model_dir), str(tiny_beir), encoder_options=options, show_progress=False)
    lines = (tiny_beir / "corpus.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace("purr", "meow")
    (tiny_beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    again = evaluate_model(str(tiny_model_dir), str(tiny_beir), encoder_options=options, show_progress=False)
    assert again.cache_hit is False
    changed_setting = evaluate_model(str(tiny_model_dir), str(tiny_beir), show_progress=False,
                                     encoder_options={"dtype": "float32", "pooling": "cls"})
    assert changed_setting.cache_hit is False


def test_a_query_judging_its_own_id_relevant_is_warned_about_with_the_count(tiny_beir, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        result = evaluate_model("bm25", str(tiny_beir), "test", show_progress=False)
    assert "1 queries have a relevant passage with the query's own id (e.g. q3)" in result.qrels_warnings
    assert "BEIR's rule drops such a hit" in caplog.text
