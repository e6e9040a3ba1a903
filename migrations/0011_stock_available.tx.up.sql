-- What each SKU can still reserve, across its warehouses: the one definition of
-- availability, read by the catalog, the sold-out answers, the Redis strategy's
-- counters and analytics. A sale moves on_hand and reserved down together, so pending
-- sales (stock_moves) never change it. A filter on sku is pushed into the view.
CREATE VIEW stock_available AS
SELECT sku, sum(on_hand - reserved)::int AS available
FROM inventory
GROUP BY sku;
