DROP TABLE stock_transfer_requests;
