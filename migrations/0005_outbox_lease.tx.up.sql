-- The relay claims rows with a lease instead of holding a transaction across the
-- publish: a row is claimed (claimed_until in the future) by one relay, published, then
-- marked. A relay that dies leaves its claim to expire; no transaction and no row lock
-- waits on the broker.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;
ALTER TABLE outbox ADD COLUMN claim_token text;

-- One NOTIFY channel per schema: deployments that share a database in different schemas
-- do not wake each other's relays.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox.' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

-- A charge is recorded as attempted before the provider is called, so a provider report
-- arriving first (or instead of the call's answer) finds its amount and currency.
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN
    ('attempted', 'succeeded', 'requires_action', 'declined', 'refund_pending', 'refunded'));
