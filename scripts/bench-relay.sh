#!/usr/bin/env bash
# Reproducible relay benchmark (not a test). One run, one machine, one broker:
#   (a) the limits: a raw rdkafka producer's rate for the same records, and
#       PostgreSQL's own rate of claiming + deleting the same outbox rows in
#       batches, server-side;
#   (b) the relay's drain rate of N pre-filled rows with 1 and 3 replicas;
#   (d) what the NOTIFY wake-up costs the API's create throughput (wrk,
#       16 connections, OUTBOX_NOTIFY=true vs false, no relay running).
#   (c) commit -> ack latency p50/p99 at a steady order rate through the API
#       (the relay's own histogram), with the probe wake-up (default) and
#       with NOTIFY, and the same load measured end to end by a consumer
#       (commit -> record received).
# Usage: ./scripts/bench-relay.sh [ROWS=200000] [RATE=1000] [SECS=20]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

ROWS="${1:-200000}"
RATE="${2:-1000}"
SECS="${3:-20}"
SHARDS=32
BENCH_DB=orders_bench
BENCH_URL="postgres://orders:orders@127.0.0.1:${PG_PORT}/${BENCH_DB}"
PIDS=()
trap kill_bench_pids EXIT

start_postgres
start_tansu
log "Building release binaries and the bench tool"
cargo build --release --locked --bins --example bench -p order-api -p order-relay

as_postgres dropdb -p "$PG_PORT" --if-exists "$BENCH_DB" >/dev/null
as_postgres createdb -p "$PG_PORT" -O orders "$BENCH_DB"
DATABASE_URL="$BENCH_URL" ./target/release/order-api migrate >/dev/null
psql_b() { psql "$BENCH_URL" -qAt -v ON_ERROR_STOP=1 "$@"; }
fill() { fill_outbox "$BENCH_URL" "$ROWS" "$SHARDS"; }

count() { psql_b -c "SELECT count(*) FROM outbox"; }
now_ms() { date +%s%3N; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -sr); PostgreSQL $(psql_b -c 'SHOW server_version'); broker: Tansu $TANSU_VERSION (memory engine)"

log "(a1) raw producer limit"
./target/release/examples/bench producer --brokers "$KAFKA_BROKERS" --topic "bench.raw.$(date +%s)" --count "$ROWS"

log "(a2) PostgreSQL claim + delete limit (pgbench: 32 clients, one per shard, batches of 500, one statement each)"
fill
start=$(now_ms)
PGOPTIONS="$RELAY_SESSION_PGOPTIONS" \
  PGPASSWORD=orders pgbench -h 127.0.0.1 -p "$PG_PORT" -U orders -n -f scripts/bench/pg-claim.sql -c $SHARDS -j 2 \
  -t $(( ROWS / SHARDS / 500 + 2 )) "$BENCH_DB" >"$LOG_DIR/bench-pgbench.log" 2>&1
ms=$(( $(now_ms) - start ))
echo "postgres claim+delete: $ROWS rows in $((ms / 1000)).$(( (ms % 1000) / 100 )) s = $(( ROWS * 1000 / ms )) rows/s (left: $(count))"

drain() {
  local replicas=$1 prefix
  prefix="bench.d$1.$(date +%s)."
  fill
  local start; start=$(now_ms)
  for i in $(seq 1 "$replicas"); do
    DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS KAFKA_TOPIC_PREFIX="$prefix" RELAY_PORT=$((3110 + i)) \
      RUST_LOG=warn ./target/release/order-relay serve >>"$LOG_DIR/bench-relay.log" 2>&1 &
    PIDS+=($!)
  done
  until [ "$(count)" = 0 ]; do sleep 0.2; done
  local ms=$(( $(now_ms) - start ))
  echo "relay drain, $replicas replica(s): $ROWS rows in $((ms / 1000)).$(( (ms % 1000) / 100 )) s = $(( ROWS * 1000 / ms )) events/s (includes start-up and topic creation)"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}
log "(b) relay drain rate"
drain 1
drain 3

log "(d) create throughput with and without NOTIFY (wrk, 16 connections, 15 s each)"
TOKEN=$(./target/release/order-api token --sub bench)
export TOKEN
for notify in true false; do
  psql_b -c "TRUNCATE outbox, orders CASCADE" >/dev/null 2>&1
  DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS API_PORT=3112 OUTBOX_NOTIFY=$notify DATABASE_POOL_SIZE=16 \
    RUST_LOG=warn ./target/release/order-api serve >>"$LOG_DIR/bench-api.log" 2>&1 &
  api_pid=$!
  WAIT_SECS=30 wait_for curl -fsS http://127.0.0.1:3112/health/ready
  wrk -t2 -c16 -d3s -s scripts/bench/create-order.lua http://127.0.0.1:3112/api/orders >/dev/null
  echo "OUTBOX_NOTIFY=$notify:"
  wrk -t2 -c16 -d15s --latency -s scripts/bench/create-order.lua http://127.0.0.1:3112/api/orders |
    grep -E "Requests/sec|99%|50%|non-201"
  kill "$api_pid"; wait "$api_pid" 2>/dev/null || true
done

log "(c) commit -> ack latency at $RATE orders/s for $SECS s"
TOKEN=$(./target/release/order-api token --sub bench)
./target/release/examples/bench ping --brokers "$KAFKA_BROKERS" --topic "bench.ping.$(date +%s)" --count 200
for notify in false true; do
  prefix="bench.lat.$notify.$(date +%s)."
  psql_b -c "TRUNCATE outbox, orders CASCADE" >/dev/null 2>&1
  DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS API_PORT=3110 OUTBOX_NOTIFY=$notify RUST_LOG=warn \
    ./target/release/order-api serve >>"$LOG_DIR/bench-api.log" 2>&1 &
  PIDS+=($!)
  DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS KAFKA_TOPIC_PREFIX="$prefix" RELAY_PORT=3111 \
    CONSUMER_ENABLED=false RUST_LOG=warn ./target/release/order-relay serve >>"$LOG_DIR/bench-relay.log" 2>&1 &
  PIDS+=($!)
  WAIT_SECS=30 wait_for curl -fsS http://127.0.0.1:3110/health/ready
  WAIT_SECS=30 wait_for curl -fsS http://127.0.0.1:3111/health/ready
  echo "wake-up: $([ $notify = true ] && echo "NOTIFY (OUTBOX_NOTIFY=true)" || echo "probe every 10 ms (default)")"
  ./target/release/examples/bench latency --api http://127.0.0.1:3110 --token "$TOKEN" \
    --relay-metrics http://127.0.0.1:3111/metrics --rate "$RATE" --secs "$SECS"
  if [ $notify = false ]; then
    ./target/release/examples/bench latency --api http://127.0.0.1:3110 --token "$TOKEN" \
      --brokers "$KAFKA_BROKERS" --topic "${prefix}order.placed" --rate "$RATE" --secs "$SECS"
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
done
