#!/usr/bin/env bash
# Sets up clients/python/.venv (venv.sh), checks that the code uses nothing
# newer than the oldest Python pyproject.toml allows, then runs pytest against a real
# coordinator. The coordinator must already be built (npm ci or npx tsc -b at
# the repository root). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/venv.sh"
cd "$here"
# requires-python says 3.10 and the tests run on the machine's Python (3.11
# here), so vermin checks that no code needs a newer Python than 3.10.
"$here/.venv/bin/vermin" --quiet --no-tips --violations --eval-annotations -t=3.10- src tests examples
exec "$here/.venv/bin/python" -m pytest "$@"
