#!/usr/bin/env bash
# The pack's main job on its embedded default: the VCUT benchmark (MACs/parameters of the full-size SVD and SVD-XT
# UNets on the meta device, no weights; then CPU wall-clock ratios at a reduced size with random weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python bench/vcut_bench.py "$@"
