"""Shared fixtures: the real data folder, a tiny BEIR dataset and a tiny random encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    return Path(os.environ.get("SYNTHRANK_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = real_data_dir()
    if not (path / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"real data not found at {path}; set SYNTHRANK_DATA_DIR")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache so no test sees another's embeddings or datasets."""
    monkeypatch.setenv("SYNTHRANK_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def base_scifact_cache(tmp_path_factory) -> Path:
    """One cache shared by the slow tests that evaluate the *untrained* bundled MiniLM on SciFact
    (the published-number test and the quickstart): the first fills it with the base model's
    SciFact embeddings (~6 min on an AVX2 CPU), the others read them, keyed by model and corpus
    hash like every cached embedding. Everything else keeps its own cache."""
    return tmp_path_factory.mktemp("base-scifact-cache")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny_beir(tmp_path) -> Path:
    """A six-passage, three-query BEIR folder with graded qrels."""
    folder = tmp_path / "tiny"
    write_jsonl(folder / "corpus.jsonl", [
        {"_id": "d1", "title": "Cats", "text": "Cats are small domesticated felines that purr."},
        {"_id": "d2", "title": "Dogs", "text": "Dogs are loyal domesticated canines that bark."},
        {"_id": "d3", "title": "", "text": "The stock market fell sharply on Monday."},
        {"_id": "d4", "title": "Felines", "text": "Lions and tigers are large wild felines."},
        {"_id": "d5", "title": "", "text": "Bread is baked from flour, water and yeast."},
        {"_id": "q3", "title": "", "text": "Quantum computers use qubits."},
    ])
    write_jsonl(folder / "queries.jsonl", [
        {"_id": "q1", "text": "domesticated felines purr"},
        {"_id": "q2", "text": "loyal dogs bark"},
        {"_id": "q3", "text": "what do quantum computers use"},
    ])
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t3\nq1\td4\t1\nq2\td2\t2\nq3\tq3\t1\n"
    )
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random BERT with the bundled MiniLM tokenizer, saved as a sentence-transformers folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from synthrank.models import bundled_encoder_path

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return folder
