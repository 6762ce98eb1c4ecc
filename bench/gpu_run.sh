#!/usr/bin/env bash
# The GPU run (docs/performance.md), on a machine with a GPU and nothing downloaded. Needs the bundle that
# `python bench/gpu_run.py prepare` writes here, carried along as .gpu_bundle. Prints per-song seconds, tokens
# per second and peak GPU memory at BATCH_SIZE 1, 4 and 8, then the lyrics model; the figures land in $OUT (or .).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"${PYTHON:-python3}" bench/gpu_run.py run "$@" 2>&1 | tee "${OUT:-.}/gpu_run.log"
