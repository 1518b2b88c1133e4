//! `streamsql bench`: runs the Nexmark queries of `examples/nexmark/` one by one, each in its own
//! `streamsql run` child process, and reports per query the throughput, the CPU time and peak
//! memory of the process, the checkpoints it took, and whether its result matches Flink's.
//!
//! Every query runs in a fresh process so that its CPU time and peak RSS are its own: the bench
//! starts itself as a small measuring parent (`--measure`) which starts `streamsql run`, waits for
//! it and reads `getrusage(RUSAGE_CHILDREN)`, which then covers exactly that one child. The query
//! file is rewritten before it runs: `events.num`, the generator's `base-time` (when given), the
//! side input's absolute path, and, for the result check, a `print` sink in place of the query's own
//! sink, whose changelog the bench folds into the final table (`+I`/`+U` add a row, `-U`/`-D`
//! remove one) to count its rows and hash them, the same fold `benches/flink/nexmark_flink.py`
//! applies to Flink's print output. A query that fails (for example "not supported") is reported
//! with its error and the bench goes on with the next one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use streamsql::checkpoints_cmd::find_stats_file;
use streamsql::engine::checkpoint::stats::CheckpointStatsTracker;

/// The queries Flink's Nexmark suite runs (q6 is not part of it: Flink cannot plan it).
const DEFAULT_QUERIES: [&str; 22] = [
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q10", "q11", "q12", "q13", "q14", "q15",
    "q16", "q17", "q18", "q19", "q20", "q21", "q22",
];

/// The side input file as the query files name it (relative to the repository root).
const SIDE_INPUT: &str = "examples/nexmark/data/side_input.txt";

/// Options of `streamsql bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Queries to run (file names without `.sql` in --dir); default q0..q22 as Flink's suite.
    queries: Vec<String>,
    /// The directory of the query files.
    #[arg(long, default_value = "examples/nexmark")]
    dir: PathBuf,
    /// Events each query's generator produces (rewrites `events.num`).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Parallelism of the jobs.
    #[arg(short = 'p', long, default_value_t = 1)]
    parallelism: usize,
    /// Checkpoint interval (execution.checkpointing.interval).
    #[arg(long, default_value = "10s")]
    checkpoint_interval: String,
    /// Run without checkpointing.
    #[arg(long)]
    no_checkpoint: bool,
    /// State backend (state.backend.type: sled or hashmap); default: the engine's default.
    #[arg(long)]
    state_backend: Option<String>,
    /// The generator's base time in epoch milliseconds (adds the `base-time` option; Flink's
    /// results were made with 1700000000000). Without it the generator starts at the wall clock,
    /// so only row counts are compared, not the rows' md5 (they carry timestamps).
    #[arg(long)]
    base_time: Option<i64>,
    /// Flink's results (`query,rows[,md5]` with a header; optional `parallelism` and `events`
    /// columns select the rows that apply): each query's final table is checked against it.
    #[arg(long)]
    expected: Option<PathBuf>,
    /// Check result row counts even without --expected (reported, not compared).
    #[arg(long)]
    check: bool,
    /// Only the result check, no timed run.
    #[arg(long)]
    no_timing: bool,
    /// Flink's timing table (benches/flink/nexmark-flink-timing.csv): adds the ratio of
    /// streamsql's throughput to Flink's per query.
    #[arg(long)]
    flink: Option<PathBuf>,
    /// Write the results as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The streamsql binary to run the queries with (default: this one).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Seconds after which a query's process is killed.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Scratch directory for rewritten queries, checkpoints and logs (default: a directory in
    /// the system's temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Extra configuration for every query (`-D key=value`, passed to `streamsql run`).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    define: Vec<String>,
    /// Internal: measure one child process, write its figures to this file.
    #[arg(long, hide = true, requires = "command")]
    measure: Option<PathBuf>,
    /// Internal: the measured command.
    #[arg(last = true, hide = true)]
    command: Vec<String>,
}

