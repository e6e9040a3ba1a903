-- A NOTIFY in a transaction takes a database-wide lock at commit and holds it through
-- the WAL flush, so every checkout that wrote an event committed alone (no group
-- commit) while holding its row locks. Relays are now woken after the commit, outside
-- the transaction (outbox.Notifier: at once in the same process, by one coalesced
-- NOTIFY for the others), and poll as a fallback.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
