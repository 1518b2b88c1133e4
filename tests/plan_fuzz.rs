//! Property tests: planning a SQL script of any shape returns a plan or an error, never a panic.
//!
//! The seeds are the conformance scripts of `../shared/conformance/cases` (skipped with a message
//! when that directory is absent) and `examples/*.sql`. Each seed is mutated at three levels:
//! characters (insert, delete, replace, duplicate a range), tokens (delete, duplicate, swap,
//! replace with a keyword, a function name, an extreme literal or another token of the script,
//! or with a near miss of an identifier) and statements (delete, duplicate, swap). Every mutant
//! goes through [`Streamsql::explain`], which runs the DDL and plans the INSERTs and SELECTs
//! without starting a job, and an error is also rendered as a miette report, whose spans must
//! fall on the text. Random bytes, random keyword soup and generated queries (mostly well-typed
//! expressions over a table with a column of every type, so that they reach function resolution
//! and constant folding) are fed too. Case counts keep the whole file within seconds in a debug
//! build; `PROPTEST_CASES=20000` runs a longer search.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamsql::engine::config::Configuration;
use streamsql::engine::expr::functions::function_names;
use streamsql::Streamsql;

/// The directory of the conformance cases, when present.
fn conformance_dir() -> Option<PathBuf> {
    let d = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance"
    ));
    d.join("cases").is_dir().then(|| d.to_path_buf())
}

/// The `.sql` files of `dir`, sorted by name.
fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every seed script, with `${DATA}` resolved to the conformance data directory.
fn seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        match conformance_dir() {
            Some(dir) => {
                let data = dir.join("data").display().to_string();
                for f in sql_files(&dir.join("cases")) {
                    if let Ok(text) = std::fs::read_to_string(&f) {
                        out.push(text.replace("${DATA}", &data));
                    }
                }
            }
            None => eprintln!(
                "plan_fuzz: {} is absent; fuzzing the examples only",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance")
            ),
        }
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for f in sql_files(&examples) {
            if let Ok(text) = std::fs::read_to_string(&f) {
                out.push(text);
            }
        }
        assert!(!out.is_empty(), "no seed scripts found");
        out
    })
}

/// Plans `sql`; an error must render without a panic too.
fn plan(sql: &str) {
    let run = std::panic::catch_unwind(|| plan_inner(sql));
    if run.is_err() {
        panic!("planning panicked on this script:\n{sql}");
    }
}

fn plan_inner(sql: &str) {
    let mut s = Streamsql::new(Configuration::default());
    if let Err(e) = s.explain("fuzz.sql", sql) {
        let _ = format!("{:?}", miette::Report::new(e));
    }
}

/// Characters that matter to a SQL lexer or to our literal parsers.
const INTERESTING_CHARS: &[char] = &[
    '(', ')', ',', ';', '\'', '"', '`', '.', '*', '-', '+', '/', '%', '|', '=', '<', '>', '!',
    '\n', ' ', '0', '9', 'e', 'E', ':', '$', '?', '[', ']', '{', '}', '\\', '\u{0}', 'é', '字',
    '\u{feff}',
];

