//! The slt harness's `stepped` source connector: a table whose rows arrive in steps, every step
//! taken in by the whole job before the next one is read. With it a file can show what an operator
//! with two inputs does when one input's rows come after the other's (an outer join's null-padded
//! row retracted by a later match, an interval join's rows that came after the watermark), which
//! with two free-running sources depends on how their threads interleave.
//!
//! ```sql
//! CREATE TABLE orders (id INT, k STRING) WITH (
//!   'connector' = 'stepped',
//!   'steps' = '1,a;2,b | | 3,a'
//! )
//! ```
//!
//! `steps` lists the steps separated by `|`, each step's rows separated by `;`, each row's fields
//! by `,`, parsed as the column's type (an empty field is NULL). A step may be empty: this table
//! has three steps, the second without rows. Subtask 0 emits every row; the other subtasks emit
//! none, and wait for the last step as subtask 0 does.
//!
//! A [`Driver`] runs the steps of one job: it releases step `k` to every stepped source, waits
//! until each has emitted all its rows up to `k` (with `pipeline.auto-watermark-interval` 0 their
//! watermarks follow at once), then takes a savepoint. A savepoint's barrier is aligned: no
//! operator sees a row of step `k + 1` before it has taken in every row of step `k`, from every
//! input. Once the savepoint completed the driver releases step `k + 1`. So the order of the
//! steps is the order in which every operator takes in the rows, while the rows of one step
//! still interleave freely: a file puts the rows whose order matters in different steps.
//!
//! The job needs checkpointing for the savepoints; the harness turns it on for files with
//! stepped tables. A job resumed from a checkpoint gets a new driver, which releases the steps
//! from the first again: a source restored beyond a step has nothing left of it.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use streamsql::engine::connectors::csv::parse_field;
use streamsql::engine::connectors::options::Options;
use streamsql::engine::connectors::registry::CustomSource;
use streamsql::engine::connectors::{Source, SourceFactory, SourceStatus};
use streamsql::engine::error::{EngineError, Result};
use streamsql::engine::operator::{Output, TaskContext};
use streamsql::engine::types::Schema;
use streamsql::engine::value::{Change, Row, Value};
use streamsql::SavepointHandle;

/// The connector's name in `WITH ('connector' = ...)`.
pub const CONNECTOR: &str = "stepped";

/// The most steps a table may have. A driver takes one savepoint per step and one before the
/// first, and savepoints take checkpoint ids: the restored mode prepares this many ids more.
pub const MAX_STEPS: usize = 24;

thread_local! {
    /// Gates of the stepped tables planned on this thread since [`take_gates`] last ran: the
    /// harness plans a job on the thread that then starts its driver.
    static NEW_GATES: RefCell<Vec<Arc<Gate>>> = const { RefCell::new(Vec::new()) };
}

/// The gates of the stepped tables planned on this thread since the last call.
pub fn take_gates() -> Vec<Arc<Gate>> {
    NEW_GATES.with(|g| std::mem::take(&mut *g.borrow_mut()))
}

/// The connector, for `Streamsql::add_source_connector`.
pub fn connector() -> CustomSource {
    Arc::new(|table: &str, schema: &Schema, options: &Options| {
        let factory = SteppedFactory::new(table, schema, options)?;
        NEW_GATES.with(|g| g.borrow_mut().push(factory.gate.clone()));
        Ok(Arc::new(factory) as Arc<dyn SourceFactory>)
    })
}

/// Where one stepped table's sources stand, shared with the driver.
pub struct Gate {
    table: String,
    steps: usize,
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The last step the sources may emit; `None` before the first.
    released: Option<usize>,
    /// For each source that emits rows: the last step it emitted every row of.
    emitted: Vec<Option<usize>>,
}

impl Gate {
    fn released(&self) -> Option<usize> {
        self.state.lock().expect("not poisoned").released
    }

    fn release(&self, step: usize) {
        self.state.lock().expect("not poisoned").released = Some(step);
        self.changed.notify_all();
    }

    /// Registers a source that emits rows; returns its index for [`Gate::report`].
    fn register(&self) -> usize {
        let mut s = self.state.lock().expect("not poisoned");
        s.emitted.push(None);
        s.emitted.len() - 1
    }

