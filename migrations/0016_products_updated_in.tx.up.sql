-- With several regions the catalog is kept alike by events (product.upserted): each
-- region applies another's change only if it is newer, by (updated_at, updated_in), so
-- two admins editing one product in two regions at once converge on the same row
-- everywhere. updated_in is the region whose admin made the change ('' in a deployment
-- of one region).
ALTER TABLE products ADD COLUMN updated_in text NOT NULL DEFAULT '';
