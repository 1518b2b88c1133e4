-- A self-contained pipeline: generated orders, counted and summed per product category.
-- Run it with:  cargo run --release -- run examples/quickstart.sql
CREATE TABLE orders (
  order_id BIGINT,
  category INT,
  amount   INT
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '100000',
  'rows-per-second' = '10000000',
  'fields.order_id.kind' = 'sequence',
  'fields.order_id.start' = '1',
  'fields.order_id.end' = '100000',
  'fields.category.min' = '1',
  'fields.category.max' = '5',
  'fields.amount.min' = '1',
  'fields.amount.max' = '100'
);

SELECT category, COUNT(*) AS orders, SUM(amount) AS total
FROM orders
WHERE amount > 10
GROUP BY category;
