//! Runs every `tests/slt/*.slt` file through the real engine with sqllogictest, at parallelism 1
//! and again at parallelism 2 (unless the file says `# parallelism: 1`), and then in two more
//! modes at parallelism 2 (at parallelism 1 for a `# parallelism: 1` file) with exactly-once
//! checkpoints every 10 ms, unless it says `# checkpointed: no`. The expected output is the same
//! in every mode, so neither checkpointing nor a restore may ever change a result.
//!
//! - **Checkpointed**: the file runs with checkpoints. The checkpointing keys are pinned, so a
//!   file's own `SET`/`RESET` of them keeps checkpointing on. Every completed checkpoint is kept so
//!   that the run can count them: the suite fails if the checkpointed runs completed none (the mode
//!   would test nothing).
//! - **Restored**: every job is stopped abruptly after a randomly chosen number of completed
//!   checkpoints (cancelled with `RETAIN_ON_CANCELLATION`), then the same record runs again as a
//!   new job in a fresh session (the file's earlier statements without a job, DDL and `SET`, are
//!   re-run first) resumed from the newest checkpoint the stopped job completed, and finishes.
//!   A file run at parallelism 2 resumes each job at parallelism 1 or 3 (chosen with the kill
//!   point), so its state is redistributed by key group and its sources' splits reassigned; a
//!   `# parallelism: 1` file (only deterministic there) resumes at 1.
//!   The newest, not the chosen one: a transactional sink may already have published the output
//!   of a later checkpoint that completed while the job was stopping, which only a restore from
//!   that checkpoint leaves exactly once (as `--resume latest` after a crash). A SELECT's result
//!   is what an exactly-once consumer keeps (`common::consume`): the stopped job's changes up to
//!   the count the restored checkpoint covers, then the resumed job's. A job that ends before the
//!   chosen checkpoint is resumed from its final checkpoint, as if the process had been killed
//!   after writing it: so that the job's end does not delete it, each `chk-<n>` directory of the
//!   job is made beforehand as a symbolic link to a directory of the harness, and deleting a
//!   checkpoint only removes the link. A job that completes no checkpoint at all (it fails first,
//!   or runs no task that takes part in checkpoints) keeps the stopped job's result. The kill
//!   points come from a seed printed at the start and in every failure; `SLT_SEED=<n>` replays
//!   them.
//!
//! The jobs of the files mostly end within the first interval, so their only checkpoint is the
//! final one taken at the end of input; `checkpoints_taken_mid_job` runs a paced source long
//! enough for periodic checkpoints with state and a transactional sink in flight, and
//! `restored_from_a_checkpoint_taken_mid_job` stops that job at one of them and resumes it.
//!
//! A `query` returns the SELECT's final table (its changelog folded), or with
//! `SET 'sql-client.execution.result-mode' = 'changelog'` every change with its row kind first.
//! Values are written as Flink's print connector writes them. Statements that print (EXPLAIN,
//! SHOW, DESCRIBE) return their lines as rows. `${DATA}` is the absolute path of `tests/data/`,
//! `${TMP}` a fresh directory per file run for sink output. `SLT=<part of a path>` runs only the
//! matching files. The file runs are independent and run on one thread per core (`SLT_THREADS=<n>`
//! changes that). With `SLT_COMPLETE=DIR` the files are not checked: copies with the engine's
//! actual output are written to DIR for review.

mod common;
mod stepped;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqllogictest::{DBOutput, DefaultColumnType};
use streamsql::engine::checkpoint::stats::{stats_file, CheckpointStatsTracker};
use streamsql::engine::config::Configuration;
use streamsql::engine::error::EngineError;
use streamsql::engine::runtime::checkpointing::METADATA_FILE;
use streamsql::engine::runtime::JobOutcome;
use streamsql::engine::types::Schema;
use streamsql::engine::value::Change;
use streamsql::sql::session::StatementOutput;
use streamsql::{Restore, RunningJob, Streamsql};

/// Each SELECT of a record: its schema and its changes.
type Selects = Vec<(Schema, Vec<Change>)>;

