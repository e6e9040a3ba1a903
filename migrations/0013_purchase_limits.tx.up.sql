-- Purchase limits. A product may cap the units one customer holds in its open and paid
-- orders (NULL: no cap), set by an admin. The checkout counts, under a lock on the
-- customer, that customer's unpaid orders, its recent failed payments and the units of
-- capped SKUs it holds: the two partial indexes keep the first two counts to the
-- customer's own rows of that status (the third walks orders_customer_page_idx).
ALTER TABLE products ADD COLUMN max_per_customer integer CHECK (max_per_customer > 0);
CREATE INDEX orders_customer_unpaid_idx ON orders (customer_id) WHERE status = 'PENDING_PAYMENT';
CREATE INDEX orders_customer_failed_idx ON orders (customer_id, updated_at) WHERE status = 'PAYMENT_FAILED';
