//! Incremental checkpoints (`execution.checkpointing.incremental`): each checkpoint writes the
//! state changed since the previous one to `shared/`, chained to a full snapshot, and
//! `_metadata` references the chain. Shown on a job with little churn per interval: chains form,
//! deltas are small, the files a retained checkpoint uses stay within 1.5 times one full snapshot
//! plus one delta, files no retained checkpoint uses are deleted, and a restore reads the chain.
//! Exactly-once output across kills with incremental checkpoints is `tests/crash.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamsql::engine::runtime::checkpointing::read_checkpoint;
use streamsql::engine::runtime::subtask_state::{KeyedHandle, SubtaskState};

const PATIENCE: Duration = Duration::from_secs(60);

fn prepare(name: &str) -> PathBuf {
    prepare_with(name, 20000, 2)
}

/// A job grouping a sequence by `keys` keys, retaining `retained` checkpoints.
fn prepare_with(name: &str, keys: u64, retained: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamsql-incr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '50 ms';
SET 'execution.checkpointing.incremental' = 'true';
SET 'state.checkpoints.dir' = '{dir}/checkpoints';
SET 'execution.checkpointing.num-retained' = '{retained}';
SET 'parallelism.default' = '1';
CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '4000',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '1000000');
CREATE TABLE snk (k BIGINT, n BIGINT, s BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO snk SELECT id % {keys}, COUNT(*), SUM(id) FROM gen GROUP BY id % {keys};
",
        dir = dir.display()
    );
    std::fs::write(dir.join("p.sql"), sql).expect("pipeline");
    dir
}