/// Tokens worth splicing in: keywords, types, operators and literals at the edges of their range.
const VOCABULARY: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "DISTINCT",
    "UNION",
    "ALL",
    "WITH",
    "AS",
    "VALUES",
    "TABLE",
    "CREATE",
    "VIEW",
    "DROP",
    "INSERT",
    "INTO",
    "EXPLAIN",
    "SET",
    "RESET",
    "SHOW",
    "DESCRIBE",
    "EXECUTE",
    "STATEMENT",
    "BEGIN",
    "END",
    "WATERMARK",
    "FOR",
    "PRIMARY",
    "KEY",
    "NOT",
    "ENFORCED",
    "ORDER",
    "LIMIT",
    "JOIN",
    "ON",
    "OVER",
    "PARTITION",
    "LATERAL",
    "TUMBLE",
    "HOP",
    "CUMULATE",
    "SESSION",
    "DESCRIPTOR",
    "TUMBLE_START",
    "TUMBLE_END",
    "HOP_ROWTIME",
    "SESSION_END",
    "window_start",
    "window_end",
    "window_time",
    "INTERVAL",
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "MONTH",
    "YEAR",
    "TO",
    "CAST",
    "TRY_CAST",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "NULL",
    "TRUE",
    "FALSE",
    "UNKNOWN",
    "IS",
    "IN",
    "BETWEEN",
    "SYMMETRIC",
    "LIKE",
    "ESCAPE",
    "SIMILAR",
    "AND",
    "OR",
    "INT",
    "BIGINT",
    "TINYINT",
    "SMALLINT",
    "DECIMAL(38, 18)",
    "DECIMAL(1, 0)",
    "DECIMAL(39, 40)",
    "DOUBLE",
    "FLOAT",
    "STRING",
    "VARCHAR(0)",
    "CHAR(3)",
    "BOOLEAN",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMP(3)",
    "TIMESTAMP(9)",
    "TIMESTAMP_LTZ(3)",
    "BYTES",
    "ARRAY<INT>",
    "MAP<STRING, INT>",
    "ROW<a INT>",
    "METADATA",
    "VIRTUAL",
    "PROCTIME()",
    "0",
    "-1",
    "1.5",
    "1e308",
    "-1e-400",
    "2147483648",
    "-9223372036854775808",
    "9223372036854775808",
    "99999999999999999999999999999999999999999",
    "0.000000000000000000001",
    "''",
    "'a''b'",
    "'%'",
    "'\\'",
    "'2020-02-30 25:61:61.123456789'",
    "'9999-12-31 23:59:59.999'",
    "'-1'",
    "'NaN'",
    "'Infinity'",
    "DATE '2020-01-01'",
    "TIMESTAMP '2020-01-01 00:00:00'",
    "TIME '24:00:00'",
    "INTERVAL '1' SECOND",
    "INTERVAL '-5' DAY",
    "INTERVAL '99999999' YEAR",
    "*",
    "(",
    ")",
    ",",
    ";",
    ".",
    "||",
    "/",
    "%",
    "+",
    "-",
    "=",
    "<>",
    "!=",
    "<=",
    ">=",
    "`",
    "'connector'",
    "'datagen'",
    "'filesystem'",
    "'print'",
    "'blackhole'",
    "'csv'",
    "'json'",
    "'parallelism.default'",
    "'table.exec.source.idle-timeout'",
    "'pipeline.name'",
];

/// One lexical token of a script, as a byte range of the text.
fn tokens(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
        } else if c == b'\'' || c == b'`' || c == b'"' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            i += 1;
        }
        out.push((start, i));
    }
    out
}

/// A near miss of an identifier: one character dropped, doubled or changed, or its case flipped.
fn near_miss(word: &str, pick: usize) -> String {
    let chars: Vec<char> = word.chars().collect();
    if chars.is_empty() {
        return "x".to_string();
    }
    let at = pick % chars.len();
    let mut out = chars.clone();
    match (pick / 7) % 4 {
        0 => {
            out.remove(at);
        }
        1 => out.insert(at, chars[at]),
        2 => out[at] = if chars[at] == 'z' { 'a' } else { 'z' },
        _ => {
            return word
                .chars()
                .map(|c| {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        }
    }
    out.into_iter().collect()
}

#[derive(Clone, Debug)]
enum CharEdit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    Duplicate(usize, usize),
}

fn char_edit() -> impl Strategy<Value = CharEdit> {
    let ch = prop_oneof![3 => prop::sample::select(INTERESTING_CHARS), 1 => any::<char>()];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| CharEdit::Insert(i, c)),
        any::<usize>().prop_map(CharEdit::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| CharEdit::Replace(i, c)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| CharEdit::Duplicate(i, n)),
    ]
}

