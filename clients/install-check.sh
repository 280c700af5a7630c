#!/usr/bin/env bash
# Installs each client from this checkout the way its users do, in scratch
# projects under a temporary folder, and runs its example worker once against
# a coordinator started here:
#
#   python      `pip install clients/python` into a fresh venv runs the example
#               worker and caller; `python -m build` makes a wheel that holds
#               the generated code and installs into another fresh venv.
#   go          a consumer module with a `replace` directive pointing at
#               clients/go builds and runs the example worker and caller; one
#               that uses `go work` instead builds them too.
#   typescript  `npm pack` in proto/ts (@reprise/wire) and clients/ts
#               (@reprise/client, which depends on it) makes two tarballs that
#               install into an empty project, where tsc compiles the example
#               worker and caller against their types, and node runs them.
#
#   clients/install-check.sh [python] [go] [typescript]    (default: all three)
#
# The coordinator is $REPRISE_COORDINATOR_BIN if set, else `node
# dist/server/cli.js` (build it first: npm run build). It listens on a free
# loopback port with a database in the scratch folder and is stopped by PID
# at the end, also on failure. Needs python3, go, node and npm, and the
# package registries (PyPI, the Go module proxy, npm) for the dependencies.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/reprise-install-check.XXXXXX")"
coordinator_pid=""

stop_pid() { # PID: SIGTERM, then SIGKILL after 15 s; returns the process's exit status
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < 150)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "process $pid did not stop within 15 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid"
}

