#!/usr/bin/env bash
# Creates (or reuses) the venv at clients/python/.venv with the pinned
# requirements and this package in editable mode, then runs pytest against a
# real coordinator. The coordinator must already be built (npm ci or
# npx tsc -b at the repository root). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"
venv="$here/.venv"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Reinstall only when requirements or the package metadata changed since the last install.
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r requirements.txt
  # setuptools is pinned in requirements.txt, so build with it rather than fetch another.
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-build-isolation --no-deps -e .
  touch "$stamp"
fi
exec "$venv/bin/python" -m pytest "$@"
