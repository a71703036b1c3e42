#!/usr/bin/env bash
# One benchmark command for the API and the relay beside PostgreSQL itself
# (not a test). Every figure is a ratio measured side by side in one run,
# A B A B interleaved: the service against pgbench making the same SQL.
#   1. create: order-api (wrk, 16 connections, relay publishing) vs pgbench
#      of the same writes in one round trip (scripts/bench/pg-create.sql);
#      CPU per create of order-api and order-relay from /proc; HTTP p50/p99
#      at half the measured rate, and the floor's (below) at the same rate;
#      once, as a reference, creates that each carry an Idempotency-Key.
#   2. reads: GET one order and a page of 20 vs pgbench of the same queries,
#      and the bound two cores put on any HTTP read: PostgreSQL's and
#      pgbench's CPU per query against PostgreSQL's, the floor's and wrk's
#      per request (/proc of every postgres process, the server, and the
#      load generator).
#   Figures 1 and 2 also measure the floor of the required stack
#   (api/examples/floor.rs: poem, jsonwebtoken, serde and tokio-postgres
#   running pgbench's statements, a create's with the body's values, and
#   answering as the contract asks; no code of ours) the same way: what
#   the crates the service must use cost on this machine.
#   3. relay: CPU per published event (from the create runs), and again
#      alternated with the floor of the required stack (`bench
#      publish-floor`: one tokio-postgres connection and the relay's
#      producer settings claiming, sending and deleting the same rows every
#      poll interval, no code of ours) under the same creates; drain of
#      pre-filled rows vs PostgreSQL's own claim + delete of the same rows,
#      beside a raw producer of as many records, and the CPU per row of
#      each, machine (/proc/stat) and by process: the bound two cores put
#      on any drain (the machine's CPU per row in the relay's drain, with
#      the relay's own replaced by what pgbench's and the raw producer's
#      clients spend on the same rows).
#   4. commit -> broker ack at 1,000 orders/s (the relay's histogram) and
#      the relay's share (commit -> send call), beside a raw producer's ack
#      latency at the same rate and a raw PostgreSQL round trip (SELECT 1
#      every 2 ms) in the same run, with the relay's claim statement p99;
#      then, with the relay stopped, the floor of the share (`bench
#      share-floor`: one connection claiming and deleting the outbox, no
#      hand-off, no producer) under the same load, at the relay's 10 ms
#      poll and back to back.
#   5. inbound: payment.authorized events applied per second by one relay
#      vs pgbench of the same transaction (scripts/bench/pg-inbound.sql),
#      and the floor of the required stack (a bare consumer and
#      tokio-postgres running that transaction, `bench inbound-floor`).
#   6. peak RSS (VmHWM) of both binaries after figures 1, 2 and 4.
# The services log as the chart deploys them (RUST_LOG=info,
# LOG_FORMAT=json: a line per order placed and per event consumed) into
# $LOG_DIR/bench-*.log, emptied at the start; before the twenty-fourth
# pass they ran at RUST_LOG=warn.
# Results and the profile: docs/benchmarks.md.
# Usage: ./scripts/bench.sh [SECS=10] [ROUNDS=2]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

SECS="${1:-10}"
ROUNDS="${2:-2}"
SHARDS=32
BENCH_DB=orders_bench_all
BENCH_URL="postgres://orders:orders@127.0.0.1:${PG_PORT}/${BENCH_DB}"
SECRET="bench-secret-0123456789-0123456789-0123456789"
HZ=$(getconf CLK_TCK)
PIDS=()
trap kill_bench_pids EXIT
# A step that fails ends the run (set -e): say which, rather than stop silently.
trap 'echo "bench.sh: the command at line $LINENO failed; logs in $LOG_DIR" >&2' ERR
# Only for the services: Tansu reads RUST_LOG too.
SERVICE_LOG=(RUST_LOG=info LOG_FORMAT=json)
: >"$LOG_DIR/bench-api.log"
: >"$LOG_DIR/bench-relay.log"

# A broker of the bench's own, started afresh before figures 1, 3 and 5:
# Tansu's memory engine slows down with the records it holds (figure 5 on
# the broker that had taken figures 1 to 4: broker CPU per event 194-237 us
# against 71-93 us on a fresh one), which Kafka does not, and the local
# stack's broker (`./scripts/run.sh`, port 9092) is left alone.
BENCH_KAFKA_PORT=9193
export KAFKA_BROKERS="127.0.0.1:$BENCH_KAFKA_PORT"
tansu_pid=
fresh_broker() {
  if [ -n "$tansu_pid" ]; then kill "$tansu_pid"; wait "$tansu_pid" 2>/dev/null || true; fi
  spawn_tansu "$BENCH_KAFKA_PORT" "$LOG_DIR/bench-tansu.log"
  tansu_pid=$TANSU_PID
  PIDS+=("$tansu_pid")
}

for port in 3130 3131 3132 3133 "$BENCH_KAFKA_PORT"; do
  if port_open "$port"; then die "port $port is in use (an earlier bench still running?)"; fi
