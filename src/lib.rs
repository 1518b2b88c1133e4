//! # streamsql
//!
//! An embeddable stream processor that runs Flink SQL. This crate is the facade: it reads TOML
//! configuration, runs SQL scripts through the `sql` crate's planner on the `engine` crate's
//! runtime, renders diagnostics with miette, and hosts the command line.
//!
//! Layers (dependencies point down):
//! - `streamsql` (this crate): [`Streamsql`] sessions, [`config`] (TOML), [`diagnostic`],
//!   [`print`](mod@print) (Flink's print format), the CLI in `main.rs`.
//! - `streamsql-sql`: parser (Flink dialect on sqlparser), catalog, binder, planner.
//! - `streamsql-engine`: types, expressions, operators, connectors, the threaded runtime.
//! - `streamsql-storage`: durable, checksummed files.
//!
//! ```no_run
//! use streamsql::Streamsql;
//! let mut s = Streamsql::new(Default::default());
//! let exec = s.execute("example.sql", "SELECT 1 + 1").expect("valid SQL");
//! let rows = exec.job.expect("a SELECT runs a job").collect_changes().expect("job succeeds");
//! assert_eq!(rows[0].1.row[0], streamsql::engine::value::Value::Int(2));
//! ```

pub mod checkpoints_cmd;
pub mod config;
pub mod diagnostic;
pub mod print;

use std::time::Duration;

use crossbeam_channel::Select;
pub use streamsql_engine as engine;
use streamsql_engine::checkpoint::CheckpointConfig;
use streamsql_engine::config::Configuration;
use streamsql_engine::operators::collect::Collected;
use streamsql_engine::runtime::checkpointing::{self, CheckpointSetup};
use streamsql_engine::runtime::job_result::{self, JobResult, ResumePoint};
use streamsql_engine::runtime::{self, CancelHandle, JobHandle, JobOutcome, RuntimeSettings};
use streamsql_engine::types::Schema;
use streamsql_engine::value::Change;
use streamsql_engine::EngineError;
pub use streamsql_sql as sql;
use streamsql_sql::session::{SelectOutput, SqlSession, StatementOutput};

pub use diagnostic::Error;

/// A session: a catalog of tables and views and the configuration, across scripts.
pub struct Streamsql {
    session: SqlSession,
    restore: Option<Restore>,
    allow_non_restored_state: bool,
    process_ends_with_job: bool,
}

/// Where a job resumes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// A checkpoint directory or its `_metadata` file (`-s PATH`).
    Path(std::path::PathBuf),
    /// The newest intact checkpoint of this pipeline, if there is one (`--resume latest`).
    Latest,
}

/// What executing a script produced.
pub struct Execution {
    /// What DDL, SET, SHOW, DESCRIBE and EXPLAIN statements printed, in order.
    pub outputs: Vec<StatementOutput>,
    /// The running job of the script's INSERTs and SELECTs, if it had any.
    pub job: Option<RunningJob>,
    /// With `--resume latest`: the pipeline's last run finished, so no job was started.
    pub already_finished: Option<JobResult>,
}

/// How a job of a script checkpoints, or that it must not run.
enum Setup {
    Run(Option<CheckpointSetup>),
    /// `--resume latest` found that the pipeline's last run finished.
    Finished(JobResult),
}

/// What a SELECT of a running job delivers to [`RunningJob::for_each_result`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResultEvent<'a> {
    /// The next change of the result.
    Change(&'a Change),
    /// The job (re)started from a checkpoint taken when the result had delivered its first
    /// `delivered` changes: keep that many of the changes received for this SELECT (by this job
    /// and, for a resumed job, by the run it resumes), drop the rest, and append what follows.
    /// Every SELECT of a checkpointed job reports this first (0 when it starts afresh) and again
    /// whenever an attempt restarts. Exact as long as the changes received before were kept: see
    /// `docs/checkpointing.md`.
    Restored {
        /// Changes of the result covered by the checkpoint.
        delivered: u64,
    },
}

