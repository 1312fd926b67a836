#!/usr/bin/env bash
# The test command: install everything (idempotent), then run every test.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k pose -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest "$@"
