#!/usr/bin/env bash
# Creates .venv with what the demo and the tests need: the CPU torch 2.13.0 pinned by constraints.txt (so nothing
# upgrades it to a multi-GB CUDA build), the pack's requirements, the test/benchmark tools and comfy-cli (for
# `comfy node validate` / `comfy node pack`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
