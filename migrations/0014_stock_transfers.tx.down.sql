DROP TABLE stock_transfers_in;
DROP TABLE stock_transfers_out;
