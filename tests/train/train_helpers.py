"""Helpers for training tests: a tiny random BERT (bundled MiniLM tokenizer) and a toy BEIR folder."""

from __future__ import annotations

import json
from pathlib import Path

from synthrank.data import write_corpus, write_qrels, write_queries

WORDS = ("protein cell gene virus vaccine cancer brain heart lung blood sugar insulin mouse human "
         "trial dose risk study effect level").split()


def make_tiny_model(folder: Path, dropout: float = 0.0, sentence_transformers: bool = True) -> Path:
    """A 2-layer, 32-wide BERT with random weights (seed 0) and MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from synthrank.models import bundled_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    model = BertModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if sentence_transformers:  # Transformer (max 32 tokens) -> mean Pooling -> Normalize, saved by sentence-transformers
        from synthrank.models import load_model, save_model
        from synthrank.models.st_format import configure

        st = load_model(str(folder), local_files_only=True)
        configure(st, pooling="mean", normalize=True)
        st.max_seq_length = 32
        save_model(st, folder)
    return folder


def make_toy_beir(folder: Path, num_queries: int = 12, passages_per_query: int = 6, seed: int = 0) -> Path:
    """Queries q0..qN with passages q<i>-p<j> graded (j % 4) in qrels/train.tsv."""
    import random

    rng = random.Random(seed)
    queries, passages, qrels = {}, [], {}
    for i in range(num_queries):
        qid = f"q{i}"
        queries[qid] = " ".join(rng.choice(WORDS) for _ in range(5))
        for j in range(passages_per_query):
            pid = f"{qid}-p{j}"
            passages.append({"_id": pid, "title": f"title {j}", "text": " ".join(rng.choice(WORDS) for _ in range(12))})
            qrels.setdefault(qid, {})[pid] = j % 4
    write_corpus(folder / "corpus.jsonl", passages)
    write_queries(folder / "queries.jsonl", queries)
    write_qrels(folder / "qrels" / "train.tsv", qrels)
    return folder


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path
