#!/usr/bin/env bash
# Prepares the git-ignored folder .gpu/ that travels (`carry`) with the working tree to a lent GPU machine, which
# has torch 2.11, torchvision, transformers, safetensors, einops, aiohttp, opencv and numpy but no network:
#   .gpu/ComfyUI        ComfyUI 0.8.0, copied from $COMFY_SRC (default ../shared/comfyui/ComfyUI-0.8.0) without
#                       its git data, tests and tokenizer data files (the benchmark loads no text encoder): ~8 MB
#   .gpu/whl/           the wheels that image lacks and ComfyUI + the pack import: av (comfy_api.latest, the
#                       pack's codec), torchsde and trampoline (comfy.k_diffusion.sampling), for CPython 3.12 x86_64
#   .gpu/vid_h264.mp4   the clip the codec part upscales to 1920x1080 (from ../shared/data/video)
# The folder is never committed (.gitignore). Then: see BENCHMARKS.md, "GPU benchmark", for the `run` call.
set -euo pipefail
cd "$(dirname "$0")/.."
COMFY_SRC=${COMFY_SRC:-../shared/comfyui/ComfyUI-0.8.0}
CLIP=${CLIP:-../shared/data/video/vid_h264.mp4}
PYTHON=${PYTHON:-.venv/bin/python}
[ -f "$COMFY_SRC/comfyui_version.py" ] || { echo "COMFY_SRC=$COMFY_SRC is not a ComfyUI checkout"; exit 1; }
rm -rf .gpu/ComfyUI
mkdir -p .gpu/ComfyUI .gpu/whl
tar -C "$COMFY_SRC" -cf - --exclude=./.git --exclude=./.github --exclude=./.ci --exclude=./tests \
    --exclude=./tests-unit --exclude='./comfy/sd1_tokenizer/*.json' --exclude='./comfy/sd1_tokenizer/*.txt' \
    --exclude='./comfy/text_encoders/*/*.json' --exclude='./comfy/text_encoders/*/*.model' \
    --exclude='./comfy/text_encoders/*/*.txt' --exclude='./comfy/text_encoders/*.json' . | tar -C .gpu/ComfyUI -xf -
chmod -R u+w .gpu/ComfyUI  # shared/ is read-only; the copy must not be
# pins: ../shared/comfyui/venv-constraints.txt (the set the integration tier runs); av's abi3 wheel fits CPython 3.11+
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/whl \
    av==18.1.0 torchsde==0.2.6 trampoline==0.1.2
cp "$CLIP" .gpu/vid_h264.mp4
du -sh .gpu/* && du -sh .gpu
