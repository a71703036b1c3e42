#!/usr/bin/env bash
# Starts the whole stack locally, without Docker: PostgreSQL, the Kafka-API
# broker (Tansu), then order-api (3003) and order-relay (3004) in the
# background. Re-running starts only what is not running.
#   ./scripts/run.sh          start (or complete) the stack
#   ./scripts/run.sh stop     stop what this script started
#   ./scripts/run.sh status   show what runs
#   ./scripts/run.sh token NAME [--admin]   print a development token
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

API_PORT="${API_PORT:-3003}"
RELAY_PORT="${RELAY_PORT:-3004}"
export API_PORT RELAY_PORT
export LOG_FORMAT="${LOG_FORMAT:-text}"
export RUST_LOG="${RUST_LOG:-info}"

running() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

stop_one() {
  local name=$1
  if running "$name"; then
    log "Stopping $name"
    kill "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
    local pid; pid=$(cat "$RUN_DIR/$name.pid")
    WAIT_SECS=30 wait_for bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$name.pid"
}

start_binary() {
  local name=$1 port=$2 ready_url=$3
  if running "$name"; then
    return 0
  fi
  port_open "$port" && die "port $port is taken by another process; set ${name^^}_PORT or free it"
  log "Starting $name on :$port (log: $LOG_DIR/$name.log)"
  nohup "$ROOT/target/release/$name" serve </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
  WAIT_SECS=60 wait_for curl -fsS "$ready_url" ||
    die "$name did not become ready; see $LOG_DIR/$name.log"
}

case "${1:-start}" in
  stop)
    stop_one order-relay
    stop_one order-api
    stop_one tansu
    log "Stopped. PostgreSQL keeps running (pg_ctlcluster $PG_VERSION $PG_CLUSTER stop)."
    exit 0
    ;;
  status)
    for n in order-api order-relay tansu; do
      if running "$n"; then echo "$n: running (pid $(cat "$RUN_DIR/$n.pid"))"; else echo "$n: stopped"; fi
    done
    exit 0
    ;;
  token)
    shift
    [ $# -ge 1 ] || die "usage: $0 token NAME [--admin]"
    [ -x "$ROOT/target/release/order-api" ] || die "build first: ./scripts/run.sh"
    name=$1
    shift
    exec "$ROOT/target/release/order-api" token --sub "$name" "$@"
    ;;
  start) ;;
  *) die "usage: $0 [start|stop|status|token NAME [--admin]]" ;;
esac

start_postgres
start_tansu
log "Building release binaries (first time: a few minutes)"
cargo build --release --locked --bins --manifest-path "$ROOT/Cargo.toml"
log "Applying migrations"
"$ROOT/target/release/order-api" migrate
start_binary order-api "$API_PORT" "http://127.0.0.1:$API_PORT/health/ready"
if [ -x "$ROOT/target/release/order-relay" ]; then
  start_binary order-relay "$RELAY_PORT" "http://127.0.0.1:$RELAY_PORT/health/live"
fi

TOKEN=$("$ROOT/target/release/order-api" token --sub alice)
ADMIN=$("$ROOT/target/release/order-api" token --sub admin --admin)
cat <<MSG

The order service is running.
  API           http://127.0.0.1:$API_PORT/api/orders
  Swagger UI    http://127.0.0.1:$API_PORT/docs
  OpenAPI       http://127.0.0.1:$API_PORT/api/openapi.json
  API metrics   http://127.0.0.1:$API_PORT/metrics
  Relay health  http://127.0.0.1:$RELAY_PORT/health/ready   (metrics: /metrics)
  Kafka (Tansu) $KAFKA_BROKERS
  PostgreSQL    $DATABASE_URL
  Logs          $LOG_DIR/

A user token (alice, 24 h):
  $TOKEN
An admin token: $ADMIN
More (works in any shell): ./scripts/run.sh token NAME [--admin]

Try it:
  curl -s -X POST http://127.0.0.1:$API_PORT/api/orders \\
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    -H "Idempotency-Key: \$(date +%s%N)" \\
    -d '{"currency":"USD","items":[{"productId":"sku-1","quantity":2,"unitPrice":1999}],
         "shippingAddress":{"name":"Ada","line1":"1 Main St","city":"London","postalCode":"N1","country":"GB"}}'
  curl -s http://127.0.0.1:$API_PORT/api/orders -H "Authorization: Bearer $TOKEN"

Stop everything with: ./scripts/run.sh stop
MSG
