"""llama-cpp generation speed with a quiet machine and with one core taken by another process.

llama.cpp's threads wait for each other at a barrier after every operation of every step: when
one of them shares its core with another busy process, the whole step waits for the time slices
that process leaves. This runs the bundled generator (the shipped per-level prompts, real MS
MARCO dev queries, 16 sequences at a time) for a fixed time per setting, with and without a
competing CPU-bound process (``python -c 'while True: pass'`` under ``timeout``), and reports
the answers and generated tokens that finished within that time. Run it under the shared lock:

    flock /tmp/synthrank-heavy.lock .venv/bin/python benchmarks/thread_contention.py \
        --threads 2 1 --seconds 45 --output benchmarks/results/thread_contention.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_speed import build_requests  # noqa: E402

from synthrank.generate.backends.base import ChatRequest  # noqa: E402
from synthrank.generate.backends.llama_cpp import LlamaCppBackend, available_cores  # noqa: E402


def measure(threads: int, busy: bool, requests: list[ChatRequest], seconds: float, concurrency: int) -> dict:
    backend = LlamaCppBackend(None, concurrency=concurrency, threads=threads)
    competitor = None
    try:
        for _ in backend.generate([ChatRequest(requests[0].messages, max_tokens=8, temperature=0.0)]):
            pass  # warm-up, not timed
        if busy:
            competitor = subprocess.Popen(["timeout", str(int(seconds) + 30), sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        answers = tokens_out = 0
        start = time.perf_counter()
        stream = backend.generate(requests)
        try:
            for _, completion in stream:
                answers += 1
                tokens_out += completion.tokens_out
                if time.perf_counter() - start >= seconds:
                    break
        finally:
            stream.close()
        elapsed = time.perf_counter() - start
    finally:
        if competitor is not None:
            competitor.terminate()
            competitor.wait()
        backend.close()
    return {"threads": threads, "busy_core": busy, "seconds": round(elapsed, 1), "answers": answers,
            "tokens_out": tokens_out, "tokens_per_s": round(tokens_out / elapsed, 2),
            "answers_per_min": round(60 * answers / elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cores = available_cores()
    parser.add_argument("--threads", type=int, nargs="+", default=[cores, max(1, cores - 1)])
    parser.add_argument("--seconds", type=float, default=45.0, help="time budget per setting")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--data-dir", default=os.environ.get("SYNTHRANK_DATA_DIR", "../shared/data"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    requests, _ = build_requests(args.requests, 200, Path(args.data_dir))
    results = []
    for busy in (False, True):
        for threads in args.threads:
            result = measure(threads, busy, requests, args.seconds, args.concurrency)
            results.append(result)
            print(json.dumps(result), flush=True)
    report = {"backend": "llama-cpp (bundled SmolLM2-135M as Q8_0)", "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "concurrency": args.concurrency,
              "competitor": "python -c 'while True: pass'", "results": results}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
