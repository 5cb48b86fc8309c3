#!/usr/bin/env bash
# Prepares the git-ignored folder .gpu/ that is copied with the working tree to a GPU machine without network, which
# has torch 2.11, torchvision, transformers, safetensors, einops, aiohttp, opencv and numpy but no network:
#   .gpu/ComfyUI-0.8.0, .gpu/ComfyUI-0.30.0   the two releases the pack is tested on, copied from
#                       ../shared/comfyui without git data, tests, tokenizer data (the benchmark loads no text
#                       encoder), blueprints and the API nodes (neither is imported on its path): ~6 and ~8 MB
#   .gpu/whl/           the wheels that image lacks and ComfyUI + the pack import, for CPython 3.12 x86_64, pinned as
#                       ../shared/comfyui/venv-constraints*.txt pin them: av (comfy_api.latest, the pack's codec),
#                       torchsde and trampoline (comfy.k_diffusion.sampling), comfy-aimdo (0.30.0's dynamic VRAM,
#                       imported by comfy.model_management) and comfy-kitchen: 0.30.0 imports it unguarded
#                       (comfy/ldm/joyimage/model.py, reached through comfy.model_base). Its wheel is 45 MB, 98% of
#                       it the compiled backends/{cuda,hip}/_C; they are left out of the copy (its CUDA
#                       backend falls back to eager without _C, and an fp16 SVD calls none of its kernels)
#   .gpu/vid_h264.mp4   the clip the codec part upscales to 1920x1080 (from ../shared/data/video)
# The folder is never committed (.gitignore). Then: see BENCHMARKS.md, "GPU benchmark", for the `run` call.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED_COMFY=${SHARED_COMFY:-../shared/comfyui}
CLIP=${CLIP:-../shared/data/video/vid_h264.mp4}
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf .gpu/ComfyUI .gpu/ComfyUI-* .gpu/whl
mkdir -p .gpu/whl
for release in 0.8.0 0.30.0; do
  src=$SHARED_COMFY/ComfyUI-$release
  [ -f "$src/comfyui_version.py" ] || { echo "$src is not a ComfyUI checkout (set SHARED_COMFY)"; exit 1; }
  mkdir -p ".gpu/ComfyUI-$release"
  tar -C "$src" -cf - --exclude=./.git --exclude=./.github --exclude=./.ci --exclude=./tests \
      --exclude=./tests-unit --exclude=./blueprints --exclude=./comfy_api_nodes \
      --exclude='./comfy/sd1_tokenizer/*.json' --exclude='./comfy/sd1_tokenizer/*.txt' \
      --exclude='./comfy/text_encoders/*/*.json' --exclude='./comfy/text_encoders/*/*.model' \
      --exclude='./comfy/text_encoders/*/*.txt' --exclude='./comfy/text_encoders/*.json' . \
    | tar -C ".gpu/ComfyUI-$release" -xf -
  chmod -R u+w ".gpu/ComfyUI-$release"  # shared/ is read-only; the copy must not be
done
# av's and comfy-aimdo's abi3 wheels fit CPython 3.12 (aimdo.so loads the CUDA driver when dynamic VRAM starts)
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/whl \
    av==18.1.0 torchsde==0.2.6 trampoline==0.1.2 comfy-aimdo==0.4.11
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/kitchen comfy-kitchen==0.2.26
"$PYTHON" - .gpu/kitchen/*.whl .gpu/whl <<'PY'
"""Copy the comfy-kitchen wheel without its compiled backends (backends/*/_C*.so) and their RECORD lines."""
import pathlib, re, sys, zipfile
source, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]) / pathlib.Path(sys.argv[1]).name
compiled = re.compile(r"^comfy_kitchen/backends/[^/]+/_C[^/]*\.so")
with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if compiled.match(item.filename):
            continue
        data = src.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(True) if not compiled.match(line.decode()))
        dst.writestr(item, data)
PY
rm -rf .gpu/kitchen
cp "$CLIP" .gpu/vid_h264.mp4
du -sh .gpu/* .gpu/whl/* && du -sh .gpu
