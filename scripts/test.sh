#!/usr/bin/env bash
# Install lmscope with its test tools, plus Debian's Chromium for the browser tests, and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
if ! command -v chromium >/dev/null; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -q chromium >/dev/null 2>&1 || { $sudo_ apt-get update -q && $sudo_ apt-get install -y -q chromium; }
fi
exec .venv/bin/python -m pytest "$@"
