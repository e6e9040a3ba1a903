-- The requests a region made for stock (escrow's asking side): one row per
-- stock.transfer_requested it sent, answered when its grant is credited. The
-- rebalancer asks for a SKU only when no request of it is open and its last answer is
-- not too recent, so a short region asks once, not on every tick.
CREATE TABLE stock_transfer_requests (
    id           uuid PRIMARY KEY,
    sku          text NOT NULL REFERENCES products (sku),
    from_region  text NOT NULL CHECK (length(from_region) BETWEEN 1 AND 64),
    warehouse    text NOT NULL CHECK (length(warehouse) BETWEEN 1 AND 64),
    asked        integer NOT NULL CHECK (asked > 0),
    requested_at timestamptz NOT NULL,
    given        integer CHECK (given >= 0 AND given <= asked),
    answered_at  timestamptz
);

CREATE INDEX stock_transfer_requests_sku ON stock_transfer_requests (sku, requested_at DESC);
