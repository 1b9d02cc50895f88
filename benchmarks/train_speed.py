"""Training-step throughput and peak memory: synthrank's trainer (HF Trainer + ws2 / infonce)
against sentence-transformers' MultipleNegativesRankingLoss, same model, batch and lengths.

Both sides: the bundled all-MiniLM-L6-v2, 16 queries x 4 passages per step (1 positive + 3
negatives for MNRL, i.e. 16 anchors and 64 documents; the same 64 in-batch columns for
synthrank), query and passage max length 128, AdamW, 1 warm-up step then 5 timed steps. Each
side runs in its own fresh process, so peak RSS (``ru_maxrss``) is that side's own;
examples/s counts queries per second over the timed steps (forward, backward and optimizer
step). The sentence-transformers side is a plain loop (``model.preprocess`` -> loss ->
``backward`` -> ``AdamW.step``): its trainer needs the ``datasets`` package, and a bare loop
carries *less* overhead than our ``Trainer``, so the comparison does not favour synthrank.

    SYNTHRANK_DATA_DIR=../shared/data flock /tmp/synthrank-heavy.lock \
        .venv/bin/python benchmarks/train_speed.py [--steps 5] [--repeats 1] [--losses ws2,infonce] \
        [--length 128] [--cross] [--emulate-avx2]

Each side trains as its library does by default: sentence-transformers with the model's dropout
everywhere, synthrank with attention-probability dropout off (``train.attention_dropout = 0``,
which lets torch's fused attention kernel run) and hidden-state dropout masks drawn 16 bits at a
time (``train.dropout_masks = "fast"``). ``--cross`` also times each side with the other's
settings, so the table shows how much of the difference is those settings. ``--emulate-avx2``
caps torch's kernel libraries at AVX2 (an AVX-512 machine then computes as an AVX2-only one would,
up to caches and memory); the output records it.

Texts: SciFact train claims and abstracts when the data is there (passages reach 128 tokens),
random words otherwise. Writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthrank.utils.cpu import AVX2_ONLY_ENV, cpu_model, speed_flags

REPO = Path(__file__).resolve().parents[1]


def make_texts(num_queries: int, group: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Queries and, per query, ``group`` passages (SciFact train when available)."""
    import random

    rng = random.Random(seed)
    folder = Path(os.environ.get("SYNTHRANK_DATA_DIR", REPO.parent / "shared" / "data")) / "scifact"
    if (folder / "corpus.jsonl").is_file():
        docs = []
        with open(folder / "corpus.jsonl") as handle:
            for line in handle:
                d = json.loads(line)
                docs.append(f"{d.get('title', '')} {d['text']}".strip())
        queries = [json.loads(line)["text"] for line in open(folder / "queries.jsonl")]
        rng.shuffle(queries)
        queries = (queries * (num_queries // len(queries) + 1))[:num_queries]
    else:
        words = "protein cell gene virus vaccine cancer brain heart lung blood insulin trial dose risk".split()
        docs = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(2000)]
        queries = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(num_queries)]
    groups = [[rng.choice(docs) for _ in range(group)] for _ in range(num_queries)]
    return queries, groups


SYNTHRANK_SIDE = r'''
import json, resource, sys, time
from pathlib import Path
import torch
from transformers import TrainerCallback
from synthrank.data import write_corpus, write_qrels, write_queries
from synthrank.train.config import load_train_config
from synthrank.train.trainer import train

spec = json.loads(Path(sys.argv[1]).read_text())
work = Path(spec["work"])
queries, groups = spec["queries"], spec["groups"]
passages, qrels = [], {}
for i, group in enumerate(groups):
    for j, text in enumerate(group):
        passages.append({"_id": f"p{i}-{j}", "title": "", "text": text})
        qrels.setdefault(f"q{i}", {})[f"p{i}-{j}"] = 3 if j == 0 else 1
write_corpus(work / "data" / "corpus.jsonl", passages)
write_queries(work / "data" / "queries.jsonl", {f"q{i}": q for i, q in enumerate(queries)})
write_qrels(work / "data" / "qrels" / "train.tsv", qrels)
recipe = work / "recipe.json"
recipe.write_text(json.dumps({"group_size": spec["group"], "sampling": "top", "positive_threshold": 2,
                              "mode": "binary" if spec["loss"] == "infonce" else "graded",
                              "sources": [{"dataset": str(work / "data")}]}))

times = []
class Clock(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        times.append(time.perf_counter() - self.t)

config = load_train_config(None, dict(
    data=str(recipe), output=str(work / "out"), loss=spec["loss"], batch_size=spec["batch"],
    group_size=spec["group"], query_max_length=spec["length"], passage_max_length=spec["length"],
    max_steps=spec["warmup"] + spec["steps"], lr=1e-5, warmup=0, save_steps=10**6, logging_steps=10**6,
    quiet=True, temperature=0.05 if spec["loss"] == "infonce" else 1.0, seed=0,
    **{name: spec[name] for name in ("attention_dropout", "dropout_masks") if name in spec}))
train(config, callbacks=[Clock()])
timed = times[spec["warmup"]:]
print("RESULT " + json.dumps({"step_seconds": timed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                               "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}))
'''