struct Db {
    session: Streamsql,
    /// A fresh directory for this run's sink output, substituted for `${TMP}`.
    tmp: PathBuf,
    /// Where the driver of a job with stepped tables takes its savepoints.
    savepoints: PathBuf,
    /// In the restored mode: how jobs are stopped and resumed.
    restorer: Option<Restorer>,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for DbError {}

/// An error as a file expects it: the message, with the diagnostic's help when it has one.
fn db_error(e: streamsql::Error) -> DbError {
    let mut msg = e.to_string();
    if let streamsql::Error::Sql(d) = &e {
        if let Some(h) = &d.help {
            msg.push_str(&format!(" (help: {h})"));
        }
    }
    DbError(msg)
}

/// Runs a record's script and its job, if it starts one, to the end; a driver runs the steps of
/// its stepped tables.
fn run_script(
    session: &mut Streamsql,
    sql: &str,
    savepoints: &Path,
) -> Result<(Vec<StatementOutput>, Selects), DbError> {
    stepped::take_gates();
    let run = common::run_script_with(session, sql, |job, selects| {
        consume_stepped(job, selects, savepoints)
    })
    .map_err(db_error)?;
    Ok((run.outputs, run.selects))
}

/// [`common::consume`], with a driver for the steps of the job's stepped tables (those planned on
/// this thread since the last [`stepped::take_gates`]).
fn consume_stepped(
    job: RunningJob,
    selects: &mut [(Schema, Vec<Change>)],
    savepoints: &Path,
) -> Result<common::Consumed, streamsql::Error> {
    let driver = stepped::Driver::start(
        stepped::take_gates(),
        job.savepoint_handle(),
        savepoints.to_path_buf(),
    );
    let consumed = common::consume(job, selects);
    if let Some(d) = driver {
        d.finish()
            .map_err(|e| streamsql::Error::Job(EngineError::internal(e)))?;
    }
    consumed
}

/// Whether a file declares a stepped table: its jobs need checkpointing in every mode.
fn uses_stepped_tables(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.contains(&format!("'connector' = '{}'", stepped::CONNECTOR)))
}

/// `s` with the `stepped` connector added.
fn with_stepped(mut s: Streamsql) -> Streamsql {
    s.add_source_connector(stepped::CONNECTOR, stepped::connector())
        .expect("'stepped' is not a built-in connector");
    s
}

/// A plain run's session at parallelism `p`; for a file with stepped tables it checkpoints into
/// `ckpt`, but only at the end of input (and the savepoints of the steps).
fn plain_session(p: usize, stepped: bool, ckpt: &Path) -> Streamsql {
    with_stepped(if stepped {
        session_checkpointing_every(PLAIN_STEPPED_INTERVAL, ckpt, p, false)
    } else {
        common::session(p)
    })
}

/// The checkpoint interval of a plain run of a file with stepped tables: longer than any job.
const PLAIN_STEPPED_INTERVAL: &str = "1 h";

impl sqllogictest::DB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let sql = sql
            .replace("${DATA}", &data.display().to_string())
            .replace("${TMP}", &self.tmp.display().to_string());
        let (outputs, selects) = match &mut self.restorer {
            None => run_script(&mut self.session, &sql, &self.savepoints)?,
            Some(r) => r.run(&mut self.session, &sql, &self.savepoints)?,
        };
        let changelog = self
            .session
            .config()
            .get_raw("sql-client.execution.result-mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("changelog"));
        let mut rows: Vec<Vec<String>> = Vec::new();
        for o in &outputs {
            match o {
                StatementOutput::Info(_) => {}
                StatementOutput::Table { rows: r, .. } => rows.extend(r.iter().cloned()),
                StatementOutput::Explain(text) => {
                    rows.extend(text.lines().map(|l| vec![l.trim_end().to_string()]))
                }
            }
        }
        for (schema, changes) in &selects {
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
        if rows.is_empty() && selects.is_empty() {
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
    /// A checkpoint every [`CHECKPOINT_INTERVAL`], at this parallelism.
    Checkpointed(usize),
    /// As `Checkpointed`, every job stopped at a random checkpoint and resumed from it.
    Restored(usize),
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Plain(p) => write!(f, "parallelism {p}"),
            Mode::Checkpointed(p) => write!(f, "parallelism {p}, checkpointed"),
            Mode::Restored(p) => write!(f, "parallelism {p}, killed and restored"),
        }
    }
}

