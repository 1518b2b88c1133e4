//! `table.exec.state.ttl` end to end: an endless stream of new keys (datagen's sequence, throttled)
//! into a non-windowed aggregation, checkpointed often. With a TTL the state the checkpoints
//! record stays bounded (keys expire and the sweeper removes them, and the removals reach the
//! checkpoints); without one it grows with every key.

use std::path::Path;
use std::process::Command;

use streamsql_engine::checkpoint::stats::JsonValue as Value;

/// `keys` distinct keys at 20 000 rows per second, a checkpoint every 200 ms, with `settings`
/// (SET statements) first.
fn pipeline(checkpoints: &Path, ttl: Option<&str>, settings: &str, keys: u32) -> String {
    let ttl = ttl.map_or(String::new(), |t| {
        format!("SET 'table.exec.state.ttl' = '{t}';\n")
    });
    format!(
        "{ttl}{settings}SET 'execution.checkpointing.interval' = '200 ms';
SET 'state.checkpoints.dir' = '{}';
SET 'web.checkpoints.history' = '1000';
CREATE TABLE src (k BIGINT) WITH (
  'connector' = 'datagen',
  'rows-per-second' = '20000',
  'fields.k.kind' = 'sequence', 'fields.k.start' = '1', 'fields.k.end' = '{keys}'
);
CREATE TABLE sink (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT k, COUNT(*) FROM src GROUP BY k;
",
        checkpoints.display()
    )
}

/// Runs the pipeline to its end and returns the full state size of each completed checkpoint, in
/// checkpoint order.
fn state_sizes(name: &str, ttl: Option<&str>, settings: &str, keys: u32) -> Vec<u64> {
    let dir = std::env::temp_dir().join(format!("streamsql-ttl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let checkpoints = dir.join("checkpoints");
    let sql = dir.join("p.sql");
    std::fs::write(&sql, pipeline(&checkpoints, ttl, settings, keys)).expect("pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("run")
        .arg(&sql)
        .output()
        .expect("streamsql starts");
    assert!(
        out.status.success(),
        "the pipeline runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = std::fs::read_dir(&checkpoints)
        .expect("the checkpoint directory exists")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a job directory");
    let out = Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .arg("checkpoints")
        .arg(&job)
        .arg("--json")
        .output()
        .expect("streamsql starts");
    assert!(out.status.success());
    let v: Value = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .parse()
        .expect("JSON");
    let mut sizes: Vec<(u64, u64)> = v["history"]
        .as_array()
        .expect("a history")
        .iter()
        .filter(|h| h["status"].as_str() == Some("COMPLETED"))
        .filter_map(|h| Some((h["id"].as_u64()?, h["state_size"].as_u64()?)))
        .collect();
    sizes.sort_unstable();
    let _ = std::fs::remove_dir_all(&dir);
    sizes.into_iter().map(|(_, size)| size).collect()
}

/// The in-memory backend, full checkpoints.
const HASHMAP: &str = "SET 'state.backend.type' = 'hashmap';\n";

/// sled with a memory budget far below the state (most keys live only in sled, so the sweeper
/// reaches them in the store) and incremental checkpoints (the sweeper's removals are deltas).
const SLED_INCREMENTAL: &str = "SET 'state.backend.type' = 'sled';
SET 'state.backend.sled.memory-budget' = '512 kb';
SET 'execution.checkpointing.incremental' = 'true';
";

#[test]
fn state_stays_bounded_with_a_ttl_and_grows_without_one() {
    check_bounded("hashmap", HASHMAP, 60_000, "500 ms");
}

/// sled's checkpoints are slower and an incremental chain's size counts its delta files too, so
/// this one runs longer (six seconds of new keys) with a shorter TTL.
#[test]
fn state_stays_bounded_with_a_ttl_in_sled_over_its_budget_with_incremental_checkpoints() {
    check_bounded("sled", SLED_INCREMENTAL, 120_000, "300 ms");
}

fn check_bounded(name: &str, settings: &str, keys: u32, ttl: &str) {
    let without = state_sizes(&format!("{name}-off"), None, settings, keys);
    let with = state_sizes(&format!("{name}-on"), Some(ttl), settings, keys);
    assert!(
        without.len() >= 6 && with.len() >= 6,
        "enough checkpoints to compare: {without:?} / {with:?}"
    );
    // Without a TTL every key stays: the state only grows (until the input ends: a checkpoint
    // after that holds no state of the finished tasks, as in Flink).
    let full = *without.iter().max().expect("a checkpoint");
    let growing = without.iter().position(|&s| s == full).unwrap_or(0);
    assert!(
        growing >= 4 && without[..=growing].windows(2).all(|w| w[0] <= w[1]),
        "state without a TTL grows: {without:?}"
    );
    // With a TTL, once the first keys expired the state holds only the recent ones: about a
    // TTL's worth of keys, a fraction of all keys.
    let late = &with[with.len() / 2..];
    let bound = late.iter().copied().max().expect("a checkpoint");
    assert!(
        bound * 2 < full,
        "state with a TTL stays bounded (at most {bound} bytes in the second half, {full} bytes \
         without a TTL): {with:?} / {without:?}"
    );
}
