-- Settings fixed at install that every binary must share. `outbox_shards`
-- (OUTBOX_SHARDS) is written by `migrate`; a binary whose value differs
-- refuses to start, since two shard counts would put one order's outbox rows
-- in two shards and let two relays publish them out of order.

CREATE TABLE pinned_settings (
    name      text        PRIMARY KEY,
    value     text        NOT NULL,
    pinned_at timestamptz NOT NULL DEFAULT now()
);
