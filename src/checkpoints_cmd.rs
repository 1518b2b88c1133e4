//! `streamsql checkpoints DIR [--json]`: a job's checkpoint monitoring read from its
//! `_checkpoint_stats.json`, as Flink's web dashboard shows it (Overview, History, Summary,
//! Configuration) or as the body of Flink's `GET /jobs/:jobid/checkpoints`.
//!
//! DIR is `<state.checkpoints.dir>/<job-id>`, the statistics file itself, or a checkpoints root
//! holding exactly one job. Everything rendered comes from the REST-shaped JSON of
//! [`CheckpointStatsTracker`], so the text and `--json` never disagree. Errors are diagnostics,
//! never panics.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use streamsql_engine::checkpoint::stats::{CheckpointStatsTracker, STATS_FILE_NAME};
use streamsql_engine::EngineError;

/// Why the checkpoints of a job cannot be shown.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CheckpointsError {
    /// DIR does not exist.
    #[error("'{0}' does not exist")]
    #[diagnostic(
        code(checkpoints::not_found),
        help("give <state.checkpoints.dir>/<job-id>, the directory the job's checkpoints are written to")
    )]
    NotFound(String),
    /// DIR holds no statistics file, directly or in one job directory.
    #[error("no checkpoint statistics ({STATS_FILE_NAME}) in '{0}'")]
    #[diagnostic(
        code(checkpoints::no_stats),
        help("statistics are written beside the checkpoints of a job that ran with checkpointing enabled")
    )]
    NoStats(String),
    /// DIR is a checkpoints root with several jobs.
    #[error("'{dir}' holds the checkpoints of {} jobs", jobs.len())]
    #[diagnostic(code(checkpoints::ambiguous), help("choose one: {}", jobs.join(", ")))]
    Ambiguous {
        /// The directory given.
        dir: String,
        /// The job directories found in it.
        jobs: Vec<String>,
    },
    /// The statistics file could not be read or is corrupt.
    #[error("cannot read the checkpoint statistics: {0}")]
    #[diagnostic(code(checkpoints::unreadable))]
    Unreadable(EngineError),
}

/// Finds the statistics file that `dir` designates.
pub fn find_stats_file(dir: &Path) -> Result<PathBuf, CheckpointsError> {
    let shown = dir.display().to_string();
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    if !dir.is_dir() {
        return Err(CheckpointsError::NotFound(shown));
    }
    let direct = dir.join(STATS_FILE_NAME);
    if direct.is_file() {
        return Ok(direct);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| {
        CheckpointsError::Unreadable(EngineError::io(format!("reading '{shown}'"), source))
    })?;
    let mut jobs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(STATS_FILE_NAME).is_file())
        .collect();
    jobs.sort();
    match jobs.len() {
        0 => Err(CheckpointsError::NoStats(shown)),
        1 => Ok(jobs[0].join(STATS_FILE_NAME)),
        _ => Err(CheckpointsError::Ambiguous {
            dir: shown,
            jobs: jobs
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
        }),
    }
}

/// The output of `streamsql checkpoints DIR` (`json`: the REST body, pretty-printed).
pub fn run(dir: &Path, json: bool) -> Result<String, CheckpointsError> {
    let file = find_stats_file(dir)?;
    let tracker = CheckpointStatsTracker::load(&file).map_err(CheckpointsError::Unreadable)?;
    if json {
        return Ok(format!("{:#}\n", tracker.to_rest_json()));
    }
    let job = file
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(render_text(&job, &tracker))
}

type Json = streamsql_engine::checkpoint::stats::JsonValue;

