#!/usr/bin/env bash
# LaunchOVMS <model> <ip> <port> [<ovms-version>] [CPU|GPU|FPGA] [--api kserve|tfs] [--dry-run]: one model server.
# Thin wrapper: the logic is in scripts/tooling/ovms.py (same for LaunchOVMS.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.ovms one "$@"
