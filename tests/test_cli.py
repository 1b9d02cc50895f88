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
