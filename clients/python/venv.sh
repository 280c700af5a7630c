#!/usr/bin/env bash
# Makes sure clients/python/.venv exists with the pinned requirements and this
# package installed in editable mode. Reinstalls only when requirements.txt or
# pyproject.toml changed since the last install. Used by test.sh and generate.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$here/requirements.txt" -nt "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$here/requirements.txt"
  # setuptools is pinned in requirements.txt, so build with it rather than fetch another.
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-build-isolation --no-deps -e "$here"
  touch "$stamp"
fi
