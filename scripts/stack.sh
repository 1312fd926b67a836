#!/usr/bin/env bash
# stack [--no-bootstrap] [--dry-run] [...]: bring up Azurite, the models, the model server and the
# functions host. Installs what is missing first (scripts/bootstrap.sh), so it works on a fresh
# machine. Thin wrapper: the logic is in scripts/tooling/stack.py (same for stack.bat).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case " $* " in
  *" --no-bootstrap "*|*" --dry-run "*|*" -h "*|*" --help "*) ;;
  *) bash "$ROOT/scripts/bootstrap.sh" ;;
esac
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m scripts.tooling.stack --no-bootstrap "$@"
