"""End-to-end checks against published numbers on the real data in $SYNTHRANK_DATA_DIR."""

import json

import pytest
from typer.testing import CliRunner

from synthrank.cli import app

runner = CliRunner()


def run_eval(tmp_path, *args):
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["eval", *args, "--quiet", "--output", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bm25_scifact_matches_anserini(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(data_dir))
    result = run_eval(tmp_path, "--dataset", "scifact", "--model", "bm25")
    assert result["num_queries"] == 300
    assert abs(result["metrics"]["nDCG@10"] - 0.672) <= 0.01  # Anserini's published BM25 flat


@pytest.mark.slow
def test_minilm_scifact_matches_mteb(data_dir, tmp_path, monkeypatch, base_scifact_cache):
    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(data_dir))
    # with the cache the quickstart test shares: whichever runs first encodes the corpus
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(base_scifact_cache))
    result = run_eval(tmp_path, "--dataset", "scifact")
    assert abs(result["metrics"]["nDCG@10"] - 0.645) <= 0.01  # MTEB's published all-MiniLM-L6-v2


@pytest.mark.slow
def test_trec_dl_graded_metrics_agree_with_pytrec_eval(data_dir, tmp_path, monkeypatch):
    """Graded nDCG through synthrank equals trec_eval's own computation on the same run."""
    import pytrec_eval

    from synthrank.data import load_qrels, load_run

    monkeypatch.setenv("SYNTHRANK_DATA_DIR", str(data_dir))
    run_file = tmp_path / "run.trec"
    result = run_eval(tmp_path, "--dataset", "trec-dl-2019", "--model", "bm25", "--run", str(run_file))
    assert result["num_queries"] == 43
    qrels = load_qrels(data_dir / "trec-dl-2019" / "qrels" / "test.tsv")
    assert set(qrels[next(iter(qrels))].values()) - {0, 1} or any(
        g > 1 for judged in qrels.values() for g in judged.values())  # really graded
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(load_run(run_file))
    reference = sum(v["ndcg_cut_10"] for v in scores.values()) / len(scores)
    assert len(scores) == 43
    assert result["metrics"]["nDCG@10"] == pytest.approx(reference, abs=1e-4)
