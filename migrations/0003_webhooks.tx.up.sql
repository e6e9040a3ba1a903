-- Partner webhook endpoints. The secret signs deliveries (HMAC-SHA256); it is shown once.
CREATE TABLE webhooks (
    id                   uuid PRIMARY KEY,
    url                  text NOT NULL,
    events               text[] NOT NULL,
    secret               text NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz
);

-- One delivery task per (endpoint, event). Tasks of one order and endpoint form a chain
-- delivered in sequence order: only the head of a chain is PENDING (queued for the
-- delivery worker); the rest wait as QUEUED and are promoted one by one.
CREATE TABLE webhook_tasks (
    id           uuid PRIMARY KEY,
    webhook_id   uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    order_id     text NOT NULL,
    sequence     integer NOT NULL,
    body         jsonb NOT NULL,
    status       text NOT NULL CHECK (status IN ('QUEUED', 'PENDING', 'DELIVERED', 'PAUSED', 'DEAD', 'CANCELLED')),
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_tasks_chain_idx ON webhook_tasks (webhook_id, order_id, sequence);
CREATE INDEX webhook_tasks_open_idx ON webhook_tasks (webhook_id, status) WHERE status IN ('QUEUED', 'PENDING', 'PAUSED');

-- Every delivery attempt, for webhookDeliveries.
CREATE TABLE webhook_deliveries (
    id           uuid PRIMARY KEY,
    webhook_id   uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    task_id      uuid NOT NULL,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    attempt      integer NOT NULL,
    status_code  integer,
    latency_ms   integer,
    error        text,
    delivered_at timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_page_idx ON webhook_deliveries (webhook_id, delivered_at DESC, id DESC);