/// A job that is running.
pub struct RunningJob {
    handle: JobHandle,
    selects: Vec<SelectOutput>,
    /// `execution.checkpointing.savepoint-dir`: where savepoints go unless told otherwise.
    savepoint_dir: Option<std::path::PathBuf>,
}

/// Flink's answer to a savepoint request without a target directory when none is configured.
const NO_SAVEPOINT_DIR: &str = "Config key [execution.checkpointing.savepoint-dir] is not set. \
                                Property [target-directory] must be provided.";

/// The directory a savepoint goes to: `target`, else the configured default.
fn savepoint_target(
    target: Option<std::path::PathBuf>,
    configured: Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, Error> {
    target
        .or(configured)
        .ok_or_else(|| Error::Savepoint(EngineError::option(NO_SAVEPOINT_DIR, None)))
}

impl Streamsql {
    pub fn new(config: Configuration) -> Self {
        Streamsql {
            session: SqlSession::new(config),
            restore: None,
            allow_non_restored_state: false,
            process_ends_with_job: false,
        }
    }

    /// Declares that the process ends with the next job (as `streamsql run` does): operators
    /// whose input ended leave their in-memory keyed state to the process exit instead of
    /// freeing it entry by entry.
    pub fn process_ends_with_job(&mut self) {
        self.process_ends_with_job = true;
    }

    /// Adds a source connector to the session: its scripts' tables `WITH ('connector' = name)`
    /// read through `connector`, which receives each table's name, physical schema and other
    /// options. The built-in connectors' names are taken.
    pub fn add_source_connector(
        &mut self,
        name: &str,
        connector: streamsql_engine::connectors::registry::CustomSource,
    ) -> Result<(), Error> {
        self.session
            .catalog
            .add_source_connector(name, connector)
            .map_err(Error::Job)
    }

    /// Keeps `key = value` even when a script `SET`s the key (command-line overrides win).
    pub fn pin(&mut self, key: &str, value: &str) {
        self.session
            .pinned
            .push((key.to_string(), value.to_string()));
    }

    /// Resumes the next job from a checkpoint.
    pub fn restore_from(&mut self, restore: Restore, allow_non_restored_state: bool) {
        self.restore = Some(restore);
        self.allow_non_restored_state = allow_non_restored_state;
    }

    /// The session's configuration.
    pub fn config(&self) -> &Configuration {
        &self.session.config
    }

    /// Executes a script (named `name` in diagnostics) and starts its job.
    pub fn execute(&mut self, name: &str, sql: &str) -> Result<Execution, Error> {
        let result = self
            .session
            .execute_script(sql)
            .map_err(|e| Error::Sql(Box::new(diagnostic::SqlDiagnostic::new(&e, name, sql))))?;
        let job = match result.job {
            Some(plan) => {
                let mut settings = runtime_settings(&self.session.config);
                settings.process_ends_with_job = self.process_ends_with_job;
                settings.checkpointing = match self.checkpoint_setup(sql)? {
                    Setup::Run(setup) => setup,
                    Setup::Finished(r) => {
                        return Ok(Execution {
                            outputs: result.outputs,
                            job: None,
                            already_finished: Some(r),
                        });
                    }
                };
                // Flink's choice: the configured strategy, else exponential-delay when the job
                // checkpoints and no restart when it does not.
                let seed = streamsql_engine::graph::stable_hash(sql.as_bytes(), 1);
                let strategy = streamsql_engine::checkpoint::RestartStrategy::from_configuration(
                    &self.session.config,
                    seed,
                )
                .map_err(Error::Job)?;
                // A job that never asked for restarts fails with its task's error alone; one
                // configured with 'none' fails as Flink words it ("Recovery is suppressed by
                // NoRestartBackoffTimeStrategy").
                let explicit = self
                    .session
                    .config
                    .get_str("restart-strategy.type")
                    .is_some();
                settings.restart = match strategy {
                    streamsql_engine::checkpoint::RestartStrategy::NoRestart(_) if !explicit => {
                        None
                    }
                    s => Some(s),
                };
                let handle = runtime::start(&plan.graph, &settings).map_err(Error::Job)?;
                Some(RunningJob {
                    handle,
                    selects: plan.selects,
                    savepoint_dir: self
                        .session
                        .config
                        .get_path("execution.checkpointing.savepoint-dir"),
                })
            }
            None => None,
        };
        Ok(Execution {
            outputs: result.outputs,
            job,
            already_finished: None,
        })
    }

    /// Checkpointing of a job of `sql`: on when `execution.checkpointing.interval` is set or the job
    /// resumes; checkpoints go to `<execution.checkpointing.dir>/<job-id>`, where the job id is
    /// derived from the script so that `--resume latest` finds this pipeline's checkpoints.
    fn checkpoint_setup(&self, sql: &str) -> Result<Setup, Error> {
        let config = &self.session.config;
        let ckpt = CheckpointConfig::from_configuration(config).map_err(Error::Job)?;
        let dir = config.get_path("execution.checkpointing.dir");
        let job_dir = dir.as_ref().map(|d| d.join(job_id(sql)));
        let restore = match &self.restore {
            None => None,
            Some(Restore::Path(p)) => Some(checkpointing::read_checkpoint(p).map_err(Error::Job)?),
            Some(Restore::Latest) => match &job_dir {
                Some(d) => match job_result::resume_point(d).map_err(Error::Job)? {
                    ResumePoint::Checkpoint(c) => Some(c),
                    ResumePoint::Fresh => None,
                    ResumePoint::Finished(r) => return Ok(Setup::Finished(r)),
                },
                None => return Err(Error::Job(EngineError::option(
                    "--resume latest needs 'execution.checkpointing.dir' (state.checkpoints.dir)",
                    None,
                ))),
            },
        };
        if let Some(r) = &restore {
            eprintln!(
                "streamsql: restoring from checkpoint {} ({})",
                r.checkpoint_id,
                r.path.display()
            );
        }
        if !ckpt.is_enabled() && restore.is_none() {
            return Ok(Setup::Run(None));
        }
        let job_dir = match job_dir {
            Some(d) => d,
            None if !ckpt.is_enabled() => std::env::temp_dir().join(format!("streamsql-{}", job_id(sql))),
            None => {
                return Err(Error::Job(EngineError::option(
                    "'execution.checkpointing.interval' is set but 'execution.checkpointing.dir' (state.checkpoints.dir) is not: checkpoints need a directory",
                    None,
                )))
            }
        };
        Ok(Setup::Run(Some(CheckpointSetup {
            config: ckpt,
            job_dir,
            restore: restore.map(std::sync::Arc::new),
            allow_non_restored_state: self.allow_non_restored_state,
        })))
    }

    /// Asks the running job of `sql` (started by another process with the same script and
    /// configuration) for a savepoint in `target`, or in `execution.checkpointing.savepoint-dir`;
    /// with `stop`, the job ends once the savepoint completed (stop-with-savepoint). Returns the
    /// savepoint's directory.
    pub fn request_savepoint(
        &mut self,
        name: &str,
        sql: &str,
        target: Option<std::path::PathBuf>,
        stop: bool,
    ) -> Result<std::path::PathBuf, Error> {
        // The script's SET statements decide where its job keeps its checkpoints.
        self.explain(name, sql)?;
        let config = &self.session.config;
        let Some(dir) = config.get_path("execution.checkpointing.dir") else {
            return Err(Error::Savepoint(EngineError::option(
                "savepoints need a job that checkpoints: 'execution.checkpointing.dir' (state.checkpoints.dir) is not set",
                None,
            )));
        };
        let target = savepoint_target(
            target,
            config.get_path("execution.checkpointing.savepoint-dir"),
        )?;
        runtime::control::request_savepoint(&dir.join(job_id(sql)), &target, stop)
            .map_err(Error::Savepoint)
    }

    /// The dataflow of a script's INSERTs and SELECTs, one operator per line.
    pub fn explain(&mut self, name: &str, sql: &str) -> Result<String, Error> {
        self.session
            .explain_script(sql)
            .map_err(|e| Error::Sql(Box::new(diagnostic::SqlDiagnostic::new(&e, name, sql))))
    }
}

/// A job id for a script: 32 hex digits derived from its text, like Flink's job ids in form.
pub fn job_id(sql: &str) -> String {
    let a = streamsql_engine::graph::stable_hash(sql.as_bytes(), 0);
    let b = streamsql_engine::graph::stable_hash(sql.as_bytes(), 0x9e37_79b9_7f4a_7c15);
    format!("{a:016x}{b:016x}")
}

/// The runtime settings a configuration asks for.
pub fn runtime_settings(config: &Configuration) -> RuntimeSettings {
    let interval = config.auto_watermark_interval();
    RuntimeSettings {
        buffer_timeout: Some(config.buffer_timeout()),
        timer_interval: if interval.is_zero() {
            Duration::from_millis(200)
        } else {
            interval
        },
        max_parallelism: config.max_parallelism(),
        max_parallelism_explicit: config.get_int("pipeline.max-parallelism").is_some(),
        state_backend: state_backend(config),
        state_ttl: config
            .get_duration("table.exec.state.ttl")
            .filter(|ttl| !ttl.is_zero()),
        state_latency: config
            .get_bool("state.latency-track.keyed-state-enabled")
            .unwrap_or(false)
            .then(|| streamsql_engine::runtime::StateLatencySettings {
                sample_interval: config
                    .get_int("state.latency-track.sample-interval")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(100),
                history_size: config
                    .get_int("state.latency-track.history-size")
                    .and_then(|v| usize::try_from(v).ok())
                    .unwrap_or(128),
                state_name_as_variable: config
                    .get_bool("state.latency-track.state-name-as-variable")
                    .unwrap_or(true),
            }),
        ..RuntimeSettings::default()
    }
}

/// The keyed-state backend settings (`state.backend.*`).
pub fn state_backend(config: &Configuration) -> streamsql_engine::state::StateBackendConfig {
    use streamsql_engine::state::{BackendKind, StateBackendConfig, DEFAULT_MEMORY_BUDGET};
    StateBackendConfig {
        kind: match config.get_str("state.backend.type") {
            Some("hashmap") => BackendKind::HashMap,
            _ => BackendKind::Sled,
        },
        memory_budget: config
            .get_memory("state.backend.sled.memory-budget")
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(DEFAULT_MEMORY_BUDGET),
        local_dir: config.get_path("state.backend.sled.localdir"),
        incremental: config
            .get_bool("execution.checkpointing.incremental")
            .unwrap_or(false),
        local_recovery: config
            .get_bool("execution.state-recovery.from-local")
            .unwrap_or(false)
            .then(|| streamsql_engine::state::LocalRecoveryConfig {
                root: config
                    .get_path("execution.checkpointing.local-backup.dirs")
                    .unwrap_or_else(streamsql_engine::runtime::local_state::default_root),
                max_size: config.get_memory("execution.checkpointing.local-backup.max-size"),
            }),
        sled: streamsql_engine::state::SledTuning {
            write_buffer_ratio: config
                .get_float("state.backend.sled.write-buffer-ratio")
                .unwrap_or(0.75),
            evict_ratio: config
                .get_float("state.backend.sled.evict-ratio")
                .unwrap_or(0.5),
            low_space: config.get_str("state.backend.sled.mode") == Some("low-space"),
        },
    }
}

/// Takes savepoints of a running job from any thread ([`RunningJob::savepoint_handle`]).
#[derive(Clone)]
pub struct SavepointHandle {
    requests: runtime::SavepointHandle,
    /// `execution.checkpointing.savepoint-dir`: where savepoints go unless told otherwise.
    savepoint_dir: Option<std::path::PathBuf>,
}

impl SavepointHandle {
    /// As [`RunningJob::savepoint`].
    pub fn savepoint(
        &self,
        target: Option<std::path::PathBuf>,
        stop: bool,
    ) -> Result<std::path::PathBuf, Error> {
        let target = savepoint_target(target, self.savepoint_dir.clone())?;
        match self.requests.trigger(target, stop).recv() {
            Ok(Ok(dir)) => Ok(dir),
            Ok(Err(message)) => Err(Error::Savepoint(EngineError::Task { message })),
            Err(_) => Err(Error::Savepoint(EngineError::Task {
                message: "the job ended before the savepoint completed".into(),
            })),
        }
    }
}

impl RunningJob {
    /// Takes a savepoint of the job in `target` (else `execution.checkpointing.savepoint-dir`),
    /// stopping the job once it completed when `stop`. Blocks until the savepoint completed or
    /// failed; returns its directory. The job keeps running meanwhile (call this from another
    /// thread than the one consuming results).
    pub fn savepoint(
        &self,
        target: Option<std::path::PathBuf>,
        stop: bool,
    ) -> Result<std::path::PathBuf, Error> {
        self.savepoint_handle().savepoint(target, stop)
    }

    /// A handle to take savepoints from another thread while this one consumes the results.
    pub fn savepoint_handle(&self) -> SavepointHandle {
        SavepointHandle {
            requests: self.handle.savepoint_handle(),
            savepoint_dir: self.savepoint_dir.clone(),
        }
    }

    /// A handle to cancel the job from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.handle.cancel_handle()
    }

    /// The schemas of the job's SELECT results, in script order.
    pub fn select_schemas(&self) -> Vec<Schema> {
        self.selects.iter().map(|s| s.schema.clone()).collect()
    }

    /// Per-subtask metrics of the running job.
    pub fn metrics(&self) -> &[runtime::SubtaskMetrics] {
        &self.handle.metrics
    }

    /// Calls `f(select_index, schema, change)` for every result change of every SELECT as it
    /// arrives, then waits for the job to end. When an attempt restarts from a checkpoint, the
    /// changes after that checkpoint are passed again (at least once); [`RunningJob::for_each_result`]
    /// tells where they start.
    pub fn for_each_change(
        self,
        mut f: impl FnMut(usize, &Schema, &Change),
    ) -> Result<JobOutcome, Error> {
        self.for_each_result(|i, schema, event| {
            if let ResultEvent::Change(c) = event {
                f(i, schema, c);
            }
        })
    }

    /// Calls `f(select_index, schema, event)` for every change of every SELECT as it arrives and
    /// for every restore of a checkpointed job, then waits for the job to end. A caller that keeps
    /// each SELECT's changes and, on [`ResultEvent::Restored`], truncates them to the first
    /// `delivered` before appending what follows holds every change exactly once, across the
    /// restarts of this job and across a resumed job (`restore_from`) when it kept the changes of
    /// the run that stopped.
    pub fn for_each_result(
        self,
        mut f: impl FnMut(usize, &Schema, ResultEvent<'_>),
    ) -> Result<JobOutcome, Error> {
        let mut open: Vec<bool> = vec![true; self.selects.len()];
        while open.iter().any(|o| *o) {
            let live: Vec<usize> = (0..open.len()).filter(|i| open[*i]).collect();
            let mut sel = Select::new();
            for i in &live {
                sel.recv(&self.selects[*i].receiver);
            }
            let Ok(oper) = sel.select_timeout(Duration::from_millis(100)) else {
                if self.handle.is_finished() {
                    // The job ended without sending End (it failed or was cancelled).
                    break;
                }
                continue;
            };
            let i = live[oper.index()];
            let schema = &self.selects[i].schema;
            match oper.recv(&self.selects[i].receiver) {
                Ok(Collected::Changes(batch)) => {
                    for c in &batch {
                        f(i, schema, ResultEvent::Change(c));
                    }
                }
                Ok(Collected::Restored { delivered }) => {
                    f(i, schema, ResultEvent::Restored { delivered })
                }
                Ok(Collected::End) | Err(_) => open[i] = false,
            }
        }
        let RunningJob {
            handle, selects, ..
        } = self;
        drop(selects);
        handle.wait().map_err(Error::Job)
    }

    /// Collects every result change (with its SELECT's index) until the job ends.
    pub fn collect_changes(self) -> Result<Vec<(usize, Change)>, Error> {
        let mut out = Vec::new();
        self.for_each_change(|i, _, c| out.push((i, c.clone())))?;
        Ok(out)
    }

    /// Waits for the job, discarding SELECT results.
    pub fn wait(self) -> Result<JobOutcome, Error> {
        self.for_each_change(|_, _, _| {})
    }
}
