#!/usr/bin/env bash
# Runs bench/gpu_bench.py on a lent GPU machine that has this working tree and the carried .gpu/ folder
# (scripts/gpu_bench_prep.sh): installs the carried wheels outside the tree, then the benchmark.
#   bash scripts/gpu_bench.sh OUT_DIR [gpu_bench.py options]      (default: full size, cuda, fp16)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_bench.sh OUT_DIR [options]}
shift
PYTHON=${PYTHON:-python3}
site=${VCUT_SITE:-/tmp/vcut-site}
if [ ! -d .gpu/ComfyUI ] || ! ls .gpu/whl/*.whl >/dev/null 2>&1; then
  echo ".gpu/ is missing or incomplete: run scripts/gpu_bench_prep.sh here and name .gpu in the run's carry"; exit 1
fi
"$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .gpu/whl/*.whl
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 "$PYTHON" bench/gpu_bench.py --out "$out" "$@" 2>&1 \
    | tee "$out/gpu_bench.log"
