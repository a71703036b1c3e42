-- `order.snapshot` events (`order-relay snapshot`) restate an order's
-- current version instead of adding 1, so they are exempt from the rule that
-- one order has one outbox row per version. Every other event keeps it.

ALTER TABLE outbox DROP CONSTRAINT outbox_aggregate_id_aggregate_version_key;

CREATE UNIQUE INDEX outbox_aggregate_version_key
    ON outbox (aggregate_id, aggregate_version)
    WHERE event_type <> 'order.snapshot';

-- `--since` selects orders by when they last changed.
CREATE INDEX orders_updated_at_idx ON orders (updated_at);
