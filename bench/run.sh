#!/usr/bin/env bash
# The benchmark of issues 5, 11, 13 and 16, one command: `npm run bench` (or `bash bench/run.sh`).
#
#   bash bench/run.sh            full run: Reprise (SQLite) through @reprise/client and through
#                                a plain proto-loader client, that client against a relay with
#                                no store (the gRPC floor), Reprise on PostgreSQL with one
#                                node and with three, graphile-worker and BullMQ, Reprise's
#                                Python client and Celery, its Go client and River,
#                                3 repetitions, and Reprise after 1,000,000 finished executions
#   bash bench/run.sh --smoke    tiny run for CI: Reprise on SQLite from TypeScript, a plain
#                                client and its floor, Python and Go, with Celery and River beside them,
#                                and src/cold-path.mjs (the coordinator's part of W3, in one process)
#
# Other flags go to bench/src/main.mjs: --reps N,
# --systems reprise,reprise-plain,reprise-floor,reprise-pg,reprise-pg3,graphile,bullmq,reprise-py,celery,reprise-go,river,
# --workloads W1,...,W6, --pending N, --history N, --no-profile, --results FILE.
#
# It installs PostgreSQL and Redis from Debian packages when they are missing,
# starts a private PostgreSQL cluster and a private redis-server on free ports
# of 127.0.0.1 under a temporary directory, runs the harness (which starts and
# stops every `reprise serve` and worker process itself), and stops what it
# started by PID, also on failure or Ctrl-C.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench_dir")
cd "$root"

smoke=0
all_systems="reprise,reprise-plain,reprise-floor,reprise-pg,reprise-pg3,graphile,bullmq,reprise-py,celery,reprise-go,river"
systems=$all_systems
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --smoke) smoke=1; [[ $systems == "$all_systems" ]] && systems=reprise,reprise-plain,reprise-floor,reprise-py,celery,reprise-go,river ;;
    --systems) systems="${args[$((i + 1))]:-}" ;;
    --systems=*) systems="${args[$i]#--systems=}" ;;
  esac
done
if ((smoke)) && [[ " ${args[*]} " != *" --systems"* ]]; then systems=reprise,reprise-plain,reprise-floor,reprise-py,celery,reprise-go,river; fi
want() { [[ ",$systems," == *",$1,"* ]]; }

log() { printf '[bench] %s\n' "$*" >&2; }


work=$(mktemp -d "${TMPDIR:-/tmp}/reprise-bench.XXXXXX")

pg_data="" redis_pid="" main_pid=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n $main_pid ]] && kill -0 "$main_pid" 2>/dev/null; then kill -TERM "$main_pid" 2>/dev/null || true; wait "$main_pid" 2>/dev/null || true; fi
  if [[ -n $redis_pid ]] && kill -0 "$redis_pid" 2>/dev/null; then
    log "stopping redis-server (pid $redis_pid)"
    kill -TERM "$redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$redis_pid" 2>/dev/null || true
  fi
  if [[ -n $pg_data && -f $pg_data/postmaster.pid ]]; then
    local pg_pid
    pg_pid=$(head -1 "$pg_data/postmaster.pid")
    log "stopping PostgreSQL (pid $pg_pid)"
    kill -INT "$pg_pid" 2>/dev/null || true # fast shutdown
    for _ in $(seq 100); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pg_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The coordinator and the client are this repository's own build, copied into
# the temporary directory so that a rebuild in the shared working tree during
# the run cannot change the code under test halfway. A copy taken in the middle
# of someone's build may not load: then wait and copy again (bounded).
if [[ ! -f dist/server/cli.js || ! -f clients/ts/dist/index.js ]]; then
  log "building Reprise (npm run build)"
  npm run build --silent
