//! Runs every `tests/slt/*.slt` file through the real engine with sqllogictest, at parallelism 1
//! and again at parallelism 2 (unless the file says `# parallelism: 1`), and then once more at
//! parallelism 2 with exactly-once checkpoints every 10 ms (unless it also says
//! `# checkpointed: no`): the expected output is the same in every mode, so checkpointing must
//! never change a result. The checkpointing keys are pinned, so a file's own `SET`/`RESET` of them
//! keeps checkpointing on. Every completed checkpoint is kept so that the run can count them: the
//! suite fails if the checkpointed runs completed none (the mode would test nothing). The jobs of
//! the files mostly end within the first interval, so their checkpoint is the final one taken at
//! the end of input; `checkpoints_taken_mid_job` runs a paced source long enough for periodic
//! checkpoints with state and a transactional sink in flight.
//!
//! A `query` returns the SELECT's final table (its changelog folded), or with
//! `SET 'sql-client.execution.result-mode' = 'changelog'` every change with its row kind first.
//! Values are written as Flink's print connector writes them. Statements that print (EXPLAIN,
//! SHOW, DESCRIBE) return their lines as rows. `${DATA}` is the absolute path of `tests/data/`,
//! `${TMP}` a fresh directory per file run for sink output. With `SLT_COMPLETE=DIR` the files
//! are not checked: copies with the engine's actual output are written to DIR for review.

mod common;

use std::path::{Path, PathBuf};

use sqllogictest::{DBOutput, DefaultColumnType};
use streamsql::engine::config::Configuration;
use streamsql::sql::session::StatementOutput;
use streamsql::Streamsql;

struct Db {
    session: Streamsql,
    /// A fresh directory for this run's sink output, substituted for `${TMP}`.
    tmp: PathBuf,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for DbError {}

impl sqllogictest::DB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let sql = sql
            .replace("${DATA}", &data.display().to_string())
            .replace("${TMP}", &self.tmp.display().to_string());
        let run = common::run_script(&mut self.session, &sql).map_err(|e| {
            let mut msg = e.to_string();
            if let streamsql::Error::Sql(d) = &e {
                if let Some(h) = &d.help {
                    msg.push_str(&format!(" (help: {h})"));
                }
            }
            DbError(msg)
        })?;
        let changelog = self
            .session
            .config()
            .get_raw("sql-client.execution.result-mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("changelog"));
        let mut rows: Vec<Vec<String>> = Vec::new();
        for o in &run.outputs {
            match o {
                StatementOutput::Info(_) => {}
                StatementOutput::Table { rows: r, .. } => rows.extend(r.iter().cloned()),
                StatementOutput::Explain(text) => {
                    rows.extend(text.lines().map(|l| vec![l.trim_end().to_string()]))
                }
            }
        }
        for (schema, changes) in &run.selects {
            if changelog {
                for c in changes {
                    let mut r = vec![c.kind.short().to_string()];
                    r.extend(common::render_row(schema, c, common::print_value));
                    rows.push(r);
                }
            } else {
                rows.extend(common::fold(schema, changes, common::print_value).map_err(DbError)?);
            }
        }
        if rows.is_empty() && run.selects.is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let width = rows.first().map(Vec::len).unwrap_or(1);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }
}

/// How a file run's sessions are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// No checkpoints, at this parallelism.
    Plain(usize),
    /// Parallelism 2 with a checkpoint every [`CHECKPOINT_INTERVAL`].
    Checkpointed,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Plain(p) => write!(f, "parallelism {p}"),
            Mode::Checkpointed => write!(f, "parallelism 2, checkpointed"),
        }
    }
}

/// The smallest interval Flink accepts: as many checkpoints as a job's length allows.
const CHECKPOINT_INTERVAL: &str = "10 ms";

/// A session at parallelism 2 that checkpoints into `dir`. Every key is pinned: a file's `SET` or
/// `RESET` must not turn checkpointing off or move it elsewhere. Every completed checkpoint is
/// retained so that [`count_checkpoints`] sees all of them, and batches are flushed quickly so
/// barriers interleave with data rather than arriving after it.
fn checkpointed_session(dir: &Path) -> Streamsql {
    let dir = dir.display().to_string();
    let settings = [
        ("parallelism.default", "2"),
        ("execution.checkpointing.interval", CHECKPOINT_INTERVAL),
        ("execution.checkpointing.dir", dir.as_str()),
        ("execution.checkpointing.num-retained", "1000000"),
        ("execution.buffer-timeout.interval", "1 ms"),
        // With checkpointing Flink's default restart strategy retries a failed job forever; the
        // plain runs have none, and a file's expected errors must read the same in both modes.
        ("restart-strategy.type", "disable"),
    ];
    let mut conf = Configuration::new();
    for (k, v) in settings {
        conf.set(k, v).expect("checkpointing settings are valid");
    }
    let mut s = Streamsql::new(conf);
    for (k, v) in settings {
        s.pin(k, v);
    }
    s
}