/// The smallest interval Flink accepts: as many checkpoints as a job's length allows.
const CHECKPOINT_INTERVAL: &str = "10 ms";

/// The restored mode stops a job after 1 to this many completed checkpoints...
const KILL_AFTER_MAX: usize = 4;

/// ...and then within this many milliseconds (one interval), so that the job usually delivers
/// results the restored checkpoint does not cover.
const KILL_DELAY_MAX_MS: u64 = 10;

/// The checkpoint ids [`preserve_checkpoints`] prepares for a job stopped at `kill`: a margin for
/// the checkpoints that fail, and for those that complete while the job is stopping.
fn preserved_ids(kill: KillPoint) -> u64 {
    // The savepoints of a stepped job take checkpoint ids as well.
    u64::try_from(kill.after + stepped::MAX_STEPS + 1).expect("a small number") + 4
}

/// A session at parallelism `p` that checkpoints into `dir`. Every key is pinned: a file's `SET`
/// or `RESET` must not turn checkpointing off or move it elsewhere. Every completed checkpoint is
/// retained so that [`count_checkpoints`] sees all of them, and batches are flushed quickly so
/// barriers interleave with data rather than arriving after it. With `keep_on_cancel`, a
/// cancelled job keeps its checkpoints (`RETAIN_ON_CANCELLATION`) so that it can be resumed.
fn checkpointed_session(dir: &Path, p: usize, keep_on_cancel: bool) -> Streamsql {
    with_stepped(session_checkpointing_every(
        CHECKPOINT_INTERVAL,
        dir,
        p,
        keep_on_cancel,
    ))
}

/// [`checkpointed_session`] with a checkpoint every `interval`.
fn session_checkpointing_every(
    interval: &str,
    dir: &Path,
    p: usize,
    keep_on_cancel: bool,
) -> Streamsql {
    let dir = dir.display().to_string();
    let p = p.to_string();
    let mut settings = vec![
        ("parallelism.default", p.as_str()),
        ("execution.checkpointing.interval", interval),
        ("execution.checkpointing.dir", dir.as_str()),
        ("execution.checkpointing.num-retained", "1000000"),
        ("execution.buffer-timeout.interval", "1 ms"),
        // With checkpointing Flink's default restart strategy retries a failed job forever; the
        // plain runs have none, and a file's expected errors must read the same in both modes.
        ("restart-strategy.type", "disable"),
    ];
    if keep_on_cancel {
        settings.push((
            "execution.checkpointing.externalized-checkpoint-retention",
            "RETAIN_ON_CANCELLATION",
        ));
    }
    let mut conf = Configuration::new();
    for (k, v) in &settings {
        conf.set(k, v).expect("checkpointing settings are valid");
    }
    let mut s = Streamsql::new(conf);
    for (k, v) in &settings {
        s.pin(k, v);
    }
    s
}

/// Makes `chk-1` to `chk-<ids>` of a job's directory symbolic links to directories of `kept` (both
/// emptied first): a checkpoint that the job deletes (retention, the end of the job) loses only
/// its link, and stays readable in `kept` as after a kill.
fn preserve_checkpoints(job_dir: &Path, kept: &Path, ids: u64) -> std::io::Result<()> {
    for d in [job_dir, kept] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    for id in 1..=ids {
        let target = kept.join(format!("chk-{id}"));
        std::fs::create_dir(&target)?;
        std::os::unix::fs::symlink(&target, job_dir.join(format!("chk-{id}")))?;
    }
    Ok(())
}

