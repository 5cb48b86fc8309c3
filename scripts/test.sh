#!/usr/bin/env bash
# The test command (CI runs exactly this). Tiers:
#   core         always: no ComfyUI (.venv from scripts/bootstrap.sh)
#   integration  ComfyUI's own loader, models, samplers and executor, in-process, plus the headless runner and
#   browser      the web extension in headless Chromium against a real ComfyUI server (tests/integration/test_web.py)
# ComfyUI: $COMFYUI_PATH when set, else ../shared/comfyui/ComfyUI-0.8.0 (read-only; nothing is written into it).
# ComfyUI's Python: $COMFYUI_PYTHON when set, else a venv outside the clone, created once and reused:
#   ${VCUT_COMFYUI_VENV:-$HOME/.cache/vcut/comfyui-0.8.0-venv} for the shared ComfyUI 0.8.0 (pinned by
#   ../shared/comfyui/venv-constraints.txt), ${VCUT_COMFYUI_VENV:-$HOME/.cache/vcut/comfyui-venv-<hash>} for another
#   checkout (its own requirements.txt). A marker file keyed on the requirement files says the venv is complete.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
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

echo "== core tests (no ComfyUI; real files from tests/data)"
run_pytest .venv/bin/python -m pytest -c tests/pytest.ini tests/core || exit 1

# ---- which ComfyUI ----
SHARED_COMFYUI="$ROOT/../shared/comfyui"
if [ -n "${COMFYUI_PATH:-}" ]; then
  comfy_path=$(cd "$COMFYUI_PATH" 2>/dev/null && pwd) || { echo "ERROR: COMFYUI_PATH=$COMFYUI_PATH is not a folder"; exit 1; }
  constraints=""
  default_venv="$HOME/.cache/vcut/comfyui-venv-$(printf '%s' "$comfy_path" | sha256sum | cut -c1-12)"
elif [ -d "$SHARED_COMFYUI/ComfyUI-0.8.0" ]; then
  comfy_path=$(cd "$SHARED_COMFYUI/ComfyUI-0.8.0" && pwd)
  constraints="$(cd "$SHARED_COMFYUI" && pwd)/venv-constraints.txt"
  default_venv="$HOME/.cache/vcut/comfyui-0.8.0-venv"
else
  echo "== integration and browser tiers NOT RUN: no ComfyUI found."
  echo "   They run against ../shared/comfyui/ComfyUI-0.8.0 (beside the development checkout) or against the ComfyUI"
  echo "   checkout that COMFYUI_PATH points to, e.g. COMFYUI_PATH=/path/to/ComfyUI bash scripts/test.sh"
  echo "   (add COMFYUI_PYTHON=/path/to/its/venv/bin/python to use its own environment). Core tier: passed."
  exit 0
fi
if [ ! -f "$comfy_path/main.py" ] || [ ! -d "$comfy_path/comfy" ]; then
  echo "ERROR: $comfy_path is not a ComfyUI checkout (no main.py / comfy/)"; exit 1
fi

# ---- ComfyUI's Python environment (outside the clone) ----
if [ -n "${COMFYUI_PYTHON:-}" ]; then
  comfy_python=$COMFYUI_PYTHON
else
  venv=${VCUT_COMFYUI_VENV:-$default_venv}
  comfy_python="$venv/bin/python"
  marker="$venv/.vcut-env-complete"
  pip_args=(-r "$comfy_path/requirements.txt" -r requirements.txt requests pytest)
  [ -n "$constraints" ] && pip_args+=(-c "$constraints")
  # the marker holds a hash of everything the install depends on: a changed requirement file reinstalls
  wanted=$( { cat "$comfy_path/requirements.txt" requirements.txt ${constraints:+"$constraints"};
              echo "requests pytest"; python3 --version; } | sha256sum | cut -d' ' -f1)
  if [ -x "$comfy_python" ] && [ "$(cat "$marker" 2>/dev/null)" = "$wanted" ]; then
    echo "== ComfyUI environment: reusing $venv"
  else
    if [ -x "$comfy_python" ]; then
      echo "== ComfyUI environment: completing $venv (no marker of a finished install, or a requirement file changed)"
    else
      echo "== ComfyUI environment: creating $venv (first run: about 6.6 GB with PyPI's CUDA torch, run on the CPU)"
    fi
    mkdir -p "$(dirname "$venv")"
    [ -x "$comfy_python" ] || python3 -m venv "$venv" || { echo "ERROR: python3 -m venv $venv failed"; exit 1; }
    rm -f "$marker"
    log="$venv-install.log"
    if ! "$comfy_python" -m pip install --disable-pip-version-check "${pip_args[@]}" >"$log" 2>&1; then
      tail -n 30 "$log"; echo "ERROR: pip install into $venv failed (full log: $log)"; exit 1
    fi
    echo "$wanted" > "$marker"
  fi
fi

# ---- browser tier prerequisites: Debian's chromium, playwright-core from npm ----
if [ ! -d tests/web/node_modules/playwright-core ]; then
  npm ci --prefix tests/web --no-audit --no-fund || echo "WARNING: npm ci --prefix tests/web failed (test_web will fail)"
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "chromium is missing: trying 'apt-get install -y chromium' (Debian; test_web needs /usr/bin/chromium)"
  { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 || echo "WARNING: install chromium yourself: sudo apt-get install -y chromium"
fi

# Bytecode goes to a cache folder, never into the ComfyUI checkout (read-only in CI); every ComfyUI folder the
# tests write (input/output/temp/user, a server's base directory) is a temporary folder (see tests/integration).
export PYTHONPYCACHEPREFIX="${XDG_CACHE_HOME:-$HOME/.cache}/vcut/pycache"
echo "== integration + browser tests against ComfyUI at $comfy_path with $comfy_python"
COMFYUI_PATH="$comfy_path" run_pytest "$comfy_python" -m pytest -c tests/pytest.ini tests/integration || exit 1
