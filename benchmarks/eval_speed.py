"""Wall time of `synthrank eval --dataset scifact --no-cache` against a plain
sentence-transformers pipeline (SentenceTransformer.encode, exact search, pytrec_eval), on
the same data, in one run. Each side runs in its own fresh process, model load included.

    SYNTHRANK_DATA_DIR=../shared/data .venv/bin/python benchmarks/eval_speed.py [--repeats 1]

Writes benchmarks/results/eval_speed.json. Run it on a quiet machine: with 2 cores any other
busy process distorts both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASELINE = r'''
import json, sys, time
import numpy as np, pytrec_eval, torch
from sentence_transformers import SentenceTransformer
from synthrank.models import bundled_encoder_path

folder = sys.argv[1]
corpus = [json.loads(l) for l in open(f"{folder}/corpus.jsonl")]
queries = {q["_id"]: q["text"] for q in map(json.loads, open(f"{folder}/queries.jsonl"))}
qrels = {}
for i, line in enumerate(open(f"{folder}/qrels/test.tsv")):
    if i == 0: continue
    q, d, s = line.split()
    qrels.setdefault(q, {})[d] = int(s)
qids = [q for q in qrels if q in queries]
model = SentenceTransformer(str(bundled_encoder_path()), device="cpu")
docs = [(c.get("title", "") + " " + c["text"]).strip() for c in corpus]
P = model.encode(docs, batch_size=32, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
Q = model.encode([queries[q] for q in qids], batch_size=32, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
scores, idx = torch.topk(Q @ P.T, 100, dim=1)
run = {q: {corpus[j]["_id"]: float(s) for s, j in zip(scores[i].tolist(), idx[i].tolist()) if corpus[j]["_id"] != q}
       for i, q in enumerate(qids)}
ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank", "recall.100"})
res = ev.evaluate(run)
ndcg = sum(v["ndcg_cut_10"] for v in res.values()) / len(res)
print(json.dumps({"nDCG@10": ndcg}))
'''


def timed(command: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    data_dir = Path(env.get("SYNTHRANK_DATA_DIR", REPO.parent / "shared" / "data"))
    env["SYNTHRANK_DATA_DIR"] = str(data_dir)
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            # alternate which side goes first so drift on the machine favours neither
            sides = ["baseline", "synthrank"] if repeat % 2 == 0 else ["synthrank", "baseline"]
            for side in sides:
                if side == "baseline":
                    seconds, out = timed([python, "-c", BASELINE, str(data_dir / args.dataset)], env)
                    ndcg = json.loads(out.strip().splitlines()[-1])["nDCG@10"]
                else:
                    result_file = Path(tmp) / "result.json"
                    seconds, _ = timed([python, "-m", "synthrank", "eval", "--dataset", args.dataset, "--no-cache",
                                        "--quiet", "--output", str(result_file)], env)
                    ndcg = json.loads(result_file.read_text())["metrics"]["nDCG@10"]
                rows.append({"side": side, "repeat": repeat, "seconds": round(seconds, 2), "nDCG@10": round(ndcg, 5)})
                print(f"{side:10s} repeat {repeat}: {seconds:7.1f} s  nDCG@10 {ndcg:.4f}", flush=True)
    mean = {s: sum(r["seconds"] for r in rows if r["side"] == s) / args.repeats for s in ("baseline", "synthrank")}
    ndcg = {s: [r["nDCG@10"] for r in rows if r["side"] == s][0] for s in ("baseline", "synthrank")}
    summary = {
        "dataset": args.dataset,
        "baseline": "SentenceTransformer.encode(batch_size=32) + torch exact search + pytrec_eval, fp32",
        "synthrank": "synthrank eval --no-cache (length-sorted token-budget batches, bf16 where native)",
        "baseline_seconds": round(mean["baseline"], 2),
        "synthrank_seconds": round(mean["synthrank"], 2),
        "speedup": round(mean["baseline"] / mean["synthrank"], 3),
        "ndcg_baseline": ndcg["baseline"],
        "ndcg_synthrank": ndcg["synthrank"],
        "ndcg_difference": round(ndcg["synthrank"] - ndcg["baseline"], 5),
        "runs": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "command": "SYNTHRANK_DATA_DIR=../shared/data .venv/bin/python benchmarks/eval_speed.py",
    }
    out = REPO / "benchmarks" / "results" / "eval_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"speedup {summary['speedup']}x at nDCG@10 {ndcg['synthrank']:.4f} vs {ndcg['baseline']:.4f} -> {out}")


if __name__ == "__main__":
    main()
