#!/usr/bin/env bash
# stack [--no-bootstrap] [--dry-run]: bring up Azurite, the models, the model server and the functions host.
# Thin wrapper: the logic is in scripts/tooling/stack.py (same for stack.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.stack "$@"
