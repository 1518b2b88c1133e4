
CREATE TABLE src (k BIGINT, v INT) WITH ('connector' = 'datagen', 'number-of-rows' = '5000000', 'rows-per-second' = '1000000000',
  'fields.k.min' = '0', 'fields.k.max' = '999999', 'fields.v.min' = '0', 'fields.v.max' = '100');
CREATE TABLE snk (k BIGINT, n BIGINT, s INT) WITH ('connector' = 'blackhole');
INSERT INTO snk SELECT k, COUNT(*), SUM(v) FROM src GROUP BY k;
