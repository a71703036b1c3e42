-- pgbench: GET /api/orders?limit=20 of one user as the API reads it: the
-- same statement, with the user and the limit as parameters (-M prepared).
\set limit 21
SELECT o.id, o.user_id, o.status, o.currency, o.total_amount, o.version,
  o.shipping_address, o.carrier, o.tracking_number, o.cancellation_reason, o.payment_id,
  o.inventory_reserved_at, o.reservation_id, o.created_at, o.updated_at,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('productId', i.product_id,
      'quantity', i.quantity, 'unitPrice', i.unit_price, 'lineTotal', i.line_total)
      ORDER BY i.line_no), '[]'::jsonb) FROM order_items i WHERE i.order_id = o.id) AS items
FROM orders o WHERE o.user_id = :user ORDER BY o.id DESC LIMIT :limit;
