-- Inbound idempotency keys are scoped by their source: the same id on
-- payment.authorized and on inventory.reserved is two events. The scope is
-- the record's `ce_source` header, else its topic without KAFKA_TOPIC_PREFIX.
-- Rows written before this migration take their topic as scope (the prefix,
-- if any, is unknown here); they expire with INBOX_RETENTION_HOURS.

ALTER TABLE processed_events ADD COLUMN scope text;
UPDATE processed_events SET scope = topic;
ALTER TABLE processed_events ALTER COLUMN scope SET NOT NULL;
ALTER TABLE processed_events DROP CONSTRAINT processed_events_pkey;
ALTER TABLE processed_events ADD PRIMARY KEY (scope, event_key);
