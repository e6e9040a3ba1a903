DROP TABLE IF EXISTS inbox, payments;