fi
snapshot="$work/reprise"
take_snapshot() {
  rm -rf "$snapshot"
  mkdir -p "$snapshot/server" "$snapshot/clients/ts" "$snapshot/node_modules/@reprise"
  # proto/ too: the coordinator finds its root, and reads the API's protos, there;
  # proto/ts holds the built wire layer.
  cp -a package.json dist proto "$snapshot/"
  mkdir -p "$snapshot/server/store/sqlite" "$snapshot/server/store/postgres"
  cp -a server/store/sqlite/migrations "$snapshot/server/store/sqlite/"
  cp -a server/store/postgres/migrations "$snapshot/server/store/postgres/"
  cp -a clients/ts/package.json clients/ts/dist "$snapshot/clients/ts/"
  local module
  for module in node_modules/* node_modules/.bin; do
    [[ $module == node_modules/@reprise ]] || ln -s "$root/$module" "$snapshot/node_modules/"
  done
  ln -s ../../clients/ts "$snapshot/node_modules/@reprise/client"
  # proto/ts, copied with proto/ above, is the wire layer both import.
  ln -s ../../proto/ts "$snapshot/node_modules/@reprise/wire"
  (cd "$snapshot" && node -e 'Promise.all([import("./clients/ts/dist/index.js"), import("./dist/server/api/server.js")]).then(() => process.exit(0), (e) => { console.error(String(e)); process.exit(1) })')
}
for try in 1 2 3 4 5 6; do
  take_snapshot && break
  ((try < 6)) || { log "the build in dist/ and clients/ts/dist does not load; run npm run build"; exit 1; }
  log "the build does not load yet (a rebuild in progress?); copying again in 10 s"
  sleep 10
done
export BENCH_REPRISE_ROOT="$snapshot"

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

apt_updated=0
apt_install() {
  if ((apt_updated == 0)); then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if want graphile || want bullmq; then
  # Only the competitors need the bench's own npm project.
  lock_hash=$(sha256sum bench/package-lock.json | cut -d' ' -f1)
  if [[ ! -f bench/node_modules/.lock-hash || $(cat bench/node_modules/.lock-hash) != "$lock_hash" ]]; then
    log "npm ci --prefix bench"
    npm ci --prefix bench --no-audit --no-fund --loglevel=error
    echo "$lock_hash" >bench/node_modules/.lock-hash
  fi
fi

# One PostgreSQL server for graphile-worker and for Reprise's PostgreSQL store
# (reprise-pg, reprise-pg3 create and drop a database of their own per repetition).
if want graphile || want reprise-pg || want reprise-pg3 || want river; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z $pg_bin || ! -x $pg_bin/initdb ]]; then
    apt_install postgresql
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  pg_port=$(free_port)
  pg_data="$work/pg"
  as_pg=()
  if [[ $(id -u) == 0 ]]; then
    as_pg=(runuser -u postgres --)
    chmod 755 "$work"
    mkdir -p "$pg_data" && chown postgres "$pg_data"
  fi
  log "starting PostgreSQL ($("$pg_bin/postgres" --version)) on 127.0.0.1:$pg_port"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -U bench --auth=trust -E UTF8 --no-sync >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; exit 1; }
  # synchronous_commit=off: a commit returns before its WAL is flushed, which is
  # what Reprise's default (WAL with synchronous=NORMAL) gives up too. See METHOD.md.
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$pg_data -c synchronous_commit=off -c max_connections=200 -c shared_buffers=256MB" >/dev/null
  export BENCH_PG_URL="postgres://bench@127.0.0.1:$pg_port/postgres"
  BENCH_PG_VERSION=$("$pg_bin/postgres" --version | sed 's/^postgres (PostgreSQL) //')
  export BENCH_PG_VERSION
fi

if want bullmq || want celery; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis_port=$(free_port)
  mkdir -p "$work/redis"
  log "starting $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$redis_port"
  # appendonly with fsync every second: acknowledged writes survive a crash of
  # the process, like Reprise's default. See METHOD.md.
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --daemonize no \
    >"$work/redis/server.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" ping >/dev/null
  export BENCH_REDIS_PORT=$redis_port
  BENCH_REDIS_VERSION=$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')
  export BENCH_REDIS_VERSION
fi

# The rows of issue 16: Python (Reprise's client and Celery) in a virtualenv of
# bench/python's own, and Go (Reprise's client and River) built from bench/go.
# Both use the clients of this working tree (clients/python, clients/go).
if want reprise-py || want celery; then
  log "bench/python: virtualenv with Celery and Reprise's Python client"
  BENCH_PYTHON=$(bash bench/python/setup.sh | tail -1)
  export BENCH_PYTHON
fi
if want reprise-go || want river; then
  log "bench/go: building the Go runner (Reprise's Go client and River)"
  (cd bench/go && go build -o "$work/bench-go" .)
  export BENCH_GO_BIN="$work/bench-go"
fi

export BENCH_WORKDIR="$work/harness"
export BENCH_COMMAND="npm run bench${*:+ -- $*}"
BENCH_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg | sed 's/ /, /g')
export BENCH_LOAD_BEFORE
log "load average before the run: $BENCH_LOAD_BEFORE"
node bench/src/main.mjs --systems "$systems" "$@" &
main_pid=$!
wait "$main_pid"
main_pid=""
# The coordinator's part of W3 in one process (src/cold-path.mjs), tiny, so that it cannot rot.
if ((smoke)); then node bench/src/cold-path.mjs --smoke; fi
