//! Runs every `tests/slt/*.slt` file through the real engine with sqllogictest, at parallelism 1
//! and again at parallelism 2 (unless the file says `# parallelism: 1`).
//!
//! A `query` returns the SELECT's final table (its changelog folded), or with
//! `SET 'sql-client.execution.result-mode' = 'changelog'` every change with its row kind first.
//! Values are written as Flink's print connector writes them. Statements that print (EXPLAIN,
//! SHOW, DESCRIBE) return their lines as rows.

mod common;

use std::path::Path;

use sqllogictest::{DBOutput, DefaultColumnType};
use streamsql::sql::session::StatementOutput;
use streamsql::Streamsql;

struct Db {
    session: Streamsql,
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
        let sql = sql.replace("${DATA}", &data.display().to_string());
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
    let mut runner = sqllogictest::Runner::new(move || async move {
        Ok::<_, DbError>(Db {
            session: common::session(parallelism),
        })
    });
    runner.with_column_validator(|_, _| true);
    runner.run_file(path).map_err(|e| {
        format!(
            "{} (parallelism {parallelism}):\n{}",
            path.display(),
            e.display(true)
        )
    })
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
