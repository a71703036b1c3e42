#!/usr/bin/env bash
# Instructions per create, order-api against the floor of the required
# stack (api/examples/floor.rs), counted by valgrind's callgrind (not a
# test). Unlike CPU time, the count does not move with the VM's hour: the
# same binary and load give the same figure to about 0.5 %, so a change of
# 1 % shows in one run. It counts user-space instructions only: not the
# kernel, not cache misses, not time (docs/benchmarks.md, twentieth pass).
# Each server runs alone under callgrind; wrk sends creates (4
# connections, spread over 100 users) for a warm-up, the counters are
# zeroed, then SECS more seconds are counted and divided by the orders
# written meanwhile. Writes to a database of its own; needs no broker.
# The API logs as the chart deploys it (RUST_LOG=info, LOG_FORMAT=json: a
# line per order placed); before the twenty-fourth pass it ran at warn.
# Usage: ./scripts/bench-instructions.sh [SECS=15] [BIN=target/release/order-api]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

SECS="${1:-15}"
API_BIN="${2:-target/release/order-api}"
DB=orders_bench_instructions
URL="postgres://orders:orders@127.0.0.1:${PG_PORT}/${DB}"
SECRET="bench-secret-0123456789-0123456789-0123456789"
PORT=3140
PIDS=()
trap kill_bench_pids EXIT

for tool in wrk valgrind; do
  command -v "$tool" >/dev/null ||
    apt-get install -y "$tool" >/dev/null 2>&1 || sudo apt-get install -y "$tool" >/dev/null
done
start_postgres
cargo build --release --locked --bins -p order-api
cargo build --release --locked -p order-api --example floor
as_postgres dropdb -p "$PG_PORT" --if-exists "$DB" >/dev/null
as_postgres createdb -p "$PG_PORT" -O orders "$DB"
DATABASE_URL="$URL" "$API_BIN" migrate >/dev/null 2>&1
TOKENS=$(for u in $(seq 0 99); do JWT_SECRET="$SECRET" "$API_BIN" token --sub "bench-$u"; done | tr '\n' ' ')
export TOKENS TOKEN="${TOKENS%% *}"
orders() { psql "$URL" -qAtc 'SELECT count(*) FROM orders'; }
creates() { wrk -t1 -c4 -d"$1s" -s scripts/bench/create-order.lua "http://127.0.0.1:$PORT/api/orders" >/dev/null; }

# inclusive FILE FUNCTION: the instructions spent in FUNCTION and what it
# calls (the largest of callgrind's entries for it).
inclusive() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v f="$2" 'index($0, f) {gsub(",", "", $1); v = $1 + 0; if (v > m) m = v} END {print m + 0}'
}

# count NAME TOKEN-CHECK COMMAND...: the server's instructions per create,
# and those of its bearer-token check.
count() {
  local name=$1 check=$2 out="$LOG_DIR/callgrind.$1"
  shift 2
  rm -f "$out" "$out".*
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out" "$@" >"$LOG_DIR/bench-instructions-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  WAIT_SECS=120 wait_for port_open "$PORT"
  creates 5
  sleep 1
  local before
  before=$(orders)
  callgrind_control -z "$pid" >/dev/null 2>&1
  creates "$SECS"
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  local n=$(($(orders) - before))
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local total token
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  token=$(inclusive "$out.1" "$check")
  awk -v name="$name" -v t="$total" -v c="$token" -v n="$n" 'BEGIN {
    printf "%-10s %6d creates %9.0f instructions per create, of which %6.0f in the token check\n",
      name, n, t / n, c / n }'
  log "$name: callgrind_annotate $out.1 for where they go"
}

# The API remembers a token it has verified (api/src/auth.rs); the floor
# verifies every request's, as a server without that memory must.
count order-api 'order_api::auth::authenticate' env DATABASE_URL="$URL" JWT_SECRET="$SECRET" API_HOST=127.0.0.1 API_PORT="$PORT" \
  DATABASE_POOL_SIZE=16 RUST_LOG=info LOG_FORMAT=json "$API_BIN" serve
count floor 'floor::verify' target/release/examples/floor "$URL" "$PORT" "$SECRET"
