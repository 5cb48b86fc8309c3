#!/usr/bin/env bash
# The test command (CI runs exactly this). Tiers:
#   core         always: no ComfyUI (.venv from scripts/bootstrap.sh)
#   integration  ComfyUI's own loader, models, samplers and executor, in-process, plus the headless runner and
#   browser      the web extension in headless Chromium against a real ComfyUI server (tests/integration/test_web.py)
# Which ComfyUI: $COMFYUI_PATH when set (that one only), else every release in ../shared/comfyui, side by side:
#   ComfyUI-0.8.0 (the oldest the pack supports, pinned by venv-constraints.txt) and ComfyUI-0.30.0 (pinned by
#   venv-constraints-0.30.0.txt). They are read-only: nothing is written into them.
# ComfyUI's Python: $COMFYUI_PYTHON when set (with COMFYUI_PATH), else a venv outside the clone, created once and
#   reused: ${VCUT_COMFYUI_VENV:-$HOME/.cache/vcut/comfyui-<release>-venv} for a shared release,
#   ${VCUT_COMFYUI_VENV:-$HOME/.cache/vcut/comfyui-venv-<hash>} for another checkout (its own requirements.txt).
#   A marker file keyed on the requirement files says the venv is complete.
# No ComfyUI at all: the core tier runs and a loud "GLUE NOT TESTED" banner says so; under CI that is a failure.
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

echo "== ruff check (lint: [tool.ruff] in pyproject.toml)"
.venv/bin/ruff check . || { echo "ERROR: ruff check found problems (run .venv/bin/ruff check --fix .)"; exit 1; }

echo "== comfy node validate (registry metadata + security checks; no prompt, no telemetry, no network)"
validate_out=$(DO_NOT_TRACK=1 .venv/bin/comfy --skip-prompt --no-json node validate 2>&1)
validate_rc=$?
echo "$validate_out"
if [ "$validate_rc" -ne 0 ] || grep -qi "warning" <<<"$validate_out"; then
  echo "ERROR: comfy node validate failed or warned"; exit 1
fi

echo "== core tests (no ComfyUI; real files from tests/data)"
run_pytest .venv/bin/python -m pytest -c tests/pytest.ini tests/core || exit 1

# ---- which ComfyUI releases: "path|constraints file|default venv" each ----
SHARED_COMFYUI="$ROOT/../shared/comfyui"
releases=()
if [ -n "${COMFYUI_PATH:-}" ]; then
  comfy_path=$(cd "$COMFYUI_PATH" 2>/dev/null && pwd) || { echo "ERROR: COMFYUI_PATH=$COMFYUI_PATH is not a folder"; exit 1; }
  releases+=("$comfy_path||$HOME/.cache/vcut/comfyui-venv-$(printf '%s' "$comfy_path" | sha256sum | cut -c1-12)")
else
  for release in 0.8.0 0.30.0; do
    constraints=venv-constraints.txt
    [ "$release" = 0.8.0 ] || constraints=venv-constraints-$release.txt
    if [ -d "$SHARED_COMFYUI/ComfyUI-$release" ]; then
      shared=$(cd "$SHARED_COMFYUI" && pwd)
      releases+=("$shared/ComfyUI-$release|$shared/$constraints|$HOME/.cache/vcut/comfyui-$release-venv")
    fi
  done
fi
if [ "${#releases[@]}" -eq 0 ]; then
  cat <<'BANNER'
########################################################################################################
##  GLUE NOT TESTED: no ComfyUI found. Only the core tier ran; nodes/, workflows/, runner/ and web/ were ##
##  not run against any ComfyUI. Put ../shared/comfyui (ComfyUI-0.8.0, ComfyUI-0.30.0) beside this     ##
##  checkout, or: COMFYUI_PATH=/path/to/ComfyUI [COMFYUI_PYTHON=/path/to/venv/bin/python] bash scripts/test.sh
########################################################################################################
BANNER
  if [ -n "${CI:-}" ]; then echo "ERROR: CI must run the integration tier (../shared/comfyui is missing)"; exit 1; fi
  exit 0
fi

