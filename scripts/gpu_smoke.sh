#!/usr/bin/env bash
# GPU smoke test, a few minutes on one GPU, no network: evaluates the bundled MiniLM on SciFact,
# trains it a few steps in bf16 (BM25 negatives mined first), evaluates the result, and generates
# passages with the transformers backend (and vLLM where it is installed). Every step prints its
# own figures (metrics, timings, tokens/s); the script ends with a summary of wall times.
#
#   scripts/gpu_smoke.sh [OUT_DIR]        # default runs/gpu_smoke; needs .venv (scripts/install.sh)
#
# SciFact comes from $SYNTHRANK_DATA_DIR (default ../shared/data). Nothing here is a test the
# suite depends on.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/gpu_smoke}
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-30}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SYNTHRANK_DATA_DIR=${SYNTHRANK_DATA_DIR:-$PWD/../shared/data}
export SYNTHRANK_CACHE_DIR=${SYNTHRANK_CACHE_DIR:-$OUT/cache}   # a fresh cache: encoding is timed, not read back
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
synthrank() { "$PY" -m synthrank "$@"; }

declare -a SUMMARY=()
step() {  # step NAME COMMAND...: run, time, remember the wall time
  local name=$1 start end
  shift
  echo
  echo "=== $name: $*"
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  SUMMARY+=("$(awk -v n="$name" -v s="$start" -v e="$end" 'BEGIN { printf "%-28s %8.1f s", n, e - s }')")
}

echo "=== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"
"$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {torch.cuda.get_device_name(0)}; "
      f"bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
if [ ! -f "$SYNTHRANK_DATA_DIR/scifact/corpus.jsonl" ]; then
  echo "scifact not found under $SYNTHRANK_DATA_DIR (set SYNTHRANK_DATA_DIR)" >&2
  exit 1
fi

# 1. the untrained base model: 5,183 passages, 300 test queries
step "eval base (scifact)" synthrank eval --dataset scifact --model all-MiniLM-L6-v2 --quiet \
  --output "$OUT/eval-base.json"

# 2. a few training steps in bf16 on real positives + BM25 negatives
step "mine bm25 negatives" synthrank mine --dataset scifact --split train --top-k 30 --output "$OUT/mined" --quiet
cat > "$OUT/recipe.json" <<EOF
{"mode": "graded", "group_size": 4, "sampling": "top", "sources": [
  {"dataset": "scifact", "split": "train", "min_grade": 1, "set_grade": 3, "sample_k": 1},
  {"dataset": "scifact", "qrels": "$OUT/mined/qrels/train.tsv", "set_grade": 1, "sample_k": 3}]}
EOF
step "train $STEPS steps bf16" synthrank train --data "$OUT/recipe.json" --model all-MiniLM-L6-v2 --loss ws2 \
  --output "$OUT/model" --max-steps "$STEPS" --batch-size 32 --lr 2e-5 --bf16 --save-steps 1000 --quiet
"$PY" - "$OUT/model" <<'EOF'
import json, pathlib, sys
state = sorted(pathlib.Path(sys.argv[1]).glob("**/trainer_state.json"))
if state:
    logs = json.loads(state[-1].read_text())["log_history"]
    losses = [round(e["loss"], 4) for e in logs if "loss" in e]
    print(f"training losses (first, last): {losses[:1]} ... {losses[-1:]}; steps: {logs[-1].get('step')}")
EOF

# 3. the trained model
step "eval trained (scifact)" synthrank eval --dataset scifact --model "$OUT/model" --quiet \
  --output "$OUT/eval-trained.json"

# 4. generation: transformers backend (the bundled SmolLM2 GGUF, dequantised, bf16 on the GPU)
step "generate transformers" synthrank generate --queries scifact --split test --limit 16 --backend transformers \
  --concurrency 16 --output "$OUT/gen-transformers" --quiet

# 5. generation with vLLM, where installed (the same GGUF; prefix caching on)
if "$PY" -c "import vllm" 2>/dev/null; then
  GGUF=$("$PY" -c "from synthrank.generate.bundled import bundled_generator_path; print(bundled_generator_path())")
  step "generate vllm" synthrank generate --queries scifact --split test --limit 64 --backend vllm --model "$GGUF" \
    --concurrency 64 --backend-option gpu_memory_utilization=0.5 --backend-option max_model_len=4096 \
    --output "$OUT/gen-vllm" --quiet
  step "vllm backend test" "$PY" -m pytest -q -m slow tests/generate/test_vllm_backend.py -k real_vllm
else
  echo
  echo "=== vllm is not installed: skipped (pip install vllm)"
fi

echo
echo "=== summary (wall time per step)"
printf '%s\n' "${SUMMARY[@]}"
for f in "$OUT/eval-base.json" "$OUT/eval-trained.json"; do
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[1], r['metrics'], 'timing', r['timing'])" "$f"
done
