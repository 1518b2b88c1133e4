//! Helpers shared by the integration tests: run a script through the real engine and fold its
//! changelog.

#![allow(dead_code)]

use std::collections::BTreeMap;

use streamsql::engine::config::Configuration;
use streamsql::engine::error::EngineError;
use streamsql::engine::expr::format::{write_csv_value, write_print_value};
use streamsql::engine::runtime::JobOutcome;
use streamsql::engine::types::Schema;
use streamsql::engine::value::Change;
use streamsql::sql::session::StatementOutput;
use streamsql::{Error, ResultEvent, RunningJob, Streamsql};

/// The result of running one script.
pub struct ScriptRun {
    pub outputs: Vec<StatementOutput>,
    /// Per SELECT: its schema and every change, in arrival order.
    pub selects: Vec<(Schema, Vec<Change>)>,
}

/// Runs `sql` in `session` to the end of its job.
pub fn run_script(session: &mut Streamsql, sql: &str) -> Result<ScriptRun, Error> {
    run_script_with(session, sql, consume)
}

/// [`run_script`], the job's results consumed by `consume` instead of [`consume`].
pub fn run_script_with(
    session: &mut Streamsql,
    sql: &str,
    consume: impl FnOnce(RunningJob, &mut [(Schema, Vec<Change>)]) -> Result<Consumed, Error>,
) -> Result<ScriptRun, Error> {
    let exec = session.execute("test.sql", sql)?;
    let mut selects: Vec<(Schema, Vec<Change>)> = Vec::new();
    if let Some(job) = exec.job {
        selects = job
            .select_schemas()
            .into_iter()
            .map(|s| (s, Vec::new()))
            .collect();
        consume(job, &mut selects)?;
    }
    Ok(ScriptRun {
        outputs: exec.outputs,
        selects,
    })
}

/// How a job consumed by [`consume`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumed {
    pub outcome: JobOutcome,
    /// Changes received before that a restore dropped: the checkpoint it restored did not cover
    /// them, so they were sent again.
    pub dropped: usize,
}

/// Runs `job` to its end as an exactly-once consumer of its SELECT results: every change is
/// appended to its SELECT's list in `selects`, and when the job reports that it (re)started from
/// a checkpoint, each list is first cut to the changes that checkpoint covers. `selects` may hold
/// the changes of an earlier run that this job resumes. A checkpoint covering more changes than
/// the list holds means a change was lost: that is an error.
pub fn consume(job: RunningJob, selects: &mut [(Schema, Vec<Change>)]) -> Result<Consumed, Error> {
    let mut lost: Option<String> = None;
    let mut dropped = 0;
    let outcome = job.for_each_result(|i, _, event| match event {
        ResultEvent::Change(c) => selects[i].1.push(c.clone()),
        ResultEvent::Restored { delivered } => {
            let kept = &mut selects[i].1;
            match usize::try_from(delivered) {
                Ok(n) if n <= kept.len() => {
                    dropped += kept.len() - n;
                    kept.truncate(n);
                }
                _ => {
                    lost.get_or_insert(format!(
                        "SELECT {i} restored a checkpoint covering {delivered} changes, \
                         but only {} were received",
                        kept.len()
                    ));
                }
            }
        }
    })?;
    match lost {
        Some(msg) => Err(Error::Job(EngineError::internal(msg))),
        None => Ok(Consumed { outcome, dropped }),
    }
}

/// A new session at parallelism `p`.
pub fn session(p: usize) -> Streamsql {
    let mut conf = Configuration::new();
    conf.set("parallelism.default", &p.to_string())
        .expect("parallelism.default is a valid key");
    let mut s = Streamsql::new(conf);
    s.pin("parallelism.default", &p.to_string());
    s
}

