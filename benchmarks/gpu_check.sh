#!/usr/bin/env bash
# The GPU check: lmscope's device tests and its benchmarks on a CUDA GPU, with the CPU baseline
# for the same work in the same run. Prepared for a session that is lent a GPU machine (one
# H100/H200, no network, torch 2.11+cu130 in its python3); it finishes well inside 8 minutes
# there from a cold start (about 2 for the tests, at most 4.5 for the benchmarks).
#
#     bash benchmarks/gpu_check.sh          # from the repository root, on the GPU machine
#
# What it does:
#   1. prints the card, the driver and the versions it runs with;
#   2. runs tests/test_devices.py and tests/test_placement.py: the GPU tests (bfloat16 on the GPU
#      against float32 on the CPU; layers offloaded to the CPU with the GPU computing, against the
#      model in one piece) and the CPU ones (offload to disk); SmolLM2's tests skip where its
#      package is not installed;
#   3. runs benchmarks/bench_devices.py: analysis, head-ablation scan, patching and generation at
#      1,024 and 8,192 tokens on the GPU in bfloat16, on the CPU in float32 (what fits its time)
#      and on the GPU in float32, and writes benchmarks/results/gpu.md (the table and the card);
#   4. runs the dataset-run benchmark too where lmscope/runs and benchmarks/bench_runs.py exist;
#   5. copies the table and the logs to $OUT (the device tool brings them back) when set.
#
# The machine's own python3 (torch with CUDA, transformers, accelerate, tokenizers, safetensors,
# pytest, hypothesis: KINDS.md lists them) is used; lmscope is read from this checkout. A wheel
# it lacks (or a newer transformers: its image had 5.17, lmscope is developed on 5.25, which
# needs huggingface-hub>=2.4) travels in .whl/, prepared on the developer's machine:
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux2014_x86_64 -d .whl \
#         transformers==5.25.0 huggingface-hub==2.4.0
# and the run names `.whl` in its carry; this script installs whatever .whl/ holds.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp/lmscope-gpu-check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/lmscope-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/lmscope-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== the card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOGS/card.txt"
"$PY" - <<'EOF' | tee -a "$LOGS/card.txt"
import accelerate, torch, transformers
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
      f"{transformers.__version__}, accelerate {accelerate.__version__}, "
      f"GPU visible: {torch.cuda.is_available()} {torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}")
EOF

echo "== device tests"
timeout 180 "$PY" -m pytest tests/test_devices.py tests/test_placement.py -q -rs \
    -p no:cacheprovider 2>&1 | tee "$LOGS/tests.log"
tests=${PIPESTATUS[0]}

echo "== benchmarks"
# BENCH_ARGS replaces the sizes for a dry run elsewhere (e.g. "--lengths 32 --reps 1 --budget 60")
timeout 290 "$PY" benchmarks/bench_devices.py ${BENCH_ARGS:---lengths 1024 8192 --reps 3 --budget 240} \
    --out benchmarks/results/gpu.md 2>&1 | tee "$LOGS/bench.log"
bench=${PIPESTATUS[0]}

if [ -d lmscope/runs ] && [ -f benchmarks/bench_runs.py ]; then
    echo "== dataset-run benchmark"
    timeout 60 "$PY" benchmarks/bench_runs.py --device cuda --dtype bfloat16 2>&1 | tee "$LOGS/runs.log"
else
    echo "== dataset-run benchmark: skipped (no lmscope/runs or benchmarks/bench_runs.py here)"
fi

cp benchmarks/results/gpu.md "$LOGS/" 2>/dev/null
echo "== done: tests exit $tests, benchmarks exit $bench; table in benchmarks/results/gpu.md"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
