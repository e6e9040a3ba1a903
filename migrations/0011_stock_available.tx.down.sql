DROP VIEW stock_available;
