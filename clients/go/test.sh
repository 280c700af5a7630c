#!/usr/bin/env bash
# Tests the Go client: checks that the committed generated code is current,
# makes sure the coordinator is built, then runs `go test` against it.
# Needs Go, the Go module proxy, Node and `npm ci` in the repository root.
#
#   REPRISE_SKIP_GEN_CHECK=1    skip the generated-code check
#   REPRISE_COORDINATOR_ROOT=D  test against the coordinator built in D
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [[ "${REPRISE_SKIP_GEN_CHECK:-}" != 1 ]]; then
  echo "== go client: generated code is current"
  "$here/generate.sh"
  if ! git -C "$root" diff --exit-code --stat -- clients/go/gen || [[ -n "$(git -C "$root" status --porcelain -- clients/go/gen)" ]]; then
    echo "clients/go/gen is stale: run clients/go/generate.sh and commit the result" >&2
    exit 1
  fi
fi

coordinator_root="${REPRISE_COORDINATOR_ROOT:-$root}"
if [[ ! -f "$coordinator_root/dist/server/cli.js" ]]; then
  echo "== go client: building the coordinator"
  (cd "$coordinator_root" && npx tsc -b)
fi

echo "== go client: go vet and go test"
cd "$here"
go vet ./...
go test -count=1 ./...
