DROP TABLE IF EXISTS outbox, idempotency_keys, reservations, order_items, orders, cart_items, carts, inventory, products;