    fn report(&self, source: usize, step: usize) {
        let mut s = self.state.lock().expect("not poisoned");
        if s.emitted[source] != Some(step) {
            s.emitted[source] = Some(step);
            self.changed.notify_all();
        }
    }

    /// Waits until every registered source emitted all its rows up to `step`, or `stop` is set.
    fn wait_emitted(&self, step: usize, stop: &AtomicBool) -> bool {
        let mut s = self.state.lock().expect("not poisoned");
        loop {
            if s.emitted.iter().all(|e| e.is_some_and(|e| e >= step)) {
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(10))
                .expect("not poisoned")
                .0;
        }
    }
}

/// Builds the sources of one stepped table.
struct SteppedFactory {
    steps: Arc<Vec<Vec<Row>>>,
    gate: Arc<Gate>,
}

impl SteppedFactory {
    fn new(table: &str, schema: &Schema, options: &Options) -> Result<SteppedFactory> {
        let mut r = options.reader();
        r.require(&["steps"])?;
        let text = r.string("steps").unwrap_or_default();
        r.finish(CONNECTOR)?;
        let mut steps = Vec::new();
        for step in text.split('|') {
            let mut rows = Vec::new();
            for row in step.split(';').map(str::trim).filter(|r| !r.is_empty()) {
                let fields: Vec<&str> = row.split(',').map(str::trim).collect();
                if fields.len() != schema.fields.len() {
                    return Err(EngineError::option(
                        format!(
                            "stepped table '{table}': row '{row}' has {} fields, the table {}",
                            fields.len(),
                            schema.fields.len()
                        ),
                        None,
                    ));
                }
                let mut values = Vec::with_capacity(fields.len());
                for (text, field) in fields.iter().zip(&schema.fields) {
                    values.push(if text.is_empty() {
                        Value::Null
                    } else {
                        parse_field(text, &field.data_type).map_err(|e| {
                            EngineError::option(
                                format!("stepped table '{table}', row '{row}': {e}"),
                                None,
                            )
                        })?
                    });
                }
                rows.push(values);
            }
            steps.push(rows);
        }
        if steps.len() > MAX_STEPS {
            return Err(EngineError::option(
                format!("stepped table '{table}' has more than {MAX_STEPS} steps"),
                None,
            ));
        }
        Ok(SteppedFactory {
            gate: Arc::new(Gate {
                table: table.to_string(),
                steps: steps.len(),
                state: Mutex::new(GateState::default()),
                changed: Condvar::new(),
            }),
            steps: Arc::new(steps),
        })
    }
}

impl SourceFactory for SteppedFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>> {
        let emits = ctx.subtask_index == 0;
        Ok(Box::new(SteppedSource {
            steps: self.steps.clone(),
            gate: self.gate.clone(),
            registered: emits.then(|| self.gate.register()),
            step: if emits { 0 } else { self.steps.len() },
            row: 0,
        }))
    }
}

/// Emits the rows of the released steps; finishes once the driver released the last (as
/// `usize::MAX`: a table with fewer steps than another keeps running until then, since a
/// savepoint needs every task running).
struct SteppedSource {
    steps: Arc<Vec<Vec<Row>>>,
    gate: Arc<Gate>,
    /// The source's index in the gate, when it emits rows (subtask 0).
    registered: Option<usize>,
    /// The next row to emit: `steps[step][row]`.
    step: usize,
    row: usize,
}