fn apply_char_edits(text: &str, edits: &[CharEdit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match *e {
            CharEdit::Insert(i, c) => {
                let at = i % (chars.len() + 1);
                chars.insert(at, c);
            }
            CharEdit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % chars.len());
            }
            CharEdit::Replace(i, c) if !chars.is_empty() => {
                let at = i % chars.len();
                chars[at] = c;
            }
            CharEdit::Duplicate(i, n) if !chars.is_empty() => {
                let at = i % chars.len();
                let end = (at + n).min(chars.len());
                let copy: Vec<char> = chars[at..end].to_vec();
                chars.splice(end..end, copy);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

#[derive(Clone, Debug)]
enum TokenEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Replace with a vocabulary entry.
    Vocabulary(usize, usize),
    /// Replace with a function name.
    Function(usize, usize),
    /// Replace with another token of the same script.
    Other(usize, usize),
    /// Replace an identifier with a near miss of itself.
    NearMiss(usize, usize),
}

fn token_edit() -> impl Strategy<Value = TokenEdit> {
    prop_oneof![
        any::<usize>().prop_map(TokenEdit::Delete),
        any::<usize>().prop_map(TokenEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| TokenEdit::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| TokenEdit::Vocabulary(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| TokenEdit::Function(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| TokenEdit::Other(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| TokenEdit::NearMiss(a, b)),
    ]
}

fn apply_token_edits(text: &str, edits: &[TokenEdit]) -> String {
    let mut toks: Vec<String> = tokens(text)
        .into_iter()
        .map(|(s, e)| text[s..e].to_string())
        .collect();
    let functions = function_names();
    for e in edits {
        if toks.is_empty() {
            break;
        }
        let n = toks.len();
        match *e {
            TokenEdit::Delete(i) => {
                toks.remove(i % n);
            }
            TokenEdit::Duplicate(i) => {
                let t = toks[i % n].clone();
                toks.insert(i % n, t);
            }
            TokenEdit::Swap(a, b) => toks.swap(a % n, b % n),
            TokenEdit::Vocabulary(i, v) => toks[i % n] = VOCABULARY[v % VOCABULARY.len()].into(),
            TokenEdit::Function(i, f) => toks[i % n] = functions[f % functions.len()].into(),
            TokenEdit::Other(i, j) => toks[i % n] = toks[j % n].clone(),
            TokenEdit::NearMiss(i, pick) => {
                // Prefer an identifier at or after `i`, so that near misses hit names.
                let at = (0..n)
                    .map(|k| (i + k) % n)
                    .find(|k| toks[*k].starts_with(|c: char| c.is_alphabetic() || c == '_'))
                    .unwrap_or(i % n);
                toks[at] = near_miss(&toks[at], pick);
            }
        }
    }
    toks.join(" ")
}

#[derive(Clone, Debug)]
enum StatementEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
}

fn statement_edit() -> impl Strategy<Value = StatementEdit> {
    prop_oneof![
        any::<usize>().prop_map(StatementEdit::Delete),
        any::<usize>().prop_map(StatementEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| StatementEdit::Swap(a, b)),
    ]
}

fn apply_statement_edits(text: &str, edits: &[StatementEdit]) -> String {
    // A `;` inside a literal splits wrongly, which only makes another mutant.
    let mut stmts: Vec<&str> = text.split(';').collect();
    for e in edits {
        let n = stmts.len();
        if n == 0 {
            break;
        }
        match *e {
            StatementEdit::Delete(i) => {
                stmts.remove(i % n);
            }
            StatementEdit::Duplicate(i) => stmts.insert(i % n, stmts[i % n]),
            StatementEdit::Swap(a, b) => stmts.swap(a % n, b % n),
        }
    }
    stmts.join(";")
}

/// `cases` cases, or `PROPTEST_CASES` when set (for a longer search).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A table with a column of every supported type, for generated queries.
const TABLE: &str = "CREATE TABLE t (
  i INT, ti TINYINT, si SMALLINT, b BIGINT, d DECIMAL(10, 2), dd DECIMAL(38, 18), f FLOAT,
  db DOUBLE, s STRING, c CHAR(3), v VARCHAR(5), bo BOOLEAN, dt DATE, tm TIME, ts TIMESTAMP(3),
  lz TIMESTAMP_LTZ(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
";

/// A generator of well-typed (mostly) expressions over the columns of [`TABLE`], so that
/// mutants get past type checking into function resolution, constant handling and planning.
struct Gen {
    rng: ChaCha8Rng,
}

#[derive(Clone, Copy)]
enum Ty {
    Num,
    Str,
    Bool,
    Time,
}

const NUM_LEAVES: &[&str] = &[
    "i",
    "ti",
    "si",
    "b",
    "d",
    "dd",
    "f",
    "db",
    "0",
    "1",
    "-1",
    "2",
    "7",
    "1.5",
    "-0.005",
    "1e308",
    "1e-320",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "99999999999999999999999999999999999999",
    "0.00000000000000000000000000000000000001",
    "CAST(NULL AS INT)",
    "NULL",
];
const STR_LEAVES: &[&str] = &[
    "s",
    "c",
    "v",
    "''",
    "'a'",
    "'abc'",
    "'%'",
    "'_'",
    "'\\'",
    "'x|y'",
    "'(a)+'",
    "'['",
    "'(?=a)'",
    "'(a)\\1'",
    "'$1'",
    "'${1}'",
    "'-'",
    "'2020-01-01'",
    "'2020-01-01 10:00:00.123'",
    "'10:00:00'",
    "'99999-99-99'",
    "'NaN'",
    "'yyyy-MM-dd HH:mm:ss.SSS'",
    "'EEE'",
    "'字'",
    "'é'",
    "NULL",
];
const BOOL_LEAVES: &[&str] = &["bo", "TRUE", "FALSE", "NULL"];
const TIME_LEAVES: &[&str] = &[
    "ts",
    "dt",
    "tm",
    "lz",
    "DATE '2020-02-29'",
    "TIME '23:59:59.999'",
    "TIMESTAMP '2020-01-01 00:00:00.999'",
    "TIMESTAMP '9999-12-31 23:59:59.999'",
    "TIMESTAMP '0001-01-01 00:00:00'",
    "CURRENT_TIMESTAMP",
    "CURRENT_DATE",
    "LOCALTIME",
    "TO_TIMESTAMP_LTZ(0, 3)",
];
const INTERVALS: &[&str] = &[
    "INTERVAL '1' SECOND",
    "INTERVAL '2' MINUTE",
    "INTERVAL '-3' DAY",
    "INTERVAL '1-2' YEAR TO MONTH",
    "INTERVAL '10 00:00:00.5' DAY TO SECOND",
    "INTERVAL '99999' HOUR",
    "INTERVAL '1' MONTH",
    "INTERVAL '0' SECOND",
];
const UNITS: &[&str] = &[
    "YEAR",
    "QUARTER",
    "MONTH",
    "WEEK",
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "MILLISECOND",
    "MICROSECOND",
    "DOW",
    "DOY",
    "EPOCH",
    "CENTURY",
];

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.gen_range(0..from.len())]
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.gen_range(0..100) < percent
    }

    fn any(&mut self, depth: u32) -> String {
        let ty = match self.rng.gen_range(0..4) {
            0 => Ty::Num,
            1 => Ty::Str,
            2 => Ty::Bool,
            _ => Ty::Time,
        };
        self.expr(ty, depth)
    }

    fn expr(&mut self, ty: Ty, depth: u32) -> String {
        // Now and then an expression of another type, to reach the type errors too.
        if self.chance(4) {
            return self.any(depth.saturating_sub(1));
        }
        if depth == 0 || self.chance(30) {
            return match ty {
                Ty::Num => self.pick(NUM_LEAVES).into(),
                Ty::Str => self.pick(STR_LEAVES).into(),
                Ty::Bool => self.pick(BOOL_LEAVES).into(),
                Ty::Time => self.pick(TIME_LEAVES).into(),
            };
        }
        let d = depth - 1;
        match ty {
            Ty::Num => self.num(d),
            Ty::Str => self.str(d),
            Ty::Bool => self.bool(d),
            Ty::Time => self.time(d),
        }
    }

    fn num(&mut self, d: u32) -> String {
        let (n, s, t, b) = (Ty::Num, Ty::Str, Ty::Time, Ty::Bool);
        match self.rng.gen_range(0..22) {
            0 => {
                let op = self.pick(&["+", "-", "*", "/", "%"]);
                format!("({} {op} {})", self.expr(n, d), self.expr(n, d))
            }
            1 => format!("-{}", self.expr(n, d)),
            2 => {
                let f = self.pick(&[
                    "ABS", "SIGN", "SQRT", "LN", "LOG10", "LOG2", "EXP", "CEIL", "FLOOR", "SIN",
                    "COS", "TAN", "COT", "ASIN", "ACOS", "ATAN", "SINH", "COSH", "TANH", "DEGREES",
                    "RADIANS", "ROUND", "TRUNCATE",
                ]);
                format!("{f}({})", self.expr(n, d))
            }
            3 => {
                let f = self.pick(&["MOD", "POWER", "ATAN2", "LOG", "ROUND", "TRUNCATE"]);
                format!("{f}({}, {})", self.expr(n, d), self.expr(n, d))
            }
            4 => {
                let f = self.pick(&["CHAR_LENGTH", "CHARACTER_LENGTH", "ASCII"]);
                format!("{f}({})", self.expr(s, d))
            }
            5 => format!("POSITION({} IN {})", self.expr(s, d), self.expr(s, d)),
            6 => format!(
                "LOCATE({}, {}, {})",
                self.expr(s, d),
                self.expr(s, d),
                self.expr(n, d)
            ),
            7 => {
                let u = self.pick(UNITS);
                format!("EXTRACT({u} FROM {})", self.expr(t, d))
            }
            8 => {
                let u = self.pick(UNITS);
                format!(
                    "TIMESTAMPDIFF({u}, {}, {})",
                    self.expr(t, d),
                    self.expr(t, d)
                )
            }
            9 => {
                let f = self.pick(&[
                    "YEAR",
                    "QUARTER",
                    "MONTH",
                    "WEEK",
                    "DAYOFYEAR",
                    "DAYOFMONTH",
                    "DAYOFWEEK",
                    "HOUR",
                    "MINUTE",
                    "SECOND",
                ]);
                format!("{f}({})", self.expr(t, d))
            }
            10 => {
                let ty = self.pick(&[
                    "INT",
                    "TINYINT",
                    "SMALLINT",
                    "BIGINT",
                    "DECIMAL(5, 2)",
                    "DECIMAL(38, 0)",
                    "DECIMAL(38, 38)",
                    "DECIMAL(1, 1)",
                    "FLOAT",
                    "DOUBLE",
                ]);
                let c = self.pick(&["CAST", "TRY_CAST"]);
                format!("{c}({} AS {ty})", self.any(d))
            }
            11 => format!(
                "CASE WHEN {} THEN {} WHEN {} THEN {} ELSE {} END",
                self.expr(b, d),
                self.expr(n, d),
                self.expr(b, d),
                self.expr(n, d),
                self.expr(n, d)
            ),
            12 => format!(
                "CASE {} WHEN 1 THEN {} END",
                self.expr(n, d),
                self.expr(n, d)
            ),
            13 => {
                let f = self.pick(&["COALESCE", "GREATEST", "LEAST", "NULLIF"]);
                format!("{f}({}, {})", self.expr(n, d), self.expr(n, d))
            }
            14 => format!(
                "IF({}, {}, {})",
                self.expr(b, d),
                self.expr(n, d),
                self.expr(n, d)
            ),
            15 => format!("UNIX_TIMESTAMP({})", self.expr(s, d)),
            16 => format!("UNIX_TIMESTAMP({}, {})", self.expr(s, d), self.expr(s, d)),
            17 => format!("RAND_INTEGER({})", self.expr(n, d)),
            18 => {
                let f = self.pick(&["E", "PI", "RAND"]);
                format!("{f}()")
            }
            _ => {
                // An aggregate; outside a grouping it is a validation error, which is fine.
                let f = self.pick(&[
                    "COUNT",
                    "SUM",
                    "AVG",
                    "MIN",
                    "MAX",
                    "FIRST_VALUE",
                    "LAST_VALUE",
                    "STDDEV_POP",
                    "STDDEV_SAMP",
                    "VAR_POP",
                    "VAR_SAMP",
                    "VARIANCE",
                    "COUNT(*) +",
                ]);
                let distinct = if self.chance(20) { "DISTINCT " } else { "" };
                if f.ends_with('+') {
                    format!("{f} 0")
                } else {
                    let filter = if self.chance(15) {
                        format!(" FILTER (WHERE {})", self.expr(b, 1))
                    } else {
                        String::new()
                    };
                    format!("{f}({distinct}{}){filter}", self.expr(n, d.min(1)))
                }
            }
        }
    }

    fn str(&mut self, d: u32) -> String {
        let (n, s, t, b) = (Ty::Num, Ty::Str, Ty::Time, Ty::Bool);
        match self.rng.gen_range(0..20) {
            0 => format!("({} || {})", self.expr(s, d), self.expr(s, d)),
            1 => {
                let f = self.pick(&[
                    "UPPER",
                    "LOWER",
                    "INITCAP",
                    "REVERSE",
                    "LTRIM",
                    "RTRIM",
                    "MD5",
                    "SHA256",
                    "TO_BASE64",
                    "FROM_BASE64",
                ]);
                format!("{f}({})", self.expr(s, d))
            }
            2 => format!(
                "SUBSTRING({} FROM {} FOR {})",
                self.expr(s, d),
                self.expr(n, d),
                self.expr(n, d)
            ),
            3 => {
                let f = self.pick(&["SUBSTR", "SUBSTRING", "LEFT", "RIGHT", "REPEAT"]);
                format!("{f}({}, {})", self.expr(s, d), self.expr(n, d))
            }
            4 => {
                let f = self.pick(&["REPLACE", "REGEXP_REPLACE", "CONCAT_WS"]);
                format!(
                    "{f}({}, {}, {})",
                    self.expr(s, d),
                    self.expr(s, d),
                    self.expr(s, d)
                )
            }
            5 => format!(
                "REGEXP_EXTRACT({}, {}, {})",
                self.expr(s, d),
                self.expr(s, d),
                self.expr(n, d)
            ),
            6 => format!("REGEXP_EXTRACT({}, {})", self.expr(s, d), self.expr(s, d)),
            7 => {
                let f = self.pick(&["LPAD", "RPAD"]);
                format!(
                    "{f}({}, {}, {})",
                    self.expr(s, d),
                    self.expr(n, d),
                    self.expr(s, d)
                )
            }
            8 => format!(
                "SPLIT_INDEX({}, {}, {})",
                self.expr(s, d),
                self.expr(s, d),
                self.expr(n, d)
            ),
            9 => {
                let w = self.pick(&["BOTH", "LEADING", "TRAILING"]);
                format!("TRIM({w} {} FROM {})", self.expr(s, d), self.expr(s, d))
            }
            10 => format!("DATE_FORMAT({}, {})", self.expr(t, d), self.expr(s, d)),
            11 => format!("FROM_UNIXTIME({}, {})", self.expr(n, d), self.expr(s, d)),
            12 => {
                let ty = self.pick(&[
                    "STRING",
                    "CHAR(1)",
                    "VARCHAR(2)",
                    "CHAR(0)",
                    "VARCHAR(2147483647)",
                ]);
                let c = self.pick(&["CAST", "TRY_CAST"]);
                format!("{c}({} AS {ty})", self.any(d))
            }
            13 => format!(
                "CONCAT({}, {}, {})",
                self.expr(s, d),
                self.any(d),
                self.expr(s, d)
            ),
            14 => format!("CHR({})", self.expr(n, d)),
            15 => format!(
                "IF({}, {}, {})",
                self.expr(b, d),
                self.expr(s, d),
                self.expr(s, d)
            ),
            16 => format!("COALESCE({}, {})", self.expr(s, d), self.expr(s, d)),
            17 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.expr(b, d),
                self.expr(s, d),
                self.expr(s, d)
            ),
            _ => format!("FIRST_VALUE({})", self.expr(s, d.min(1))),
        }
    }

    fn bool(&mut self, d: u32) -> String {
        let (n, s, t, b) = (Ty::Num, Ty::Str, Ty::Time, Ty::Bool);
        match self.rng.gen_range(0..14) {
            0 | 1 => {
                let op = self.pick(&[
                    "=",
                    "<>",
                    "<",
                    "<=",
                    ">",
                    ">=",
                    "!=",
                    "IS DISTINCT FROM",
                    "IS NOT DISTINCT FROM",
                ]);
                let ty = match self.rng.gen_range(0..4) {
                    0 => n,
                    1 => s,
                    2 => t,
                    _ => b,
                };
                format!("({} {op} {})", self.expr(ty, d), self.expr(ty, d))
            }
            2 => {
                let op = self.pick(&["AND", "OR"]);
                format!("({} {op} {})", self.expr(b, d), self.expr(b, d))
            }
            3 => format!("NOT {}", self.expr(b, d)),
            4 => {
                let like = self.pick(&["LIKE", "NOT LIKE", "SIMILAR TO", "NOT SIMILAR TO"]);
                let esc = if self.chance(20) {
                    format!(" ESCAPE {}", self.pick(STR_LEAVES))
                } else {
                    String::new()
                };
                format!("({} {like} {}{esc})", self.expr(s, d), self.expr(s, d))
            }
            5 => {
                let is = self.pick(&[
                    "IS NULL",
                    "IS NOT NULL",
                    "IS TRUE",
                    "IS NOT FALSE",
                    "IS UNKNOWN",
                ]);
                format!("({} {is})", self.any(d))
            }
            6 => {
                let sym = self.pick(&["", "NOT ", "SYMMETRIC ", "ASYMMETRIC "]);
                format!(
                    "({} {sym}BETWEEN {} AND {})",
                    self.expr(n, d),
                    self.expr(n, d),
                    self.expr(n, d)
                )
            }
            7 => format!(
                "({} IN ({}, {}, {}))",
                self.expr(n, d),
                self.expr(n, d),
                self.expr(n, d),
                self.pick(NUM_LEAVES)
            ),
            8 => format!(
                "({} NOT IN ({}, {}))",
                self.expr(s, d),
                self.expr(s, d),
                self.pick(STR_LEAVES)
            ),
            9 => format!("REGEXP({}, {})", self.expr(s, d), self.expr(s, d)),
            10 => {
                let f = self.pick(&["IS_ALPHA", "IS_DIGIT", "IS_DECIMAL"]);
                format!("{f}({})", self.expr(s, d))
            }
            11 => format!("CAST({} AS BOOLEAN)", self.any(d)),
            _ => format!("COALESCE({}, {})", self.expr(b, d), self.expr(b, d)),
        }
    }

    fn time(&mut self, d: u32) -> String {
        let (n, s, t) = (Ty::Num, Ty::Str, Ty::Time);
        match self.rng.gen_range(0..14) {
            0 | 1 => {
                let op = self.pick(&["+", "-"]);
                let i = self.pick(INTERVALS);
                format!("({} {op} {i})", self.expr(t, d))
            }
            2 => {
                let u = self.pick(&[
                    "YEAR",
                    "MONTH",
                    "WEEK",
                    "DAY",
                    "HOUR",
                    "MINUTE",
                    "SECOND",
                    "MILLISECOND",
                ]);
                format!(
                    "TIMESTAMPADD({u}, {}, {})",
                    self.expr(n, d),
                    self.expr(t, d)
                )
            }
            3 => {
                let f = self.pick(&["FLOOR", "CEIL"]);
                let u = self.pick(UNITS);
                format!("{f}({} TO {u})", self.expr(t, d))
            }
            4 => format!("TO_TIMESTAMP({})", self.expr(s, d)),
            5 => format!("TO_TIMESTAMP({}, {})", self.expr(s, d), self.expr(s, d)),
            6 => format!("TO_DATE({})", self.expr(s, d)),
            7 => format!(
                "TO_TIMESTAMP_LTZ({}, {})",
                self.expr(n, d),
                self.pick(&["0", "3", "6", "9", "-1"])
            ),
            8 => {
                let ty = self.pick(&[
                    "DATE",
                    "TIME",
                    "TIME(0)",
                    "TIMESTAMP",
                    "TIMESTAMP(0)",
                    "TIMESTAMP(9)",
                    "TIMESTAMP_LTZ(3)",
                    "TIMESTAMP WITH LOCAL TIME ZONE",
                ]);
                let c = self.pick(&["CAST", "TRY_CAST"]);
                format!("{c}({} AS {ty})", self.any(d))
            }
            9 => format!("GREATEST({}, {})", self.expr(t, d), self.expr(t, d)),
            10 => format!("COALESCE({}, {})", self.expr(t, d), self.expr(t, d)),
            11 => format!("MAX({})", self.expr(t, d.min(1))),
            _ => {
                let f = self.pick(&["DATE_FORMAT", "TO_TIMESTAMP"]);
                format!("{f}({})", self.expr(t, d))
            }
        }
    }

    /// A whole query over `t` built from generated expressions.
    fn query(&mut self) -> String {
        let depth = self.rng.gen_range(1..4);
        let list = |g: &mut Gen| -> String {
            let k = g.rng.gen_range(1..4);
            (0..k).map(|_| g.any(depth)).collect::<Vec<_>>().join(", ")
        };
        match self.rng.gen_range(0..10) {
            0 => format!("SELECT {}", list(self)),
            1 | 2 => format!(
                "SELECT {} FROM t WHERE {}",
                list(self),
                self.expr(Ty::Bool, depth)
            ),
            3 | 4 => {
                let key = self.pick(&["s", "i", "c", "bo", "dt", "s, i"]);
                format!(
                    "SELECT {key}, {} FROM t GROUP BY {key} HAVING {}",
                    list(self),
                    self.expr(Ty::Bool, depth)
                )
            }
            5 => {
                let w = self.pick(&[
                    "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND)",
                    "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '1' SECOND)",
                    "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '5' SECOND)",
                    "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '7' SECOND)",
                    "CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
                    "CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '10' SECOND)",
                    "SESSION(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND)",
                    "SESSION(TABLE t PARTITION BY s, DESCRIPTOR(ts), INTERVAL '5' SECOND)",
                    "TUMBLE(TABLE t, DESCRIPTOR(lz), INTERVAL '0' SECOND)",
                    "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '-1' SECOND, INTERVAL '5' SECOND)",
                    "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MONTH)",
                    "TUMBLE(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL '5' SECOND)",
                ]);
                let keys = self.pick(&[
                    "window_start, window_end",
                    "window_start, window_end, s",
                    "window_end",
                    "window_start, window_end, window_time",
                ]);
                format!(
                    "SELECT {keys}, {} FROM TABLE({w}) GROUP BY {keys}",
                    list(self)
                )
            }
            6 => {
                let w = self.pick(&["TUMBLE", "HOP", "SESSION"]);
                let size = if w == "HOP" {
                    "INTERVAL '1' SECOND, INTERVAL '3' SECOND"
                } else {
                    "INTERVAL '5' SECOND"
                };
                let aux = self.pick(&["START", "END", "ROWTIME", "PROCTIME"]);
                format!(
                    "SELECT s, {w}_{aux}(ts, {size}), {} FROM t GROUP BY {w}(ts, {size}), s",
                    list(self)
                )
            }
            7 => format!(
                "WITH q AS (SELECT {} FROM t) SELECT DISTINCT * FROM q UNION ALL SELECT * FROM q",
                list(self)
            ),
            8 => format!(
                "SELECT * FROM (VALUES ({}, {}), ({}, {})) AS v(a, b) WHERE {}",
                self.any(depth),
                self.any(depth),
                self.any(depth),
                self.any(depth),
                self.expr(Ty::Bool, 1)
            ),
            _ => {
                let col = self.pick(&["STRING", "INT", "DECIMAL(3, 1)", "TIMESTAMP(3)", "BOOLEAN"]);
                let sink = self.pick(&[
                    "'connector' = 'blackhole'",
                    "'connector' = 'print'",
                    "'connector' = 'filesystem', 'path' = '/nonexistent/out', 'format' = 'csv'",
                    "'connector' = 'filesystem', 'path' = '/nonexistent/out', 'format' = 'json'",
                ]);
                let group = if self.chance(30) { " GROUP BY s" } else { "" };
                format!(
                    "CREATE TABLE o (x {col}) WITH ({sink});\nINSERT INTO o SELECT {} FROM t{group}",
                    self.any(depth)
                )
            }
        }
    }
}

