DROP INDEX orders_customer_failed_idx;
DROP INDEX orders_customer_unpaid_idx;
ALTER TABLE products DROP COLUMN max_per_customer;