/// Runs the bench (or, with `--measure`, one measured child).
pub fn run(args: &BenchArgs) -> ExitCode {
    if let Some(out) = &args.measure {
        return measure(out, &args.command, Duration::from_secs(args.timeout));
    }
    match bench(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("streamsql bench: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// What the measuring parent saw of its one child.
#[derive(Default)]
struct Measured {
    /// Exit code, `None` when killed (by a signal or the timeout).
    code: Option<i32>,
    timed_out: bool,
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    max_rss_kb: i64,
}

fn measure(out: &Path, command: &[String], timeout: Duration) -> ExitCode {
    let Some((program, rest)) = command.split_first() else {
        eprintln!("streamsql bench --measure: no command");
        return ExitCode::FAILURE;
    };
    let start = Instant::now();
    let mut child = match Command::new(program).args(rest).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("streamsql bench: cannot start {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let wall_s = start.elapsed().as_secs_f64();
    // The child has been waited for, so the children's usage is exactly its own.
    let (user_s, sys_s, max_rss_kb) =
        match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
            Ok(u) => (
                seconds(u.user_time()),
                seconds(u.system_time()),
                u.max_rss(),
            ),
            Err(_) => (0.0, 0.0, 0),
        };
    let code = status.and_then(|s| s.code());
    let line = format!(
        "code={} timed_out={} wall={wall_s} user={user_s} sys={sys_s} maxrss={max_rss_kb}\n",
        code.map_or("none".to_string(), |c| c.to_string()),
        timed_out
    );
    if let Err(e) = std::fs::write(out, line) {
        eprintln!("streamsql bench: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn seconds(t: nix::sys::time::TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

fn read_measured(path: &Path) -> Option<Measured> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut m = Measured::default();
    for kv in text.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "code" => m.code = v.parse().ok(),
            "timed_out" => m.timed_out = v == "true",
            "wall" => m.wall_s = v.parse().ok()?,
            "user" => m.user_s = v.parse().ok()?,
            "sys" => m.sys_s = v.parse().ok()?,
            "maxrss" => m.max_rss_kb = v.parse().ok()?,
            _ => {}
        }
    }
    Some(m)
}

/// One query's row of the report.
#[derive(Default)]
struct Outcome {
    query: String,
    /// `ok`, `failed`, `unsupported` or `timeout` (of the timed run, else of the result run).
    status: String,
    error: String,
    wall_s: f64,
    cpu_s: f64,
    max_rss_mb: f64,
    checkpoints: u64,
    ckpt_p50_ms: f64,
    ckpt_max_ms: i64,
    ckpt_size_max: i64,
    state_size_max: i64,
    rows: Option<u64>,
    md5: String,
    expected_rows: Option<u64>,
    expected_md5: String,
    /// `ok`, `MISMATCH`, or empty when nothing was compared.
    check: String,
    flink_events_per_s: Option<f64>,
    flink_events_per_cpu_s: Option<f64>,
}

impl Outcome {
    fn events_per_s(&self, events: u64) -> Option<f64> {
        (self.status == "ok" && self.wall_s > 0.0).then(|| events as f64 / self.wall_s)
    }

    fn events_per_cpu_s(&self, events: u64) -> Option<f64> {
        (self.status == "ok" && self.cpu_s > 0.0).then(|| events as f64 / self.cpu_s)
    }
}

struct Expected {
    rows: Option<u64>,
    md5: String,
    error: String,
}

fn bench(args: &BenchArgs) -> Result<ExitCode, String> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    let queries: Vec<String> = if args.queries.is_empty() {
        DEFAULT_QUERIES.iter().map(|q| q.to_string()).collect()
    } else {
        args.queries.clone()
    };
    let expected = match &args.expected {
        Some(p) => read_expected(p, args.parallelism, args.events)?,
        None => HashMap::new(),
    };
    let flink = match &args.flink {
        Some(p) => {
            let flink = read_flink(p, args)?;
            if flink.is_empty() {
                // Otherwise the ratio columns would just stay empty, with no reason given.
                eprintln!(
                    "streamsql bench: {} has no run at parallelism {}, {} events, checkpointing {}: no ratios to Flink",
                    p.display(),
                    args.parallelism,
                    args.events,
                    if args.no_checkpoint { "off" } else { &args.checkpoint_interval }
                );
            }
            flink
        }
        None => HashMap::new(),
    };
    let (work, temporary) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("streamsql-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let side_input = std::fs::canonicalize(SIDE_INPUT)
        .or_else(|_| std::fs::canonicalize(args.dir.join("data/side_input.txt")))
        .ok();
    let check = args.check || args.expected.is_some();
    eprintln!(
        "streamsql bench: {} queries, {} events, parallelism {}, checkpointing {}, {}",
        queries.len(),
        args.events,
        args.parallelism,
        if args.no_checkpoint {
            "off"
        } else {
            &args.checkpoint_interval
        },
        args.state_backend
            .as_deref()
            .map_or("default state backend".to_string(), |b| format!(
                "state backend {b}"
            )),
    );
    let mut outcomes = Vec::new();
    for q in &queries {
        let file = args.dir.join(format!("{q}.sql"));
        let sql = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let sql = rewrite(&sql, args.events, args.base_time, side_input.as_deref());
        let dir = work.join(q);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut o = Outcome {
            query: q.clone(),
            ..Outcome::default()
        };
        if !args.no_timing {
            timed_run(args, &binary, &dir, &sql, &mut o)?;
        }
        if check && (args.no_timing || o.status == "ok") {
            result_run(args, &binary, &dir, &sql, &mut o)?;
        }
        if let Some(e) = expected.get(q.as_str()) {
            o.expected_rows = e.rows;
            o.expected_md5 = e.md5.clone();
            if let (Some(rows), Some(exp)) = (o.rows, e.rows) {
                // Without a fixed base time the rows carry other timestamps than Flink's.
                let md5_compared = args.base_time.is_some() && !e.md5.is_empty();
                o.check = if rows != exp || (md5_compared && e.md5 != o.md5) {
                    "MISMATCH".into()
                } else if md5_compared {
                    "ok".into()
                } else {
                    "ok (rows)".into()
                };
            } else if e.rows.is_none() && !e.error.is_empty() {
                o.check = "flink failed".into();
            }
        }
        if let Some(&(eps, epc)) = flink.get(q.as_str()) {
            o.flink_events_per_s = Some(eps);
            o.flink_events_per_cpu_s = epc;
        }
        eprintln!("streamsql bench: {}", summary_line(&o, args.events));
        outcomes.push(o);
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    let table = markdown(&outcomes, args);
    print!("{table}");
    if let Some(p) = &args.csv {
        std::fs::write(p, csv(&outcomes, args))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&json(&outcomes, args))
            .map_err(|e| format!("cannot encode the results: {e}"))?;
        std::fs::write(p, text + "\n").map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    let mismatches: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.check == "MISMATCH")
        .map(|o| o.query.as_str())
        .collect();
    if mismatches.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "streamsql bench: results differ from the expected ones: {}",
            mismatches.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn summary_line(o: &Outcome, events: u64) -> String {
    let mut s = format!("{} {}", o.query, o.status);
    if let Some(eps) = o.events_per_s(events) {
        let _ = write!(s, ", {:.0} events/s, {:.2} s CPU", eps, o.cpu_s);
    }
    if let Some(r) = o.rows {
        let _ = write!(s, ", {r} result rows");
    }
    if !o.check.is_empty() {
        let _ = write!(s, " (check: {})", o.check);
    }
    if !o.error.is_empty() {
        let _ = write!(s, ": {}", o.error);
    }
    s
}

/// `streamsql run` of `sql` through a measuring parent; stdout of the query goes to `stdout`.
fn spawn_measured(
    args: &BenchArgs,
    binary: &Path,
    dir: &Path,
    name: &str,
    sql: &str,
    checkpointing: bool,
    stdout: Stdio,
) -> Result<(std::process::Child, PathBuf, PathBuf), String> {
    let script = dir.join(format!("{name}.sql"));
    std::fs::write(&script, sql).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let measured = dir.join(format!("{name}.rusage"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
    let mut cmd = Command::new(binary);
    cmd.arg("bench")
        .arg("--measure")
        .arg(&measured)
        .arg("--timeout")
        .arg(args.timeout.to_string())
        .arg("--")
        .arg(binary)
        .arg("run")
        .arg(&script)
        .arg("-p")
        .arg(args.parallelism.to_string());
    let mut defines = args.define.clone();
    if checkpointing {
        defines.push(format!(
            "execution.checkpointing.interval={}",
            args.checkpoint_interval
        ));
        defines.push(format!(
            "execution.checkpointing.dir={}",
            dir.join("checkpoints").display()
        ));
    }
    if let Some(b) = &args.state_backend {
        defines.push(format!("state.backend.type={b}"));
    }
    for d in defines {
        cmd.arg("-D").arg(d);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    Ok((child, measured, stderr_path))
}

/// Status and error message of a finished measured run.
fn judge(measured: Option<&Measured>, stderr: &Path) -> (String, String) {
    let Some(m) = measured else {
        return (
            "failed".into(),
            "the measuring process wrote nothing".into(),
        );
    };
    if m.timed_out {
        return ("timeout".into(), "killed after the timeout".into());
    }
    if m.code == Some(0) {
        return ("ok".into(), String::new());
    }
    let text = std::fs::read_to_string(stderr).unwrap_or_default();
    let error = first_error(&text);
    let lower = error.to_lowercase();
    let status = if lower.contains("not supported") || lower.contains("unsupported") {
        "unsupported"
    } else {
        "failed"
    };
    (status.into(), error)
}

/// The diagnostic's message: the line miette marks with `×`, else the last non-empty line.
fn first_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with('×'))
        .map(|l| l.trim_start().trim_start_matches('×').trim())
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("exited with an error")
        .trim();
    let mut s: String = line.chars().take(240).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    s
}

fn timed_run(
    args: &BenchArgs,
    binary: &Path,
    dir: &Path,
    sql: &str,
    o: &mut Outcome,
) -> Result<(), String> {
    let checkpointing = !args.no_checkpoint;
    let (mut child, measured, stderr) = spawn_measured(
        args,
        binary,
        dir,
        "timed",
        sql,
        checkpointing,
        Stdio::null(),
    )?;
    child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", o.query))?;
    let m = read_measured(&measured);
    let (status, error) = judge(m.as_ref(), &stderr);
    o.status = status;
    o.error = error;
    if let Some(m) = m {
        o.wall_s = m.wall_s;
        o.cpu_s = m.user_s + m.sys_s;
        o.max_rss_mb = m.max_rss_kb as f64 / 1024.0;
    }
    if checkpointing {
        read_checkpoints(&dir.join("checkpoints"), o);
    }
    Ok(())
}

fn read_checkpoints(dir: &Path, o: &mut Outcome) {
    let Ok(file) = find_stats_file(dir) else {
        return;
    };
    let Ok(tracker) = CheckpointStatsTracker::load(&file) else {
        return;
    };
    let j = tracker.to_rest_json();
    o.checkpoints = tracker.counts().completed;
    let summary = &j["summary"];
    o.ckpt_p50_ms = summary["end_to_end_duration"]["p50"]
        .as_f64()
        .unwrap_or(0.0);
    o.ckpt_max_ms = summary["end_to_end_duration"]["max"].as_i64().unwrap_or(0);
    o.ckpt_size_max = summary["checkpointed_size"]["max"].as_i64().unwrap_or(0);
    o.state_size_max = summary["state_size"]["max"].as_i64().unwrap_or(0);
}

fn result_run(
    args: &BenchArgs,
    binary: &Path,
    dir: &Path,
    sql: &str,
    o: &mut Outcome,
) -> Result<(), String> {
    let Some(sql) = print_sink(sql) else {
        o.error = "no CREATE TABLE nexmark_qN sink to replace".into();
        return Ok(());
    };
    let (mut child, measured, stderr) =
        spawn_measured(args, binary, dir, "result", &sql, false, Stdio::piped())?;
    let folded = child.stdout.take().map(|out| fold(BufReader::new(out)));
    child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", o.query))?;
    let m = read_measured(&measured);
    let (status, error) = judge(m.as_ref(), &stderr);
    if status == "ok" {
        match folded {
            Some(Ok((rows, md5))) => {
                o.rows = Some(rows);
                o.md5 = md5;
            }
            Some(Err(e)) => o.error = e,
            None => o.error = "no output".into(),
        }
    } else if o.status.is_empty() || o.status == "ok" {
        o.status = status;
        o.error = error;
    }
    if o.status.is_empty() {
        o.status = "ok".into();
    }
    Ok(())
}

/// Folds a print sink's changelog into the final table: (rows, md5 of the sorted rows).
fn fold(input: impl BufRead) -> Result<(u64, String), String> {
    let mut table: HashMap<String, i64> = HashMap::new();
    for line in input.lines() {
        let line = line.map_err(|e| format!("reading the result: {e}"))?;
        // Flink's print sink prefixes "<subtask>> " when it runs with parallelism > 1.
        let row = match line.split_once("> ") {
            Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => line.as_str(),
        };
        let Some(kind) = row.get(..2) else { continue };
        if row.as_bytes().get(2) != Some(&b'[') {
            continue;
        }
        let delta = match kind {
            "+I" | "+U" => 1,
            "-U" | "-D" => -1,
            _ => continue,
        };
        let body = &row[2..];
        match table.get_mut(body) {
            Some(n) => *n += delta,
            None => {
                table.insert(body.to_string(), delta);
            }
        }
    }
    let mut rows: Vec<(String, i64)> = table.into_iter().filter(|(_, n)| *n != 0).collect();
    if let Some((row, _)) = rows.iter().find(|(_, n)| *n < 0) {
        return Err(format!(
            "the changelog retracts a row it never added: {row}"
        ));
    }
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut hash = Md5::new();
    let mut count = 0u64;
    for (row, n) in &rows {
        for _ in 0..*n {
            hash.update(row.as_bytes());
            hash.update(b"\n");
        }
        count += *n as u64;
    }
    let digest = hash.finalize();
    let mut hex = String::with_capacity(32);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    Ok((count, hex))
}

/// The query file as the bench runs it: `events.num`, the generator's base time, and the side
/// input's absolute path.
fn rewrite(sql: &str, events: u64, base_time: Option<i64>, side_input: Option<&Path>) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut extra = String::new();
    if let Some(t) = base_time {
        let _ = write!(extra, "\n    'base-time' = '{t}',");
    }
    for line in sql.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("'events.num'") {
            let indent = &line[..line.len() - trimmed.len()];
            let comma = if trimmed.trim_end().ends_with(',') {
                ","
            } else {
                ""
            };
            let _ = writeln!(out, "{indent}'events.num' = '{events}'{comma}");
        } else if trimmed.trim_end() == "'connector' = 'nexmark'," {
            out.push_str(line.trim_end_matches('\n'));
            out.push_str(&extra);
            out.push('\n');
        } else if let (true, Some(p)) = (line.contains(SIDE_INPUT), side_input) {
            out.push_str(&line.replace(SIDE_INPUT, &p.display().to_string()));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Replaces the options (and a PARTITIONED BY) of `CREATE TABLE nexmark_qN` with a print sink.
fn print_sink(sql: &str) -> Option<String> {
    let start = sql.find("CREATE TABLE nexmark_q")?;
    // The column list ends at a line that starts with ")", followed by PARTITIONED BY or WITH.
    let rest = &sql[start..];
    let close_cols = rest.match_indices("\n)").map(|(i, _)| i).find(|&i| {
        let after = rest[i + 2..].trim_start();
        after.starts_with("WITH") || after.starts_with("PARTITIONED BY")
    })? + start;
    let end = sql[close_cols..].find(");")? + close_cols;
    Some(format!(
        "{}\n) WITH (\n  'connector' = 'print'\n{}",
        &sql[..close_cols],
        &sql[end..]
    ))
}

/// Splits one CSV line (RFC 4180 quoting, as Python's csv module writes) with the csv format's
/// own splitter.
fn csv_fields(line: &str) -> Vec<String> {
    use streamsql::engine::connectors::csv::{CsvDecoder, CsvFormat};
    let mut decoder = CsvDecoder::new(CsvFormat::default(), Vec::new());
    decoder.split(line.as_bytes());
    decoder
        .fields()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Rows of a CSV file with a header, as maps from column to value.
fn read_csv(path: &Path) -> Result<Vec<HashMap<String, String>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = csv_fields(
        lines
            .next()
            .ok_or_else(|| format!("{} is empty", path.display()))?,
    );
    Ok(lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(csv_fields(l.trim_end_matches('\r')))
                .collect()
        })
        .collect())
}

/// Whether an optional numeric column of a row is absent, empty or equal to `want`.
fn applies(row: &HashMap<String, String>, column: &str, want: u64) -> bool {
    match row.get(column).map(|v| v.trim()) {
        None | Some("") => true,
        Some(v) => v.parse::<u64>().ok() == Some(want),
    }
}

fn read_expected(
    path: &Path,
    parallelism: usize,
    events: u64,
) -> Result<HashMap<String, Expected>, String> {
    let mut out = HashMap::new();
    for row in read_csv(path)? {
        if !applies(&row, "parallelism", parallelism as u64) || !applies(&row, "events", events) {
            continue;
        }
        let Some(q) = row.get("query") else {
            return Err(format!("{} has no 'query' column", path.display()));
        };
        let get = |k: &str| row.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        out.insert(
            q.clone(),
            Expected {
                rows: get("rows").parse().ok(),
                md5: get("md5"),
                error: get("error"),
            },
        );
    }
    Ok(out)
}

/// Flink's best throughput per query for this parallelism and checkpointing: (events/s, events
/// per CPU second).
fn read_flink(
    path: &Path,
    args: &BenchArgs,
) -> Result<HashMap<String, (f64, Option<f64>)>, String> {
    let checkpointing = if args.no_checkpoint {
        "off".to_string()
    } else {
        args.checkpoint_interval.clone()
    };
    let mut out: HashMap<String, (f64, Option<f64>)> = HashMap::new();
    for row in read_csv(path)? {
        if !applies(&row, "parallelism", args.parallelism as u64)
            || !applies(&row, "events", args.events)
            || row
                .get("checkpointing")
                .is_some_and(|c| *c != checkpointing)
        {
            continue;
        }
        let (Some(q), Some(eps)) = (
            row.get("query"),
            row.get("events_per_s").and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let epc = row.get("events_per_cpu_s").and_then(|v| v.parse().ok());
        if out.get(q).is_none_or(|(best, _)| eps > *best) {
            out.insert(q.clone(), (eps, epc));
        }
    }
    Ok(out)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.digits$}"))
}

fn fmt_bytes(b: i64) -> String {
    if b <= 0 {
        String::new()
    } else if b < 1024 {
        format!("{b} B")
    } else if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn markdown(outcomes: &[Outcome], args: &BenchArgs) -> String {
    let ev = args.events;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| query | status | wall s | events/s | CPU s | cores | events/CPU-s | peak RSS MiB | ckpts | ckpt p50 / max ms | ckpt size max | result rows | Flink rows | check | × Flink events/s | × Flink per core |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        let ok = o.status == "ok";
        let status = if ok {
            "ok".to_string()
        } else {
            format!("{}: {}", o.status, o.error.replace('|', "\\|"))
        };
        let num = |v: f64, d: usize| {
            if ok {
                format!("{v:.d$}")
            } else {
                String::new()
            }
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.query,
            status,
            num(o.wall_s, 2),
            o.events_per_s(ev).map_or(String::new(), thousands),
            num(o.cpu_s, 2),
            if ok && o.wall_s > 0.0 {
                format!("{:.2}", o.cpu_s / o.wall_s)
            } else {
                String::new()
            },
            o.events_per_cpu_s(ev).map_or(String::new(), thousands),
            num(o.max_rss_mb, 0),
            if ok && !args.no_checkpoint {
                o.checkpoints.to_string()
            } else {
                String::new()
            },
            if o.checkpoints > 0 {
                format!("{:.0} / {}", o.ckpt_p50_ms, o.ckpt_max_ms)
            } else {
                String::new()
            },
            fmt_bytes(o.ckpt_size_max),
            o.rows.map_or(String::new(), |r| r.to_string()),
            o.expected_rows.map_or(String::new(), |r| r.to_string()),
            o.check,
            ratio(o.events_per_s(ev), o.flink_events_per_s),
            ratio(o.events_per_cpu_s(ev), o.flink_events_per_cpu_s),
        );
    }
    s
}

const CSV_HEADER: &str = "query,events,parallelism,checkpointing,state_backend,status,error,wall_s,cpu_s,cores,events_per_s,events_per_cpu_s,max_rss_mb,checkpoints,ckpt_p50_ms,ckpt_max_ms,ckpt_size_max_bytes,state_size_max_bytes,rows,md5,expected_rows,expected_md5,check,flink_events_per_s,flink_events_per_cpu_s";

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(outcomes: &[Outcome], args: &BenchArgs) -> String {
    let ev = args.events;
    let ckpt = if args.no_checkpoint {
        "off"
    } else {
        &args.checkpoint_interval
    };
    let backend = args.state_backend.as_deref().unwrap_or("default");
    let mut s = format!("{CSV_HEADER}\n");
    for o in outcomes {
        let cores = (o.wall_s > 0.0).then(|| o.cpu_s / o.wall_s);
        let _ = writeln!(
            s,
            "{},{ev},{},{ckpt},{backend},{},{},{:.3},{:.3},{},{},{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
            o.query,
            args.parallelism,
            o.status,
            csv_quote(&o.error),
            o.wall_s,
            o.cpu_s,
            fmt_opt(cores, 3),
            fmt_opt(o.events_per_s(ev), 0),
            fmt_opt(o.events_per_cpu_s(ev), 0),
            o.max_rss_mb,
            o.checkpoints,
            o.ckpt_p50_ms,
            o.ckpt_max_ms,
            o.ckpt_size_max,
            o.state_size_max,
            o.rows.map_or(String::new(), |r| r.to_string()),
            o.md5,
            o.expected_rows.map_or(String::new(), |r| r.to_string()),
            o.expected_md5,
            o.check,
            fmt_opt(o.flink_events_per_s, 0),
            fmt_opt(o.flink_events_per_cpu_s, 0),
        );
    }
    s
}

fn json(outcomes: &[Outcome], args: &BenchArgs) -> serde_json::Value {
    let ev = args.events;
    let queries: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "query": o.query,
                "status": o.status,
                "error": o.error,
                "wall_s": o.wall_s,
                "cpu_s": o.cpu_s,
                "events_per_s": o.events_per_s(ev),
                "events_per_cpu_s": o.events_per_cpu_s(ev),
                "max_rss_mb": o.max_rss_mb,
                "checkpoints": o.checkpoints,
                "checkpoint_duration_p50_ms": o.ckpt_p50_ms,
                "checkpoint_duration_max_ms": o.ckpt_max_ms,
                "checkpointed_size_max_bytes": o.ckpt_size_max,
                "state_size_max_bytes": o.state_size_max,
                "rows": o.rows,
                "md5": o.md5,
                "expected_rows": o.expected_rows,
                "expected_md5": o.expected_md5,
                "check": o.check,
                "flink_events_per_s": o.flink_events_per_s,
                "flink_events_per_cpu_s": o.flink_events_per_cpu_s,
            })
        })
        .collect();
    serde_json::json!({
        "events": ev,
        "parallelism": args.parallelism,
        "checkpointing": if args.no_checkpoint { "off" } else { args.checkpoint_interval.as_str() },
        "state_backend": args.state_backend,
        "queries": queries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINK: &str = "CREATE TABLE nexmark_q10 (\n  a BIGINT,\n  dt STRING\n) PARTITIONED BY (dt) WITH (\n  'connector' = 'filesystem',\n  'path' = 'x'\n);\n\nINSERT INTO nexmark_q10 SELECT 1, 'a';\n";

    #[test]
    fn print_sink_replaces_options_and_partitioning() {
        let out = print_sink(SINK).expect("a sink");
        assert_eq!(
            out,
            "CREATE TABLE nexmark_q10 (\n  a BIGINT,\n  dt STRING\n) WITH (\n  'connector' = 'print'\n);\n\nINSERT INTO nexmark_q10 SELECT 1, 'a';\n"
        );
    }

    #[test]
    fn rewrite_sets_events_and_generator_options() {
        let ddl = "WITH (\n    'connector' = 'nexmark',\n    'events.num' = '10000000',\n    'x' = '1'\n)";
        let out = rewrite(ddl, 42, Some(7), None);
        assert_eq!(
            out,
            "WITH (\n    'connector' = 'nexmark',\n    'base-time' = '7',\n    'events.num' = '42',\n    'x' = '1'\n)"
        );
    }

    #[test]
    fn fold_applies_the_changelog() {
        let log = "+I[a, 1]\n1> +I[b, 2]\n-U[a, 1]\n+U[a, 2]\nnoise\n+I[b, 2]\n-D[b, 2]\n";
        let (rows, md5) = fold(log.as_bytes()).expect("a valid changelog");
        assert_eq!(rows, 2);
        let (_, same) = fold("+I[b, 2]\n+I[a, 2]\n".as_bytes()).expect("a valid changelog");
        assert_eq!(md5, same);
        assert!(fold("-D[x]\n".as_bytes()).is_err());
    }

    #[test]
    fn csv_fields_handle_quotes() {
        assert_eq!(
            csv_fields(r#"q1,"a, ""b""",3"#),
            vec!["q1".to_string(), "a, \"b\"".to_string(), "3".to_string()]
        );
    }
}