fn seed() -> impl Strategy<Value = usize> {
    0..seeds().len()
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn character_mutants_never_panic(s in seed(), edits in prop::collection::vec(char_edit(), 1..6)) {
        plan(&apply_char_edits(&seeds()[s], &edits));
    }

    #[test]
    fn token_mutants_never_panic(s in seed(), edits in prop::collection::vec(token_edit(), 1..5)) {
        plan(&apply_token_edits(&seeds()[s], &edits));
    }

    #[test]
    fn statement_mutants_never_panic(
        s in seed(),
        edits in prop::collection::vec(statement_edit(), 1..4),
        tokens in prop::collection::vec(token_edit(), 0..2),
    ) {
        plan(&apply_token_edits(&apply_statement_edits(&seeds()[s], &edits), &tokens));
    }

    #[test]
    fn spliced_scripts_never_panic(a in seed(), b in seed(), cut in any::<usize>()) {
        // The DDL of one script with the queries of another: names and types that do not fit.
        let (x, y) = (&seeds()[a], &seeds()[b]);
        let at = x.char_indices().map(|(i, _)| i).nth(cut % x.chars().count().max(1)).unwrap_or(0);
        plan(&format!("{}{}", &x[..at], y));
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn generated_queries_never_panic(seed in any::<u64>()) {
        plan(&format!("{TABLE}{};", Gen::new(seed).query()));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        plan(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_sql_like_text_never_panic(words in prop::collection::vec(prop::sample::select(VOCABULARY), 0..30)) {
        plan(&words.join(" "));
    }
}

#[test]
fn every_seed_plans_or_fails_cleanly() {
    for s in seeds() {
        plan(s);
    }
}