impl Source for SteppedSource {
    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus> {
        let Some(released) = self.gate.released() else {
            return Ok(SourceStatus::Idle);
        };
        let mut emitted = 0;
        while self.step < self.steps.len() && self.step <= released && emitted < max_rows.max(1) {
            let rows = &self.steps[self.step];
            if self.row < rows.len() {
                out.push(Change::insert(rows[self.row].clone()));
                self.row += 1;
                emitted += 1;
            } else {
                self.step += 1;
                self.row = 0;
            }
        }
        if emitted > 0 {
            return Ok(SourceStatus::More);
        }
        // Nothing left up to `released`, and what the last poll emitted has been routed: the
        // barrier of a savepoint triggered from now on follows every row of those steps.
        if let Some(i) = self.registered {
            self.gate.report(i, released);
        }
        if released == usize::MAX {
            return Ok(SourceStatus::Finished);
        }
        Ok(SourceStatus::Idle)
    }

    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        let mut pos = Vec::with_capacity(16);
        for n in [self.step, self.row] {
            pos.extend_from_slice(&u64::try_from(n).unwrap_or(u64::MAX).to_le_bytes());
        }
        Ok(pos)
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        let bad = || EngineError::data("a stepped source's position is 16 bytes");
        let (step, row) = position.split_at_checked(8).ok_or_else(bad)?;
        let read = |b: &[u8]| -> Result<usize> {
            let bytes: [u8; 8] = b.try_into().map_err(|_| bad())?;
            Ok(usize::try_from(u64::from_le_bytes(bytes)).unwrap_or(usize::MAX))
        };
        if self.registered.is_some() {
            self.step = read(step)?;
            self.row = read(row)?;
        }
        Ok(())
    }

    /// Subtask 0 emits every row at any parallelism: it continues from old subtask 0's position.
    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        match positions.first() {
            Some(first) => self.restore_position(first),
            None => Ok(()),
        }
    }
}

/// Runs the steps of one job on a thread of its own.
pub struct Driver {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<std::result::Result<(), String>>,
}

impl Driver {
    /// Starts driving `gates` (those of the job's stepped tables), taking savepoints into
    /// `savepoint_dir`. `None` when the job has no stepped table.
    pub fn start(
        gates: Vec<Arc<Gate>>,
        savepoints: SavepointHandle,
        savepoint_dir: PathBuf,
    ) -> Option<Driver> {
        if gates.is_empty() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || drive(&gates, &savepoints, &savepoint_dir, &stop))
        };
        Some(Driver { stop, thread })
    }

    /// Stops the driver once the job ended; its error if a savepoint of a job that went on
    /// failed.
    pub fn finish(self) -> std::result::Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the step driver panicked".into()))
    }
}

/// Runs the steps; in the end (also when it gave up) every step is released, so that the job
/// can end.
fn drive(
    gates: &[Arc<Gate>],
    savepoints: &SavepointHandle,
    dir: &std::path::Path,
    stop: &AtomicBool,
) -> std::result::Result<(), String> {
    let result = run_steps(gates, savepoints, dir, stop);
    for g in gates {
        g.release(usize::MAX);
    }
    result
}

fn run_steps(
    gates: &[Arc<Gate>],
    savepoints: &SavepointHandle,
    dir: &std::path::Path,
    stop: &AtomicBool,
) -> std::result::Result<(), String> {
    let steps = gates.iter().map(|g| g.steps).max().unwrap_or(0);
    // Every source has been created once a savepoint completed: from then on each one that emits
    // rows is registered with its gate.
    if !savepoint(savepoints, dir, stop)? {
        return Ok(());
    }
    // The last step is released by `drive`, with the end of input.
    for step in 0..steps.saturating_sub(1) {
        for g in gates {
            g.release(step);
        }
        for g in gates {
            if !g.wait_emitted(step, stop) {
                return Ok(());
            }
        }
        if !savepoint(savepoints, dir, stop)? {
            return Ok(());
        }
    }
    Ok(())
}

/// How often a failed savepoint is tried again before the driver gives up.
const SAVEPOINT_ATTEMPTS: usize = 200;

/// Takes a savepoint; `false` once the job ended (a cancelled or failed job's consumer reports
/// why). A savepoint that failed otherwise is tried again a few times: every task must be
/// running, so a job with a bounded table that finished early cannot be stepped.
fn savepoint(
    savepoints: &SavepointHandle,
    dir: &std::path::Path,
    stop: &AtomicBool,
) -> std::result::Result<bool, String> {
    let mut last = String::new();
    for _ in 0..SAVEPOINT_ATTEMPTS {
        match savepoints.savepoint(Some(dir.to_path_buf()), false) {
            Ok(_) => return Ok(true),
            Err(_) if stop.load(Ordering::SeqCst) => return Ok(false),
            Err(e) => {
                last = e.to_string();
                if last.contains("ended") {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Err(format!(
        "a stepped job's savepoint failed {SAVEPOINT_ATTEMPTS} times, last: {last}"
    ))
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("table", &self.table)
            .field("steps", &self.steps)
            .finish()
    }
}
