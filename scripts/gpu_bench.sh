#!/usr/bin/env bash
# Runs bench/gpu_bench.py on a GPU machine without network access that has this working tree and the .gpu/ folder
# copied with it (scripts/gpu_bench_prep.sh): installs those wheels outside the tree, then the benchmark once per ComfyUI
# release, 0.30.0 (dynamic VRAM, as its main.py enables it) first, then 0.8.0, each in its own process, within one
# time budget: each release gets an equal share of what is left, and bench/gpu_bench.py's time guard skips (and
# reports) whatever would pass its share. The codec part does not depend on ComfyUI: it runs with the first release.
#   bash scripts/gpu_bench.sh OUT_DIR [gpu_bench.py options]      (default: full size, cuda, fp16)
# Writes OUT_DIR/comfyui-<release>/gpu_bench.{md,json,log}.
#   VCUT_GPU_BUDGET_S   seconds for all releases together (default 480: a 10-minute device call with 2 minutes spare)
#   VCUT_RELEASES       releases to run, in order (default "0.30.0 0.8.0")
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_bench.sh OUT_DIR [options]}
shift
PYTHON=${PYTHON:-python3}
site=${VCUT_SITE:-/tmp/vcut-site}
budget=${VCUT_GPU_BUDGET_S:-480}
read -r -a releases <<<"${VCUT_RELEASES:-0.30.0 0.8.0}"
for release in "${releases[@]}"; do
  if [ ! -d ".gpu/ComfyUI-$release" ]; then
    echo ".gpu/ComfyUI-$release is missing: run scripts/gpu_bench_prep.sh where the network is and copy .gpu with the tree"
    exit 1
  fi
done
ls .gpu/whl/*.whl >/dev/null 2>&1 || { echo ".gpu/whl has no wheels: run scripts/gpu_bench_prep.sh"; exit 1; }
"$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .gpu/whl/*.whl
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
codec=()
status=0
for i in "${!releases[@]}"; do
  release=${releases[$i]}
  left=$((budget - SECONDS))
  minutes=$(awk -v s="$left" -v n="$((${#releases[@]} - i))" 'BEGIN { printf "%.2f", s / n / 60 }')
  mkdir -p "$out/comfyui-$release"
  echo "== ComfyUI $release: $minutes minutes of the $budget s budget ($left s left)"
  PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 "$PYTHON" bench/gpu_bench.py \
      --comfy ".gpu/ComfyUI-$release" --out "$out/comfyui-$release" --max-minutes "$minutes" "${codec[@]}" "$@" 2>&1 \
      | tee "$out/comfyui-$release/gpu_bench.log" || status=1
  codec=(--no-codec)
done
exit $status
