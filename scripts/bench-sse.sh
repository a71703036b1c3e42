#!/usr/bin/env bash
# Reproducible live-update (SSE) benchmark (not a test): two API replicas
# and a relay on one database, and api/examples/sse_bench.rs as the client.
# Prints create throughput with and without open streams (A B A B), the
# change -> SSE message latency through the replica's own fan-out and
# through the relay's hint (another replica), and replica B's memory per
# open stream.
# Usage: ./scripts/bench-sse.sh [STREAMS=1000] [RATE=500] [SECS=20]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

STREAMS="${1:-1000}"
RATE="${2:-500}"
SECS="${3:-20}"
SHARDS=32
BENCH_DB=orders_bench_sse
BENCH_URL="postgres://orders:orders@127.0.0.1:${PG_PORT}/${BENCH_DB}"
SECRET="bench-secret-0123456789-0123456789-0123456789"
PIDS=()
trap kill_bench_pids EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_postgres
start_tansu
log "Building release binaries and the SSE bench client"
cargo build --release --locked --bins -p order-api -p order-relay
cargo build --release --locked -p order-api --example sse_bench

as_postgres dropdb -p "$PG_PORT" --if-exists "$BENCH_DB" >/dev/null
as_postgres createdb -p "$PG_PORT" -O orders "$BENCH_DB"
DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS ./target/release/order-api migrate >/dev/null

common=(DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS="$SHARDS" RUST_LOG=warn)
env "${common[@]}" KAFKA_TOPIC_PREFIX="bench.sse.$(date +%s)." KAFKA_CREATE_TOPICS=true RELAY_PORT=3120 \
  ./target/release/order-relay serve >>"$LOG_DIR/bench-sse-relay.log" 2>&1 &
PIDS+=($!)
for port in 3121 3122; do
  env "${common[@]}" APP_ENV=development JWT_SECRET="$SECRET" API_HOST=127.0.0.1 API_PORT=$port \
    DATABASE_POOL_SIZE=16 SSE_MAX_STREAMS_PER_USER=10 \
    ./target/release/order-api serve >>"$LOG_DIR/bench-sse-api-$port.log" 2>&1 &
  PIDS+=($!)
done
pid_b=${PIDS[2]}
for port in 3121 3122; do
  until curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; do sleep 0.2; done
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -sr); PostgreSQL $(psql "$BENCH_URL" -qAtc 'SHOW server_version'); broker: Tansu $TANSU_VERSION (memory engine); $(date -u +%Y-%m-%dT%H:%MZ)"
./target/release/examples/sse_bench --db "$BENCH_URL" --a http://127.0.0.1:3121 --b http://127.0.0.1:3122 \
  --secret "$SECRET" --pid-b "$pid_b" --streams "$STREAMS" --rate "$RATE" --secs "$SECS"
