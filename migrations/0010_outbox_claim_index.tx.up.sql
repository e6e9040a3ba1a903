-- The relay's claim reads the unpublished rows in id order (this index) and asks, for
-- each candidate, whether it is the first unpublished row of its aggregate (the
-- (aggregate_id, id) index). Both indexes were partial on "published_at IS NULL", so
-- with statistics taken while every row was published (a quiet outbox) the planner
-- could answer the per-candidate question with this index too, walking the backlog once
-- per candidate: a flash sale's backlog then stalled the relay. "id > 0" (always true:
-- ids start at 1) is in the claim's own WHERE and in no other query, so the claim can
-- use this index and the per-candidate lookup can only use (aggregate_id, id).
-- Building it takes a short write lock on the outbox (a partial index: one pass).
CREATE INDEX outbox_claimable_idx ON outbox (id) WHERE published_at IS NULL AND id > 0;
DROP INDEX outbox_unpublished_idx;
