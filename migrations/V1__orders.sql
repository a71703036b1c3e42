-- Orders, their line items and their status history.
-- Ids are UUIDv7 (time ordered), so "newest first" is "id descending" and a
-- page cursor is simply the last id seen.

CREATE TABLE orders (
    id                    uuid        PRIMARY KEY,
    user_id               text        NOT NULL,
    status                text        NOT NULL
        CHECK (status IN ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    currency              char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_amount          bigint      NOT NULL CHECK (total_amount >= 0),
    version               bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    shipping_address      jsonb,
    carrier               text,
    tracking_number       text,
    cancellation_reason   text,
    payment_id            text,
    inventory_reserved_at timestamptz,
    reservation_id        text,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);

-- A user's orders, newest first, optionally filtered by status.
CREATE INDEX orders_user_id_id_idx ON orders (user_id, id DESC);
-- Admin listing filtered by status, newest first (unfiltered uses the pkey).
CREATE INDEX orders_status_id_idx ON orders (status, id DESC);

CREATE TABLE order_items (
    order_id    uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no     integer NOT NULL CHECK (line_no >= 1),
    product_id  text    NOT NULL CHECK (char_length(product_id) BETWEEN 1 AND 64),
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_price  bigint  NOT NULL CHECK (unit_price BETWEEN 0 AND 1000000000),
    line_total  bigint  NOT NULL CHECK (line_total = unit_price * quantity),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, product_id)
);

CREATE TABLE order_status_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status text,
    to_status   text        NOT NULL,
    reason      text,
    actor       text        NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE INDEX order_status_history_order_id_idx ON order_status_history (order_id, id);
