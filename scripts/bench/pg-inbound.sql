-- pgbench: the transaction the relay's consumer runs for one
-- payment.authorized event (scripts/bench.sh): inbox row, the order locked
-- and read with its items, then order, history and outbox rows (an
-- `order.confirmed` envelope) in one statement; five round trips, like the
-- relay's. The orders are ffffffff-0000-7000-8000-<k>, k in 1..:orders.
\set k random(1, :orders)
BEGIN;
INSERT INTO processed_events (scope, event_key, topic, order_id, outcome)
  VALUES ('/payment-service', md5(random()::text), 'payment.authorized',
          ('ffffffff-0000-7000-8000-' || lpad(to_hex(:k::int), 12, '0'))::uuid, 'applied')
  ON CONFLICT (scope, event_key) DO NOTHING;
SELECT o.id, o.user_id, o.status, o.currency, o.total_amount, o.version AS v,
  o.shipping_address, o.carrier, o.tracking_number, o.cancellation_reason, o.payment_id,
  o.inventory_reserved_at, o.reservation_id, o.created_at, o.updated_at,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('productId', i.product_id,
      'quantity', i.quantity, 'unitPrice', i.unit_price, 'lineTotal', i.line_total)
      ORDER BY i.line_no), '[]'::jsonb) FROM order_items i WHERE i.order_id = o.id) AS items
FROM orders o WHERE o.id = ('ffffffff-0000-7000-8000-' || lpad(to_hex(:k::int), 12, '0'))::uuid FOR UPDATE \gset
WITH e AS (
  SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || substr(md5(random()::text), 1, 20))::uuid AS eid, now() AS at
), u AS (
  UPDATE orders SET status = 'CONFIRMED', version = :v::int8 + 1, updated_at = e.at,
    payment_id = concat('pay-', :k::int), carrier = NULL, tracking_number = NULL, cancellation_reason = NULL
  FROM e WHERE id = ('ffffffff-0000-7000-8000-' || lpad(to_hex(:k::int), 12, '0'))::uuid AND version = :v::int8
  RETURNING id
), h AS (
  INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
  SELECT u.id, 'PENDING', 'CONFIRMED', NULL, 'payment.authorized', e.at FROM u, e
), ob AS (
  INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, headers, shard)
  SELECT e.eid, u.id, :v::int8 + 1, 'order.confirmed', 'order.confirmed',
    json_build_object('eventId', e.eid, 'eventType', 'order.confirmed', 'occurredAt', e.at,
      'orderId', u.id, 'userId', 'bench', 'version', :v::int8 + 1,
      'data', json_build_object('paymentId', concat('pay-', :k::int))),
    '{}'::jsonb, abs(hashtext(u.id::text)) % 32
  FROM u, e
)
SELECT count(*) FROM u;
COMMIT;