/// The job directory and its completed checkpoints, oldest first.
fn completed(dir: &Path) -> (PathBuf, Vec<(u64, PathBuf)>) {
    let job = std::fs::read_dir(dir.join("checkpoints"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path())
        .unwrap_or_default();
    let mut ids: Vec<(u64, PathBuf)> = std::fs::read_dir(&job)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| {
            let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    ids.sort();
    (job, ids)
}

/// The keyed-state chain of the GroupAggregate subtask in checkpoint `chk`, as (path, size).
fn chain(chk: &Path) -> Vec<(String, u64)> {
    let c = read_checkpoint(chk).expect("the checkpoint reads back");
    c.states
        .values()
        .filter_map(
            |s| match SubtaskState::decode(s).expect("a subtask state").keyed {
                KeyedHandle::Chain(files) => Some(files),
                _ => None,
            },
        )
        .flatten()
        .map(|f| (f.path, f.size))
        .collect()
}

/// Starts the pipeline of `dir`, resuming its latest checkpoint when `resume` (then its standard
/// error is kept, to read the restore line).
fn run(dir: &Path, resume: bool) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamsql"));
    cmd.arg("run").arg(dir.join("p.sql")).stdout(Stdio::null());
    if resume {
        cmd.args(["--resume", "latest"]).stderr(Stdio::piped());
    } else {
        cmd.stderr(Stdio::null());
    }
    cmd.spawn().expect("streamsql starts")
}

#[test]
fn checkpoints_chain_small_deltas_and_shared_files_are_bounded_and_collected() {
    let dir = prepare("chain");
    let mut child = run(&dir, false);
    // Wait until a retained checkpoint uses a chain of at least four files.
    let started = Instant::now();
    let longest = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "no chain of four files formed"
        );
        let (_, ids) = completed(&dir);
        if let Some((_, chk)) = ids.last() {
            if let Ok(c) = std::panic::catch_unwind(|| chain(chk)) {
                if c.len() >= 4 {
                    break c;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();

    // A full snapshot, then deltas much smaller than it.
    let (base, deltas) = longest.split_first().expect("a chain");
    assert!(base.0.starts_with("shared/"), "{base:?}");
    for d in deltas {
        assert!(
            d.1 * 4 < base.1,
            "a delta of a low-churn interval is small: {d:?} vs {base:?}"
        );
    }
    // The killed job's retained checkpoints: every file they use exists; together within 1.5
    // times one full snapshot plus one delta (the compaction rule).
    let (job, ids) = completed(&dir);
    assert!(!ids.is_empty());
    let mut used = std::collections::BTreeSet::new();
    for (_, chk) in &ids {
        let files = chain(chk);
        let (full, rest) = files.split_first().expect("a chain");
        let total: u64 = files.iter().map(|f| f.1).sum();
        let largest_delta = rest.iter().map(|f| f.1).max().unwrap_or(0);
        assert!(
            total * 2 <= full.1 * 3 + largest_delta * 2,
            "space: {total} bytes for a full snapshot of {}",
            full.1
        );
        for (path, size) in files {
            let meta = std::fs::metadata(job.join(&path)).expect("a used file exists");
            assert_eq!(meta.len(), size);
            used.insert(path);
        }
    }

    // Resuming sweeps the files no retained checkpoint uses (left by the killed run's
    // checkpoints in flight) and restores the chain.
    let out = run(&dir, true);
    let mut resumed = out;
    let started = Instant::now();
    loop {
        let (_, ids_now) = completed(&dir);
        let newest = ids_now.last().map(|(id, _)| *id).unwrap_or(0);
        if newest > ids.last().map(|(id, _)| *id).unwrap_or(0) + 25 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the resumed job checkpoints");
        assert!(
            resumed.try_wait().expect("status").is_none(),
            "the resumed job runs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = resumed.kill();
    let output = resumed.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("restored checkpoint"), "{stderr}");
    // Many checkpoints later, with two retained: the old chains' files are gone.
    let (job, ids) = completed(&dir);
    let mut used_now = std::collections::BTreeSet::new();
    for (_, chk) in &ids {
        used_now.extend(chain(chk).into_iter().map(|f| f.0));
    }
    let present: Vec<String> = std::fs::read_dir(job.join("shared"))
        .expect("shared dir")
        .flatten()
        .map(|e| format!("shared/{}", e.file_name().to_string_lossy()))
        .collect();
    for f in &used {
        if !used_now.contains(f) {
            assert!(
                !present.contains(f),
                "{f} is used by no retained checkpoint but is kept"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether a chain file is a compacted one (what a background compaction wrote).
fn is_compacted(path: &str) -> bool {
    path.ends_with(".compact.state")
}

/// The newest completed checkpoint's id and chain, if it reads (it may be discarded meanwhile).
fn newest_chain(dir: &Path) -> Option<(u64, Vec<(String, u64)>)> {
    let (_, ids) = completed(dir);
    let (id, chk) = ids.last()?.clone();
    std::panic::catch_unwind(|| chain(&chk))
        .ok()
        .map(|c| (id, c))
}

#[test]
fn compaction_keeps_every_checkpoint_a_delta_and_a_resume_restores_a_compacted_chain() {
    // 4000 keys: the state stops growing after a second; then each 50 ms interval changes
    // about 5% of it, so compaction is due every few checkpoints (a third of the base's bytes).
    let dir = prepare_with("compaction", 4000, 3);
    let mut child = run(&dir, false);
    // Every checkpoint seen while it runs, with its chain.
    let mut seen: std::collections::BTreeMap<u64, Vec<(String, u64)>> = Default::default();
    let started = Instant::now();
    // The first checkpoint of the steady state whose chain starts with a compacted file: from
    // there on, no checkpoint writes a full snapshot.
    let mut steady: Option<u64> = None;
    loop {
        assert!(
            started.elapsed() < PATIENCE * 2,
            "no steady compacted chains: {:?}",
            seen.iter().map(|(id, c)| (id, c.len())).collect::<Vec<_>>()
        );
        if let Some((id, c)) = newest_chain(&dir) {
            // Ids are at least 50 ms apart: from checkpoint 40 on, every key exists.
            if steady.is_none() && id >= 40 && c.first().is_some_and(|f| is_compacted(&f.0)) {
                steady = Some(id);
            }
            seen.insert(id, c);
        }
        if steady.is_some_and(|s| seen.keys().filter(|id| **id > s).count() >= 40) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let steady = steady.expect("steady");

    let mut compacted = std::collections::BTreeSet::new();
    for (id, files) in seen.range(steady..) {
        let (base, rest) = files.split_first().expect("a chain");
        // What the checkpoint wrote (its chain's last file) is a delta, not a full snapshot.
        let (last, _) = files.last().expect("a chain");
        assert!(
            !rest.is_empty() && last.ends_with(&format!("-{id}.state")),
            "checkpoint {id} wrote a full snapshot: {files:?}"
        );
        assert!(is_compacted(&base.0), "checkpoint {id}: {files:?}");
        compacted.insert(base.0.clone());
        // The space rule: within 1.5 times one compact full snapshot plus one delta.
        let total: u64 = files.iter().map(|f| f.1).sum();
        let largest_delta = rest.iter().map(|f| f.1).max().unwrap_or(0);
        assert!(
            total * 2 <= base.1 * 3 + largest_delta * 2,
            "checkpoint {id}: {total} bytes for a compacted base of {}",
            base.1
        );
    }
    assert!(
        compacted.len() >= 2,
        "compaction ran repeatedly: {compacted:?}"
    );

    // The newest retained checkpoint's chain starts with a compacted file; resuming restores it.
    let (_, ids) = completed(&dir);
    let (restored_id, restored_chk) = ids.last().expect("a retained checkpoint").clone();
    let restored = chain(&restored_chk);
    assert!(is_compacted(&restored[0].0), "{restored:?}");
    let mut resumed = run(&dir, true);
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < PATIENCE, "the resumed job compacts");
        assert!(
            resumed.try_wait().expect("status").is_none(),
            "the resumed job runs"
        );
        if let Some((id, c)) = newest_chain(&dir) {
            let base_id = c.first().and_then(|f| {
                f.0.rsplit('-')
                    .next()?
                    .strip_suffix(".compact.state")?
                    .parse::<u64>()
                    .ok()
            });
            if id > restored_id + 10 && base_id.is_some_and(|b| b > restored_id) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = resumed.kill();
    let output = resumed.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("restored checkpoint {restored_id} ")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("compaction of the incremental chain"),
        "{stderr}"
    );

    // Files compacted away are gone once no retained checkpoint uses them (the resumed run's
    // sweep and retention deleted them).
    let (job, ids) = completed(&dir);
    let mut used_now = std::collections::BTreeSet::new();
    for (_, chk) in &ids {
        used_now.extend(chain(chk).into_iter().map(|f| f.0));
    }
    let present: std::collections::BTreeSet<String> = std::fs::read_dir(job.join("shared"))
        .expect("shared dir")
        .flatten()
        .map(|e| format!("shared/{}", e.file_name().to_string_lossy()))
        .collect();
    for files in seen.values() {
        for (f, _) in files {
            assert!(
                used_now.contains(f) || !present.contains(f),
                "{f} is used by no retained checkpoint but is kept"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
