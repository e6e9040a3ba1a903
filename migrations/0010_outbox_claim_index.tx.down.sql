CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
DROP INDEX outbox_claimable_idx;
