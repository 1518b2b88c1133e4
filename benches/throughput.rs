//! Throughput and footprint benchmarks of the foundation (figures go to docs/performance.md).
//!
//! `cargo bench --bench throughput` prints, at parallelism 1:
//! - datagen -> filter -> blackhole: rows/s
//! - datagen -> GROUP BY over 10 K keys -> blackhole: rows/s
//! - peak RSS of a stateless job (measured in a child process running only that job)
//! - wall time of `streamsql run` on a trivial bounded job (median of 20 runs)
//!
//! Set `ROWS` to change the row count (default 5 000 000).

use std::process::Command;
use std::time::Instant;

use streamsql::engine::config::Configuration;
use streamsql::Streamsql;

/// The same allocator as the `streamsql` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(sql: &str) -> f64 {
    let mut conf = Configuration::new();
    conf.set("parallelism.default", "1").expect("valid key");
    let mut s = Streamsql::new(conf);
    let start = Instant::now();
    let exec = s.execute("bench.sql", sql).expect("valid pipeline");
    exec.job
        .expect("an INSERT runs a job")
        .wait()
        .expect("job succeeds");
    start.elapsed().as_secs_f64()
}

fn datagen(rows: u64, extra: &str) -> String {
    format!(
        "CREATE TABLE src (id BIGINT, k INT, v INT) WITH (
           'connector' = 'datagen', 'number-of-rows' = '{rows}', 'rows-per-second' = '1000000000',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{rows}',
           'fields.k.min' = '0', 'fields.k.max' = '9999', 'fields.v.min' = '0', 'fields.v.max' = '1000'{extra});"
    )
}

fn stateless(rows: u64) -> String {
    format!(
        "{} CREATE TABLE snk (id BIGINT, v INT) WITH ('connector' = 'blackhole');
         INSERT INTO snk SELECT id, v FROM src WHERE v % 2 = 0;",
        datagen(rows, "")
    )
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_000_000);
    if std::env::var("STREAMSQL_BENCH_RSS_CHILD").is_ok() {
        run(&stateless(rows));
        println!("{}", peak_rss_kib().unwrap_or(0));
        return;
    }
    // cargo passes `--bench`; ignore arguments.
    let secs = run(&stateless(rows));
    println!(
        "datagen -> filter -> blackhole, p=1: {rows} rows in {secs:.3} s = {:.2} M rows/s",
        rows as f64 / secs / 1e6
    );
    let grouped = format!(
        "{} CREATE TABLE snk (k INT, n BIGINT, s INT) WITH ('connector' = 'blackhole');
         INSERT INTO snk SELECT k, COUNT(*), SUM(v) FROM src GROUP BY k;",
        datagen(rows, "")
    );
    let secs = run(&grouped);
    println!(
        "datagen -> GROUP BY 10K keys -> blackhole, p=1: {rows} rows in {secs:.3} s = {:.2} M rows/s",
        rows as f64 / secs / 1e6
    );
    if let Ok(exe) = std::env::current_exe() {
        let out = Command::new(exe)
            .env("STREAMSQL_BENCH_RSS_CHILD", "1")
            .env("ROWS", rows.to_string())
            .output();
        if let Ok(out) = out {
            let kib = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("peak RSS of the stateless job (whole process): {kib} KiB");
        }
    }
    let dir = std::env::temp_dir().join(format!("streamsql-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trivial = dir.join("trivial.sql");
    std::fs::write(&trivial, "SELECT 1;").expect("write");
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_streamsql"))
            .arg("run")
            .arg(&trivial)
            .output()
            .expect("streamsql runs");
        assert!(status.status.success());
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "`streamsql run` of a trivial bounded job: median {:.1} ms (min {:.1}, max {:.1}) over 20 runs",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
