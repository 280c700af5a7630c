#!/usr/bin/env bash
# Makes bench/.venv-python: Celery on Redis (requirements.txt) and the Reprise
# Python client from this checkout (clients/python, editable, so the venv always
# runs the client as it is in the work tree). Idempotent: it rebuilds the venv
# only when requirements.txt changed (the stamp file is named after its hash).
# Prints the venv's python on its last line of stdout; pip's output goes to stderr.
#
#   PYTHON=python3.11 bench/python/setup.sh    (default: python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/bench/.venv-python"
hash="$(sha256sum "$here/requirements.txt" | cut -c1-16)"
stamp="$venv/.installed-$hash"
if [ ! -f "$stamp" ] || [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
  "${pip[@]}" install -r "$here/requirements.txt" >&2
  # grpcio, protobuf and setuptools are pinned above, so build with them and fetch nothing more.
  "${pip[@]}" install --no-build-isolation --no-deps -e "$root/clients/python" >&2
  "${pip[@]}" check >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
