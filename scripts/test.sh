#!/usr/bin/env bash
# The test command: install everything (idempotent), then run every test.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k pose -x
#   bash scripts/test.sh --python 3.13 [pytest args]   runs the suite in .venv313 (Python 3.13,
#   azure-functions 2.x, the functions host worker-backed) instead of .venv (the default Python).
# Either way the host tests run in both host modes: the worker-backed host always runs in
# .venv313, the in-house one in the test interpreter.
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
exec "$VENV/bin/python" -m pytest "$@"
