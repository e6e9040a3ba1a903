-- Catalog: products and stock per SKU per warehouse.
CREATE TABLE products (
    sku         text PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inventory (
    sku        text NOT NULL REFERENCES products (sku),
    warehouse  text NOT NULL CHECK (length(warehouse) BETWEEN 1 AND 64),
    on_hand    integer NOT NULL CHECK (on_hand >= 0),
    reserved   integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, warehouse),
    CONSTRAINT inventory_reserved_le_on_hand CHECK (reserved <= on_hand)
);

-- Carts belong to one customer; a cart that became an order is closed.
CREATE TABLE carts (
    id          uuid PRIMARY KEY,
    customer_id text NOT NULL,
    order_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX carts_customer_idx ON carts (customer_id);

CREATE TABLE cart_items (
    cart_id  uuid NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    sku      text NOT NULL REFERENCES products (sku),
    quantity integer NOT NULL CHECK (quantity > 0),
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, sku)
);

CREATE TABLE orders (
    id                     uuid PRIMARY KEY,
    customer_id            text NOT NULL,
    status                 text NOT NULL CHECK (status IN
        ('PENDING_PAYMENT', 'PAID', 'SHIPPED', 'PAYMENT_FAILED', 'CANCELLED', 'EXPIRED')),
    total_cents            bigint NOT NULL CHECK (total_cents >= 0),
    currency               char(3) NOT NULL,
    -- The provider's token (tok_..., pm_...), never a card number; cleared once the
    -- payment has an outcome.
    payment_token          text,
    reservation_expires_at timestamptz,
    tracking_number        text,
    payment_failure_reason text,
    -- The sequence number of the order's latest event (1 = order.placed).
    event_seq              integer NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_page_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_pending_expiry_idx ON orders (reservation_expires_at)
    WHERE status = 'PENDING_PAYMENT';

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          integer NOT NULL,
    sku              text NOT NULL REFERENCES products (sku),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- One row per (order, sku, warehouse) allocation. HELD counts in inventory.reserved;
-- SOLD left on_hand with the sale; RELEASED went back to available.
CREATE TABLE reservations (
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku        text NOT NULL,
    warehouse  text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity > 0),
    status     text NOT NULL DEFAULT 'HELD' CHECK (status IN ('HELD', 'SOLD', 'RELEASED')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku, warehouse),
    FOREIGN KEY (sku, warehouse) REFERENCES inventory (sku, warehouse)
);
CREATE INDEX reservations_held_expiry_idx ON reservations (expires_at) WHERE status = 'HELD';

-- Checkout idempotency keys, scoped by customer (as Stripe scopes them by account).
CREATE TABLE idempotency_keys (
    customer_id  text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Transactional outbox. A row is written in the transaction of the change it announces;
-- a relay claims unpublished rows with FOR UPDATE SKIP LOCKED (no cursor, so a row that
-- commits late is never skipped) and sets published_at once the broker confirmed.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    type         text NOT NULL,
    aggregate_id text NOT NULL,
    payload      jsonb NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_unpublished_aggregate_idx ON outbox (aggregate_id, id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
