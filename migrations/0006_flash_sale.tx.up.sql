-- Flash sales (README "Reservation strategies").

-- A paid order's sale is recorded here and folded into inventory in batches by the
-- sweeper, so paying an order never waits on the inventory row the checkouts of the
-- same SKU hold. A sale moves on_hand and reserved down by the same amount, so it never
-- changes what is available: only the visible figures (inventory_levels) need it at
-- once. No foreign key: its check would lock the inventory row.
CREATE TABLE stock_moves (
    id         bigserial PRIMARY KEY,
    sku        text NOT NULL,
    warehouse  text NOT NULL,
    sold       integer NOT NULL CHECK (sold > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_moves_sku_idx ON stock_moves (sku, warehouse);

-- What inventory holds once every pending sale is folded in: what the API shows.
CREATE VIEW inventory_levels AS
SELECT i.sku, i.warehouse,
       i.on_hand - COALESCE(m.sold, 0) AS on_hand,
       i.reserved - COALESCE(m.sold, 0) AS reserved
FROM inventory i
LEFT JOIN (SELECT sku, warehouse, sum(sold)::int AS sold FROM stock_moves GROUP BY sku, warehouse) m
    USING (sku, warehouse);

-- The optimistic strategy's compare-and-set version.
ALTER TABLE inventory ADD COLUMN version bigint NOT NULL DEFAULT 0;

-- A checkout writes its idempotency key first (ON CONFLICT DO NOTHING finds a duplicate
-- without an advisory lock) and its order later in the same transaction.
ALTER TABLE idempotency_keys ALTER CONSTRAINT idempotency_keys_order_id_fkey DEFERRABLE INITIALLY DEFERRED;