done
start_postgres
ensure_tansu
fresh_broker
if ! command -v wrk >/dev/null; then
  log "Installing wrk (Debian package)"
  apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null
fi
log "Building release binaries and the bench tool"
cargo build --release --locked --bins -p order-api -p order-relay
cargo build --release --locked -p order-relay --example bench
cargo build --release --locked -p order-api --example floor

as_postgres dropdb -p "$PG_PORT" --if-exists "$BENCH_DB" >/dev/null
as_postgres createdb -p "$PG_PORT" -O orders "$BENCH_DB"
DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS ./target/release/order-api migrate >/dev/null 2>&1
psql_b() { psql "$BENCH_URL" -qAt -v ON_ERROR_STOP=1 "$@"; }

env DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS KAFKA_TOPIC_PREFIX="bench.all.$(date +%s)." \
  KAFKA_CREATE_TOPICS=true CONSUMER_ENABLED=false RELAY_PORT=3131 "${SERVICE_LOG[@]}" \
  ./target/release/order-relay serve >>"$LOG_DIR/bench-relay.log" 2>&1 &
relay_pid=$!
PIDS+=("$relay_pid")
env DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS APP_ENV=development JWT_SECRET="$SECRET" \
  API_HOST=127.0.0.1 API_PORT=3130 DATABASE_POOL_SIZE=16 "${SERVICE_LOG[@]}" \
  ./target/release/order-api serve >>"$LOG_DIR/bench-api.log" 2>&1 &
api_pid=$!
PIDS+=("$api_pid")
# The floor of the required stack (api/examples/floor.rs): poem, jsonwebtoken,
# serde and tokio-postgres running pgbench's statements, no code of ours.
./target/release/examples/floor "$BENCH_URL" 3133 "$SECRET" >>"$LOG_DIR/bench-floor.log" 2>&1 &
floor_pid=$!
PIDS+=("$floor_pid")
WAIT_SECS=30 wait_for curl -fsS http://127.0.0.1:3130/health/ready
WAIT_SECS=30 wait_for curl -fsS http://127.0.0.1:3131/health/ready
API=http://127.0.0.1:3130
FLOOR=http://127.0.0.1:3133
# The API's orders are spread over 100 users (bench-0 .. bench-99), as a
# shop's are: with all of them under one user, that user held half of the
# table and the planner walked the primary key for its page of 20.
token() { APP_ENV=development JWT_SECRET="$SECRET" ./target/release/order-api token --sub "$1"; }
TOKEN=$(token bench-0)
TOKENS=$(for u in $(seq 0 99); do token "bench-$u"; done | tr '\n' ' ')
export TOKEN TOKENS

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU ticks of every process named $1, with their reaped children's (the
# postmaster collects the time of the backends that ended). A process that
# ends between `pgrep` and the read counts nothing.
pticks() { for p in $(pgrep -x "$1"); do awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || true; done | awk '{s += $1} END {print s + 0}'; }
us_per() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}'; }
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
drained() { [ "$(psql_b -c 'SELECT count(*) FROM outbox')" = 0 ]; }
# Waits on one connection until $1 (one bigint) is $2, polling every $3 ms:
# a psql start costs about 40 ms of CPU here, which a poll every 50 ms took
# from the relay's half of figures 3 and 5 and not from pgbench's.
wait_sql() {
  ./target/release/examples/bench wait --pg "$BENCH_URL" --sql "$1" --target "$2" --interval-ms "$3" --timeout-secs 300
}
settle() { WAIT_SECS=120 wait_for drained; sleep 1; }
rate_of() { awk '/Requests\/sec/ {printf "%.0f", $2}'; }
pg_tps() { PGPASSWORD=orders pgbench -h 127.0.0.1 -p "$PG_PORT" -U orders -n -M prepared -c "${CLIENTS:-16}" -j 2 -T "$SECS" "$@" "$BENCH_DB" 2>>"$LOG_DIR/bench-pgbench.log" | awk '/^tps/ {printf "%.0f", $3}'; }
now_ms() { date +%s%3N; }
mean() { awk '{s += $1; n++} END {if (n) printf "%.0f", s / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
verdict() { awk -v v="$1" -v t="$2" -v d="$3" 'BEGIN {ok = (d == "min") ? v >= t : v <= t; print ok ? "met" : "MISSED"}'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -sr); PostgreSQL $(psql_b -c 'SHOW server_version'); Tansu $TANSU_VERSION (memory engine); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD)"

