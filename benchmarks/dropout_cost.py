"""What dropout costs in a CPU training step of MiniLM: the evidence behind ``train.attention_dropout = 0``.

One fp32 step = encode 16 queries and 64 passages (random words, cut at ``--length`` tokens) with
the bundled all-MiniLM-L6-v2 in train mode, in-batch cross-entropy, backward, AdamW -- the shape of
``benchmarks/train_speed.py``'s steps, in a plain loop. Each dropout setting runs in its own
process: ``model`` (the model's own 0.1 everywhere, as sentence-transformers trains), ``attention-off``
(attention-probability dropout 0, hidden-state dropout 0.1 with torch's masks),
``attention-off-fast-masks`` (synthrank's default: the same, with masks drawn 16 bits at a time by
``FastDropout``, ``train.dropout_masks = "fast"``) and ``all-off``.
``--profile`` adds, per setting, the share of the step spent in the top operators (torch.profiler).
``--settings`` picks settings; ``attention-off-compiled`` (opt-in) is ``attention-off`` with the
model under ``torch.compile`` (inductor; shapes are fixed here, so it compiles once, in the
warm-up step, whose time is recorded as ``warmup_seconds``): does fusing the non-matrix operators
buy what dropout settings cannot?

    flock /tmp/synthrank-heavy.lock .venv/bin/python benchmarks/dropout_cost.py [--length 128]
        [--steps 5] [--repeats 1] [--emulate-avx2] [--profile] [--settings model,attention-off,attention-off-fast-masks,all-off]
        [--output benchmarks/results/dropout_cost.json]

``--emulate-avx2`` caps torch's kernel libraries at AVX2 (as ``train_speed.py --emulate-avx2``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from synthrank.utils.cpu import AVX2_ONLY_ENV, cpu_model, speed_flags

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("model", "attention-off", "attention-off-fast-masks", "all-off")
OPT_IN_SETTINGS = ("attention-off-compiled",)

SIDE = r'''
import json, random, sys, time
import torch
from sentence_transformers import SentenceTransformer
from synthrank.models import bundled_encoder_path
from synthrank.models.dropout import set_attention_dropout, use_fast_dropout

setting, length, steps, profile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.manual_seed(0)
model = SentenceTransformer(str(bundled_encoder_path()), device="cpu")
model.max_seq_length = length
if setting in ("attention-off", "attention-off-fast-masks", "all-off", "attention-off-compiled"):
    set_attention_dropout(model, 0.0)
if setting == "attention-off-fast-masks":
    use_fast_dropout(model)
if setting == "all-off":
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
model.train()
forward = torch.compile(model) if setting.endswith("-compiled") else model
rng = random.Random(0)
words = "protein cell gene virus vaccine cancer brain heart lung blood insulin trial dose risk".split()
passages = [" ".join(rng.choice(words) for _ in range(2 * length)) for _ in range(64)]
queries = [" ".join(rng.choice(words) for _ in range(15)) for _ in range(16)]

def step():
    q = forward(model.preprocess(queries))["sentence_embedding"]
    p = forward(model.preprocess(passages))["sentence_embedding"]
    loss = torch.nn.functional.cross_entropy(q @ p.T / 0.05, torch.arange(16) * 4)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()

seconds = []
for _ in range(steps + 1):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
shares = None
if profile:
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    shares = {e.key: round(e.self_cpu_time_total / total, 4) for e in events[:8]}
print("RESULT " + json.dumps({"step_seconds": seconds[1:], "warmup_seconds": seconds[0], "top_operators": shares}))
'''


def run(setting: str, length: int, steps: int, profile: bool, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", SIDE, setting, str(length), str(steps), "1" if profile else "0"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{setting} failed:\n{proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every setting this many times, interleaved (setting order repeated), so that "
                        "a machine's drift hits all settings alike; medians are over all timed steps")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--emulate-avx2", action="store_true")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, from {', '.join(SETTINGS + OPT_IN_SETTINGS)} ('model' is the reference)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "dropout_cost.json")
    args = parser.parse_args()
    settings = [name.strip() for name in args.settings.split(",") if name.strip()]
    unknown = sorted(set(settings) - set(SETTINGS + OPT_IN_SETTINGS))
    if unknown or "model" not in settings:
        parser.error(f"--settings: unknown {unknown}" if unknown else "--settings must include 'model' (the reference)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    if args.emulate_avx2:
        env.update(AVX2_ONLY_ENV)
    results: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for setting in settings:
            result = run(setting, args.length, args.steps, args.profile and repeat == 0, env)
            merged = results.setdefault(setting, {"step_seconds": [], "warmup_seconds": [],
                                                  "top_operators": result["top_operators"]})
            merged["step_seconds"] += result["step_seconds"]
            merged["warmup_seconds"].append(result["warmup_seconds"])
            print(f"[{repeat + 1}/{args.repeats}] {setting:24s} median step "
                  f"{statistics.median(result['step_seconds']):.2f} s", flush=True)
    for result in results.values():
        result["median_step_seconds"] = statistics.median(result["step_seconds"])
    reference = results["model"]["median_step_seconds"]
    for result in results.values():
        result["speed_vs_model_dropout"] = reference / result["median_step_seconds"]
    report = {"settings": {"length": args.length, "steps": args.steps, "repeats": args.repeats, "queries": 16,
                           "passages": 64},
              "machine": {"cpu_model": cpu_model(), "cpu_flags": speed_flags(),
                          "emulated_avx2": AVX2_ONLY_ENV if args.emulate_avx2 else None},
              "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for setting, result in results.items():
        print(f"{setting:24s} {result['median_step_seconds']:.2f} s  {result['speed_vs_model_dropout']:.2f}x"
              + (f"  top: {result['top_operators']}" if result["top_operators"] else ""))
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
