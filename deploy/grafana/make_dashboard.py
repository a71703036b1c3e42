#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/order-service.json (run after editing)."""
import json
import pathlib

PANELS = [
    ("Requests by route", "reqps", ['sum by (route) (rate(http_requests_total[1m]))'], "{{route}}"),
    ("Request latency by route (p50 / p99)", "s", [
        'histogram_quantile(0.5, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))',
        'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))',
    ], "{{route}}"),
    ("Errors by route (4xx, 5xx)", "reqps", [
        'sum by (route, status) (rate(http_requests_total{status=~"[45].."}[1m]))',
    ], "{{route}} {{status}}"),
    ("Orders created and transitions", "ops", [
        'sum(rate(orders_created_total[1m]))',
        'sum by (from, to) (rate(order_transitions_total[1m]))',
    ], "{{from}} -> {{to}}"),
    ("Outbox backlog (rows)", "short", ['max(outbox_backlog)', 'max(outbox_parked)'], "backlog / parked"),
    ("Oldest unpublished event (s)", "s", ['max(outbox_oldest_age_seconds)'], "oldest"),
    ("Publish latency, commit -> ack (p50 / p99)", "s", [
        'histogram_quantile(0.5, sum by (le) (rate(outbox_publish_latency_seconds_bucket[5m])))',
        'histogram_quantile(0.99, sum by (le) (rate(outbox_publish_latency_seconds_bucket[5m])))',
    ], "latency"),
    ("Published and failed by topic", "ops", [
        'sum by (topic) (rate(outbox_published_total[1m]))',
        'sum by (topic, fault) (rate(outbox_publish_errors_total[1m]))',
    ], "{{topic}} {{fault}}"),
    ("Consumed events by outcome", "ops", [
        'sum by (topic, outcome) (rate(consumed_events_total[1m]))',
    ], "{{topic}} {{outcome}}"),
    ("Dead-lettered events", "short", ['sum by (topic) (increase(consumer_dead_lettered_total[10m]))'], "{{topic}}"),
    ("Consumer lag by partition", "short", ['max by (topic, partition) (consumer_lag)'], "{{topic}}[{{partition}}]"),
    ("Consumer retries by reason; partitions retrying (s)", "short", [
        'sum by (topic, reason) (rate(consumer_retries_total[5m]))',
        'max by (topic, partition) (consumer_partition_retrying_seconds) > 0',
    ], "{{topic}} {{reason}}{{partition}}"),
    ("Consumer rebalances and assigned partitions", "short", [
        'sum by (kind) (increase(consumer_rebalances_total[10m]))',
        'sum(consumer_assigned_partitions)',
    ], "{{kind}}"),
    ("Relay shards owned", "short", ['sum(relay_shards_owned)'], "shards"),
    ("Database pool", "short", ['sum by (service) (db_pool_connections)', 'sum by (service) (db_pool_waiting_requests)'], "{{service}}"),
]


def panel(i, title, unit, exprs, legend):
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(65 + j), "expr": e, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": "prometheus"}}
            for j, e in enumerate(exprs)
        ],
    }


dashboard = {
    "uid": "order-service",
    "title": "Order service",
    "tags": ["orders", "outbox"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-1h", "to": "now"},
    "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
}
out = pathlib.Path(__file__).parent / "dashboards" / "order-service.json"
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"wrote {out}")
