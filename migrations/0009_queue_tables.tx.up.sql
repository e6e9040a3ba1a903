-- The queue tables (outbox, stock_moves, webhook_tasks, inbox) churn: every row is
-- written, updated or deleted within seconds. Vacuum them after a small share of
-- dead rows instead of PostgreSQL's default 20%, so the relay's claim never walks
-- thousands of dead index entries; leave room on each outbox page so a claim (which
-- changes no indexed column) is a HOT update.
ALTER TABLE outbox SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE stock_moves SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE webhook_tasks SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE inbox SET (autovacuum_vacuum_scale_factor = 0.05);
