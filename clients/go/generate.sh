#!/usr/bin/env bash
# Regenerates clients/go/gen from proto/ with buf and the two Go plugins at the
# versions pinned by the `tool` block of go.mod, so the output is the same on
# every machine. The generated code is committed; never edit it by hand.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# `go install tool` builds every tool listed in go.mod at its pinned version.
(cd "$here" && GOBIN="$here/.bin" go install tool)

buf="$root/node_modules/.bin/buf"
if [[ ! -x "$buf" ]]; then
  echo "generate.sh: $buf is missing; run 'npm ci' in $root first" >&2
  exit 1
fi
(cd "$root" && "$buf" generate --template clients/go/buf.gen.yaml)
