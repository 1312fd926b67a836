#!/usr/bin/env bash
# GetModelList <omz-version>: list Open Model Zoo models of a release (latest, 2021.1, 2023.0).
# Thin wrapper: the logic is in scripts/tooling/omz.py (same for GetModelList.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.omz list "$@"
