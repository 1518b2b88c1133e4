-- Event-time windows over a CSV file: orders per category in 20-minute tumbling windows.
-- Run it from the repository root:  cargo run --release -- run examples/windowed_orders.sql
CREATE TABLE orders (
  order_id  BIGINT,
  user_id   BIGINT,
  product   STRING,
  category  STRING,
  quantity  INT,
  price     BIGINT,
  amount    DECIMAL(10, 2),
  currency  STRING,
  status    STRING,
  ref_code  STRING,
  note      STRING,
  order_ts  TIMESTAMP(3),
  WATERMARK FOR order_ts AS order_ts - INTERVAL '30' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = 'examples/data/orders.csv',
  'format' = 'csv',
  'csv.null-literal' = ''
);

CREATE TABLE per_window (
  window_start TIMESTAMP(3),
  window_end   TIMESTAMP(3),
  category     STRING,
  orders       BIGINT,
  total        DECIMAL(38, 2)
) WITH (
  'connector' = 'print',
  'print-identifier' = 'windows'
);

INSERT INTO per_window
SELECT window_start, window_end, category, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_ts), INTERVAL '20' MINUTES))
GROUP BY window_start, window_end, category;