log "1. create: API (wrk) vs pgbench, $ROUNDS x (A B), $SECS s each, relay publishing"
wrk -t2 -c16 -d3s -s scripts/bench/create-order.lua "$API/api/orders" >/dev/null
api_rates=(); pg_rates=(); api_us=(); relay_us=(); floor_rates=(); floor_us=()
for _ in $(seq "$ROUNDS"); do
  settle
  a0=$(ticks "$api_pid"); r0=$(ticks "$relay_pid"); n0=$(psql_b -c "SELECT count(*) FROM orders WHERE user_id LIKE 'bench-%'")
  rate=$(wrk -t2 -c16 -d"${SECS}s" -s scripts/bench/create-order.lua "$API/api/orders" | rate_of)
  a1=$(ticks "$api_pid")
  settle
  r1=$(ticks "$relay_pid"); n1=$(psql_b -c "SELECT count(*) FROM orders WHERE user_id LIKE 'bench-%'")
  n=$((n1 - n0))
  api_rates+=("$rate")
  api_us+=("$(awk -v t=$((a1 - a0)) -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}')")
  relay_us+=("$(awk -v t=$((r1 - r0)) -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}')")
  pg_rates+=("$(pg_tps -f scripts/bench/pg-create.sql)")
  settle
  f0=$(ticks "$floor_pid"); n0=$(psql_b -c "SELECT count(*) FROM orders")
  floor_rates+=("$(wrk -t2 -c16 -d"${SECS}s" -s scripts/bench/create-order.lua "$FLOOR/api/orders" | rate_of)")
  f1=$(ticks "$floor_pid"); n1=$(psql_b -c "SELECT count(*) FROM orders")
  floor_us+=("$(awk -v t=$((f1 - f0)) -v n=$((n1 - n0)) -v hz="$HZ" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}')")
done
create_api=$(printf '%s\n' "${api_rates[@]}" | mean)
create_pg=$(printf '%s\n' "${pg_rates[@]}" | mean)
cpu_api=$(printf '%s\n' "${api_us[@]}" | mean)
cpu_relay=$(printf '%s\n' "${relay_us[@]}" | mean)
cpu_floor=$(printf '%s\n' "${floor_us[@]}" | mean)
create_floor=$(printf '%s\n' "${floor_rates[@]}" | mean)
echo "  API ${api_rates[*]} orders/s; pgbench ${pg_rates[*]} tps; API CPU ${api_us[*]} us/create; relay CPU ${relay_us[*]} us/event"
echo "  floor of the required stack: ${floor_rates[*]} orders/s, ${floor_us[*]} us CPU/create"
# Creates as a browser client sends them, each with its own Idempotency-Key
# (the create also writes the key's row): a reference, once.
settle
a0=$(ticks "$api_pid"); n0=$(psql_b -c "SELECT count(*) FROM orders WHERE user_id LIKE 'bench-%'")
keyed_rate=$(KEYED=1 wrk -t2 -c16 -d"${SECS}s" -s scripts/bench/create-order.lua "$API/api/orders" | rate_of)
a1=$(ticks "$api_pid"); n1=$(psql_b -c "SELECT count(*) FROM orders WHERE user_id LIKE 'bench-%'")
keyed_us=$(awk -v t=$((a1 - a0)) -v n=$((n1 - n0)) -v hz="$HZ" 'BEGIN {printf "%.0f", t * 1e6 / hz / n}')
echo "  API, each create with an Idempotency-Key: $keyed_rate orders/s, $keyed_us us CPU/create"

