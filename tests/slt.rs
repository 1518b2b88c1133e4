//! Runs every `tests/slt/*.slt` file through the real engine with sqllogictest, at parallelism 1
//! and again at parallelism 2 (unless the file says `# parallelism: 1`).
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

fn run_file(path: &Path, parallelism: usize) -> Result<(), String> {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let tmp = std::env::temp_dir().join(format!(
        "streamsql-slt-{}-{stem}-p{parallelism}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let run_tmp = tmp.clone();
    let mut runner = sqllogictest::Runner::new(move || {
        let tmp = run_tmp.clone();
        async move {
            Ok::<_, DbError>(Db {
                session: common::session(parallelism),
                tmp,
            })
        }
    });
    runner.with_column_validator(|_, _| true);
    runner.with_validator(row_validator);
    let result = runner.run_file(path).map_err(|e| {
        format!(
            "{} (parallelism {parallelism}):\n{}",
            path.display(),
            e.display(true)
        )
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
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
    for f in &files {
        if only
            .as_deref()
            .is_some_and(|o| !f.display().to_string().contains(o))
        {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("readable .slt file");
        let mut levels = vec![1];
        if !text.contains("# parallelism: 1") {
            levels.push(2);
        }
        for p in levels {
            ran += 1;
            if let Err(e) = run_file(f, p) {
                failures.push(e);
            }
        }
    }
    eprintln!("ran {ran} slt file runs");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
