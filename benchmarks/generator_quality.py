"""Does a re-encoding of the bundled generator keep its quality? Perplexity on real passages.

The llama-cpp backend re-encodes the shipped SmolLM2 Q4_1 file to a weight type that ggml
multiplies faster on this CPU (see ``synthrank.generate.backends.llama_cpp``). A faster type is
only worth having if the model still predicts text as well: this script scores the first
``--passages`` passages of the TREC DL 2019 pool (real MS MARCO text the generator is asked to
imitate) under each re-encoding and prints the perplexity of each, side by side in one run:

    flock /tmp/synthrank-heavy.lock .venv/bin/python benchmarks/generator_quality.py \
        --quants none q8_0 q5_0 iq4_nl q4_0 --output benchmarks/results/generator_quality.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np

from synthrank.generate.backends.llama_cpp import QUANT_TYPES, requantize
from synthrank.generate.bundled import bundled_generator_path
from synthrank.utils.cpu import cpu_model


def load_passages(data_dir: Path, n: int) -> list[str]:
    corpus = data_dir / "trec-dl-2019" / "corpus.jsonl"
    if not corpus.is_file():
        raise SystemExit(f"{corpus}: not found; point --data-dir (or SYNTHRANK_DATA_DIR) at the shared data")
    passages = []
    with corpus.open() as lines:
        for line in lines:
            passages.append(json.loads(line)["text"])
            if len(passages) == n:
                break
    return passages


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def perplexity(model_path: Path, passages: list[str], threads: int) -> tuple[float, int]:
    """exp(mean negative log-likelihood) of every passage token after the first, each passage
    scored on its own from a fresh context; returns it with the number of tokens scored."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), n_ctx=1024, n_batch=512, logits_all=True, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    nll, count = 0.0, 0
    try:
        for text in passages:
            tokens = llm.tokenize(text.encode(), add_bos=True)[:1024]
            llm.reset()
            llm.eval(tokens)
            log_probs = log_softmax_rows(np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64))
            nll -= float(log_probs[np.arange(len(tokens) - 1), tokens[1:]].sum())
            count += len(tokens) - 1
    finally:
        llm.close()
    return math.exp(nll / count), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quants", nargs="+", default=["none", *QUANT_TYPES],
                        help=f"none (the shipped file) and/or re-encodings: {', '.join(QUANT_TYPES)}")
    parser.add_argument("--passages", type=int, default=40)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--data-dir", default=os.environ.get("SYNTHRANK_DATA_DIR", "../shared/data"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    passages = load_passages(Path(args.data_dir), args.passages)
    source = bundled_generator_path()
    results = []
    for quant in args.quants:
        path = source if quant == "none" else requantize(source, quant, threads=args.threads)
        value, tokens = perplexity(path, passages, args.threads)
        result = {"quant": quant, "file": path.name, "file_mb": round(path.stat().st_size / 2**20, 1),
                  "perplexity": round(value, 3), "tokens": tokens}
        results.append(result)
        print(json.dumps(result), flush=True)
    report = {"model": source.name, "cpu_model": cpu_model(), "passages": len(passages), "source": "trec-dl-2019 corpus, first passages",
              "results": results}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