/// Checkpoints written under a checkpoint directory (one sub-directory per job).
#[derive(Clone, Copy, Debug, Default)]
struct CheckpointCount {
    /// Job directories: one per distinct script whose job completed a checkpoint.
    jobs: usize,
    /// Completed checkpoints (from the statistics), the final one of each job included.
    completed: usize,
    /// Completed checkpoints that are not the last of their job directory: the periodic ones
    /// (a job that ran to its end writes a final checkpoint after its periodic ones).
    periodic: usize,
}

/// Counts from each job directory's checkpoint statistics (the `chk-<n>` directories themselves
/// are deleted when a job finishes, as Flink's retention does).
fn count_checkpoints(dir: &Path) -> CheckpointCount {
    use streamsql::engine::checkpoint::stats::{stats_file, CheckpointStatsTracker};
    let mut count = CheckpointCount::default();
    for job in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(stats) = CheckpointStatsTracker::load(&stats_file(&job.path())) else {
            continue;
        };
        let n = usize::try_from(stats.counts().completed).unwrap_or(usize::MAX);
        count.jobs += 1;
        count.completed += n;
        count.periodic += n.saturating_sub(1);
    }
    count
}

/// Runs one file in `mode`; in the checkpointed mode also returns what was checkpointed.
fn run_file(path: &Path, mode: Mode) -> (Result<(), String>, Option<CheckpointCount>) {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let suffix = match mode {
        Mode::Plain(p) => format!("p{p}"),
        Mode::Checkpointed => "ckpt".to_string(),
    };
    let tmp = std::env::temp_dir().join(format!(
        "streamsql-slt-{}-{stem}-{suffix}",
        std::process::id()
    ));
    // Checkpoints live beside the sink directory, never in it: a file may read `${TMP}` back.
    let ckpt = tmp.with_extension("checkpoints");
    for d in [&tmp, &ckpt] {
        let _ = std::fs::remove_dir_all(d);
        if let Err(e) = std::fs::create_dir_all(d) {
            return (Err(format!("{}: {e}", d.display())), None);
        }
    }
    let run_tmp = tmp.clone();
    let run_ckpt = ckpt.clone();
    let mut runner = sqllogictest::Runner::new(move || {
        let tmp = run_tmp.clone();
        let session = match mode {
            Mode::Plain(p) => common::session(p),
            Mode::Checkpointed => checkpointed_session(&run_ckpt),
        };
        async move { Ok::<_, DbError>(Db { session, tmp }) }
    });
    runner.with_column_validator(|_, _| true);
    runner.with_validator(row_validator);
    let result = runner
        .run_file(path)
        .map_err(|e| format!("{} ({mode}):\n{}", path.display(), e.display(true)));
    let count = (mode == Mode::Checkpointed).then(|| count_checkpoints(&ckpt));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&ckpt);
    (result, count)
}

/// Compares each row as its values joined by spaces, whitespace runs collapsed on both sides, so
/// that an empty string value (`+I[a, , b]`) reads the same as in the file. Lines with
/// `<slt:ignore>` keep sqllogictest's fragment matching.
fn row_validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    if expected.iter().any(|l| l.contains("<slt:ignore>")) {
        return sqllogictest::default_validator(normalizer, actual, expected);
    }
    let actual: Vec<String> = actual.iter().map(|r| normalizer(&r.join(" "))).collect();
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    actual == expected
}

