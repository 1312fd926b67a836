#!/usr/bin/env bash
# Install everything the project needs for development and tests into the project itself:
# a Python virtual environment in .venv (requirements-dev.txt) and Node tools in node_modules
# (Azurite; openapi-typescript and tsc for the generated-client test), and, where a Python 3.13
# exists, a second environment in .venv313 (requirements-worker.txt) for the worker-backed local
# Functions host. Idempotent: re-running only installs what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
# pip install into the environment of interpreter $1, quietly (the offline index's "Location is
# ignored" warnings are dropped; a failed install shows in the import check after it)
pip_install() { "$1" -m pip install --quiet "${@:2}" 2>&1 | grep -v "^WARNING: Location" || true; }
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing Python requirements"
  pip_install .venv/bin/python --upgrade pip
  pip_install .venv/bin/python -r requirements-dev.txt
  .venv/bin/python -c "import openvino, tritonclient.grpc, ovmsclient, azure.functions, cv2, openapi_python_client" \
    || { echo "[bootstrap] Python requirements did not install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# checkov (the IaC scanner the deploy tests run) gets its own environment: it pins
# packaging<24, which pytest>=9 in .venv cannot share.
cstamp=.venv/checkov/.requirements.sha256
cwant="$(sha256sum requirements-checkov.txt | cut -d' ' -f1)"
if [ ! -f "$cstamp" ] || [ "$(cat "$cstamp")" != "$cwant" ]; then
  echo "[bootstrap] installing checkov into .venv/checkov"
  [ -x .venv/checkov/bin/python ] || "$PY" -m venv .venv/checkov
  pip_install .venv/checkov/bin/python --upgrade pip
  pip_install .venv/checkov/bin/python -r requirements-checkov.txt
  .venv/checkov/bin/checkov --version >/dev/null \
    || { echo "[bootstrap] checkov did not install" >&2; exit 1; }
  echo "$cwant" > "$cstamp"
fi
# Debian's chromium + chromium-driver for the browser test of the web frontend's demos
# (tests/test_frontend_browser.py). A test tool's own browser download fails offline, so the
# browser always comes from the distribution. Without apt (or root/sudo) this only warns: the app
# and the other tests do not need a browser.
if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    echo "[bootstrap] installing Debian's chromium and chromium-driver (browser tests)"
    if ! { $SUDO apt-get update -qq >/dev/null \
           && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
                chromium chromium-driver >/dev/null; }; then
      echo "[bootstrap] could not install chromium/chromium-driver (needs root or sudo): the browser test will not run" >&2
    fi
  else
    echo "[bootstrap] no apt-get: install chromium and chromedriver at /usr/bin for the browser test" >&2
  fi
fi

# Python 3.13 for the worker-backed functions host (Microsoft's worker library needs it).
if PY313="$(bash scripts/find_python313.sh)"; then
  if [ ! -x .venv313/bin/python ]; then
    echo "[bootstrap] creating .venv313 with $("$PY313" --version) ($PY313) for the worker-backed functions host"
    "$PY313" -m venv .venv313
  fi
  stamp313=.venv313/.requirements.sha256
  want313="$(cat requirements.txt requirements-dev.txt requirements-worker.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp313" ] || [ "$(cat "$stamp313")" != "$want313" ]; then
    rm -f "$stamp313"
    echo "[bootstrap] installing Python requirements into .venv313 (requirements-worker.txt)"
    pip_install .venv313/bin/python --upgrade pip
    pip_install .venv313/bin/python -r requirements-worker.txt
    if .venv313/bin/python -c "import azure_functions_runtime_v1, azure.functions, aiohttp, grpc, google.protobuf, openvino, cv2"; then
      echo "$want313" > "$stamp313"
    else
      echo "[bootstrap] WARNING: .venv313 did not install; the functions host stays on its in-house path" >&2
    fi
  fi
else
  echo "[bootstrap] no Python 3.13 found (python3.13 on PATH, or pyenv's ~/.pyenv/versions/3.13.*):"
  echo "[bootstrap] the local functions host will use its in-house invocation path, not Microsoft's"
  echo "[bootstrap] Python worker (azure-functions-runtime-v1 needs Python 3.13). Everything else works."
fi

if command -v npm >/dev/null 2>&1; then
  if [ ! -x node_modules/.bin/azurite ] || [ ! -x node_modules/.bin/openapi-typescript ] \
     || [ package.json -nt node_modules/.package-lock.json ]; then
    echo "[bootstrap] installing Node tools (azurite; openapi-typescript, openapi-fetch, typescript)"
    npm install --no-audit --no-fund --loglevel=error >/dev/null
  fi
else
  echo "[bootstrap] npm not found: Azurite cannot be installed (install Node.js 18+ and npm)" >&2
  exit 1
fi