/// The ids of the completed checkpoints in `kept`, oldest first.
fn kept_checkpoints(kept: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(kept)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(METADATA_FILE).is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Whether a record may start a job: unless every statement only changes or shows the catalog or
/// the configuration. (A record wrongly taken for one without a job fails the run.)
fn may_start_job(sql: &str) -> bool {
    const NO_JOB: [&str; 10] = [
        "CREATE", "DROP", "ALTER", "SET", "RESET", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "USE",
    ];
    sql.split(';').any(|statement| {
        let code: String = statement
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ");
        let upper = code.to_ascii_uppercase();
        let first = upper.split_whitespace().next().unwrap_or("");
        let ddl = NO_JOB.contains(&first) && !(first == "CREATE" && upper.contains("SELECT"));
        !first.is_empty() && !ddl
    })
}

/// When [`kill_and_resume`] stops a job.
#[derive(Clone, Copy, Debug)]
struct KillPoint {
    /// After this many completed checkpoints...
    after: usize,
    /// ...and this many milliseconds.
    delay_ms: u64,
}

impl KillPoint {
    fn random(rng: &mut ChaCha8Rng) -> Self {
        KillPoint {
            after: rng.gen_range(1..=KILL_AFTER_MAX),
            delay_ms: rng.gen_range(0..KILL_DELAY_MAX_MS),
        }
    }
}

impl std::fmt::Display for KillPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms after checkpoint {}", self.delay_ms, self.after)
    }
}

/// How a job stopped by [`kill_and_resume`] ended and was resumed.
struct Resumed {
    /// `Cancelled` when the job was stopped, `Finished` when it ended before that.
    stopped: JobOutcome,
    /// The checkpoint the second job resumed from; `None` when the first completed none.
    from: Option<u64>,
    /// Changes of the stopped job that the restored checkpoint did not cover.
    dropped: usize,
    /// Each SELECT's result as an exactly-once consumer keeps it.
    selects: Selects,
}

