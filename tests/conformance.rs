//! Runs every case of `../shared/conformance/` (SQL scripts whose expected results Apache Flink
//! produced) and compares the folded final table with Flink's, floats with a relative tolerance
//! of 1e-9. Cases that need features not built yet are listed in `KNOWN_UNSUPPORTED` (and in
//! docs/sql.md): they must fail with an "unsupported" error, so that the list is updated the
//! moment they start to work.

mod common;

use std::path::{Path, PathBuf};

use streamsql::engine::types::DataType;

/// Cases that need features not built yet (none at present).
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[];

fn conformance_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("STREAMSQL_CONFORMANCE_DIR") {
        return Some(PathBuf::from(d));
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    d.is_dir().then_some(d)
}

/// Splits one RFC 4180 line into fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Splits a CSV file into records, keeping quoted newlines inside a record.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
        if cur.matches('"').count().is_multiple_of(2) {
            records.push(csv_fields(&cur));
            cur.clear();
        }
    }
    records
}

fn same_value(a: &str, b: &str, ty: &DataType) -> bool {
    if a == b {
        return true;
    }
    if matches!(ty, DataType::Float | DataType::Double) {
        if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            let scale = x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
            return (x - y).abs() / scale <= 1e-9;
        }
    }
    false
}

fn run_case(dir: &Path, name: &str, parallelism: usize) -> Result<(), String> {
    let sql = std::fs::read_to_string(dir.join("cases").join(format!("{name}.sql")))
        .map_err(|e| e.to_string())?
        .replace("${DATA}", &dir.join("data").display().to_string());
    let expected = std::fs::read_to_string(dir.join("expected").join(format!("{name}.csv")))
        .map_err(|e| e.to_string())?;
    let mut session = common::session(parallelism);
    let run = common::run_script(&mut session, &sql).map_err(|e| format!("{e:?}"))?;
    let (schema, changes) = run
        .selects
        .last()
        .ok_or_else(|| "the case has no SELECT".to_string())?;
    // Fields are compared unquoted: undo the CSV quoting of each rendered value.
    let mut actual: Vec<Vec<String>> = common::fold(schema, changes, common::csv_value)?
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|f| csv_fields(&f).into_iter().next().unwrap_or_default())
                .collect()
        })
        .collect();
    let mut expected = csv_records(&expected);
    let header = expected.remove(0);
    if header.len() != schema.len() {
        return Err(format!(
            "columns: expected {header:?}, got {:?}",
            schema.fields
        ));
    }
    // Sort both by their CSV text, as the expected files are.
    actual.sort();
    expected.sort();
    if actual.len() != expected.len() {
        return Err(format!(
            "{} rows, expected {}\nfirst actual rows: {:?}\nfirst expected rows: {:?}",
            actual.len(),
            expected.len(),
            &actual[..actual.len().min(5)],
            &expected[..expected.len().min(5)]
        ));
    }
    for (a, e) in actual.iter().zip(&expected) {
        let ok = a.len() == e.len()
            && a.iter()
                .zip(e)
                .zip(&schema.fields)
                .all(|((x, y), f)| same_value(x, y, &f.data_type));
        if !ok {
            return Err(format!(
                "row differs:\n  actual:   {a:?}\n  expected: {e:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn conformance_cases() {
    let Some(dir) = conformance_dir() else {
        eprintln!("conformance: ../shared/conformance not found; set STREAMSQL_CONFORMANCE_DIR");
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(dir.join("cases"))
        .expect("cases/ exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "sql" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let only = std::env::var("CASE").ok();
    let mut failures = Vec::new();
    let (mut passed, mut unsupported) = (0, 0);
    for name in &names {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let sql = std::fs::read_to_string(dir.join("cases").join(format!("{name}.sql")))
            .unwrap_or_default();
        let levels: &[usize] = if sql.contains("-- parallelism: 1") {
            &[1]
        } else {
            &[1, 2]
        };
        let known = KNOWN_UNSUPPORTED.iter().find(|(n, _)| n == name);
        for &p in levels {
            match (run_case(&dir, name, p), known) {
                (Ok(()), None) => passed += 1,
                (Ok(()), Some(_)) => failures.push(format!(
                    "{name}: passes now; remove it from KNOWN_UNSUPPORTED and docs/sql.md"
                )),
                (Err(e), Some(_)) if e.contains("not supported") => unsupported += 1,
                (Err(e), _) => failures.push(format!("{name} (parallelism {p}): {e}")),
            }
        }
    }
    eprintln!("conformance: {passed} runs passed, {unsupported} known unsupported");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
