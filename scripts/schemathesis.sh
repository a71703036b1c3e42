#!/usr/bin/env bash
# Fuzzes order-api against its own OpenAPI document with Schemathesis:
# coverage, fuzzing and stateful phases, every check, a bounded number of
# examples per operation (deterministic, so a failure reproduces). The API
# runs as a process on its own database, as an admin token's caller, with a
# stand-in cart service (scripts/fake_cart.py). Non-zero on any failure.
# Usage: scripts/schemathesis.sh [MAX_EXAMPLES] (default 50).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1
examples="${1:-50}"

start_postgres
if ! python3 -c "import schemathesis" 2>/dev/null; then
  log "Installing schemathesis (PyPI)"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "schemathesis==4.32.5"
fi
cargo build --locked -q -p order-api
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

db=order_schemathesis
as_postgres dropdb -p "$PG_PORT" --if-exists "$db" >/dev/null
as_postgres createdb -p "$PG_PORT" -O orders "$db"
api_port=$(free_port)
cart_port=$(free_port)
export DATABASE_URL="postgres://orders:orders@127.0.0.1:${PG_PORT}/${db}"
export JWT_SECRET="schemathesis-secret-0123456789-0123456789"
export APP_ENV=development API_HOST=127.0.0.1 API_PORT="$api_port"
export CART_SERVICE_URL="http://127.0.0.1:${cart_port}" RUST_LOG=warn
unset PRODUCT_SERVICE_URL RATE_LIMIT_ORDERS_PER_MINUTE

./target/debug/order-api migrate >/dev/null
python3 scripts/fake_cart.py "$cart_port" &
cart_pid=$!
./target/debug/order-api serve 2>"$LOG_DIR/schemathesis-api.log" &
api_pid=$!
trap 'kill "$api_pid" "$cart_pid" 2>/dev/null; wait 2>/dev/null' EXIT
WAIT_SECS=30 wait_for port_open "$api_port" || die "order-api did not start; see $LOG_DIR/schemathesis-api.log"
token=$(./target/debug/order-api token --sub fuzzer --admin)

log "Schemathesis: $examples examples per operation, coverage + fuzzing + stateful, all checks"
st --config-file scripts/schemathesis.toml run "http://127.0.0.1:${api_port}/api/openapi.json" \
  -H "Authorization: Bearer ${token}" \
  --checks all --phases coverage,fuzzing,stateful \
  --max-examples "$examples" --generation-deterministic --no-color