ST_SIDE = r'''
import json, resource, sys, time
from pathlib import Path
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from synthrank.models import bundled_encoder_path

spec = json.loads(Path(sys.argv[1]).read_text())
torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
model = SentenceTransformer(str(bundled_encoder_path()), device=device)
model.max_seq_length = spec["length"]
if spec.get("attention_dropout") is not None:
    from synthrank.models.dropout import set_attention_dropout
    set_attention_dropout(model, spec["attention_dropout"])
if spec.get("dropout_masks") == "fast":
    from synthrank.models.dropout import use_fast_dropout
    use_fast_dropout(model)
loss_fn = MultipleNegativesRankingLoss(model)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
model.train()
queries, groups = spec["queries"], spec["groups"]
B, G = spec["batch"], spec["group"]
times = []
for step in range(spec["warmup"] + spec["steps"]):
    t = time.perf_counter()
    qs = queries[step * B:(step + 1) * B]
    gs = groups[step * B:(step + 1) * B]
    columns = [qs] + [[g[j] for g in gs] for j in range(G)]   # anchor, positive, negative_1..G-1
    prep = getattr(model, "preprocess", None) or model.tokenize
    features = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in prep(col).items()} for col in columns]
    labels = torch.zeros(len(qs), device=device)
    loss = loss_fn(features, labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    times.append(time.perf_counter() - t)
timed = times[spec["warmup"]:]
print("RESULT " + json.dumps({"step_seconds": timed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                               "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}))
'''




def run_side(code: str, spec: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = {**spec, "work": tmp}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        script = Path(tmp) / "side.py"
        script.write_text(code)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), str(spec_path)], capture_output=True, text=True,
                              env=env, cwd=REPO)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"side failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    seconds = sum(result["step_seconds"])
    result.update(examples_per_second=spec["batch"] * len(result["step_seconds"]) / seconds,
                  passages_per_second=spec["batch"] * spec["group"] * len(result["step_seconds"]) / seconds,
                  process_wall_seconds=wall)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="queries per step")
    parser.add_argument("--group", type=int, default=4, help="passages per query")
    parser.add_argument("--length", type=int, default=128, help="max tokens, queries and passages")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--losses", default="ws2", help="synthrank losses to time, comma-separated")
    parser.add_argument("--cross", action="store_true",
                        help="also time each side with the other's dropout: MNRL with synthrank's defaults "
                        "(attention dropout 0, fast dropout masks), synthrank with sentence-transformers' "
                        "(the model's 0.1 attention dropout, torch's masks)")
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="cap torch's kernels at AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, "
                        "MKL_ENABLE_INSTRUCTIONS), as on a CPU without AVX-512")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "train_speed.json")
    args = parser.parse_args()

    total = args.batch * (args.warmup + args.steps)
    queries, groups = make_texts(total, args.group)
    base = {"queries": queries, "groups": groups, "batch": args.batch, "group": args.group,
            "length": args.length, "steps": args.steps, "warmup": args.warmup}
    sides = {"sentence-transformers MNRL": (ST_SIDE, base)}
    if args.cross:
        sides["sentence-transformers MNRL, synthrank's dropout"] = (ST_SIDE, {**base, "attention_dropout": 0.0,
                                                                                "dropout_masks": "fast"})
    for loss in [x.strip() for x in args.losses.split(",") if x.strip()]:
        sides[f"synthrank {loss}"] = (SYNTHRANK_SIDE, {**base, "loss": loss})
        if args.cross:
            sides[f"synthrank {loss}, sentence-transformers' dropout"] = (
                SYNTHRANK_SIDE, {**base, "loss": loss, "attention_dropout": 0.1, "dropout_masks": "torch"})
    if args.emulate_avx2:
        os.environ.update(AVX2_ONLY_ENV)  # the sides' processes inherit it
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name, (code, spec) in sides.items():
            result = run_side(code, spec)
            runs[name].append(result)
            print(f"[{repeat + 1}/{args.repeats}] {name}: {result['examples_per_second']:.2f} queries/s, "
                  f"{result['passages_per_second']:.1f} passages/s, peak RSS {result['peak_rss_mb']:.0f} MB",
                  flush=True)
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "examples_per_second": statistics.median(r["examples_per_second"] for r in results),
            "passages_per_second": statistics.median(r["passages_per_second"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "cuda_peak_mb": max((r["cuda_peak_mb"] or 0) for r in results) or None,
            "step_seconds": [s for r in results for s in r["step_seconds"]],
        }
    reference = summary["sentence-transformers MNRL"]
    for name, info in summary.items():
        info["speed_vs_mnrl"] = info["examples_per_second"] / reference["examples_per_second"]
        info["memory_vs_mnrl"] = info["peak_rss_mb"] / reference["peak_rss_mb"]
    import torch

    report = {
        "settings": {**{k: v for k, v in base.items() if k not in ("queries", "groups")}, "repeats": args.repeats,
                     "model": "all-MiniLM-L6-v2 (bundled)", "optimizer": "AdamW lr 1e-5, grad clip 1.0"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "cpu_flags": speed_flags(), "cpu_model": cpu_model(),
                    "emulated_avx2": AVX2_ONLY_ENV if args.emulate_avx2 else None},
        "results": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(f"{'side':50s} {'queries/s':>10s} {'passages/s':>11s} {'peak RSS MB':>12s} {'speed vs MNRL':>14s}")
    for name, info in summary.items():
        print(f"{name:50s} {info['examples_per_second']:10.2f} {info['passages_per_second']:11.1f} "
              f"{info['peak_rss_mb']:12.0f} {info['speed_vs_mnrl']:13.2f}x")
    print(f"\nwritten: {args.output}")


if __name__ == "__main__":
    main()
