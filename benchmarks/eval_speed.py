"""Wall time of `synthrank eval --dataset scifact --no-cache` against a plain
sentence-transformers pipeline (SentenceTransformer.encode, exact search, pytrec_eval), on
the same data, in one run, each in fp32 and in bf16. Each side runs in its own fresh process,
model load included.

    SYNTHRANK_DATA_DIR=../shared/data .venv/bin/python benchmarks/eval_speed.py [--repeats 1] \
        [--sides st-fp32,st-bf16,synthrank-fp32,synthrank-bf16,synthrank-int8] [--corpus-sample 1000] \
        [--emulate-avx2]

bf16 is fast only on CPUs with native bf16 (AVX-512-BF16 / AMX); on AVX2-only CPUs torch
emulates it. ``--corpus-sample N`` evaluates on a random N-passage subset of the corpus that
keeps every judged passage (so nDCG@10 is higher than on the full corpus, and the same for
all sides): it keeps the slow emulated-bf16 sides affordable on AVX2 machines.

``synthrank-int8`` is the opt-in fast path (``--dtype int8``: dynamically quantized Linear layers).
``--emulate-avx2`` runs every side as an AVX2-only CPU would on an AVX-512 one: torch's ATen
kernels, oneDNN, MKL and fbgemm (the int8 kernels) are each capped at AVX2 through their own
variables (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS,
FBGEMM_ENABLE_INSTRUCTIONS); memory and caches stay those of the machine, so figures from a real
AVX2 CPU are better evidence where one is at hand.

Writes benchmarks/results/eval_speed-<cpu kind>.json (``avx512-bf16``, ``avx2``, or
``avx2-emulated``; ``-sample<N>`` appended for ``--corpus-sample N``). Run it on
a quiet machine: with 2 cores any other busy process distorts both sides.
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

from synthrank.utils.cpu import AVX2_ONLY_ENV, cpu_model

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
if sys.argv[2] == "bf16":
    model = model.to(torch.bfloat16)
docs = [(c.get("title", "") + " " + c["text"]).strip() for c in corpus]
P = model.encode(docs, batch_size=32, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False).float()
Q = model.encode([queries[q] for q in qids], batch_size=32, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False).float()
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
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def cpu_kind() -> tuple[str, list[str]]:
    """The CPU kind speed figures are filed under, and the flags that decide it."""
    from synthrank.experiments.estimates import has_native_bf16
    from synthrank.utils.cpu import SPEED_FLAGS, cpu_flags

    flags = cpu_flags()
    named = sorted(flags & SPEED_FLAGS)
    return ("avx512-bf16" if has_native_bf16(flags) else "avx2"), named


def sample_corpus(folder: Path, size: int, target: Path, seed: int = 0) -> Path:
    """A BEIR folder with ``size`` passages of ``folder``'s corpus: every passage judged in the
    test qrels plus random others (fixed seed), and the same queries and qrels."""
    import random
    import shutil

    qrels = (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]
    judged = {line.split()[1] for line in qrels if line.strip()}
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    keep = [line for line in lines if json.loads(line)["_id"] in judged]
    others = [line for line in lines if json.loads(line)["_id"] not in judged]
    random.Random(seed).shuffle(others)
    keep += others[:max(0, size - len(keep))]
    (target / "qrels").mkdir(parents=True)
    (target / "corpus.jsonl").write_text("\n".join(keep) + "\n")
    shutil.copy(folder / "queries.jsonl", target / "queries.jsonl")
    shutil.copy(folder / "qrels" / "test.tsv", target / "qrels" / "test.tsv")
    return target


SIDES = ("st-fp32", "st-bf16", "synthrank-fp32", "synthrank-bf16", "synthrank-int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {', '.join(SIDES)}")
    parser.add_argument("--corpus-sample", type=int, default=0, help="evaluate on N passages (0: the full corpus)")
    parser.add_argument("--emulate-avx2", action="store_true", help="cap torch's kernels at AVX2 (see above)")
    args = parser.parse_args()
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(sides) - set(SIDES)
    if unknown:
        sys.exit(f"--sides: unknown {sorted(unknown)}; choose from {', '.join(SIDES)}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    data_dir = Path(env.get("SYNTHRANK_DATA_DIR", REPO.parent / "shared" / "data"))
    env["SYNTHRANK_DATA_DIR"] = str(data_dir)
    kind, flags = cpu_kind()
    if args.emulate_avx2:
        env.update(AVX2_ONLY_ENV)
        kind = "avx2-emulated"
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = data_dir / args.dataset
        if args.corpus_sample:
            folder = sample_corpus(folder, args.corpus_sample, Path(tmp) / "sample")
        passages = len((folder / "corpus.jsonl").read_text().splitlines())
        for repeat in range(args.repeats):
            # alternate the order so drift on the machine favours no side
            for side in (sides if repeat % 2 == 0 else sides[::-1]):
                tool, dtype = side.split("-")
                if tool == "st":
                    seconds, out = timed([python, "-c", BASELINE, str(folder), dtype], env)
                    ndcg = json.loads(out.strip().splitlines()[-1])["nDCG@10"]
                else:
                    result_file = Path(tmp) / "result.json"
                    seconds, _ = timed([python, "-m", "synthrank", "eval", "--dataset", str(folder), "--no-cache",
                                        "--dtype", {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}[dtype], "--quiet",
                                        "--output", str(result_file)], env)
                    ndcg = json.loads(result_file.read_text())["metrics"]["nDCG@10"]
                rows.append({"side": side, "repeat": repeat, "seconds": round(seconds, 2),
                             "passages_per_second": round(passages / seconds, 2), "nDCG@10": round(ndcg, 5)})
                print(f"{side:15s} repeat {repeat}: {seconds:7.1f} s  {passages / seconds:6.1f} passages/s  "
                      f"nDCG@10 {ndcg:.4f}", flush=True)
    mean = {s: sum(r["seconds"] for r in rows if r["side"] == s) / args.repeats for s in sides}
    reference = "st-fp32" if "st-fp32" in sides else sides[0]
    summary = {
        "dataset": args.dataset,
        "passages": passages,
        "corpus_sample": args.corpus_sample or None,
        "sides": {
            "st-fp32": "SentenceTransformer.encode(batch_size=32) + torch exact search + pytrec_eval, fp32",
            "st-bf16": "the same with the model cast to bfloat16",
            "synthrank-fp32": "synthrank eval --no-cache --dtype float32 (length-sorted token-budget batches)",
            "synthrank-bf16": "synthrank eval --no-cache --dtype bfloat16",
            "synthrank-int8": "synthrank eval --no-cache --dtype int8 (opt-in: dynamically quantized Linear layers)",
        },
        "emulated_avx2": AVX2_ONLY_ENV if args.emulate_avx2 else None,
        "seconds": {s: round(mean[s], 2) for s in sides},
        "passages_per_second": {s: round(passages / mean[s], 2) for s in sides},
        f"speed_vs_{reference}": {s: round(mean[reference] / mean[s], 3) for s in sides},
        "nDCG@10": {s: next(r["nDCG@10"] for r in rows if r["side"] == s) for s in sides},
        "runs": rows,
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "cpu_kind": kind, "cpu_flags": flags, "platform": platform.platform(),
                    "python": platform.python_version()},
        "command": "SYNTHRANK_DATA_DIR=../shared/data .venv/bin/python benchmarks/eval_speed.py "
                   + " ".join(sys.argv[1:]),
    }
    sample = f"-sample{args.corpus_sample}" if args.corpus_sample else ""  # a sampled run keeps its own file
    out = REPO / "benchmarks" / "results" / f"eval_speed-{kind}{sample}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    for side in sides:
        print(f"{side:15s} {summary['passages_per_second'][side]:7.1f} passages/s  "
              f"{summary[f'speed_vs_{reference}'][side]:.2f}x {reference}  nDCG@10 {summary['nDCG@10'][side]:.4f}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
