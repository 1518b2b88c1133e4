SET 'execution.checkpointing.interval' = '1 h';
SET 'state.checkpoints.dir' = '/tmp/streamsql-bench-restore/checkpoints';
SET 'execution.checkpointing.savepoint-dir' = '/tmp/streamsql-bench-restore/savepoints';
CREATE TABLE src (k BIGINT, s STRING) WITH ('connector' = 'datagen', 'rows-per-second' = '400000',
  'fields.k.min' = '0', 'fields.k.max' = '999999', 'fields.s.length' = '1000');
CREATE TABLE snk (k BIGINT, s STRING) WITH ('connector' = 'blackhole');
INSERT INTO snk SELECT k, MAX(s) FROM src GROUP BY k;
