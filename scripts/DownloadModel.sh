#!/usr/bin/env bash
# DownloadModel <model> <omz-version> [precision]: fetch an OMZ model into models/<intel|public>/<model>/.
# Thin wrapper: the logic is in scripts/tooling/omz.py (same for DownloadModel.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.omz download "$@"
