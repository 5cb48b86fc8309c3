#!/usr/bin/env bash
# The pack's main job on its embedded default: the VCUT benchmark (MACs/parameters of the full-size SVD and SVD-XT
# UNets on the meta device, no weights; then the CPU wall-clock of whole 25-step videos at a reduced size with random
# weights, variants interleaved and repeated, ratios printed only where the spread allows a conclusion).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python bench/vcut_bench.py "$@"
