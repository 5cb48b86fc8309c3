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

echo "== comfy node validate (registry metadata + security checks; no prompt, no telemetry, no network)"
validate_out=$(DO_NOT_TRACK=1 .venv/bin/comfy --skip-prompt --no-json node validate 2>&1)
validate_rc=$?
echo "$validate_out"
if [ "$validate_rc" -ne 0 ] || grep -qi "warning" <<<"$validate_out"; then
  echo "ERROR: comfy node validate failed or warned"; exit 1
fi

echo "== core tests (no ComfyUI)"
run_pytest .venv/bin/python -m pytest -c tests/pytest.ini tests/core || exit 1

if [ -n "${COMFYUI_PATH:-}" ]; then
  echo "== integration tests against ComfyUI at $COMFYUI_PATH"
  # browser tier (tests/integration/test_web.py): playwright-core from npm and Debian's chromium; it fails without them
  if [ ! -d tests/web/node_modules/playwright-core ]; then
    npm ci --prefix tests/web --no-audit --no-fund || echo "WARNING: npm ci --prefix tests/web failed (test_web will fail)"
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "chromium is missing: trying 'apt-get install -y chromium' (Debian; test_web needs /usr/bin/chromium)"
    { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 || echo "WARNING: install chromium yourself: sudo apt-get install -y chromium"
  fi
  run_pytest "${COMFYUI_PYTHON:-python3}" -m pytest -c tests/pytest.ini tests/integration || exit 1
else
  echo "== integration tests SKIPPED: COMFYUI_PATH is not set (see README, 'Integration tests')"
fi
