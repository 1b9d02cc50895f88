"""``synthrank quickstart``: the whole method, small, on the bundled models.

Generate graded passages for a few dozen real SciFact training claims with the bundled
SmolLM2, mine BM25 negatives for them, train the bundled MiniLM with the Wasserstein loss on
synthetic + real ranking contexts (real positive -> 3, two BM25 negatives -> 1, the four
synthetic levels), and evaluate base and trained model on SciFact test.
"""

from __future__ import annotations

from synthrank.experiments.config import ExperimentConfig, parse_experiment


def quickstart_config(output: str = "runs/quickstart", queries: int = 32, epochs: float = 8.0,
                      batch_size: int = 8, eval_dataset: str = "scifact", seed: int = 0) -> ExperimentConfig:
    data = {
        "name": "quickstart",
        "output": output,
        "description": (f"Quickstart: {queries} SciFact train claims, bundled SmolLM2 generator, bundled MiniLM "
                        f"trained with ws2 on synthetic + real contexts for {epochs:g} epochs, evaluated on "
                        f"{eval_dataset}. A smoke-scale run: it shows the pipeline works end to end, not "
                        "what the method achieves at scale."),
        "generate": [{"name": "scifact-train", "queries": "scifact", "split": "train", "sample": queries,
                      "seed": seed}],
        "mine": [{"name": "scifact-bm25", "dataset": "scifact", "split": "train", "top_k": 20}],
        "train": {"batch_size": batch_size, "epochs": epochs, "lr": 2e-5, "query_max_length": 64,
                  "passage_max_length": 128, "seed": seed, "logging_steps": 2, "save_steps": 10},
        "settings": [{
            "name": "ws2-synthetic+real",
            "loss": "ws2",
            "description": "real positive -> 3, two BM25 negatives -> 1, synthetic passages at their levels",
            "recipe": {
                "mode": "graded", "group_size": 7, "sampling": "random",
                "sources": [
                    {"name": "synthetic", "dataset": "{generate.scifact-train}", "split": "train", "sample_k": 4},
                    {"name": "real-positive", "dataset": "scifact", "split": "train", "min_grade": 1,
                     "set_grade": 3, "sample_k": 1, "queries": "{generate.scifact-train}/queries.jsonl"},
                    {"name": "bm25-negatives", "dataset": "scifact", "qrels": "{mine.scifact-bm25}",
                     "set_grade": 1, "sample_k": 2, "queries": "{generate.scifact-train}/queries.jsonl"},
                ],
            },
        }],
        "eval": {"datasets": [{"dataset": eval_dataset, "split": "test"}]},
    }
    return parse_experiment(data, "<quickstart>")
