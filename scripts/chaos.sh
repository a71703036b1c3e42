#!/usr/bin/env bash
# The fault suite: under a steady load of orders (each paid or cancelled
# later), with one order-api and three order-relays, relays are SIGKILLed
# and restarted, one relay's database connection is cut silently (a proxy
# that stops forwarding), the broker is killed and restarted empty, and
# PostgreSQL is restarted once. A checker reads the topics the whole run and
# compares them with the database at the end: lost events, reorderings,
# duplicates, double-applied payments, outbox left, API 5xx, heal times.
# Loopback only, its own database and broker; exits non-zero when a
# guarantee broke. See docs/reliability.md.
#   ./scripts/chaos.sh           full run (two rounds, about 4 minutes)
#   ./scripts/chaos.sh --quick   one round (about 3 minutes; run by test.sh)
# It restarts the local PostgreSQL cluster: do not run it against a database
# that others use.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  "") ;;
  *) die "usage: $0 [--quick]" ;;
esac

start_postgres
ensure_tansu
log "Building the binaries and the chaos driver"
cargo build --locked --bins --quiet
cargo build --locked -p order-relay --example chaos --quiet
export CHAOS_BIN_DIR="$ROOT/target/debug" CHAOS_LOG_DIR="$LOG_DIR/chaos" PG_VERSION PG_CLUSTER
rm -rf "$CHAOS_LOG_DIR"
log "Chaos run ($mode); process logs in $CHAOS_LOG_DIR"
args=()
[ "$mode" = quick ] && args+=(--quick)
# Bounded: a hung run is a failed run.
# A failed run shows the end of each process's log here: on CI the log
# directory is gone with the machine.
if ! timeout 900 "$ROOT/target/debug/examples/chaos" "${args[@]}"; then
  for file in "$CHAOS_LOG_DIR"/*.log; do
    [ -f "$file" ] || continue
    echo "--- the end of $file"
    tail -n 15 "$file"
  done
  exit 1
fi
