#!/usr/bin/env bash
# Install lmscope into .venv: the CPU build of torch first (so nothing pulls CUDA), then the package.
# Usage: bash scripts/install.sh [extra]   e.g. `test` adds pytest, hypothesis, Playwright and ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${1:+[$1]}"