log "2. reads: GET one order and a page of 20, API vs pgbench"
settle
# Settled statistics, as a live table has: right after the bulk of inserts
# above, both the API's and pgbench's generic plans can be built on stale ones.
psql_b -c "ANALYZE orders, order_items" >/dev/null
ID=$(curl -fsS -X POST "$API/api/orders" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"currency":"USD","items":[{"productId":"sku-1","quantity":2,"unitPrice":1999},{"productId":"sku-2","quantity":1,"unitPrice":500}],"shippingAddress":{"name":"Bench","line1":"1 Main St","city":"X","postalCode":"1","country":"US"}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# Each read run also splits the CPU it cost per request: PostgreSQL (every
# postgres process, with the backends the postmaster reaped), the server
# (order-api or the floor) and the load generator (wrk or pgbench: this
# script's reaped children). From them, the bound two cores put on any HTTP
# read: PostgreSQL's and pgbench's CPU per query against PostgreSQL's, the
# floor's and wrk's per request, on the same cores.
children() { awk '{print $16 + $17}' "/proc/$$/stat"; }
declare -A reads=() read_cpu=()
read_run() { # name server-pid|- command...: the rate, and "pg server client" us per request
  local name=$1 pid=$2 g0 s0=0 c0 rate n
  shift 2
  g0=$(pticks postgres); c0=$(children); [ "$pid" = - ] || s0=$(ticks "$pid")
  rate=$("$@")
  sleep 1
  n=$((rate * SECS))
  reads[$name]="${reads[$name]:+${reads[$name]} }$rate"
  local server=0
  [ "$pid" = - ] || server=$(us_per $(($(ticks "$pid") - s0)) "$n")
  read_cpu[$name]+="$(us_per $(($(pticks postgres) - g0)) "$n") $server $(us_per $(($(children) - c0)) "$n");"
}
wrk_rate() { wrk -t2 -c16 -d"${SECS}s" -s scripts/bench/get.lua "$1" | rate_of; }
for _ in $(seq "$ROUNDS"); do
  read_run get_api "$api_pid" wrk_rate "$API/api/orders/$ID"
  read_run get_pg - pg_tps -f scripts/bench/pg-get.sql -D id="$ID" -D user=bench-0
  read_run list_api "$api_pid" wrk_rate "$API/api/orders?limit=20"
  read_run list_pg - pg_tps -f scripts/bench/pg-list.sql -D user=bench-0
  read_run get_floor "$floor_pid" wrk_rate "$FLOOR/api/orders/$ID"
  read_run list_floor "$floor_pid" wrk_rate "$FLOOR/api/orders?limit=20"
done
for read in get list; do
  echo "  ${read}: API ${reads[${read}_api]} req/s, pgbench ${reads[${read}_pg]} tps, floor ${reads[${read}_floor]} req/s"
  echo "    CPU per request, PostgreSQL + server + load generator (us): API ${read_cpu[${read}_api]} pgbench ${read_cpu[${read}_pg]} floor ${read_cpu[${read}_floor]}"
done
# The mean of field $2 (1 PostgreSQL, 2 server, 3 load generator) of a read's CPU splits.
cpu_of() { tr ';' '\n' <<<"${read_cpu[$1]}" | awk -v f="$2" 'NF {s += $f; n++} END {if (n) printf "%.1f", s / n}'; }
read_bound() { # get|list: (PG + pgbench) / (PG + floor + wrk), PG's CPU per query from pgbench's runs
  awk -v p="$(cpu_of "$1_pg" 1)" -v c="$(cpu_of "$1_pg" 3)" -v s="$(cpu_of "$1_floor" 2)" -v w="$(cpu_of "$1_floor" 3)" \
    'BEGIN {if (p + s + w > 0) printf "%.2f", (p + c) / (p + s + w); else print "n/a"}'
}

log "4. commit -> ack at 1,000 orders/s (and a raw producer at 1,000/s beside it), and HTTP p50/p99 at half the create rate"
settle
half=$((create_api / 2))
./target/release/examples/bench latency --api "$API" --token "$TOKEN" \
  --relay-metrics http://127.0.0.1:3131/metrics --rate "$half" --secs "$SECS" | tee "$LOG_DIR/bench-half.txt"
settle
# The floor of the required stack at the same rate: what the machine's
# scheduling alone does to the tail.
./target/release/examples/bench http --api "$FLOOR" --token "$TOKEN" --rate "$half" --secs "$SECS" |
  tee "$LOG_DIR/bench-half-floor.txt"
settle
./target/release/examples/bench steady --brokers "$KAFKA_BROKERS" --topic "bench.steady.$(date +%s)" \
  --rate 1000 --secs "$SECS" >"$LOG_DIR/bench-steady.txt" &
steady_pid=$!
# What PostgreSQL did in the background during the run, to tell a stall's
# cause (claims of up to 0.5-1.8 s in a few whole runs, never in figure 4
# alone): checkpoints, and (auto)vacuums and analyzes of the outbox. The
# start time matches PostgreSQL's own log.
pg_background() {
  psql_b -c "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) || ' ' ||
    (SELECT autovacuum_count + autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'outbox')"
}
read -r ck0 av0 <<<"$(pg_background)"
ack_start=$(date -u +%H:%M:%S)
./target/release/examples/bench latency --api "$API" --token "$TOKEN" --pg "$BENCH_URL" \
  --relay-metrics http://127.0.0.1:3131/metrics --rate 1000 --secs "$SECS" | tee "$LOG_DIR/bench-ack.txt"
wait "$steady_pid"
cat "$LOG_DIR/bench-steady.txt"
read -r ck1 av1 <<<"$(pg_background)"
echo "PostgreSQL during the run (from $ack_start UTC): $((ck1 - ck0)) checkpoints, $((av1 - av0)) autovacuums or autoanalyzes of the outbox"
p50_half=$(sed -n 's/.*HTTP create.*p50 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-half.txt")
p99_half=$(sed -n 's/.*HTTP create.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-half.txt")
p50_floor=$(sed -n 's/.*HTTP create.*p50 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-half-floor.txt")
p99_floor=$(sed -n 's/.*HTTP create.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-half-floor.txt")
ack_p99=$(sed -n 's/^commit->ack.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-ack.txt")
share_p99=$(sed -n 's/^commit->send.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-ack.txt")
raw_p99=$(sed -n 's/.*ack p50.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-steady.txt")
claim_p99=$(sed -n 's/^claim statement.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-ack.txt")
rtt_p99=$(sed -n 's/^raw PostgreSQL round trip.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-ack.txt")

rss_api=$(hwm_mb "$api_pid"); rss_relay=$(hwm_mb "$relay_pid")
settle
kill "$relay_pid"; wait "$relay_pid" 2>/dev/null || true
# The floor of the share: what any relay that polls the outbox takes on
# this machine to have a committed row in hand, at the relay's poll and
# with no poll at all (a claim loop on one connection, no hand-off, no
# producer), under the same 1,000 creates/s.
share_floor() {
  ./target/release/examples/bench share-floor --pg "$BENCH_URL" --poll-ms "$1" --secs $((SECS + 1)) >"$LOG_DIR/bench-share-floor.txt" &
  local pid=$!
  sleep 0.5
  ./target/release/examples/bench http --api "$API" --token "$TOKEN" --rate 1000 --secs "$SECS" >/dev/null
  wait "$pid"
  cat "$LOG_DIR/bench-share-floor.txt" >&2
  sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' "$LOG_DIR/bench-share-floor.txt"
}
share_floor_poll=$(share_floor 10)
share_floor_spin=$(share_floor 0)

# A relay of its own for figures 3 (drain) and 5 (inbound); $1 is its topic prefix.
start_relay() {
  env DATABASE_URL="$BENCH_URL" OUTBOX_SHARDS=$SHARDS KAFKA_TOPIC_PREFIX="$1" KAFKA_CREATE_TOPICS=true \
    KAFKA_CONSUMER_GROUP="bench-$(date +%s%N)" CONSUMER_ENABLED="$2" RELAY_PORT=3132 "${SERVICE_LOG[@]}" \
    ./target/release/order-relay serve >>"$LOG_DIR/bench-relay.log" 2>&1 &
  relay2_pid=$!
  PIDS+=("$relay2_pid")
}
stop_relay() { kill "$relay2_pid"; wait "$relay2_pid" 2>/dev/null || true; }

fresh_broker
log "3. relay CPU per event beside the floor of the required stack (bench publish-floor), the API's creates, $ROUNDS x (A B)"
# CPU per event of publisher $1 (a pid) over one wrk run of creates through
# the API, until the outbox is empty again.
publish_cpu() {
  local n0 n1 t0 t1
  settle
  n0=$(psql_b -c "SELECT count(*) FROM orders WHERE user_id LIKE 'bench-%'"); t0=$(ticks "$1")
  wrk -t2 -c16 -d"${SECS}s" -s scripts/bench/create-order.lua "$API/api/orders" >/dev/null
  settle
  n1=$(psql_b -c "SELECT count(*) FROM orders WHERE user_id LIKE 'bench-%'"); t1=$(ticks "$1")
  awk -v t=$((t1 - t0)) -v n=$((n1 - n0)) -v hz="$HZ" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}'
}
cpu_relay2=(); cpu_pubfloor=()
for r in $(seq "$ROUNDS"); do
  topics="bench.cpu.$r.$(date +%s)."
  start_relay "$topics" false
  WAIT_SECS=30 wait_for curl -fsS http://127.0.0.1:3132/health/ready
  cpu_relay2+=("$(publish_cpu "$relay2_pid")")
  stop_relay
  ./target/release/examples/bench publish-floor --brokers "$KAFKA_BROKERS" --pg "$BENCH_URL" --prefix "$topics" \
    >"$LOG_DIR/bench-publish-floor.log" 2>&1 &
  pubfloor_pid=$!
  PIDS+=("$pubfloor_pid")
  WAIT_SECS=30 wait_for grep -q ready "$LOG_DIR/bench-publish-floor.log"
  cpu_pubfloor+=("$(publish_cpu "$pubfloor_pid")")
  kill "$pubfloor_pid"; wait "$pubfloor_pid" 2>/dev/null || true
done
echo "  CPU per event: relay ${cpu_relay2[*]} us; floor of the required stack ${cpu_pubfloor[*]} us"

fresh_broker
ROWS=$((SECS * 20000))
log "3. drain of $ROWS pre-filled rows: one relay vs PostgreSQL's own claim + delete (pgbench, 32 clients, batches of 500), a warm-up and $ROUNDS x (A B)"
fill() { fill_outbox "$BENCH_URL" "$ROWS" "$SHARDS"; }
# The machine's busy CPU (every process, all cores) in ticks, from /proc/stat.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
drain_pg=(); drain_relay=(); drain_raw=(); cpu_pg=(); cpu_raw=(); cpu_drain=()
# The same CPU per row split by process: PostgreSQL (every postgres
# process), pgbench, the relay, the broker and the raw producer; the
# children's times of this shell give pgbench's and the producer's.
split_pg=(); split_pgbench=(); split_relay=(); split_relay_pg=(); split_relay_broker=(); split_raw=(); split_raw_broker=(); drain_idle=()
reaped() { awk '{print $16 + $17}' /proc/$$/stat; }
idle() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
# Round 0 warms up and is not counted: the first drain of a run was always
# the slowest on both sides (relay 36,000 against 66,000-75,000 events/s
# for the same binary right after).
for r in $(seq 0 "$ROUNDS"); do
  fill
  t0=$(now_ms); b0=$(busy); p0=$(pticks postgres); c0=$(reaped)
  PGOPTIONS="$RELAY_SESSION_PGOPTIONS" \
    PGPASSWORD=orders pgbench -h 127.0.0.1 -p "$PG_PORT" -U orders -n -M prepared -f scripts/bench/pg-claim.sql -c $SHARDS -j 2 \
    -t $((ROWS / SHARDS / 500 + 3)) "$BENCH_DB" >/dev/null 2>&1
  [ "$r" = 0 ] || {
    drain_pg+=("$((ROWS * 1000 / ($(now_ms) - t0)))"); cpu_pg+=("$(us_per $(($(busy) - b0)) "$ROWS")")
    split_pg+=("$(us_per $(($(pticks postgres) - p0)) "$ROWS")"); split_pgbench+=("$(us_per $(($(reaped) - c0)) "$ROWS")")
  }
  psql_b -c "DELETE FROM outbox" >/dev/null
  fill
  start_relay "bench.drain.$r.$(date +%s)." false
  # From the first row published (after start-up and topic creation) to the last.
  until [ "$(psql_b -c 'SELECT count(*) FROM outbox')" -lt "$ROWS" ]; do sleep 0.02; done
  t0=$(now_ms); b0=$(busy); i0=$(idle); left=$(psql_b -c 'SELECT count(*) FROM outbox')
  p0=$(pticks postgres); r0=$(ticks "$relay2_pid"); k0=$(ticks "$tansu_pid")
  wait_sql "SELECT count(*) FROM (SELECT 1 FROM outbox ORDER BY id LIMIT 1) t" 0 20
  [ "$r" = 0 ] || {
    drain_relay+=("$((left * 1000 / ($(now_ms) - t0)))"); b=$(($(busy) - b0)); cpu_drain+=("$(us_per "$b" "$left")")
    split_relay_pg+=("$(us_per $(($(pticks postgres) - p0)) "$left")"); split_relay+=("$(us_per $(($(ticks "$relay2_pid") - r0)) "$left")")
    split_relay_broker+=("$(us_per $(($(ticks "$tansu_pid") - k0)) "$left")")
    drain_idle+=("$(awk -v i=$(($(idle) - i0)) -v b="$b" 'BEGIN {printf "%.0f", 100 * i / (i + b)}')")
  }
  stop_relay
  # The broker's side alone: a raw producer of as many records of the
  # same shape and size, with the relay's producer settings.
  b0=$(busy); c0=$(reaped); k0=$(ticks "$tansu_pid")
  raw=$(./target/release/examples/bench producer --brokers "$KAFKA_BROKERS" --topic "bench.raw.$r.$(date +%s)" --count "$ROWS" |
    sed -n 's/.*= \([0-9]*\) records\/s.*/\1/p')
  [ "$r" = 0 ] || {
    drain_raw+=("$raw"); cpu_raw+=("$(us_per $(($(busy) - b0)) "$ROWS")")
    split_raw+=("$(us_per $(($(reaped) - c0)) "$ROWS")"); split_raw_broker+=("$(us_per $(($(ticks "$tansu_pid") - k0)) "$ROWS")")
  }
done
echo "  PostgreSQL claim+delete ${drain_pg[*]} rows/s; relay drain ${drain_relay[*]} events/s; raw producer ${drain_raw[*]} records/s"
echo "  machine CPU per row (every process): PostgreSQL claim+delete ${cpu_pg[*]} us; raw producer + broker ${cpu_raw[*]} us; relay drain (relay + PostgreSQL + broker) ${cpu_drain[*]} us"
echo "  by process: pgbench's half: PostgreSQL ${split_pg[*]}, pgbench ${split_pgbench[*]} us; relay's half: relay ${split_relay[*]}, PostgreSQL ${split_relay_pg[*]}, broker ${split_relay_broker[*]} us (machine idle ${drain_idle[*]} %); raw producer ${split_raw[*]}, its broker ${split_raw_broker[*]} us"

fresh_broker
# Figure 3's last drain leaves 200,000 deleted outbox rows behind; until
# autovacuum gets to them, the relay's claims in figure 5's first round
# (and not pgbench's half, which claims nothing) walk their index entries.
psql_b -c "VACUUM ANALYZE outbox" >/dev/null
EVENTS=$((SECS * 1000))
log "5. inbound: $EVENTS payment.authorized events applied by one relay vs pgbench of the same transaction (6 clients: one per partition), $ROUNDS x (A B)"
insert_orders() { # prefix count
  psql_b -c "WITH o AS (
      INSERT INTO orders (id, user_id, status, currency, total_amount, version, shipping_address, created_at, updated_at)
      SELECT ('$1' || lpad(to_hex(k), 12, '0'))::uuid, 'bench', 'PENDING', 'USD', 4498, 1,
        '{\"name\": \"Bench\",\"line1\": \"1 Main St\",\"city\": \"X\",\"postalCode\": \"1\",\"country\": \"US\"}'::jsonb, now(), now()
      FROM generate_series(1, $2) k RETURNING id)
    INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price, line_total)
    SELECT o.id, t.n, t.p, t.q, t.u, t.l FROM o,
      (VALUES (1, 'sku-1', 2, 1999, 3998), (2, 'sku-2', 1, 500, 500)) AS t(n, p, q, u, l)" >/dev/null
}
confirmed_sql() { echo "SELECT count(*) FROM orders WHERE id BETWEEN '${1}000000000000' AND '${1}ffffffffffff' AND status = 'CONFIRMED'"; }
insert_orders "ffffffff-0000-7000-8000-" "$EVENTS"
in_relay=(); in_pg=(); in_cpu=(); in_pg_cpu=(); in_floor=()
for r in $(seq "$ROUNDS"); do
  prefix="e000000${r}-0000-7000-8000-"
  topics="bench.in.$r.$(date +%s)."
  insert_orders "$prefix" "$EVENTS"
  ./target/release/examples/bench inbound --brokers "$KAFKA_BROKERS" --topic "${topics}payment.authorized" \
    --count "$EVENTS" --prefix "$prefix" >/dev/null
  g0=$(pticks postgres); k0=$(ticks "$tansu_pid")
  start_relay "$topics" true
  wait_sql "$(confirmed_sql "$prefix")" "$EVENTS" 250
  # The events it wrote (order.confirmed) published too, as a relay must.
  wait_sql "SELECT count(*) FROM outbox" 0 250
  in_cpu+=("relay $(us_per "$(ticks "$relay2_pid")" "$EVENTS") + PostgreSQL $(us_per $(($(pticks postgres) - g0)) "$EVENTS") + broker $(us_per $(($(ticks "$tansu_pid") - k0)) "$EVENTS") us")
  # The rate from the first applied event (after start-up and the group
  # join) to the last, from the orders' own update times.
  in_relay+=("$(psql_b -c "SELECT round((count(*) - 1) / extract(epoch FROM max(updated_at) - min(updated_at)))
    FROM orders WHERE id BETWEEN '${prefix}000000000000' AND '${prefix}ffffffffffff' AND status = 'CONFIRMED'")")
  stop_relay
  g0=$(pticks postgres)
  # The run stopped at the line above in some runs: `pticks` failed when
  # a backend exited between `pgrep` and reading its stat (now tolerated).
  # A deadlock or serialization failure in pgbench is retried, as the
  # relay retries them, and pgbench's errors go to bench-pgbench.log.
  in_pg+=("$(CLIENTS=6 pg_tps -f scripts/bench/pg-inbound.sql -D orders="$EVENTS" --max-tries=10)")
  # pgbench's backends end with it; their time counts once the postmaster
  # has reaped them (one run read 107 us instead of about 600 without this).
  sleep 1
  in_pg_cpu+=("$(us_per $(($(pticks postgres) - g0)) $((in_pg[-1] * SECS)))")
  psql_b -c "DELETE FROM outbox" >/dev/null
  # The floor of the required stack: a bare consumer and six tokio-postgres
  # workers running pgbench's transaction (relay/examples/bench/floor.rs).
  prefix="f000000${r}-0000-7000-8000-"
  insert_orders "$prefix" "$EVENTS"
  ./target/release/examples/bench inbound --brokers "$KAFKA_BROKERS" --topic "${topics}floor" \
    --count "$EVENTS" --prefix "$prefix" >/dev/null
  in_floor+=("$(./target/release/examples/bench inbound-floor --brokers "$KAFKA_BROKERS" --topic "${topics}floor" \
    --pg "$BENCH_URL" --count "$EVENTS" | sed -n 's/.*, \([0-9]*\) events\/s.*/\1/p')")
  psql_b -c "DELETE FROM outbox" >/dev/null
done
echo "  relay ${in_relay[*]} events/s; pgbench ${in_pg[*]} tps; floor of the required stack ${in_floor[*]} events/s"
echo "  CPU per event, relay's half: ${in_cpu[*]}; pgbench's half: PostgreSQL ${in_pg_cpu[*]} us per transaction"

read_ratio() { ratio "$(tr ' ' '\n' <<<"${reads[$1]}" | mean)" "$(tr ' ' '\n' <<<"${reads[$2]}" | mean)"; }
get_r=$(read_ratio get_api get_pg)
list_r=$(read_ratio list_api list_pg)
create_r=$(ratio "$create_api" "$create_pg")
tail_r=$(ratio "$p99_half" "$p50_half")
drain_r=$(ratio "$(printf '%s\n' "${drain_relay[@]}" | mean)" "$(printf '%s\n' "${drain_pg[@]}" | mean)")
# What a drain can reach on this machine at best: everything but the relay
# (PostgreSQL, the broker, the kernel) costs what it cost in the relay's
# own drain, and the relay's part costs only what the required stack's
# clients spend on the same rows (pgbench's claims and deletes, the raw
# producer's sends); all share the same cores. mean1: one decimal of a
# mean of us values.
mean1() { awk '{s += $1; n++} END {if (n) printf "%.1f", s / n}'; }
floor_client=$(awk -v a="$(printf '%s\n' "${split_pgbench[@]}" | mean1)" -v b="$(printf '%s\n' "${split_raw[@]}" | mean1)" 'BEGIN {printf "%.1f", a + b}')
drain_others=$(awk -v m="$(printf '%s\n' "${cpu_drain[@]}" | mean1)" -v r="$(printf '%s\n' "${split_relay[@]}" | mean1)" 'BEGIN {printf "%.1f", m - r}')
bound_rate=$(awk -v o="$drain_others" -v f="$floor_client" -v c="$(nproc)" \
  'BEGIN {if (o + f > 0) printf "%.0f", c * 1e6 / (o + f); else print 0}')
bound_r=$(ratio "$bound_rate" "$(printf '%s\n' "${drain_pg[@]}" | mean)")
in_r=$(ratio "$(printf '%s\n' "${in_relay[@]}" | mean)" "$(printf '%s\n' "${in_pg[@]}" | mean)")

echo
printf '%-62s %-10s %-8s %s\n' "figure" "measured" "target" "verdict"
row() { printf '%-62s %-10s %-8s %s\n' "$1" "$2" "$3" "$4"; }
row "1. create: API / pgbench ($create_api / $create_pg)" "$create_r" ">= 0.9" "$(verdict "$create_r" 0.9 min)"
row "   floor of the required stack / pgbench ($create_floor)" "$(ratio "$create_floor" "$create_pg")" "" "(reference)"
row "1. API CPU per create (us)" "$cpu_api" "<= 80" "$(verdict "$cpu_api" 80 max)"
row "   floor of the required stack, CPU per create (us)" "$cpu_floor" "" "(reference)"
row "   API, each create with an Idempotency-Key ($keyed_rate/s), CPU (us)" "$keyed_us" "" "(reference)"
row "1. HTTP p99 / p50 at $half orders/s ($p99_half / $p50_half ms)" "$tail_r" "<= 3" "$(verdict "$tail_r" 3 max)"
row "   floor of the required stack, same rate ($p99_floor / $p50_floor ms)" "$(ratio "$p99_floor" "$p50_floor")" "" "(reference)"
row "2. GET one order: API / pgbench" "$get_r" ">= 0.9" "$(verdict "$get_r" 0.9 min)"
row "   floor of the required stack / pgbench" "$(read_ratio get_floor get_pg)" "" "(reference)"
row "   bound: (PG + pgbench) / (PG + floor + wrk) CPU per read" "$(read_bound get)" "" "(reference)"
row "2. list 20: API / pgbench" "$list_r" ">= 0.9" "$(verdict "$list_r" 0.9 min)"
row "   floor of the required stack / pgbench" "$(read_ratio list_floor list_pg)" "" "(reference)"
row "   bound: (PG + pgbench) / (PG + floor + wrk) CPU per read" "$(read_bound list)" "" "(reference)"
row "3. relay CPU per published event (us)" "$cpu_relay" "<= 25" "$(verdict "$cpu_relay" 25 max)"
row "   the same, alternated with the floor below" "$(printf '%s\n' "${cpu_relay2[@]}" | mean)" "" "(reference)"
row "   floor of the required stack, CPU per event (us)" "$(printf '%s\n' "${cpu_pubfloor[@]}" | mean)" "" "(reference)"
row "3. drain: relay / PostgreSQL claim+delete" "$drain_r" ">= 0.8" "$(verdict "$drain_r" 0.8 min)"
row "   relay's own CPU per row in the drain / its floor: pgbench + raw producer (us)" "$(printf '%s\n' "${split_relay[@]}" | mean1) / $floor_client" "" "(reference)"
row "   bound: cores / (machine in the drain - relay + floor) = $bound_rate rows/s, / PG" "$bound_r" "" "(reference)"
row "4. commit -> ack p99 at 1,000/s (ms; raw producer p99 $raw_p99)" "$ack_p99" "<= 20" "$(verdict "$ack_p99" 20 max)"
row "4. relay share p99 (ms; claim p99 $claim_p99, SELECT 1 p99 $rtt_p99)" "$share_p99" "<= 5" "$(verdict "$share_p99" 5 max)"
row "   share floor p99, a bare claim loop at a 10 ms poll / back to back (ms)" "$share_floor_poll / $share_floor_spin" "" "(reference)"
row "5. inbound: relay / pgbench" "$in_r" ">= 0.8" "$(verdict "$in_r" 0.8 min)"
row "   floor of the required stack / pgbench" "$(ratio "$(printf '%s\n' "${in_floor[@]}" | mean)" "$(printf '%s\n' "${in_pg[@]}" | mean)")" "" "(reference)"
row "6. order-api peak RSS (MB)" "$rss_api" "<= 60" "$(verdict "$rss_api" 60 max)"
row "6. order-relay peak RSS (MB)" "$rss_relay" "<= 60" "$(verdict "$rss_relay" 60 max)"
