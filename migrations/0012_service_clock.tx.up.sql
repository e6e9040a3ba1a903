-- Every row's time comes from the service's clock (one clock, injected; tests may fix
-- it), never from PostgreSQL's: the defaults go, so an INSERT that forgets a time fails
-- (NOT NULL) instead of taking the server's.
ALTER TABLE products ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE inventory ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE carts ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE cart_items ALTER COLUMN added_at DROP DEFAULT;
ALTER TABLE orders ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE reservations ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE idempotency_keys ALTER COLUMN created_at DROP DEFAULT;
ALTER TABLE outbox ALTER COLUMN created_at DROP DEFAULT;
ALTER TABLE payments ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE inbox ALTER COLUMN processed_at DROP DEFAULT;
ALTER TABLE webhooks ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE webhook_tasks ALTER COLUMN created_at DROP DEFAULT, ALTER COLUMN updated_at DROP DEFAULT;
ALTER TABLE stock_moves ALTER COLUMN created_at DROP DEFAULT;