/// Renders a row with `render` per value.
pub fn render_row(
    schema: &Schema,
    change: &Change,
    render: fn(&mut String, &streamsql::engine::value::Value, &streamsql::engine::types::DataType),
) -> Vec<String> {
    change
        .row
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut s = String::new();
            match schema.fields.get(i) {
                Some(f) => render(&mut s, v, &f.data_type),
                None => s.push('?'),
            }
            s
        })
        .collect()
}

/// Folds a changelog into the final table: `+I`/`+U` add a row, `-U`/`-D` remove an equal one.
/// Returns an error naming a retraction of a row that is not there.
pub fn fold(
    schema: &Schema,
    changes: &[Change],
    render: fn(&mut String, &streamsql::engine::value::Value, &streamsql::engine::types::DataType),
) -> Result<Vec<Vec<String>>, String> {
    let mut table: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for c in changes {
        let row = render_row(schema, c, render);
        if c.kind.is_addition() {
            *table.entry(row).or_insert(0) += 1;
        } else {
            match table.get_mut(&row) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    table.remove(&row);
                }
                None => {
                    return Err(format!(
                        "{} of a row that is not in the table: {row:?}",
                        c.kind.short()
                    ))
                }
            }
        }
    }
    Ok(table
        .into_iter()
        .flat_map(|(r, n)| std::iter::repeat_n(r, n))
        .collect())
}

/// The print connector's rendering of a value.
pub fn print_value(
    out: &mut String,
    v: &streamsql::engine::value::Value,
    t: &streamsql::engine::types::DataType,
) {
    write_print_value(out, v, t)
}

/// The conformance CSV rendering of a value.
pub fn csv_value(
    out: &mut String,
    v: &streamsql::engine::value::Value,
    t: &streamsql::engine::types::DataType,
) {
    write_csv_value(out, v, t)
}

/// The visible (committed) rows of a filesystem sink directory, sorted: hidden (`.`) and
/// `_`-prefixed files are in progress or markers.
pub fn committed_rows(dir: &std::path::Path) -> Vec<String> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("readable part file");
        rows.extend(text.lines().map(str::to_string));
    }
    rows.sort();
    rows
}

/// The newest `chk-<n>` directory with a `_metadata` under `<checkpoints>/<job-id>/` (the first
/// job directory found).
pub fn newest_checkpoint(checkpoints: &std::path::Path) -> Option<std::path::PathBuf> {
    let job = std::fs::read_dir(checkpoints)
        .ok()?
        .flatten()
        .next()?
        .path();
    std::fs::read_dir(job)
        .ok()?
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id: u64 = name.strip_prefix("chk-")?.parse().ok()?;
            Some((id, e.path()))
        })
        .max()
        .map(|(_, p)| p)
}

/// True when a completed checkpoint (`chk-<n>/_metadata`) exists under `<checkpoints>/<job-id>/`.
pub fn has_checkpoint(checkpoints: &std::path::Path) -> bool {
    std::fs::read_dir(checkpoints)
        .into_iter()
        .flatten()
        .flatten()
        .any(|job| {
            std::fs::read_dir(job.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|c| c.path().join("_metadata").is_file())
        })
}

/// Writes `rows` csv rows `id,k,ts` to `<dir>/input/part-0.csv` and `part-1.csv` (one file per
/// source subtask, so neither finishes at once): `k` is `id % 50`, and `ts` advances 10 ms per
/// row from 01:00 on 2024-01-01, in order.
pub fn write_timed_input(dir: &std::path::Path, rows: usize) {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir.join("input")).expect("input dir");
    let mut texts = [String::new(), String::new()];
    for id in 0..rows {
        let text = &mut texts[id * 2 / rows];
        let ms = 3_600_000 + id as i64 * 10;
        let (s, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
        let _ = writeln!(
            text,
            "{id},{},2024-01-01 {:02}:{:02}:{:02}.{milli:03}",
            id % 50,
            s / 3600,
            (s / 60) % 60,
            s % 60
        );
    }
    for (i, text) in texts.iter().enumerate() {
        std::fs::write(dir.join(format!("input/part-{i}.csv")), text).expect("input");
    }
}
