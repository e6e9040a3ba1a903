-- Stock shared between regions by escrow (the demarcation protocol): each region's
-- database holds its region's share of a SKU as its inventory rows, sells only from
-- it, and moves stock to another region by a transfer. The giver's debit and its
-- outgoing record are one transaction (a grant); the receiver credits a transfer once,
-- however often its grant arrives. Stock in transit (granted, not yet credited) may be
-- delayed by a partition, never created: the sum over regions of on_hand plus what is
-- in transit never grows.

-- One row per transfer a region was asked for (its id is the request's: a request that
-- comes twice is granted once); given is what it could spare, 0 included.
CREATE TABLE stock_transfers_out (
    id         uuid PRIMARY KEY,
    sku        text NOT NULL REFERENCES products (sku),
    to_region  text NOT NULL CHECK (length(to_region) BETWEEN 1 AND 64),
    asked      integer NOT NULL CHECK (asked > 0),
    given      integer NOT NULL CHECK (given >= 0 AND given <= asked),
    granted_at timestamptz NOT NULL
);

-- One row per grant a region credited.
CREATE TABLE stock_transfers_in (
    id          uuid PRIMARY KEY,
    sku         text NOT NULL REFERENCES products (sku),
    from_region text NOT NULL CHECK (length(from_region) BETWEEN 1 AND 64),
    warehouse   text NOT NULL CHECK (length(warehouse) BETWEEN 1 AND 64),
    quantity    integer NOT NULL CHECK (quantity >= 0),
    credited_at timestamptz NOT NULL
);
