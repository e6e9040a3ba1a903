DROP INDEX IF EXISTS webhook_tasks_due_idx;
ALTER TABLE webhook_tasks DROP COLUMN lease_until;
ALTER TABLE webhook_tasks DROP COLUMN next_attempt_at;
ALTER TABLE outbox DROP COLUMN destination;
ALTER TABLE outbox DROP COLUMN available_at;
