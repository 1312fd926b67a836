#!/usr/bin/env bash
# The test command: install everything (idempotent), then run every test.
#   bash scripts/test.sh                  every test: the whole suite on the default Python (.venv,
#                                         3.11; its functions-host tests run in both host modes:
#                                         in-house, and Microsoft's Python worker on 3.13 from
#                                         .venv313), then the app's in-process HTTP tests again on
#                                         Python 3.13 (azure-functions 2.x). This is what CI runs.
#   bash scripts/test.sh [pytest args]    the suite on .venv with these pytest arguments, e.g. -k pose -x
#   bash scripts/test.sh --python 3.13 [pytest args]   the suite in .venv313 instead (README, "Python versions")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV=.venv
if [ "${1:-}" = "--python" ]; then
  case "${2:-}" in
    3.13) VENV=.venv313 ;;
    default) ;;
    *) echo "scripts/test.sh: --python takes 3.13 or default, not '${2:-}'" >&2; exit 2 ;;
  esac
  shift 2
fi
bash scripts/bootstrap.sh
if [ ! -f "$VENV/.requirements.sha256" ]; then
  echo "scripts/test.sh: $VENV is not installed (bootstrap builds .venv313 only where it finds a Python 3.13)" >&2
  exit 2
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ $# -gt 0 ] || [ "$VENV" != .venv ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
# every test: the whole suite, then the 3.13 tier (the app's HTTP contract on azure-functions 2.x)
"$VENV/bin/python" -m pytest
TIER313=(tests/test_http_contract.py tests/test_function_modules.py tests/test_functions_main.py tests/test_health.py)
if [ -f .venv313/.requirements.sha256 ]; then
  echo "[test] the app's in-process HTTP tests on Python 3.13 (.venv313, azure-functions 2.x)"
  exec .venv313/bin/python -m pytest "${TIER313[@]}"
fi
echo "[test] no .venv313 (no Python 3.13 here): the Python 3.13 tier did not run" >&2
case "${CI:-}" in 1|true|TRUE|yes) exit 1 ;; esac