/// Runs `job` (a job of `sql` whose checkpoint directories [`preserve_checkpoints`] prepared with
/// `kept` for [`preserved_ids`]`(kill)`) until `kill`, then cancels it; resumes `sql` from the
/// newest checkpoint it completed in a session from `resume_session` and runs that job to its
/// end. `job_dir` is the job's checkpoint directory.
fn kill_and_resume(
    job: RunningJob,
    sql: &str,
    job_dir: &Path,
    kept: &Path,
    kill: KillPoint,
    savepoints: &Path,
    resume_session: impl FnOnce() -> Streamsql,
) -> Result<Resumed, streamsql::Error> {
    let mut selects: Selects = job
        .select_schemas()
        .into_iter()
        .map(|s| (s, Vec::new()))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let done = done.clone();
        let cancel = job.cancel_handle();
        let kept = kept.to_path_buf();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if kept_checkpoints(&kept).len() >= kill.after {
                    std::thread::sleep(Duration::from_millis(kill.delay_ms));
                    cancel.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let stopped = consume_stepped(job, &mut selects, savepoints);
    done.store(true, Ordering::SeqCst);
    let _ = killer.join();
    let stopped = stopped?;
    let harness = |msg: String| streamsql::Error::Job(EngineError::internal(msg));
    if let Ok(stats) = CheckpointStatsTracker::load(&stats_file(job_dir)) {
        if let Some(id) = stats.history_ids().into_iter().max() {
            let preserved = preserved_ids(kill);
            if id > preserved {
                return Err(harness(format!(
                    "the job used checkpoint id {id}, beyond the {preserved} preserved"
                )));
            }
        }
    }
    let Some(&from) = kept_checkpoints(kept).last() else {
        return Ok(Resumed {
            stopped: stopped.outcome,
            from: None,
            dropped: 0,
            selects,
        });
    };
    let mut session = resume_session();
    session.restore_from(Restore::Path(kept.join(format!("chk-{from}"))), false);
    stepped::take_gates();
    let exec = session.execute("test.sql", sql)?;
    let job = exec
        .job
        .ok_or_else(|| harness("the resumed script started no job".to_string()))?;
    let resumed = consume_stepped(job, &mut selects, savepoints)?;
    Ok(Resumed {
        stopped: stopped.outcome,
        from: Some(from),
        dropped: resumed.dropped,
        selects,
    })
}

/// The restored mode's state for one file run.
struct Restorer {
    /// The checkpoint directory of every session of the file run.
    ckpt: PathBuf,
    parallelism: usize,
    /// The records that started no job, in order: re-run in a resumed job's session.
    history: Vec<String>,
    rng: ChaCha8Rng,
    /// What happened to each job, for the file run's report.
    log: Arc<Mutex<RestoreLog>>,
}

/// What the restored mode did with the jobs of one file run.
#[derive(Debug, Default)]
struct RestoreLog {
    /// Jobs cancelled by the kill and resumed (from their final checkpoint when the kill came
    /// after it was written).
    cancelled: usize,
    /// Jobs that ended before the kill, resumed from their final checkpoint.
    ended: usize,
    /// Jobs that completed no checkpoint (they failed first, or no task took part).
    without_checkpoint: usize,
    /// SELECT changes of stopped jobs that their restored checkpoint did not cover.
    dropped: usize,
    /// One line per job, for a failure message.
    lines: Vec<String>,
}

impl Restorer {
    fn run(
        &mut self,
        session: &mut Streamsql,
        sql: &str,
        savepoints: &Path,
    ) -> Result<(Vec<StatementOutput>, Selects), DbError> {
        if !may_start_job(sql) {
            self.history.push(sql.to_string());
            let exec = session.execute("test.sql", sql).map_err(db_error)?;
            if exec.job.is_some() {
                return Err(DbError(format!(
                    "a record taken for one without a job started one: {sql}"
                )));
            }
            return Ok((exec.outputs, Vec::new()));
        }
        let kill = KillPoint::random(&mut self.rng);
        // Restore at another parallelism where the file's results do not depend on it.
        let resume_p = if self.parallelism > 1 {
            [1, 3][self.rng.gen_range(0..2)]
        } else {
            self.parallelism
        };
        let job_id = streamsql::job_id(sql);
        let job_dir = self.ckpt.join(&job_id);
        let kept = self.ckpt.join("kept").join(&job_id);
        preserve_checkpoints(&job_dir, &kept, preserved_ids(kill))
            .map_err(|e| DbError(format!("{}: {e}", job_dir.display())))?;
        stepped::take_gates();
        let (outputs, job) = match session.execute("test.sql", sql) {
            Ok(streamsql::Execution {
                outputs,
                job: Some(job),
                ..
            }) => (outputs, job),
            other => {
                // No job: the statement belongs to the script a resumed job re-runs.
                self.history.push(sql.to_string());
                let _ = std::fs::remove_dir_all(&job_dir);
                let _ = std::fs::remove_dir_all(&kept);
                return other.map(|e| (e.outputs, Vec::new())).map_err(db_error);
            }
        };
        let (ckpt, p, history) = (&self.ckpt, resume_p, &self.history);
        let resumed = kill_and_resume(job, sql, &job_dir, &kept, kill, savepoints, || {
            let mut s = checkpointed_session(ckpt, p, true);
            for h in history {
                // Their outcome was checked when the file ran them; a failing one fails again.
                if let Ok(streamsql::Execution { job: Some(j), .. }) = s.execute("test.sql", h) {
                    let _ = j.wait();
                }
            }
            s
        });
        let mut log = self.log.lock().expect("not poisoned");
        let n = log.lines.len() + 1;
        let line = match &resumed {
            Err(_) => format!("job {n}: failed (kill {kill})"),
            Ok(r) => {
                match (r.stopped, r.from) {
                    (_, None) => log.without_checkpoint += 1,
                    (JobOutcome::Cancelled, Some(_)) => log.cancelled += 1,
                    (JobOutcome::Finished, Some(_)) => log.ended += 1,
                }
                log.dropped += r.dropped;
                format!(
                    "job {n}: {:?} (kill {kill}), resumed from {} at parallelism {resume_p}, {} \
                     changes dropped",
                    r.stopped,
                    r.from
                        .map_or("nothing".to_string(), |id| format!("chk-{id}")),
                    r.dropped
                )
            }
        };
        log.lines.push(line);
        resumed.map(|r| (outputs, r.selects)).map_err(db_error)
    }
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

/// What one file run reports besides its result.
#[derive(Debug, Default)]
struct FileReport {
    /// Checkpointed mode: what was checkpointed.
    checkpoints: Option<CheckpointCount>,
    /// Restored mode: what happened to the jobs.
    restores: Option<RestoreLog>,
}

/// Runs one file in `mode`; `seed` chooses the restored mode's kill points.
fn run_file(path: &Path, mode: Mode, seed: u64) -> (Result<(), String>, FileReport) {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let suffix = match mode {
        Mode::Plain(p) => format!("p{p}"),
        Mode::Checkpointed(p) => format!("ckpt{p}"),
        Mode::Restored(p) => format!("restored{p}"),
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
            return (Err(format!("{}: {e}", d.display())), FileReport::default());
        }
    }
    let log = Arc::new(Mutex::new(RestoreLog::default()));
    let file_seed = seed ^ streamsql::engine::graph::stable_hash(stem.as_bytes(), 0);
    let run_tmp = tmp.clone();
    let run_ckpt = ckpt.clone();
    let run_log = log.clone();
    let stepped = uses_stepped_tables(path);
    let mut runner = sqllogictest::Runner::new(move || {
        let tmp = run_tmp.clone();
        let savepoints = run_ckpt.join("savepoints");
        let (session, restorer) = match mode {
            Mode::Plain(p) => (plain_session(p, stepped, &run_ckpt), None),
            Mode::Checkpointed(p) => (checkpointed_session(&run_ckpt, p, false), None),
            Mode::Restored(p) => (
                checkpointed_session(&run_ckpt, p, true),
                Some(Restorer {
                    ckpt: run_ckpt.clone(),
                    parallelism: p,
                    history: Vec::new(),
                    rng: ChaCha8Rng::seed_from_u64(file_seed),
                    log: run_log.clone(),
                }),
            ),
        };
        async move {
            Ok::<_, DbError>(Db {
                session,
                tmp,
                savepoints,
                restorer,
            })
        }
    });
    runner.with_column_validator(|_, _| true);
    runner.with_validator(row_validator);
    let result = runner.run_file(path);
    let mut report = FileReport::default();
    if let Mode::Checkpointed(_) = mode {
        report.checkpoints = Some(count_checkpoints(&ckpt));
    }
    if let Mode::Restored(_) = mode {
        report.restores = Some(std::mem::take(&mut *log.lock().expect("not poisoned")));
    }
    let result = result.map_err(|e| {
        let mut msg = format!("{} ({mode}):\n{}", path.display(), e.display(true));
        if let Some(r) = &report.restores {
            msg.push_str(&format!(
                "\nseed {seed} (SLT_SEED={seed} replays the kill points); jobs:\n  {}",
                r.lines.join("\n  ")
            ));
        }
        msg
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&ckpt);
    (result, report)
}

/// The seed of the kill points, one per test process: `SLT_SEED`, else drawn from the clock.
fn suite_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("SLT_SEED") {
        Ok(s) => s.parse().expect("SLT_SEED is an unsigned integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                d.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(d.subsec_nanos())
            }),
    })
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
    let ckpt = tmp.with_extension("checkpoints");
    for d in [&tmp, &ckpt] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let stepped = uses_stepped_tables(path);
    let mut runner = sqllogictest::Runner::new(move || {
        let tmp = tmp.clone();
        let session = plain_session(1, stepped, &ckpt);
        let savepoints = ckpt.join("savepoints");
        async move {
            Ok::<_, DbError>(Db {
                session,
                tmp,
                savepoints,
                restorer: None,
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
    let seed = suite_seed();
    eprintln!("restored mode: seed {seed} (SLT_SEED={seed} replays the kill points)");
    let mut runs: Vec<(&PathBuf, Mode)> = Vec::new();
    for f in &files {
        if only
            .as_deref()
            .is_some_and(|o| !f.display().to_string().contains(o))
        {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("readable .slt file");
        runs.push((f, Mode::Plain(1)));
        // Checkpoints and restores must not change a result at the parallelism the file is
        // deterministic at.
        let checkpointed_p = if text.contains("# parallelism: 1") {
            1
        } else {
            runs.push((f, Mode::Plain(2)));
            2
        };
        if !text.contains("# checkpointed: no") {
            runs.push((f, Mode::Checkpointed(checkpointed_p)));
            runs.push((f, Mode::Restored(checkpointed_p)));
        }
    }
    // The runs are independent (each has its own directories) and mostly wait for fsync: one
    // per core runs at once; `SLT_THREADS` changes how many.
    let threads = std::env::var("SLT_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(4)))
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Outcome = (Result<(), String>, FileReport, Duration);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(runs.iter().map(|_| None).collect());
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((f, mode)) = runs.get(i) else {
                    return;
                };
                let run_started = std::time::Instant::now();
                let (result, report) = run_file(f, *mode, seed);
                let outcome = (result, report, run_started.elapsed());
                outcomes.lock().expect("not poisoned")[i] = Some(outcome);
            });
        }
    });
    let wall = started.elapsed();
    let mut failures = Vec::new();
    let mut periodic_total = 0;
    let mut completed_total = 0;
    let mut restores = RestoreLog::default();
    // Time spent in the plain, checkpointed and restored runs.
    let mut time = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let outcomes = outcomes.into_inner().expect("not poisoned");
    let ran = runs.len();
    for ((f, mode), outcome) in runs.iter().zip(outcomes) {
        let (result, report, took) = outcome.expect("every run ran");
        let name = f
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match mode {
            Mode::Plain(_) => time.0 += took,
            Mode::Checkpointed(_) => time.1 += took,
            Mode::Restored(_) => time.2 += took,
        }
        if let Err(e) = result {
            failures.push(e);
        }
        if let Some(c) = report.checkpoints {
            eprintln!(
                "checkpointed {name}: {} job dirs, {} checkpoints ({} periodic, {} final)",
                c.jobs,
                c.completed,
                c.periodic,
                c.completed - c.periodic
            );
            periodic_total += c.periodic;
            completed_total += c.completed;
        }
        if let Some(r) = report.restores {
            eprintln!(
                "restored {name}: {} jobs cancelled and resumed, {} ended before the kill, {} \
                 without a checkpoint; {} changes dropped",
                r.cancelled, r.ended, r.without_checkpoint, r.dropped
            );
            restores.cancelled += r.cancelled;
            restores.ended += r.ended;
            restores.without_checkpoint += r.without_checkpoint;
            restores.dropped += r.dropped;
        }
    }
    eprintln!(
        "ran {ran} slt file runs; the checkpointed runs completed {completed_total} \
         checkpoints, {periodic_total} of them periodic; the restored runs resumed {} jobs \
         cancelled by the kill and {} that had ended before it, {} had no checkpoint, and {} \
         SELECT changes were dropped as not covered by the restored checkpoint",
        restores.cancelled, restores.ended, restores.without_checkpoint, restores.dropped
    );
    eprintln!(
        "{wall:.1?} on {threads} threads; time in the plain runs {:.1?}, checkpointed {:.1?}, \
         restored {:.1?}",
        time.0, time.1, time.2
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
        assert!(
            restores.cancelled + restores.ended > 0,
            "the restored runs resumed no job: that mode tested nothing"
        );
    }
}

/// A paced source of 400 rows at 2000 rows per second (about 200 ms) into an updating
/// aggregation (a SELECT) and an exactly-once filesystem sink at `out`.
fn paced_script(out: &Path) -> String {
    format!(
        "CREATE TABLE gen (id BIGINT) WITH ('connector' = 'datagen', \
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '400', \
           'rows-per-second' = '2000');
         CREATE TABLE out_csv (id BIGINT, twice BIGINT) WITH ('connector' = 'filesystem', \
           'path' = '{out}', 'format' = 'csv');
         INSERT INTO out_csv SELECT id, id * 2 FROM gen WHERE id % 3 = 0;
         SELECT id % 5, COUNT(*), SUM(id) FROM gen GROUP BY id % 5;",
        out = out.display()
    )
}

/// The folded SELECT result of [`paced_script`].
fn paced_table() -> Vec<Vec<String>> {
    [
        ["0", "80", "16200"],
        ["1", "80", "15880"],
        ["2", "80", "15960"],
        ["3", "80", "16040"],
        ["4", "80", "16120"],
    ]
    .iter()
    .map(|r| r.iter().map(|v| v.to_string()).collect())
    .collect()
}

/// Reads the sink output of [`paced_script`] back: row count, sum of ids, sum of doubled ids.
fn paced_sink_totals(out: &Path) -> Vec<Vec<String>> {
    let read_back = format!(
        "CREATE TABLE back (id BIGINT, twice BIGINT) WITH ('connector' = 'filesystem', \
           'path' = '{out}', 'format' = 'csv');
         SELECT COUNT(*), SUM(id), SUM(twice) FROM back;",
        out = out.display()
    );
    let mut plain = common::session(1);
    let run = common::run_script(&mut plain, &read_back).expect("the sink's files read back");
    let (schema, changes) = &run.selects[0];
    common::fold(schema, changes, common::print_value).expect("a valid changelog")
}

/// The paced job's results are exactly those without checkpoints (a replayed or lost record
/// would change a count or a sum), with checkpoints taken while keyed state and a transactional
/// file sink are in flight.
#[test]
fn checkpoints_taken_mid_job() {
    let dir = std::env::temp_dir().join(format!("streamsql-slt-{}-mid-job", std::process::id()));
    let ckpt = dir.join("checkpoints");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&ckpt).expect("temp dir is writable");
    let mut session = checkpointed_session(&ckpt, 2, false);
    let run = common::run_script(&mut session, &paced_script(&out)).expect("the paced job runs");
    let (schema, changes) = &run.selects[0];
    let table = common::fold(schema, changes, common::print_value).expect("a valid changelog");
    assert_eq!(table, paced_table());
    let count = count_checkpoints(&ckpt);
    eprintln!(
        "paced job: {} checkpoints ({} periodic)",
        count.completed, count.periodic
    );
    assert!(
        count.periodic > 0,
        "no periodic checkpoint during a 200 ms job: {count:?}"
    );
    assert_eq!(paced_sink_totals(&out), vec![vec!["133", "26733", "53466"]]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The paced job killed between two of its periodic checkpoints (one every 50 ms) and resumed
/// from the newest one at parallelism 3 (it ran at 2): the SELECT result kept by an exactly-once consumer and the sink's files
/// are exactly those of an uninterrupted run. The kill comes 5 to 40 ms after a checkpoint, so
/// the job has usually delivered SELECT changes that the checkpoint does not cover and that the
/// consumer must drop; the test runs again (at most three times) until that happened once.
#[test]
fn restored_from_a_checkpoint_taken_mid_job() {
    let seed = suite_seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = std::env::temp_dir().join(format!(
        "streamsql-slt-{}-mid-job-restored",
        std::process::id()
    ));
    let mut dropped_any = false;
    for _ in 0..3 {
        let kill = KillPoint {
            after: rng.gen_range(1..=2),
            delay_ms: rng.gen_range(5..40),
        };
        let replay = format!("seed {seed} (SLT_SEED={seed} replays), killed {kill}");
        let ckpt = dir.join("checkpoints");
        let out = dir.join("out");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&ckpt).expect("temp dir is writable");
        let sql = paced_script(&out);
        let job_id = streamsql::job_id(&sql);
        let (job_dir, kept) = (ckpt.join(&job_id), ckpt.join("kept").join(&job_id));
        preserve_checkpoints(&job_dir, &kept, preserved_ids(kill))
            .expect("checkpoint directories prepared");
        let session = |p: usize| session_checkpointing_every("50 ms", &ckpt, p, true);
        let job = session(2)
            .execute("test.sql", &sql)
            .expect("the paced job starts")
            .job
            .expect("a job");
        // Resumed at another parallelism: the datagen ranges left, the keyed state and the
        // sink's pending files are redistributed.
        let savepoints = dir.join("savepoints");
        let resumed = kill_and_resume(job, &sql, &job_dir, &kept, kill, &savepoints, || session(3))
            .unwrap_or_else(|e| panic!("{replay}: {e}"));
        assert_eq!(
            resumed.stopped,
            JobOutcome::Cancelled,
            "{replay}: the job was stopped before its end"
        );
        let from = resumed.from.expect("a checkpoint to resume from");
        eprintln!(
            "paced job: {replay}, resumed from chk-{from}, {} changes dropped",
            resumed.dropped
        );
        let (schema, changes) = &resumed.selects[0];
        let table = common::fold(schema, changes, common::print_value)
            .unwrap_or_else(|e| panic!("{replay}: {e}"));
        assert_eq!(table, paced_table(), "{replay}");
        assert_eq!(
            paced_sink_totals(&out),
            vec![vec!["133", "26733", "53466"]],
            "{replay}"
        );
        if resumed.dropped > 0 {
            dropped_any = true;
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        dropped_any,
        "seed {seed}: no kill came after SELECT changes the restored checkpoint did not cover"
    );
}
