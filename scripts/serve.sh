#!/usr/bin/env bash
# Install lmscope and open the dashboard on http://127.0.0.1:8050 (GPT-2 Small; SmolLM2-135M offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/lmscope serve "$@"