# ---- ComfyUI's Python environment (outside the clone): prints its python ----
comfy_env() {
  local comfy_path=$1 constraints=$2 venv=${VCUT_COMFYUI_VENV:-$3}
  if [ -n "${COMFYUI_PYTHON:-}" ] && [ -n "${COMFYUI_PATH:-}" ]; then echo "$COMFYUI_PYTHON"; return 0; fi
  local python="$venv/bin/python" marker="$venv/.vcut-env-complete"
  local pip_args=(-r "$comfy_path/requirements.txt" -r requirements.txt requests pytest)
  [ -n "$constraints" ] && pip_args+=(-c "$constraints")
  # the marker holds a hash of everything the install depends on: a changed requirement file reinstalls
  local wanted
  wanted=$( { cat "$comfy_path/requirements.txt" requirements.txt ${constraints:+"$constraints"};
              echo "requests pytest"; python3 --version; } | sha256sum | cut -d' ' -f1)
  if [ -x "$python" ] && [ "$(cat "$marker" 2>/dev/null)" = "$wanted" ]; then
    echo "== ComfyUI environment: reusing $venv" >&2
  else
    if [ -x "$python" ]; then
      echo "== ComfyUI environment: completing $venv (no marker of a finished install, or a requirement file changed)" >&2
    else
      echo "== ComfyUI environment: creating $venv (first run: about 6 GB with PyPI's CUDA torch, run on the CPU)" >&2
    fi
    mkdir -p "$(dirname "$venv")"
    [ -x "$python" ] || python3 -m venv "$venv" >&2 || { echo "ERROR: python3 -m venv $venv failed" >&2; return 1; }
    rm -f "$marker"
    local log="$venv-install.log"
    if ! "$python" -m pip install --disable-pip-version-check "${pip_args[@]}" >"$log" 2>&1; then
      tail -n 30 "$log" >&2; echo "ERROR: pip install into $venv failed (full log: $log)" >&2; return 1
    fi
    echo "$wanted" > "$marker"
  fi
  echo "$python"
}

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
# The releases' environments are made one after the other; their tests then run side by side, each on its share of
# the cores (torch's threads), each into its own log, printed whole (in order) when that release is done.
cores=$(nproc 2>/dev/null || echo 1)
threads=$(( cores / ${#releases[@]} )); [ "$threads" -ge 1 ] || threads=1
runs=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$runs"' EXIT
labels=()
pids=()
for i in "${!releases[@]}"; do
  IFS='|' read -r comfy_path constraints venv <<<"${releases[$i]}"
  if [ ! -f "$comfy_path/main.py" ] || [ ! -d "$comfy_path/comfy" ]; then
    echo "ERROR: $comfy_path is not a ComfyUI checkout (no main.py / comfy/)"; exit 1
  fi
  version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$comfy_path/comfyui_version.py" 2>/dev/null)
  comfy_python=$(comfy_env "$comfy_path" "$constraints" "$venv") || exit 1
  labels+=("ComfyUI ${version:-?}")
  echo "== integration + browser tests against ComfyUI ${version:-?} at $comfy_path with $comfy_python" \
       "($threads thread(s); its output follows when it is done)"
  mkdir "$runs/$i"
  ( start=$SECONDS
    COMFYUI_PATH="$comfy_path" OMP_NUM_THREADS=$threads run_pytest "$comfy_python" -m pytest -c tests/pytest.ini \
      tests/integration --basetemp "$runs/$i/tmp" >"$runs/$i/log" 2>&1
    echo "$? $(( SECONDS - start ))" >"$runs/$i/done" ) &
  pids+=($!)
done
failed=0
summary=()
for i in "${!releases[@]}"; do
  wait "${pids[$i]}"
  echo "== ${labels[$i]}: integration + browser tests"
  cat "$runs/$i/log"
  read -r rc seconds <"$runs/$i/done" 2>/dev/null || { rc=1; seconds=?; }
  [ "$rc" -eq 0 ] || failed=1
  result=$(grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$runs/$i/log" | tail -n 1 | tr -d '=' | xargs)
  summary+=("${labels[$i]}: ${result:-no pytest summary} (exit $rc, $seconds s)")
done
echo "== integration + browser tiers, per ComfyUI release:"
printf '   %s\n' "${summary[@]}"
exit "$failed"
