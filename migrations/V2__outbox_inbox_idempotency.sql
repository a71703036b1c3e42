-- The transactional outbox, the consumer's inbox and the API's idempotency keys.

CREATE TABLE outbox (
    -- Assigned at insert; within one order the row lock on `orders` makes the
    -- ids (and commits) follow the order's version.
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid        NOT NULL UNIQUE,
    aggregate_id      uuid        NOT NULL,
    aggregate_version bigint      NOT NULL,
    event_type        text        NOT NULL,
    topic             text        NOT NULL,
    payload           jsonb       NOT NULL,
    headers           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    shard             integer     NOT NULL CHECK (shard >= 0),
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    parked_at         timestamptz,
    UNIQUE (aggregate_id, aggregate_version)
);

-- The relay claims a shard's rows in id order.
CREATE INDEX outbox_shard_id_idx ON outbox (shard, id);

-- Inbox: one row per consumed event key; a conflict means "already applied".
CREATE TABLE processed_events (
    event_key    text        PRIMARY KEY,
    topic        text        NOT NULL,
    order_id     uuid,
    outcome      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- Idempotency-Key of POST /api/orders, per user.
CREATE TABLE idempotency_keys (
    user_id      text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
