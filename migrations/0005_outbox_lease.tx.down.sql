UPDATE payments SET status = 'declined' WHERE status = 'attempted';
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check CHECK (status IN
    ('succeeded', 'requires_action', 'declined', 'refund_pending', 'refunded'));

CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

ALTER TABLE outbox DROP COLUMN claim_token;
ALTER TABLE outbox DROP COLUMN claimed_until;
