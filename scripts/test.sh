#!/usr/bin/env bash
# The test command. Core tier always (no ComfyUI); integration tier when COMFYUI_PATH points at a ComfyUI
# checkout, run with COMFYUI_PYTHON (ComfyUI's Python; default: python3 on PATH).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1

run_pytest() {  # pytest's exit 5 (no test collected) is a failure here
  "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then echo "ERROR: pytest collected no tests"; return 1; fi
  return "$rc"
}

echo "== core tests (no ComfyUI)"
run_pytest .venv/bin/python -m pytest -c tests/pytest.ini tests/core || exit 1

if [ -n "${COMFYUI_PATH:-}" ]; then
  echo "== integration tests against ComfyUI at $COMFYUI_PATH"
  run_pytest "${COMFYUI_PYTHON:-python3}" -m pytest -c tests/pytest.ini tests/integration || exit 1
else
  echo "== integration tests SKIPPED: COMFYUI_PATH is not set (see README, 'Integration tests')"
fi
