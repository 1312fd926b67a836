#!/usr/bin/env bash
# LaunchAzurite [--blob-port 10000] [--docker|--npm]: start Azurite (or find it), print the connection string.
# Thin wrapper: the logic is in scripts/tooling/azurite.py (same for LaunchAzurite.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.azurite "$@"
