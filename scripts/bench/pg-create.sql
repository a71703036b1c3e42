-- pgbench: the writes of one order creation in one round trip, as the API
-- makes them (scripts/bench.sh): order, 2 items, history row, outbox row
-- with the same ~540-byte envelope, time-ordered (UUIDv7-like) ids, the
-- orders spread over 1,000 users as a shop's are (with all of them under
-- one user, the list's plan in figure 2 walked that user's newer orders).
WITH v AS (
  SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || substr(md5(random()::text), 1, 20))::uuid AS id,
         (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || substr(md5(random()::text), 1, 20))::uuid AS eid,
         now() AS at,
         concat('pgbench-', (random() * 999)::int) AS uid
), o AS (
  INSERT INTO orders (id, user_id, status, currency, total_amount, version, shipping_address, created_at, updated_at)
  SELECT v.id, v.uid, 'PENDING', 'USD', 4498, 1,
         '{"name": "Bench","line1": "1 Main St","city": "X","postalCode": "1","country": "US"}'::jsonb, v.at, v.at
  FROM v RETURNING id
), i AS (
  INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price, line_total)
  SELECT o.id, t.n::int, t.p, t.q, t.u, t.l FROM o,
    unnest(ARRAY['sku-1','sku-2'], ARRAY[2,1]::int4[], ARRAY[1999,500]::int8[], ARRAY[3998,500]::int8[])
    WITH ORDINALITY AS t(p, q, u, l, n)
), h AS (
  INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at)
  SELECT o.id, NULL, 'PENDING', NULL, concat('user', chr(58), v.uid), v.at FROM o, v
), ob AS (
  INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, headers, shard)
  SELECT v.eid, o.id, 1, 'order.placed', 'order.placed',
    json_build_object('eventId', v.eid, 'eventType', 'order.placed', 'occurredAt', v.at,
      'orderId', o.id, 'userId', v.uid, 'version', 1,
      'data', json_build_object(
        'items', '[{"productId": "sku-1","quantity": 2,"unitPrice": 1999,"lineTotal": 3998},{"productId": "sku-2","quantity": 1,"unitPrice": 500,"lineTotal": 500}]'::json,
        'totalAmount', 4498, 'currency', 'USD',
        'shippingAddress', '{"name": "Bench","line1": "1 Main St","city": "X","postalCode": "1","country": "US"}'::json)),
    '{}'::jsonb, abs(hashtext(o.id::text)) % 32
  FROM o, v
)
SELECT count(*) FROM o;
