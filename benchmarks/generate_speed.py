"""Throughput of the bundled generator: one request at a time vs continuous batching.

Runs the same per-level generation requests (real MS MARCO dev queries, the shipped prompts,
fixed seeds) through the llama-cpp backend with 1 sequence at a time and with K sequences
decoded together, and reports passages/s (answers that pass validation), answers/s and
generated tokens/s for each, in one run. Run it under the shared lock:

    flock /tmp/synthrank-heavy.lock .venv/bin/python benchmarks/generate_speed.py \
        --requests 96 --runs plain 1:none 1 16 --threads 2 --output benchmarks/results/generate_speed.json

The report names the CPU, its flags and the instruction sets the loaded ggml build uses. To
measure the AVX2-only path on an AVX-512 CPU, build llama-cpp-python once more with the
AVX-512 kernels off and put it first on the path (ggml picks its kernels at compile time):

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
        -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
        .venv/bin/python -m pip install --no-deps --no-cache-dir --target /tmp/llama-avx2 llama-cpp-python==0.3.36
    PYTHONPATH=/tmp/llama-avx2 .venv/bin/python benchmarks/generate_speed.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from synthrank.generate.backends.base import ChatRequest
from synthrank.generate.backends.llama_cpp import LlamaCppBackend, ggml_cpu_features
from synthrank.generate.levels import default_levels
from synthrank.generate.parsing import Validator, clean_passage, parse_single, trim_to_sentence
from synthrank.generate.prompts import PromptSet
from synthrank.generate.queries import load_query_source
from synthrank.utils.cpu import cpu_model, speed_flags

FALLBACK_QUERIES = ["how long to boil an egg", "what is the capital of australia", "symptoms of vitamin d deficiency",
                    "who invented the telephone", "how many calories in an apple", "what causes thunder"]


def build_requests(n: int, max_tokens: int, data_dir: Path) -> tuple[list[ChatRequest], list[str]]:
    source = data_dir / "msmarco-dev-small"
    queries = list(load_query_source(source).values()) if source.is_dir() else FALLBACK_QUERIES
    prompts = PromptSet.load()
    levels = default_levels(4)
    requests, texts = [], []
    per_level = -(-n // len(levels))
    for i in range(n):  # level-major, as the runner sends them (prompts of a level share a prefix)
        query = queries[i % per_level % len(queries)]
        level = levels[i // per_level]
        messages = prompts.level_messages(query, level, "60 to 100", 30, 160)
        requests.append(ChatRequest(messages, max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=1000 + i))
        texts.append(query)
    return requests, texts


def measure(concurrency: int, requests: list[ChatRequest], queries: list[str], threads: int,
            quantize: str = "auto", share_prefix: bool = True) -> dict:
    backend = LlamaCppBackend(None, concurrency=concurrency, threads=threads, quantize=quantize,
                              share_prefix=share_prefix)
    validator = Validator(30, 160)
    try:
        backend.generate(requests[:1])  # generator object: nothing runs; load time is excluded below
        warm = [ChatRequest(requests[0].messages, max_tokens=8, temperature=0.0)]
        for _ in backend.generate(warm):
            pass
        backend.stats = dict.fromkeys(backend.stats, 0)
        start = time.perf_counter()
        tokens_out = tokens_in = answers = valid = 0
        for index, completion in backend.generate(requests):
            answers += 1
            tokens_out += completion.tokens_out
            tokens_in += completion.tokens_in
            text = clean_passage(parse_single(completion.text))
            if completion.finish_reason == "length":
                text = trim_to_sentence(text)
            valid += validator.check(text, queries[index]) is None
        seconds = time.perf_counter() - start
    finally:
        backend.close()
    return {"concurrency": concurrency, "model": backend.model_name, "share_prefix": share_prefix,
            "requests": len(requests), "answers": answers, "valid_passages": valid,
            "seconds": round(seconds, 2), "answers_per_s": round(answers / seconds, 3),
            "passages_per_s": round(valid / seconds, 3), "tokens_out": tokens_out, "tokens_in": tokens_in,
            "tokens_per_s": round(tokens_out / seconds, 2), **backend.stats}


def measure_plain(requests: list[ChatRequest], queries: list[str], threads: int) -> dict:
    """llama-cpp-python's own one-at-a-time API (``Llama.create_chat_completion``), for reference."""
    from llama_cpp import Llama

    from synthrank.generate.bundled import bundled_generator_path

    llm = Llama(model_path=str(bundled_generator_path()), n_ctx=2048, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    validator = Validator(30, 160)
    llm.create_chat_completion(messages=requests[0].messages, max_tokens=8, temperature=0.0)
    start = time.perf_counter()
    tokens_out = tokens_in = valid = 0
    for index, r in enumerate(requests):
        out = llm.create_chat_completion(messages=r.messages, max_tokens=r.max_tokens, temperature=r.temperature,
                                         top_p=r.top_p, top_k=r.top_k, seed=r.seed)
        tokens_out += out["usage"]["completion_tokens"]
        tokens_in += out["usage"]["prompt_tokens"]
        choice = out["choices"][0]
        text = clean_passage(parse_single(choice["message"]["content"] or ""))
        if choice.get("finish_reason") == "length":
            text = trim_to_sentence(text)
        valid += validator.check(text, queries[index]) is None
    seconds = time.perf_counter() - start
    llm.close()
    return {"concurrency": "plain", "model": "SmolLM2-135M-Instruct-Q4_1 (as shipped)", "requests": len(requests), "answers": len(requests), "valid_passages": valid,
            "seconds": round(seconds, 2), "answers_per_s": round(len(requests) / seconds, 3),
            "passages_per_s": round(valid / seconds, 3), "tokens_out": tokens_out, "tokens_in": tokens_in,
            "tokens_per_s": round(tokens_out / seconds, 2)}


def parse_run(spec: str) -> dict:
    """``plain`` | ``K`` | ``K:QUANT`` | ``K:QUANT:noshare`` (QUANT: auto, none, or a re-encoding:
    q8_0, f16, q5_0, iq4_nl, q4_0)."""
    if spec == "plain":
        return {"plain": True}
    parts = spec.split(":")
    return {"plain": False, "concurrency": int(parts[0]), "quantize": parts[1] if len(parts) > 1 else "auto",
            "share_prefix": not (len(parts) > 2 and parts[2] == "noshare")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--runs", nargs="+", default=["plain", "1:none", "1", "16"],
                        help="plain (llama-cpp-python, shipped Q4_1, one at a time) or K[:QUANT[:noshare]] for the "
                             "batched engine with K sequences (QUANT none = the shipped Q4_1; auto = Q8_0)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--data-dir", default=os.environ.get("SYNTHRANK_DATA_DIR", "../shared/data"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    import llama_cpp

    ggml_features = ggml_cpu_features(llama_cpp)
    print(f"CPU: {cpu_model()} | flags: {' '.join(speed_flags())} | ggml: {' '.join(ggml_features)}", flush=True)
    requests, queries = build_requests(args.requests, args.max_tokens, Path(args.data_dir))
    results = []
    for spec in args.runs:
        run = parse_run(spec)
        if run["plain"]:
            result = measure_plain(requests, queries, args.threads)
        else:
            result = measure(run["concurrency"], requests, queries, args.threads, run["quantize"],
                             run["share_prefix"])
        result["run"] = spec
        results.append(result)
        print(json.dumps(result), flush=True)
    # The goal is stated against the best way of sending one request at a time.
    singles = [r for r in results if r["concurrency"] in ("plain", 1)] or results[:1]
    base_tokens = max(r["tokens_per_s"] for r in singles)
    base_passages = max(r["passages_per_s"] for r in singles)
    for r in results:
        r["speedup_tokens"] = round(r["tokens_per_s"] / base_tokens, 2) if base_tokens else None
        r["speedup_passages"] = round(r["passages_per_s"] / base_passages, 2) if base_passages else None
    report = {"backend": "llama-cpp", "threads": args.threads, "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
              "cpu_flags": speed_flags(), "ggml_cpu_features": ggml_features,
              "llama_cpp": {"version": llama_cpp.__version__, "path": str(Path(llama_cpp.__file__).parent)},
              "max_tokens": args.max_tokens,
              "baseline": "the fastest one-request-at-a-time run (plain or K=1)", "results": results}
    print(f"{'run':>16} {'model':>38} {'passages/s':>11} {'answers/s':>10} {'tokens/s':>9} {'x tok/s':>8} {'x pass/s':>9}")
    for r in results:
        print(f"{r['run']:>16} {r['model']:>38} {r['passages_per_s']:>11.3f} {r['answers_per_s']:>10.3f} "
              f"{r['tokens_per_s']:>9.1f} {r['speedup_tokens']:>8} {r['speedup_passages']:>9}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
