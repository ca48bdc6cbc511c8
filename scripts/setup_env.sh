#!/usr/bin/env bash
# Create ./.venv (once) and install hfssl with the given extras, pinning torch==2.13.0 through
# constraints.txt so that pip never pulls the multi-GB CUDA build of a newer torch.
# Usage: scripts/setup_env.sh [extras]   e.g. scripts/setup_env.sh test,text
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
venv="${HFSSL_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Re-install only when the package definition or the extras changed.
stamp="$venv/.hfssl-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-$extras"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e "$spec"
  echo "$want" > "$stamp"
fi
