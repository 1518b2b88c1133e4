//! `streamsql checkpoints DIR` seen from outside: the text and `--json` outputs of a statistics
//! file written through the tracker, and diagnostics (never panics) for bad directories and
//! corrupt files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use streamsql::engine::checkpoint::stats::{
    stats_file, CheckpointStatsTracker, CheckpointType, SubtaskStats,
};
use streamsql::engine::checkpoint::CheckpointFailureReason;
use streamsql::engine::config::Configuration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("streamsql-chkcli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamsql"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ack(at: i64, state: u64) -> SubtaskStats {
    SubtaskStats {
        ack_timestamp: at,
        state_size: state,
        checkpointed_size: state / 2,
        sync_duration: 1,
        async_duration: 4,
        alignment_duration: 0,
        start_delay: 2,
        processed_data: 0,
        persisted_data: 0,
        unaligned: false,
    }
}

/// A job directory `<root>/<job>` with two completed checkpoints, a failed one and a restore.
fn job_dir(root: &Path, job: &str) -> (PathBuf, CheckpointStatsTracker) {
    let mut c = Configuration::new();
    c.set("execution.checkpointing.interval", "10 s")
        .expect("valid");
    c.set("web.checkpoints.history", "5").expect("valid");
    let mut t = CheckpointStatsTracker::new(&c).expect("valid");
    let base = 1_700_000_000_000;
    for id in 1..=2u64 {
        let at = base + i64::try_from(id).unwrap_or(0) * 10_000;
        t.report_pending(id, at, CheckpointType::Checkpoint, 2);
        t.report_subtask_ack(id, 1, "Source: orders", 0, ack(at + 20, 2048));
        t.report_subtask_ack(id, 1, "Source: orders", 1, ack(at + 45, 2048));
        t.report_completed(id, Some(&format!("/chk/{job}/chk-{id}")), at + 46);
    }
    t.report_pending(3, base + 30_000, CheckpointType::Checkpoint, 2);
    t.report_failed(
        3,
        base + 630_000,
        CheckpointFailureReason::CheckpointExpired,
    );
    t.report_restored(2, base + 40_000, Some(&format!("/chk/{job}/chk-2")), false);
    let dir = root.join(job);
    t.save(&stats_file(&dir)).expect("saved");
    (dir, t)
}

#[test]
fn text_output_has_the_dashboard_tabs() {
    let root = tmp("text");
    let (dir, _) = job_dir(&root, "a1b2c3");
    for target in [&dir, &root] {
        let out = run(&["checkpoints", target.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for expected in [
            "Checkpoints of job a1b2c3",
            "Overview",
            "Triggered: 3  In Progress: 0  Completed: 2  Failed: 1  Restored: 1",
            "Latest Completed Checkpoint: ID 2",
            "Latest Failed Checkpoint: ID 3",
            "Cause: Checkpoint expired before completing.",
            "Latest Savepoint: None",
            "Latest Restore: ID 2",
            "History",
            "Summary",
            "End to End Duration",
            "45ms",
            "4.00 KB",
            "Configuration",
            "Exactly Once",
            "10s 0ms",
            "2023-11-14 22:13:40.000",
        ] {
            assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn json_output_is_the_rest_body() {
    let root = tmp("json");
    let (dir, tracker) = job_dir(&root, "job1");
    let out = run(&["checkpoints", dir.to_str().expect("utf-8"), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = tracker.to_rest_json();
    assert_eq!(text.trim_end(), format!("{expected:#}"));
    assert_eq!(expected["counts"]["completed"], 2);
    assert_eq!(expected["history"][0]["id"], 3);
    for key in [
        "\"counts\"",
        "\"in_progress\"",
        "\"summary\"",
        "\"checkpointed_size\"",
        "\"p999\"",
        "\"latest\"",
        "\"restored\"",
        "\"history\"",
        "\"failure_message\"",
        "\"external_path\"",
        "\"num_acknowledged_subtasks\"",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_directories_and_corrupt_files_are_diagnostics() {
    let root = tmp("errors");
    let out = run(&["checkpoints", root.join("missing").to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::create_dir_all(&root).expect("created");
    let out = run(&["checkpoints", root.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint statistics"));

    let (dir, _) = job_dir(&root, "one");
    job_dir(&root, "two");
    let out = run(&["checkpoints", root.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 jobs") && err.contains("one, two"), "{err}");

    let file = stats_file(&dir);
    let mut bytes = std::fs::read(&file).expect("written");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).expect("rewritten");
    let out = run(&["checkpoints", dir.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt") && err.contains("checksum mismatch"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
