ALTER TABLE products DROP COLUMN updated_in;
