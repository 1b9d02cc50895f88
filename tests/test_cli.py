import json

from typer.testing import CliRunner

from synthrank.cli import app

runner = CliRunner()


def test_eval_bm25_writes_json(tiny_beir, tmp_path):
    out = tmp_path / "results.json"
    result = runner.invoke(app, ["eval", "--dataset", str(tiny_beir), "--model", "bm25", "--output", str(out),
                                 "--run", str(tmp_path / "run.trec"), "--quiet"])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert {"model", "dataset", "split", "num_queries", "metrics", "timing"} <= set(payload)
    assert list(payload["metrics"]) == ["nDCG@10", "RR@10", "R@100"]
    assert payload["num_queries"] == 3 and "nDCG@10" in result.output
    assert (tmp_path / "run.trec").is_file()


def test_eval_bad_input_names_file_and_line(tiny_beir):
    with open(tiny_beir / "corpus.jsonl", "a") as handle:
        handle.write('{"_id": "d9", "txt": "typo in the field name"}\n')
    result = runner.invoke(app, ["eval", "--dataset", str(tiny_beir), "--model", "bm25", "--quiet"])
    assert result.exit_code == 2
    assert "corpus.jsonl:7: field 'text': missing" in result.output
    assert "Traceback" not in result.output


def test_eval_unknown_dataset_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", "http://127.0.0.1:9")
    result = runner.invoke(app, ["eval", "--dataset", "nosuchset", "--model", "bm25", "--quiet"])
    assert result.exit_code == 2 and "SYNTHRANK_DATA_DIR" in result.output


def test_eval_bad_measure(tiny_beir):
    result = runner.invoke(app, ["eval", "--dataset", str(tiny_beir), "--model", "bm25", "--measures", "Bogus@1"])
    assert result.exit_code == 2 and "unknown measure" in result.output


def _eval(*args):
    return runner.invoke(app, ["eval", "--quiet", *args])


def test_eval_bad_options_give_one_clear_line(tiny_beir, tiny_model_dir, tmp_path):
    dataset = ["--dataset", str(tiny_beir)]
    cases = [
        (["--model", "bm25", "--measures", "nDCG@0"], "cutoff after '@' must be a whole number >= 1"),
        (["--model", "bm25", "--measures", ","], "no measure given"),
        (["--model", "bm25", "--bm25-stemmer", "klingon"], "unknown BM25 stemmer 'klingon'"),
        (["--model", "bm25", "--bm25-k1", "-1"], "k1 must be >= 0"),
        (["--model", str(tiny_model_dir), "--max-length", "-5"], "--max-length must be >= 1"),
        (["--model", str(tiny_model_dir), "--max-length", "0"], "--max-length must be >= 1"),
        (["--model", str(tiny_model_dir), "--max-length", "2000"], "must be between 1 and 128"),
        (["--model", str(tmp_path / "no-such-model")], "no such folder. A model is a local folder"),
    ]
    for args, message in cases:
        result = _eval(*dataset, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        # typer exits through SystemExit; any other exception is a traceback from deep inside
        assert "Traceback" not in result.output, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)


def test_eval_output_folder_is_refused_before_the_evaluation_runs(tiny_beir, tmp_path):
    result = _eval("--dataset", str(tiny_beir), "--model", "bm25", "--output", str(tmp_path))
    assert result.exit_code == 2 and "is a folder; give a file path" in result.output
    assert "nDCG@10" not in result.output  # nothing was evaluated


def test_eval_empty_corpus_fails_for_bm25_and_dense(tiny_beir, tiny_model_dir):
    (tiny_beir / "corpus.jsonl").write_text("")
    for model in ("bm25", str(tiny_model_dir)):
        result = _eval("--dataset", str(tiny_beir), "--model", model)
        assert result.exit_code == 2 and "corpus.jsonl: no passages (the file is empty)" in result.output


def test_eval_misspelt_dataset_offline_lists_local_names(tiny_beir, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(tiny_beir.parent))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("SYNTHRANK_BEIR_URL", "http://127.0.0.1:9")
    result = _eval("--dataset", "tinny", "--model", "bm25")
    assert result.exit_code == 2 and "HF_HUB_OFFLINE is set" in result.output
    assert "Did you mean 'tiny'?" in result.output and "downloading" not in result.output