fn int(v: &Json) -> i64 {
    v.as_i64().unwrap_or(-1)
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of epoch milliseconds; "n/a" for -1.
pub fn format_timestamp(ms: i64) -> String {
    if ms < 0 {
        return "n/a".to_string();
    }
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// A duration in milliseconds as the dashboard shows it; "n/a" when unknown (negative).
pub fn format_duration(ms: i64) -> String {
    if ms < 0 {
        return "n/a".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s {rest}ms")
    }
}

/// A byte count as the dashboard shows it (1024-based units).
pub fn format_bytes(bytes: i64) -> String {
    if bytes < 0 {
        return "n/a".to_string();
    }
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

fn latest_line(out: &mut String, title: &str, c: &Json) {
    if c.is_null() {
        let _ = writeln!(out, "  {title}: None");
        return;
    }
    let _ = write!(out, "  {title}: ID {}", int(&c["id"]));
    if c["status"] == "FAILED" {
        let _ = writeln!(
            out,
            ", Failure Time {}, Cause: {}",
            format_timestamp(int(&c["failure_timestamp"])),
            c["failure_message"].as_str().unwrap_or("n/a")
        );
        return;
    }
    let _ = writeln!(
        out,
        ", Completion Time {}, End to End Duration {}, Checkpointed Data Size {}, Full Checkpoint Data Size {}, Path {}",
        format_timestamp(int(&c["latest_ack_timestamp"])),
        format_duration(int(&c["end_to_end_duration"])),
        format_bytes(int(&c["checkpointed_size"])),
        format_bytes(int(&c["state_size"])),
        c["external_path"].as_str().unwrap_or("n/a")
    );
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(" ");
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(s, " {cell:<w$} ");
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, &mut header.iter().copied());
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

fn render_text(job: &str, tracker: &CheckpointStatsTracker) -> String {
    let j = tracker.to_rest_json();
    let mut out = String::new();
    let _ = writeln!(out, "Checkpoints of job {job}\n");

    let c = &j["counts"];
    let _ = writeln!(out, "Overview");
    let _ = writeln!(
        out,
        "  Checkpoint Counts: Triggered: {}  In Progress: {}  Completed: {}  Failed: {}  Restored: {}",
        int(&c["total"]),
        int(&c["in_progress"]),
        int(&c["completed"]),
        int(&c["failed"]),
        int(&c["restored"])
    );
    let l = &j["latest"];
    latest_line(&mut out, "Latest Completed Checkpoint", &l["completed"]);
    latest_line(&mut out, "Latest Failed Checkpoint", &l["failed"]);
    latest_line(&mut out, "Latest Savepoint", &l["savepoint"]);
    let r = &l["restored"];
    if r.is_null() {
        let _ = writeln!(out, "  Latest Restore: None");
    } else {
        let _ = writeln!(
            out,
            "  Latest Restore: ID {}, Restore Time {}, Type {}, Path {}",
            int(&r["id"]),
            format_timestamp(int(&r["restore_timestamp"])),
            if r["is_savepoint"] == true {
                "Savepoint"
            } else {
                "Checkpoint"
            },
            r["external_path"].as_str().unwrap_or("n/a")
        );
    }

    let _ = writeln!(
        out,
        "\nHistory (the {} most recent checkpoints, web.checkpoints.history)",
        tracker.history_size()
    );
    let rows: Vec<Vec<String>> = j["history"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let status = h["status"].as_str().unwrap_or("?");
            vec![
                int(&h["id"]).to_string(),
                if h["is_savepoint"] == true {
                    format!("{status} (savepoint)")
                } else {
                    status.to_string()
                },
                format!(
                    "{}/{}",
                    int(&h["num_acknowledged_subtasks"]),
                    int(&h["num_subtasks"])
                ),
                format_timestamp(int(&h["trigger_timestamp"])),
                format_timestamp(int(&h["latest_ack_timestamp"])),
                format_duration(int(&h["end_to_end_duration"])),
                format_bytes(int(&h["checkpointed_size"])),
                format_bytes(int(&h["state_size"])),
                format!(
                    "{} ({})",
                    format_bytes(int(&h["processed_data"])),
                    format_bytes(int(&h["persisted_data"]))
                ),
                h["checkpoint_type"].as_str().unwrap_or("?").to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        let _ = writeln!(out, "  No checkpoints.");
    } else {
        table(
            &mut out,
            &[
                "ID",
                "Status",
                "Acknowledged",
                "Trigger Time",
                "Latest Acknowledgement",
                "End to End Duration",
                "Checkpointed Data Size",
                "Full Checkpoint Data Size",
                "Processed (persisted) in-flight data",
                "Type",
            ],
            &rows,
        );
    }

    let _ = writeln!(out, "\nSummary (completed checkpoints)");
    let s = &j["summary"];
    let metric = |name: &str, key: &str, f: fn(i64) -> String| -> Vec<String> {
        let m = &s[key];
        vec![
            name.to_string(),
            f(int(&m["min"])),
            f(int(&m["avg"])),
            f(int(&m["max"])),
        ]
    };
    table(
        &mut out,
        &["", "Minimum", "Average", "Maximum"],
        &[
            metric(
                "End to End Duration",
                "end_to_end_duration",
                format_duration,
            ),
            metric("Checkpointed Data Size", "checkpointed_size", format_bytes),
            metric("Full Checkpoint Data Size", "state_size", format_bytes),
            metric("Processed in-flight data", "processed_data", format_bytes),
            metric("Persisted in-flight data", "persisted_data", format_bytes),
        ],
    );

    let cfg = tracker.config_json();
    let _ = writeln!(out, "\nConfiguration");
    let interval = int(&cfg["interval"]);
    let ext = &cfg["externalization"];
    let rows = vec![
        vec![
            "Checkpointing Mode".to_string(),
            match cfg["mode"].as_str() {
                Some("at_least_once") => "At Least Once",
                _ => "Exactly Once",
            }
            .to_string(),
        ],
        vec![
            "Checkpoint Interval".to_string(),
            if interval == i64::MAX {
                "Periodic checkpoints disabled".to_string()
            } else {
                format_duration(interval)
            },
        ],
        vec![
            "Checkpoint Timeout".to_string(),
            format_duration(int(&cfg["timeout"])),
        ],
        vec![
            "Minimum Pause Between Checkpoints".to_string(),
            format_duration(int(&cfg["min_pause"])),
        ],
        vec![
            "Maximum Concurrent Checkpoints".to_string(),
            int(&cfg["max_concurrent"]).to_string(),
        ],
        vec![
            "Unaligned Checkpoints".to_string(),
            if cfg["unaligned_checkpoints"] == true {
                "Enabled"
            } else {
                "Disabled"
            }
            .to_string(),
        ],
        vec![
            "Persist Checkpoints Externally".to_string(),
            if ext["enabled"] != true {
                "Disabled".to_string()
            } else if ext["delete_on_cancellation"] == true {
                "Enabled (delete on cancellation)".to_string()
            } else {
                "Enabled (retain on cancellation)".to_string()
            },
        ],
        vec![
            "Tolerable Failed Checkpoints".to_string(),
            int(&cfg["tolerable_failed_checkpoints"]).to_string(),
        ],
        vec![
            "State Backend".to_string(),
            cfg["state_backend"].as_str().unwrap_or("?").to_string(),
        ],
        vec![
            "Checkpoint Storage".to_string(),
            cfg["checkpoint_storage"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        ],
    ];
    table(&mut out, &["Option", "Value"], &rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_durations_and_sizes() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            format_timestamp(1_700_000_000_123),
            "2023-11-14 22:13:20.123"
        );
        assert_eq!(format_timestamp(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(format_timestamp(-1), "n/a");
        assert_eq!(format_duration(-1), "n/a");
        assert_eq!(format_duration(30), "30ms");
        assert_eq!(format_duration(1_500), "1s 500ms");
        assert_eq!(format_duration(61_000), "1m 1s");
        assert_eq!(format_duration(3_723_000), "1h 2m 3s");
        assert_eq!(format_bytes(200), "200 B");
        assert_eq!(format_bytes(1536), "1.50 KB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.00 MB");
    }

    #[test]
    fn missing_directory_is_a_diagnostic() {
        let err = run(Path::new("/nonexistent/streamsql/chk"), false).expect_err("missing");
        assert!(matches!(err, CheckpointsError::NotFound(_)));
    }
}
