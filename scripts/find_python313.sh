#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter, or exit 1 when there is none. Looked for in order:
# $OVAAS_PYTHON313; `python3.13` on PATH (only if it runs: a pyenv shim of a version that is not
# selected fails); the newest of pyenv's versions/3.13.* ($PYENV_ROOT, default ~/.pyenv).
# Used by bootstrap.sh for .venv313, the worker-backed functions host's environment.
set -uo pipefail
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
candidates=("${OVAAS_PYTHON313:-}" python3.13)
while IFS= read -r dir; do
  candidates+=("$dir/bin/python3.13")
done < <(ls -d "$pyenv_root"/versions/3.13* 2>/dev/null | sort -rV)
for cand in "${candidates[@]}"; do
  [ -n "$cand" ] || continue
  if "$cand" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
    command -v "$cand"
    exit 0
  fi
done
exit 1
