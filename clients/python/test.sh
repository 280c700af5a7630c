#!/usr/bin/env bash
# Sets up clients/python/.venv (venv.sh), then runs pytest against a real
# coordinator. The coordinator must already be built (npm ci or npx tsc -b at
# the repository root). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/venv.sh"
cd "$here"
exec "$here/.venv/bin/python" -m pytest "$@"
