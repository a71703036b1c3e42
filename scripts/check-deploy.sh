#!/usr/bin/env bash
# Checks the deployment files without Docker or Kubernetes (called by
# ./scripts/test.sh, so CI runs it too):
#   - yamllint of compose, chart values, alert rules and Prometheus/Grafana config;
#   - promtool check rules / check config;
#   - the Helm chart linted and rendered by real Helm (helm-python-sdk) for the
#     default and a production-like values file, every manifest validated
#     against the Kubernetes schemas (kubernetes-validate);
#   - a real Prometheus started here scrapes a running order-api and
#     order-relay: up == 1 for both, outbox metrics present.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

install_tools() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v yamllint >/dev/null || missing+=(yamllint)
  if [ ${#missing[@]} -gt 0 ]; then
    log "Installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
  if ! python3 -c "import helm_python, kubernetes_validate, yaml" 2>/dev/null; then
    log "Installing helm-python-sdk, kubernetes-validate, PyYAML (PyPI)"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
      "helm-python-sdk==0.2.2" "kubernetes-validate" "PyYAML"
  fi
}

install_tools

log "yamllint"
yamllint -s docker-compose.yml .yamllint charts/order-service/Chart.yaml charts/order-service/values.yaml \
  charts/order-service/ci charts/order-service/files deploy/prometheus deploy/grafana/provisioning

log "promtool"
promcheck=$(mktemp -d)
mkdir -p "$promcheck/rules"
cp deploy/prometheus/prometheus.yml "$promcheck/prometheus.yml"
cp charts/order-service/files/alerts.yml "$promcheck/rules/alerts.yml"
sed -i "s|/etc/prometheus/rules/alerts.yml|$promcheck/rules/alerts.yml|" "$promcheck/prometheus.yml"
promtool check rules charts/order-service/files/alerts.yml
promtool check config "$promcheck/prometheus.yml"
python3 -c "import json,sys; json.load(open('deploy/grafana/dashboards/order-service.json'))" &&
  echo "Grafana dashboard: valid JSON"

log "Helm chart (lint, render, Kubernetes schemas)"
python3 scripts/check_chart.py

log "A real Prometheus scrapes order-api and order-relay"
start_postgres
start_tansu
cargo build --locked --bins -q
DB=orders_deploycheck
as_postgres dropdb -p "$PG_PORT" --if-exists "$DB" >/dev/null
as_postgres createdb -p "$PG_PORT" -O orders "$DB"
URL="postgres://orders:orders@127.0.0.1:${PG_PORT}/${DB}"
DATABASE_URL="$URL" ./target/debug/order-api migrate >/dev/null 2>&1
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$promcheck"
}
trap cleanup EXIT
prefix="deploycheck.$(date +%s)."
DATABASE_URL="$URL" API_PORT=3203 RUST_LOG=warn ./target/debug/order-api serve >"$LOG_DIR/check-api.log" 2>&1 &
pids+=($!)
DATABASE_URL="$URL" RELAY_PORT=3204 KAFKA_TOPIC_PREFIX="$prefix" KAFKA_CONSUMER_GROUP="deploycheck-$$" \
  RUST_LOG=warn ./target/debug/order-relay serve >"$LOG_DIR/check-relay.log" 2>&1 &
pids+=($!)
WAIT_SECS=60 wait_for curl -fsS http://127.0.0.1:3203/health/ready || die "order-api did not start"
WAIT_SECS=60 wait_for curl -fsS http://127.0.0.1:3204/health/live || die "order-relay did not start"
cat >"$promcheck/scrape.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["$promcheck/rules/alerts.yml"]
scrape_configs:
  - job_name: order-api
    static_configs: [{targets: ["127.0.0.1:3203"]}]
  - job_name: order-relay
    static_configs: [{targets: ["127.0.0.1:3204"]}]
YAML
prometheus --config.file="$promcheck/scrape.yml" --storage.tsdb.path="$promcheck/data" \
  --web.listen-address=127.0.0.1:9190 >"$LOG_DIR/check-prometheus.log" 2>&1 &
pids+=($!)
query() { curl -fsS --get http://127.0.0.1:9190/api/v1/query --data-urlencode "query=$1"; }
has() { query "$1" | python3 -c "import json,sys; r=json.load(sys.stdin)['data']['result']; sys.exit(0 if r else 1)"; }
WAIT_SECS=60 wait_for has 'up{job="order-api"} == 1' || die "Prometheus: order-api is not up"
WAIT_SECS=60 wait_for has 'up{job="order-relay"} == 1' || die "Prometheus: order-relay is not up"
WAIT_SECS=60 wait_for has 'outbox_backlog' || die "Prometheus: no outbox_backlog from the relay"
WAIT_SECS=30 wait_for has 'relay_shards_owned' || die "Prometheus: no relay_shards_owned"
WAIT_SECS=30 wait_for has 'http_requests_total{job="order-api"}' || die "Prometheus: no http_requests_total"
# The OrderUpstreamBreakerOpen alert's series exists from the start (0 = closed).
WAIT_SECS=30 wait_for has 'upstream_breaker_open{job="order-api",service="product"} == 0' ||
  die "Prometheus: no upstream_breaker_open from the API"
query 'ALERTS' >/dev/null || die "Prometheus did not load the alert rules"
echo "Prometheus scraped order-api and order-relay: up == 1 for both, outbox metrics present."
echo "deploy checks passed"