/// Polls a future that never waits (the engine runs synchronously) to completion.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Writes a copy of `path` into `out_dir` with every record's expected output replaced by what
/// the engine returns at parallelism 1 (for reviewing a new file; never the expectation itself).
fn complete_file(path: &Path, out_dir: &Path) -> Result<(), String> {
    let name = path.file_name().ok_or("file name")?;
    let copy = out_dir.join(name);
    std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
    std::fs::copy(path, &copy).map_err(|e| e.to_string())?;
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let tmp = std::env::temp_dir().join(format!("streamsql-slt-{}-{stem}-c", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let mut runner = sqllogictest::Runner::new(move || {
        let tmp = tmp.clone();
        async move {
            Ok::<_, DbError>(Db {
                session: common::session(1),
                tmp,
            })
        }
    });
    block_on(runner.update_test_file(
        &copy,
        " ",
        row_validator,
        sqllogictest::default_normalizer,
        |_, _| true,
    ))
    .map_err(|e| e.to_string())
}

#[test]
fn slt_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let only = std::env::var("SLT").ok();
    if let Ok(out) = std::env::var("SLT_COMPLETE") {
        for f in &files {
            if only
                .as_deref()
                .is_none_or(|o| f.display().to_string().contains(o))
            {
                complete_file(f, Path::new(&out)).expect("completed copy written");
            }
        }
        return;
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut periodic_total = 0;
    let mut completed_total = 0;
    for f in &files {
        if only
            .as_deref()
            .is_some_and(|o| !f.display().to_string().contains(o))
        {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("readable .slt file");
        let mut modes = vec![Mode::Plain(1)];
        if !text.contains("# parallelism: 1") {
            modes.push(Mode::Plain(2));
            if !text.contains("# checkpointed: no") {
                modes.push(Mode::Checkpointed);
            }
        }
        for mode in modes {
            ran += 1;
            let (result, count) = run_file(f, mode);
            if let Err(e) = result {
                failures.push(e);
            }
            if let Some(c) = count {
                eprintln!(
                    "checkpointed {}: {} job dirs, {} checkpoints ({} periodic, {} final)",
                    f.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    c.jobs,
                    c.completed,
                    c.periodic,
                    c.completed - c.periodic
                );
                periodic_total += c.periodic;
                completed_total += c.completed;
            }
        }
    }
    eprintln!(
        "ran {ran} slt file runs; the checkpointed runs completed {completed_total} \
         checkpoints, {periodic_total} of them periodic"
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Only meaningful over the whole suite: a single file may start no job at all.
    if only.is_none() {
        assert!(
            completed_total > 0,
            "the checkpointed runs completed no checkpoint: that mode tested nothing"
        );
    }
}

/// A source paced to run for about 200 ms, so that checkpoints are taken while keyed state and a
/// transactional file sink are in flight: the results are exactly those without checkpoints
/// (a replayed or lost record would change a count or a sum).
#[test]
fn checkpoints_taken_mid_job() {
    let dir = std::env::temp_dir().join(format!("streamsql-slt-{}-mid-job", std::process::id()));
    let ckpt = dir.join("checkpoints");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&ckpt).expect("temp dir is writable");
    let mut session = checkpointed_session(&ckpt);
    let script = format!(
        "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '400', \
           'rows-per-second' = '2000');
         CREATE TABLE out_csv (id BIGINT, twice BIGINT) WITH ('connector' = 'filesystem', \
           'path' = '{out}', 'format' = 'csv');
         INSERT INTO out_csv SELECT id, id * 2 FROM gen WHERE id % 3 = 0;
         SELECT id % 5, COUNT(*), SUM(id) FROM gen GROUP BY id % 5;",
        out = out.display()
    );
    let run = common::run_script(&mut session, &script).expect("the paced job runs");
    let (schema, changes) = &run.selects[0];
    let table = common::fold(schema, changes, common::print_value).expect("a valid changelog");
    let expected: Vec<Vec<String>> = [
        ["0", "80", "16200"],
        ["1", "80", "15880"],
        ["2", "80", "15960"],
        ["3", "80", "16040"],
        ["4", "80", "16120"],
    ]
    .iter()
    .map(|r| r.iter().map(|v| v.to_string()).collect())
    .collect();
    assert_eq!(table, expected);
    let count = count_checkpoints(&ckpt);
    eprintln!(
        "paced job: {} checkpoints ({} periodic)",
        count.completed, count.periodic
    );
    assert!(
        count.periodic > 0,
        "no periodic checkpoint during a 200 ms job: {count:?}"
    );
    let read_back = format!(
        "CREATE TABLE back (id BIGINT, twice BIGINT) WITH ('connector' = 'filesystem', \
           'path' = '{out}', 'format' = 'csv');
         SELECT COUNT(*), SUM(id), SUM(twice) FROM back;",
        out = out.display()
    );
    let mut plain = common::session(1);
    let run = common::run_script(&mut plain, &read_back).expect("the sink's files read back");
    let (schema, changes) = &run.selects[0];
    let table = common::fold(schema, changes, common::print_value).expect("a valid changelog");
    assert_eq!(table, vec![vec!["133", "26733", "53466"]]);
    let _ = std::fs::remove_dir_all(&dir);
}
