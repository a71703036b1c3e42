#!/usr/bin/env bash
# Runs the whole test suite against real services: starts PostgreSQL and the
# Kafka-API broker (installing Tansu once if missing), checks formatting,
# lints, the API docs' links and the code's shape (scripts/check_shape.py), runs the deployment checks (scripts/check-deploy.sh) and the run
# script's checks (scripts/check-run.sh), every test with cargo-nextest, the
# AsyncAPI document (scripts/check-asyncapi.sh, npm's @asyncapi/parser), a
# bounded Schemathesis run against the API (scripts/schemathesis.sh), and
# last the quick fault suite (scripts/chaos.sh --quick, which restarts the
# PostgreSQL the tests share). Non-zero on any failure.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

start_postgres
start_tansu

# Databases left by earlier runs (each test makes its own).
stale=$(as_postgres psql -p "$PG_PORT" -qAtc "SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'")
for db in $stale; do as_postgres dropdb -p "$PG_PORT" --if-exists "$db" >/dev/null 2>&1 || true; done

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
status=0
log "cargo doc (no broken intra-doc links, none from public items to private ones)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet || status=$?
log "Code shape (no file over 400 lines, no module cycle: scripts/check_shape.py)"
python3 "$ROOT/scripts/check_shape.py" || status=$?
log "Deployment checks (compose, chart, alerts, a real Prometheus scrape)"
"$ROOT/scripts/check-deploy.sh" || status=$?
log "run.sh checks (broker pid file, piped output, stop/status, token command)"
"$ROOT/scripts/check-run.sh" || status=$?
log "Tests (real PostgreSQL at 127.0.0.1:$PG_PORT, real broker at $KAFKA_BROKERS)"
cargo nextest run --locked --workspace --no-fail-fast --profile ci || status=$?
log "AsyncAPI document (scripts/check-asyncapi.sh: docs copy, AsyncAPI parser, examples)"
"$ROOT/scripts/check-asyncapi.sh" || status=$?
log "API fuzzing against its OpenAPI document (scripts/schemathesis.sh)"
"$ROOT/scripts/schemathesis.sh" || status=$?
# After the tests: it restarts the PostgreSQL cluster they share.
log "Fault suite, quick (scripts/chaos.sh --quick)"
"$ROOT/scripts/chaos.sh" --quick || status=$?
exit "$status"
