-- Delivery that cannot stall (README "Retries and delays"): retries and delays are
-- scheduled in PostgreSQL, not in broker TTL queues.

-- A retry of a consumer's message is an outbox row due at available_at and sent
-- straight to that consumer's queue (destination), not to the events exchange.
ALTER TABLE outbox ADD COLUMN available_at timestamptz;
ALTER TABLE outbox ADD COLUMN destination text;

-- A partner delivery is attempted when due: the head of each (endpoint, order) chain is
-- PENDING with its next attempt's time; a worker leases it while it posts.
ALTER TABLE webhook_tasks ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE webhook_tasks ADD COLUMN lease_until timestamptz;
UPDATE webhook_tasks SET next_attempt_at = now() WHERE status = 'PENDING';
CREATE INDEX webhook_tasks_due_idx ON webhook_tasks (next_attempt_at) WHERE status = 'PENDING';
