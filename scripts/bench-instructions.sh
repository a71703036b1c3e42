#!/usr/bin/env bash
# Instructions per create, per GET of one order and per list of 20 orders,
# order-api against the floor of the required stack
# (api/examples/floor.rs), counted by valgrind's callgrind (not a
# test). Unlike CPU time, the count does not move with the VM's hour: the
# same binary and load give the same figure to about 0.5 %, so a change of
# 1 % shows in one run. It counts user-space instructions only: not the
# kernel, not cache misses, not time (docs/benchmarks.md, twentieth pass).
# Each server runs alone under callgrind; wrk sends creates (4
# connections, spread over 100 users) for a warm-up, the counters are
# zeroed, then SECS more seconds are counted and divided by the orders
# written meanwhile; then the same with GETs of one of those orders and
# with lists of a user's 20 newest (wrk's count of requests). Writes to a
# database of its own; needs no broker.
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
# gets SECS [PATH]: GETs of one of bench-0's orders (TOKEN is bench-0's),
# or of PATH; prints wrk's count.
gets() {
  local path=${2:-}
  [ -n "$path" ] ||
    path=/api/orders/$(psql "$URL" -qAtc "SELECT id FROM orders WHERE user_id = 'bench-0' LIMIT 1")
  wrk -t1 -c4 -d"$1s" -s scripts/bench/get.lua "http://127.0.0.1:$PORT$path" |
    awk '/requests in/ {print $1}'
}
# The list of figure 2: bench-0's 20 newest orders (the creates spread
# over 100 users give it more than 20).
LIST="/api/orders?limit=20"

# inclusive FILE FUNCTION[|FUNCTION...]: the instructions spent in
# FUNCTION and what it calls (the largest of callgrind's entries for any).
inclusive() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v f="$2" 'BEGIN {n = split(f, fs, "|")}
      {for (i = 1; i <= n; i++) if (index($0, fs[i])) {v = $1; gsub(",", "", v); if (v + 0 > m) m = v + 0}}
      END {print m + 0}'
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
  gets 3 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local reads lists
  reads=$(gets "$SECS")
  callgrind_control -d "$pid" >/dev/null 2>&1
  gets 2 "$LIST" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  lists=$(gets "$SECS" "$LIST")
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  per_request "$name" "$out.1" "$check" "$n" creates create
  per_request "$name" "$out.2" "$check" "$reads" reads "GET of one order"
  per_request "$name" "$out.3" "$check" "$lists" lists "list of 20 orders"
  log "$name: callgrind_annotate $out.1 (creates), $out.2 (GETs) or $out.3 (lists) for where they go"
}

# per_request NAME FILE TOKEN-CHECK N WHAT ONE: FILE's instructions per request.
per_request() {
  local total token
  total=$(callgrind_annotate "$2" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  token=$(inclusive "$2" "$3")
  awk -v name="$1" -v t="$total" -v c="$token" -v n="$4" -v what="$5" -v one="$6" 'BEGIN {
    printf "%-10s %6d %-7s %9.0f instructions per %s, of which %6.0f in the token check\n",
      name, n, what, t / n, one, c / n }'
}

# The API remembers a token it has verified (api/src/auth.rs); the floor
# verifies every request's, as a server without that memory must. The
# API checks a write's token in its middleware (`authenticate`), a read's
# in the security scheme (`JwtVerifier::verify`).
count order-api 'order_api::auth::authenticate|order_api::auth::JwtVerifier::verify' env DATABASE_URL="$URL" JWT_SECRET="$SECRET" API_HOST=127.0.0.1 API_PORT="$PORT" \
  DATABASE_POOL_SIZE=16 RUST_LOG=info LOG_FORMAT=json "$API_BIN" serve
count floor 'floor::verify' target/release/examples/floor "$URL" "$PORT" "$SECRET"
