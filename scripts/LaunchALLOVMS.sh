#!/usr/bin/env bash
# LaunchALLOVMS <ip> [--port 9000] [--per-model] [--api kserve|tfs] [--dry-run]: all models of models/config.json.
# Thin wrapper: the logic is in scripts/tooling/ovms.py (same for LaunchALLOVMS.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.ovms all "$@"
