-- One payment per order: what the provider said, never card data.
CREATE TABLE payments (
    order_id            uuid PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    provider            text NOT NULL,
    provider_payment_id text,
    amount_cents        bigint NOT NULL CHECK (amount_cents >= 0),
    currency            char(3) NOT NULL,
    status              text NOT NULL CHECK (status IN
        ('succeeded', 'requires_action', 'declined', 'refund_pending', 'refunded')),
    failure_reason      text,
    provider_refund_id  text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX payments_provider_id_idx ON payments (provider, provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;

-- The events each consumer has processed, written in the transaction of its effects,
-- so a redelivered event changes nothing. Stripe webhook events use it too.
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_idx ON inbox (processed_at);