cleanup() {
  if [[ -n "$coordinator_pid" ]]; then
    stop_pid "$coordinator_pid" || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

fail() {
  echo "install-check: $*" >&2
  exit 1
}

# expect FILE PATTERN: the file has a line matching the extended regex, or the
# check fails showing the file.
expect() {
  if ! grep -Eq -- "$2" "$1"; then
    echo "expected a line matching /$2/ in $1:" >&2
    sed 's/^/  | /' "$1" >&2
    return 1
  fi
}

# run_example DIR WORKER... -- CALLER...: starts the worker in the background,
# runs the caller to its end (at most 60 s), then stops the worker with
# SIGTERM, as a user would with Ctrl-C. Output goes to DIR/worker.log and
# DIR/caller.log; both must exit 0.
run_example() {
  local dir="$1" worker=() caller=() worker_pid caller_status=0 worker_status=0
  shift
  while [[ "$1" != "--" ]]; do worker+=("$1"); shift; done
  shift
  caller=("$@")
  "${worker[@]}" >"$dir/worker.log" 2>&1 &
  worker_pid=$!
  timeout 60 "${caller[@]}" >"$dir/caller.log" 2>&1 || caller_status=$?
  stop_pid "$worker_pid" || worker_status=$?
  echo "-- caller"
  cat "$dir/caller.log"
  echo "-- worker"
  cat "$dir/worker.log"
  ((caller_status == 0)) || { echo "the caller exited with $caller_status" >&2; return 1; }
  ((worker_status == 0)) || { echo "the worker exited with $worker_status" >&2; return 1; }
}

start_coordinator() {
  local command=() log="$scratch/coordinator.log" port=""
  if [[ -n "${REPRISE_COORDINATOR_BIN:-}" ]]; then
    [[ -x "$REPRISE_COORDINATOR_BIN" ]] || fail "REPRISE_COORDINATOR_BIN=$REPRISE_COORDINATOR_BIN is not an executable file"
    command=("$REPRISE_COORDINATOR_BIN")
  else
    [[ -f "$root/dist/server/cli.js" ]] || fail "$root/dist/server/cli.js is missing: run npm run build in $root first"
    command=(node "$root/dist/server/cli.js")
  fi
  mkdir -p "$scratch/coordinator-home"
  # Port 0: the coordinator binds a free port and prints it, so no other
  # process can take it between choosing and binding.
  HOME="$scratch/coordinator-home" "${command[@]}" serve --listen 127.0.0.1:0 --db "$scratch/reprise.db" >"$log" 2>&1 &
  coordinator_pid=$!
  for _ in $(seq 300); do
    port="$(grep -Eo 'serving on 127\.0\.0\.1:[0-9]+' "$log" | head -n1 | cut -d: -f2 || true)"
    [[ -n "$port" ]] && break
    kill -0 "$coordinator_pid" 2>/dev/null || { cat "$log" >&2; fail "the coordinator exited before serving"; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { cat "$log" >&2; fail "the coordinator did not start within 30 s"; }
  address="127.0.0.1:$port"
  echo "== coordinator: ${command[*]} on $address (PID $coordinator_pid)"
}

check_python() {
  local dir="$scratch/python" python="${PYTHON:-python3}"
  mkdir -p "$dir"
  echo "-- pip install clients/python into a fresh venv"
  "$python" -m venv "$dir/venv"
  (cd "$root" && "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check clients/python)
  "$dir/venv/bin/python" -m pip show reprise-client | grep -E '^(Name|Version|Location):'
  cp "$root/clients/python/examples/worker.py" "$root/clients/python/examples/caller.py" "$dir/"
  # From the scratch folder, `import reprise` can only find the installed package.
  (cd "$dir" && venv/bin/python -c 'import reprise, reprise.v1.worker_service_pb2_grpc as g; print("imports", reprise.__file__, "and", g.__name__)')

  echo "-- the example worker and caller"
  (cd "$dir" && run_example "$dir" venv/bin/python -u worker.py --address "$address" -- venv/bin/python caller.py --address "$address" --name Ada --timeout 45)
  expect "$dir/caller.log" '^result: \{"greeting": "Hello, Ada!", "attempt": 2\}$'
  expect "$dir/worker.log" 'greet\[[0-9a-f-]+\] attempt 1 failed with ConnectionError: .*; retry at '
  expect "$dir/worker.log" '^worker: stopped$'

  echo "-- python -m build makes a wheel with the generated code"
  "$python" -m venv "$dir/build-venv"
  "$dir/build-venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    $(grep -E '^(build|pyproject_hooks|packaging)==' "$root/clients/python/requirements.txt")
  "$dir/build-venv/bin/python" -m build --outdir "$dir/dist" "$root/clients/python" >"$dir/build.log" 2>&1 || { cat "$dir/build.log" >&2; return 1; }
  ls "$dir/dist"
  local wheel
  wheel="$(ls "$dir"/dist/reprise_client-*-py3-none-any.whl)"
  "$dir/build-venv/bin/python" -m zipfile -l "$wheel" >"$dir/wheel.txt"
  for file in reprise/py.typed reprise/v1/types_pb2.py reprise/v1/types_pb2.pyi reprise/v1/worker_service_pb2_grpc.py reprise/v1/execution_service_pb2_grpc.py; do
    expect "$dir/wheel.txt" "^$file "
  done
  "$dir/build-venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
  (cd "$dir" && build-venv/bin/python -c 'import reprise.v1.execution_service_pb2_grpc, reprise; print("the wheel imports:", reprise.Worker.__module__)')
}

check_go() {
  local dir="$scratch/go" module="github.com/reprise-dev/reprise/clients/go"
  mkdir -p "$dir/consumer/worker" "$dir/consumer/caller" "$dir/workspace/worker"
  cp "$root/clients/go/examples/worker/main.go" "$dir/consumer/worker/"
  cp "$root/clients/go/examples/caller/main.go" "$dir/consumer/caller/"
  cp "$root/clients/go/examples/worker/main.go" "$dir/workspace/worker/"

  echo "-- a consumer module with a replace directive"
  (
    cd "$dir/consumer"
    export GOWORK=off
    go mod init example.com/reprise-consumer
    go mod edit -replace="$module=$root/clients/go"
    go mod tidy
    grep -E "^(require|replace) $module" go.mod
    go build -o bin/worker ./worker
    go build -o bin/caller ./caller
  )
  echo "-- the example worker and caller"
  run_example "$dir" "$dir/consumer/bin/worker" --address "$address" -- "$dir/consumer/bin/caller" --address "$address"
  expect "$dir/caller.log" '^flaky_hello [0-9a-f-]+: "hello, Reprise" \(after a retry\)$'
  expect "$dir/caller.log" '^call_api [0-9a-f-]+: FAILED after 1 attempt\(s\)'
  expect "$dir/worker.log" 'INFO reprise: attempt failed; retry scheduled .*task=flaky_hello .*attempt=1 .*next_attempt_at='
  expect "$dir/worker.log" 'INFO reprise: attempt failed; no retry.*task=call_api .*error_type=main\.HTTPError '
  expect "$dir/worker.log" 'worker: stopped$'

  echo "-- a consumer module in a go work workspace with clients/go"
  (
    cd "$dir/workspace"
    unset GOWORK
    go mod init example.com/reprise-workspace
    go work init . "$root/clients/go"
    go build -o bin/worker ./worker
  )
}

check_typescript() {
  local dir="$scratch/typescript" tarballs
  mkdir -p "$dir/pack" "$dir/consumer"
  echo "-- npm pack in proto/ts and clients/ts"
  (cd "$root/proto/ts" && npm pack --loglevel=warn --pack-destination "$dir/pack")
  (cd "$root/clients/ts" && npm pack --loglevel=warn --pack-destination "$dir/pack")
  tarballs=("$dir"/pack/*.tgz)

  echo "-- install the tarballs into an empty project"
  local typescript types_node
  typescript="$(cd "$root" && node -p 'require("./package.json").devDependencies.typescript')"
  types_node="$(cd "$root" && node -p 'require("./package.json").devDependencies["@types/node"]')"
  (
    cd "$dir/consumer"
    npm init -y >/dev/null
    npm pkg set type=module
    # Together: @reprise/client's dependency on @reprise/wire is met by the other tarball.
    npm install --no-audit --no-fund "${tarballs[@]}"
    npm install --no-audit --no-fund --save-dev "typescript@$typescript" "@types/node@$types_node"
  )
  cp "$root"/examples/ts/{worker,caller,errors}.ts "$dir/consumer/"
  # Strict, and without skipLibCheck, so the package's own declarations are checked too.
  cat >"$dir/consumer/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "types": ["node"],
    "outDir": "out"
  },
  "include": ["*.ts"]
}
EOF
  echo "-- tsc compiles the example worker and caller against the installed types"
  (cd "$dir/consumer" && npx --no-install tsc -p .)

  echo "-- the example worker and caller"
  (cd "$dir/consumer" && run_example "$dir" node out/worker.js "$address" -- node out/caller.js "$address")
  expect "$dir/caller.log" "^result: \{ task: 'call_api_5xx', attempt: 2, ok: true \}$"
  expect "$dir/caller.log" 'attempt 1 failed \(HttpError: '
  expect "$dir/worker.log" '^SIGTERM: finishing in-flight attempts$'
}

languages=("$@")
((${#languages[@]} > 0)) || languages=(python go typescript)
for language in "${languages[@]}"; do
  case "$language" in
    python | go | typescript) ;;
    *) fail "unknown language '$language': use python, go or typescript" ;;
  esac
done

start_coordinator
results=()
failed=0
for language in "${languages[@]}"; do
  echo "== $language"
  # A subshell of its own, outside any condition, so that set -e stops the
  # check at its first failing command and the next language still runs.
  set +e
  (set -e; "check_$language")
  status=$?
  set -e
  if ((status == 0)); then
    results+=("$language: ok")
  else
    results+=("$language: FAILED")
    failed=1
  fi
done

if ((failed)); then
  echo "-- the coordinator's log"
  tail -n 50 "$scratch/coordinator.log"
fi
echo "== install-check"
printf '  %s\n' "${results[@]}"
exit "$failed"
