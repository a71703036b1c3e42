#!/usr/bin/env bash
# Shared set-up for run.sh and test.sh: PostgreSQL, the Kafka-API broker
# (Tansu), and the service's default environment. Sourced, not executed.
# Every step is idempotent: it starts only what is not running yet.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
LOG_DIR="$RUN_DIR/logs"
mkdir -p "$LOG_DIR"

PG_VERSION="${PG_VERSION:-15}"
PG_CLUSTER="${PG_CLUSTER:-main}"
PG_PORT="${PG_PORT:-5432}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
TANSU_VERSION="0.6.0"

export DATABASE_URL="${DATABASE_URL:-postgres://orders:orders@127.0.0.1:${PG_PORT}/orders}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT}}"
export JWT_SECRET="${JWT_SECRET:-dev-secret-change-me}"
# The scripts run a development stack: the known secret and the `token`
# subcommand are allowed only there.
export APP_ENV="${APP_ENV:-development}"
export KAFKA_CREATE_TOPICS="${KAFKA_CREATE_TOPICS:-true}"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# wait_for CMD... : retry a check for up to $WAIT_SECS seconds (default 60).
wait_for() {
  local deadline=$((SECONDS + ${WAIT_SECS:-60}))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

start_postgres() {
  command -v pg_ctlcluster >/dev/null ||
    die "PostgreSQL $PG_VERSION is not installed (apt-get install postgresql-$PG_VERSION)"
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" \
      '$1==v && $2==c && $4=="online" {found=1} END {exit !found}'; then
    log "Starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
  fi
  WAIT_SECS=30 wait_for port_open "$PG_PORT" || die "PostgreSQL did not open port $PG_PORT"
  WAIT_SECS=30 wait_for as_postgres psql -p "$PG_PORT" -qAtc "SELECT 1" ||
    die "PostgreSQL does not answer on port $PG_PORT"
  # The orders role (CREATEDB: the tests create a database each) and database.
  as_postgres psql -p "$PG_PORT" -qAt -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders') THEN
    CREATE ROLE orders LOGIN PASSWORD 'orders' CREATEDB;
  END IF;
END $$;
SQL
  if [ "$(as_postgres psql -p "$PG_PORT" -qAtc "SELECT 1 FROM pg_database WHERE datname='orders'")" != 1 ]; then
    log "Creating database orders"
    as_postgres createdb -p "$PG_PORT" -O orders orders
  fi
}

ensure_tansu() {
  if ! command -v tansu >/dev/null; then
    log "Installing the Tansu broker $TANSU_VERSION with cargo install (once; about 15-20 minutes)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
  fi
}

start_tansu() {
  ensure_tansu
  if port_open "$KAFKA_PORT"; then
    return 0
  fi
  log "Starting Tansu on 127.0.0.1:$KAFKA_PORT (memory engine; log: $LOG_DIR/tansu.log)"
  : >"$LOG_DIR/tansu.log"
  spawn_tansu "$KAFKA_PORT" "$LOG_DIR/tansu.log"
  echo "$TANSU_PID" >"$RUN_DIR/tansu.pid"
}

# Starts a memory-engine Tansu on 127.0.0.1:PORT, its output appended to
# LOG, and waits until it listens; its pid is then in TANSU_PID. Started
# directly (no subshell around it): TANSU_PID is the broker's own pid, and
# no process that waits for it keeps the caller's stdout open
# (`./scripts/run.sh | tee` returns). Usage: spawn_tansu PORT LOG
spawn_tansu() {
  nohup tansu broker \
      --listener-url "tcp://127.0.0.1:$1" \
      --advertised-listener-url "tcp://127.0.0.1:$1" \
      --storage-engine memory://tansu/ </dev/null >>"$2" 2>&1 &
  TANSU_PID=$!
  WAIT_SECS=30 wait_for port_open "$1" || die "Tansu did not start; see $2"
}

# Benchmarks: the planner and commit settings of the relay's lease session
# (shared/src/db/mod.rs, shared/src/db/outbox/session.rs), for pgbench's
# claims of the same rows.
# With the default random_page_cost, both read the whole outbox through the
# primary key to claim one shard's rows.
# shellcheck disable=SC2034 # used by the bench scripts that source this
RELAY_SESSION_PGOPTIONS="-c jit=off -c enable_bitmapscan=off -c enable_seqscan=off -c random_page_cost=1.1 -c synchronous_commit=off"

# Benchmarks: inserts ROWS outbox rows (5 versions each of ROWS / 5 orders,
# `order.placed` envelopes of ~320 bytes) spread over SHARDS shards, then
# VACUUM ANALYZE. Usage: fill_outbox DATABASE_URL ROWS SHARDS
fill_outbox() {
  psql "$1" -qAt -v ON_ERROR_STOP=1 -c "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard)
    SELECT gen_random_uuid(), o.id, v, 'order.placed', 'order.placed',
      json_build_object('eventId', gen_random_uuid(), 'eventType', 'order.placed',
        'occurredAt', '2026-01-01T00:00:00.000Z', 'orderId', o.id, 'userId', 'alice', 'version', v,
        'data', json_build_object('items', json_build_array(json_build_object('productId', 'sku-1',
          'quantity', 2, 'unitPrice', 1999, 'lineTotal', 3998)), 'totalAmount', 3998, 'currency', 'USD')),
      abs(hashtext(o.id::text)) % $3
    FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $2 / 5)) o, generate_series(1, 5) v
    ORDER BY v" >/dev/null
  psql "$1" -qAt -v ON_ERROR_STOP=1 -c "VACUUM ANALYZE outbox" >/dev/null
}

# Benchmarks: kills the processes a bench script started (their pids in the
# PIDS array) and waits for them. Usage: PIDS=(); trap kill_bench_pids EXIT
kill_bench_pids() {
  for p in "${PIDS[@]:-}"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
}
