//! Tests of the Flink SQL parser: every statement form, Flink's types and defaults, window
//! TVFs, interval literals, error spans, the conformance scripts, and no panics on any input.

use std::path::PathBuf;

use sqlparser::ast::{Expr, GroupByExpr, SelectItem, SetExpr, Spanned, TableFactor, TableVersion};
use streamsql_engine::types::DataType;

use super::*;
use crate::ast::{ColumnKind, IntervalValue, Statement, WindowKind};
use crate::error::SqlErrorKind;

fn parse_one(sql: &str) -> Statement {
    let mut statements = parse_script(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(statements.len(), 1, "{sql}");
    statements.remove(0)
}

fn parse_err(sql: &str) -> SqlError {
    match parse_script(sql) {
        Ok(s) => panic!("expected an error for {sql}, got {s:?}"),
        Err(e) => e,
    }
}

fn create_table(sql: &str) -> crate::ast::CreateTable {
    match parse_one(sql) {
        Statement::CreateTable(t) => t,
        other => panic!("not a CREATE TABLE: {other:?}"),
    }
}

fn column_type(ty: &str) -> SqlResult<DataType> {
    let sql = format!("CREATE TABLE t (c {ty}) WITH ('connector' = 'datagen')");
    let mut statements = parse_script(&sql)?;
    match statements.remove(0) {
        Statement::CreateTable(t) => match &t.columns[0].kind {
            ColumnKind::Physical { data_type, .. } => Ok(data_type.clone()),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn query_of(statement: &Statement) -> &sqlparser::ast::Query {
    match statement {
        Statement::Query { query, .. } => query,
        other => panic!("not a query: {other:?}"),
    }
}

fn first_from(statement: &Statement) -> &TableFactor {
    let SetExpr::Select(select) = query_of(statement).body.as_ref() else {
        panic!("not a SELECT");
    };
    &select.from[0].relation
}

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/cases")
}

fn conformance_scripts() -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(conformance_dir()) else {
        return Vec::new();
    };
    let mut scripts: Vec<(String, String)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable conformance case");
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                text.replace("${DATA}", "/data"),
            )
        })
        .collect();
    scripts.sort();
    scripts
}

#[test]
fn parses_every_conformance_case() {
    let scripts = conformance_scripts();
    if scripts.is_empty() {
        eprintln!("no conformance cases at {}", conformance_dir().display());
        return;
    }
    assert_eq!(scripts.len(), 34);
    for (name, sql) in &scripts {
        let statements = parse_script(sql)
            .unwrap_or_else(|e| panic!("{name}: {e} at {:?}", e.span.clone().map(|s| &sql[s])));
        assert!(
            matches!(statements.last(), Some(Statement::Query { .. })),
            "{name}"
        );
        for s in &statements {
            let text = s.text(sql);
            assert!(
                !text.ends_with(';') && !text.starts_with("--"),
                "{name}: {text}"
            );
        }
    }
}

#[test]
fn create_table_with_everything() {
    let sql = "CREATE TEMPORARY TABLE IF NOT EXISTS `my db`.orders (
        `id` BIGINT NOT NULL COMMENT 'the id',
        amount DECIMAL(10, 2),
        ts TIMESTAMP(3),
        total AS amount * 2,
        part INT METADATA FROM 'partition' VIRTUAL,
        WATERMARK FOR ts AS ts - INTERVAL '5' SECOND,
        PRIMARY KEY (id) NOT ENFORCED
      ) COMMENT 'orders' WITH ('connector' = 'filesystem', 'path' = '/tmp/x')";
    let t = create_table(sql);
    assert_eq!(t.name, "my db.orders");
    assert_eq!(&sql[t.name_span.clone()], "`my db`.orders");
    assert!(t.temporary && t.if_not_exists);
    assert_eq!(t.columns.len(), 5);
    assert_eq!(t.columns[0].name, "id");
    assert!(t.columns[0].not_null);
    assert_eq!(t.columns[0].comment.as_deref(), Some("the id"));
    match &t.columns[1].kind {
        ColumnKind::Physical {
            data_type,
            type_span,
        } => {
            assert_eq!(*data_type, DataType::Decimal(10, 2));
            assert_eq!(&sql[type_span.clone()], "DECIMAL(10, 2)");
        }
        other => panic!("{other:?}"),
    }
    match &t.columns[3].kind {
        ColumnKind::Computed { expr, expr_span } => {
            assert_eq!(expr.to_string(), "amount * 2");
            assert_eq!(&sql[expr_span.clone()], "amount * 2");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &t.columns[4].kind,
        ColumnKind::Metadata { key: Some(k), is_virtual: true, .. } if k == "partition"
    ));
    let wm = t.watermark.as_ref().expect("watermark");
    assert_eq!(wm.column, "ts");
    assert_eq!(&sql[wm.column_span.clone()], "ts");
    assert_eq!(&sql[wm.expr_span.clone()], "ts - INTERVAL '5' SECOND");
    assert_eq!(
        &sql[wm.span.clone()],
        "WATERMARK FOR ts AS ts - INTERVAL '5' SECOND"
    );
    let pk = t.primary_key.as_ref().expect("primary key");
    assert_eq!(pk.columns, vec!["id"]);
    assert_eq!(&sql[pk.span.clone()], "PRIMARY KEY (id) NOT ENFORCED");
    assert_eq!(t.comment.as_deref(), Some("orders"));
    assert_eq!(t.options.len(), 2);
    assert_eq!(t.options[1].key, "path");
    assert_eq!(t.options[1].value, "/tmp/x");
    assert_eq!(&sql[t.options[1].key_span.clone()], "'path'");
    assert_eq!(&sql[t.options[1].value_span.clone()], "'/tmp/x'");
    assert!(sql[t.span.clone()].starts_with("CREATE TEMPORARY"));
    assert!(sql[t.span.clone()].ends_with("'/tmp/x')"));
}

#[test]
fn column_level_primary_key_and_quoted_option_values() {
    let t = create_table(
        "CREATE TABLE t (k STRING PRIMARY KEY NOT ENFORCED, v INT) WITH ('a' = 'it''s')",
    );
    assert_eq!(t.primary_key.expect("pk").columns, vec!["k"]);
    assert_eq!(t.options[0].value, "it's");
}

#[test]
fn primary_key_must_be_not_enforced() {
    for sql in [
        "CREATE TABLE t (k INT, PRIMARY KEY (k)) WITH ()",
        "CREATE TABLE t (k INT, PRIMARY KEY (k) ENFORCED) WITH ()",
        "CREATE TABLE t (k INT PRIMARY KEY) WITH ()",
    ] {
        let e = parse_err(sql);
        assert_eq!(e.kind, SqlErrorKind::Validation, "{sql}");
        assert!(
            e.message.starts_with(
                "Flink doesn't support ENFORCED mode for PRIMARY KEY constraint. ENFORCED/NOT ENFORCED controls"
            ),
            "{}",
            e.message
        );
        assert!(
            sql[e.span.expect("span")].starts_with("PRIMARY KEY"),
            "{sql}"
        );
    }
}

#[test]
fn duplicate_watermark_and_primary_key_are_rejected() {
    let e = parse_err(
        "CREATE TABLE t (a TIMESTAMP(3), WATERMARK FOR a AS a, WATERMARK FOR a AS a) WITH ()",
    );
    assert_eq!(e.kind, SqlErrorKind::Validation);
    let e = parse_err(
        "CREATE TABLE t (a INT PRIMARY KEY NOT ENFORCED, PRIMARY KEY (a) NOT ENFORCED) WITH ()",
    );
    assert_eq!(e.kind, SqlErrorKind::Validation);
}

#[test]
fn flink_types_and_defaults() {
    let cases = [
        ("BOOLEAN", DataType::Boolean),
        ("TINYINT", DataType::TinyInt),
        ("SMALLINT", DataType::SmallInt),
        ("INT", DataType::Int),
        ("INTEGER", DataType::Int),
        ("BIGINT", DataType::BigInt),
        ("FLOAT", DataType::Float),
        ("REAL", DataType::Float),
        ("DOUBLE", DataType::Double),
        ("DOUBLE PRECISION", DataType::Double),
        ("DECIMAL", DataType::Decimal(10, 0)),
        ("DECIMAL(5)", DataType::Decimal(5, 0)),
        ("DEC(12, 3)", DataType::Decimal(12, 3)),
        ("NUMERIC(38, 18)", DataType::Decimal(38, 18)),
        ("CHAR", DataType::Char(1)),
        ("CHAR(7)", DataType::Char(7)),
        ("VARCHAR", DataType::STRING),
        ("VARCHAR(20)", DataType::Varchar(20)),
        ("STRING", DataType::STRING),
        ("string", DataType::STRING),
        ("DATE", DataType::Date),
        ("TIME", DataType::Time(0)),
        ("TIME(3)", DataType::Time(3)),
        ("TIMESTAMP", DataType::Timestamp(6)),
        ("TIMESTAMP(3)", DataType::Timestamp(3)),
        ("TIMESTAMP(3) WITHOUT TIME ZONE", DataType::Timestamp(3)),
        ("TIMESTAMP_LTZ", DataType::TimestampLtz(6)),
        ("TIMESTAMP_LTZ(3)", DataType::TimestampLtz(3)),
        (
            "TIMESTAMP(3) WITH LOCAL TIME ZONE",
            DataType::TimestampLtz(3),
        ),
        ("TIMESTAMP WITH LOCAL TIME ZONE", DataType::TimestampLtz(6)),
        ("INTERVAL DAY TO SECOND", DataType::IntervalDayTime),
        ("INTERVAL YEAR TO MONTH", DataType::IntervalYearMonth),
    ];
    for (text, expected) in cases {
        assert_eq!(
            column_type(text).unwrap_or_else(|e| panic!("{text}: {e}")),
            expected,
            "{text}"
        );
    }
}

#[test]
fn ltz_type_span_covers_the_original_text() {
    let sql = "CREATE TABLE t (c TIMESTAMP(3) WITH LOCAL TIME ZONE NOT NULL) WITH ()";
    let t = create_table(sql);
    let ColumnKind::Physical { type_span, .. } = &t.columns[0].kind else {
        panic!()
    };
    assert_eq!(&sql[type_span.clone()], "TIMESTAMP(3) WITH LOCAL TIME ZONE");
    assert!(t.columns[0].not_null);
}

#[test]
fn row_types_parse_nested_in_both_forms() {
    use streamsql_engine::types::Field;
    let row = |fields: Vec<(&str, DataType)>| {
        DataType::Row(
            fields
                .into_iter()
                .map(|(n, t)| Field::new(n, t))
                .collect::<Vec<_>>()
                .into(),
        )
    };
    let inner = row(vec![("c", DataType::STRING), ("d", DataType::Double)]);
    assert_eq!(
        column_type("ROW<a INT, b ROW<c VARCHAR, d DOUBLE>>").unwrap(),
        row(vec![("a", DataType::Int), ("b", inner.clone())])
    );
    assert_eq!(
        column_type("ROW(a INT NOT NULL 'the a', `b` ROW(c STRING, d DOUBLE))").unwrap(),
        row(vec![("a", DataType::Int), ("b", inner.clone())])
    );
    assert_eq!(
        column_type("ROW<b ROW<c STRING, d DOUBLE> , `dateTime` TIMESTAMP(3)>").unwrap(),
        row(vec![("b", inner), ("dateTime", DataType::Timestamp(3))])
    );
    assert_eq!(
        column_type("row<>").unwrap(),
        DataType::Row(Vec::<Field>::new().into())
    );
    assert!(column_type("ROW<a INT").is_err());
    assert!(column_type("ROW(a INT>").is_err());
    assert!(column_type("ROW<a ROW<b INT>>>").is_err());
    assert_eq!(
        column_type("ROW<a INT, b ROW<c STRING, d DOUBLE>>")
            .unwrap()
            .to_string(),
        "ROW<`a` INT, `b` ROW<`c` STRING, `d` DOUBLE>>"
    );
}

#[test]
fn unsupported_and_invalid_types_are_named() {
    for (ty, word, kind) in [
        ("BYTES", "BYTES", SqlErrorKind::Unsupported),
        ("VARBINARY(3)", "VARBINARY", SqlErrorKind::Unsupported),
        ("ARRAY<INT>", "ARRAY", SqlErrorKind::Unsupported),
        ("MAP<STRING, INT>", "MAP", SqlErrorKind::Unsupported),
        ("ROW<a INT, a STRING>", "unique", SqlErrorKind::Validation),
        ("INT ARRAY", "ARRAY", SqlErrorKind::Unsupported),
        ("DECIMAL(39, 2)", "precision", SqlErrorKind::Validation),
        ("DECIMAL(5, 6)", "scale", SqlErrorKind::Validation),
        ("TIMESTAMP(10)", "TIMESTAMP", SqlErrorKind::Validation),
        ("VARCHAR(0)", "length", SqlErrorKind::Validation),
        ("STRNG", "STRNG", SqlErrorKind::Validation),
    ] {
        let e = column_type(ty).expect_err(ty);
        assert_eq!(e.kind, kind, "{ty}: {e}");
        assert!(e.message.contains(word), "{ty}: {}", e.message);
        assert!(e.span.is_some(), "{ty}");
    }
    assert_eq!(
        column_type("STRNG").expect_err("unknown").help.as_deref(),
        Some("did you mean STRING?")
    );
}

#[test]
fn cast_targets_convert() {
    let s = parse_one(
        "SELECT CAST(a AS STRING), CAST(b AS TIMESTAMP_LTZ(3)), TRY_CAST(c AS INT), \
         CAST(d AS TIMESTAMP(3) WITH LOCAL TIME ZONE), CAST(e AS DECIMAL(8, 1)) FROM t",
    );
    let SetExpr::Select(select) = query_of(&s).body.as_ref() else {
        panic!()
    };
    let types: Vec<DataType> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Cast { data_type, .. }) => {
                convert_data_type(data_type).expect("convertible")
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        types,
        vec![
            DataType::STRING,
            DataType::TimestampLtz(3),
            DataType::Int,
            DataType::TimestampLtz(3),
            DataType::Decimal(8, 1)
        ]
    );
}

#[test]
fn views_drops_set_reset() {
    let sql = "CREATE TEMPORARY VIEW IF NOT EXISTS v AS SELECT a FROM t;
        CREATE VIEW w (x) AS SELECT a FROM t;
        DROP TABLE IF EXISTS t; DROP TEMPORARY VIEW v;
        SET 'table.exec.state.ttl' = '1 h'; SET;
        RESET 'a.b'; RESET";
    let s = parse_script(sql).expect("parses");
    assert_eq!(s.len(), 8);
    match &s[0] {
        Statement::CreateView(v) => {
            assert!(v.temporary && v.if_not_exists);
            assert_eq!(v.name, "v");
            assert_eq!(v.query.to_string(), "SELECT a FROM t");
            assert_eq!(v.span.clone(), 0..56);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&s[1], Statement::CreateView(v) if v.columns == vec!["x"]));
    assert!(
        matches!(&s[2], Statement::DropTable { name, if_exists: true, temporary: false, .. } if name == "t")
    );
    assert!(
        matches!(&s[3], Statement::DropView { name, if_exists: false, temporary: true, .. } if name == "v")
    );
    match &s[4] {
        Statement::Set {
            key,
            value,
            key_span,
            ..
        } => {
            assert_eq!(key, "table.exec.state.ttl");
            assert_eq!(value, "1 h");
            assert_eq!(&sql[key_span.clone()], "'table.exec.state.ttl'");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&s[5], Statement::SetList { .. }));
    assert!(matches!(&s[6], Statement::Reset { key: Some(k), .. } if k == "a.b"));
    assert!(matches!(&s[7], Statement::Reset { key: None, .. }));
    assert_eq!(s[4].text(sql), "SET 'table.exec.state.ttl' = '1 h'");
}

#[test]
fn set_requires_quoted_strings() {
    let e = parse_err("SET a = 'b'");
    assert_eq!(e.kind, SqlErrorKind::Parse);
}

#[test]
fn inserts_and_statement_sets() {
    let sql = "INSERT INTO sink (a, b) SELECT x, y FROM src;
        INSERT INTO sink VALUES (1, 'a'), (2, 'b');
        INSERT INTO sink (SELECT * FROM src);
        EXECUTE STATEMENT SET BEGIN
          INSERT INTO s1 SELECT * FROM src;
          INSERT INTO s2 SELECT * FROM src;
        END;
        BEGIN STATEMENT SET;
        INSERT INTO s1 SELECT * FROM src;
        END;
        EXECUTE INSERT INTO s3 SELECT 1;
        EXECUTE SELECT 1";
    let s = parse_script(sql).expect("parses");
    assert_eq!(s.len(), 7);
    match &s[0] {
        Statement::Insert(i) => {
            assert_eq!(i.table, "sink");
            assert_eq!(i.columns, vec!["a", "b"]);
            assert_eq!(&sql[i.column_spans[1].clone()], "b");
            assert_eq!(i.query.to_string(), "SELECT x, y FROM src");
            assert_eq!(
                s[0].text(sql),
                "INSERT INTO sink (a, b) SELECT x, y FROM src"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&s[1], Statement::Insert(i) if matches!(*i.query.body, SetExpr::Values(_))));
    assert!(matches!(&s[2], Statement::Insert(i) if i.columns.is_empty()));
    match &s[3] {
        Statement::StatementSet { inserts, .. } => {
            assert_eq!(inserts.len(), 2);
            assert_eq!(inserts[1].table, "s2");
            assert!(s[3].text(sql).starts_with("EXECUTE STATEMENT SET BEGIN"));
            assert!(s[3].text(sql).ends_with("END"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&s[4], Statement::StatementSet { inserts, .. } if inserts.len() == 1));
    assert!(matches!(&s[5], Statement::Insert(i) if i.table == "s3"));
    assert!(s[5].text(sql).starts_with("EXECUTE INSERT"));
    assert!(matches!(&s[6], Statement::Query { .. }));
}

#[test]
fn statement_sets_take_only_inserts() {
    let e = parse_err("EXECUTE STATEMENT SET BEGIN SELECT 1; END;");
    assert_eq!(e.kind, SqlErrorKind::Parse);
    let e = parse_err("EXECUTE STATEMENT SET BEGIN END;");
    assert_eq!(e.kind, SqlErrorKind::Parse);
}

#[test]
fn explain_show_describe() {
    let sql = "EXPLAIN SELECT 1; EXPLAIN PLAN FOR INSERT INTO s SELECT 1;
        EXPLAIN CHANGELOG_MODE, ESTIMATED_COST SELECT * FROM t;
        EXPLAIN STATEMENT SET BEGIN INSERT INTO s SELECT 1; END;
        EXPLAIN EXECUTE STATEMENT SET BEGIN INSERT INTO s SELECT 1; END;
        SHOW TABLES; SHOW VIEWS; SHOW FUNCTIONS; SHOW USER FUNCTIONS; DESCRIBE t; DESC `x`.y";
    let s = parse_script(sql).expect("parses");
    assert_eq!(s.len(), 11);
    assert!(
        matches!(&s[0], Statement::Explain { statement, .. } if matches!(**statement, Statement::Query { .. }))
    );
    assert!(
        matches!(&s[1], Statement::Explain { statement, .. } if matches!(**statement, Statement::Insert(_)))
    );
    assert!(
        matches!(&s[2], Statement::Explain { statement, .. } if matches!(**statement, Statement::Query { .. }))
    );
    assert!(
        matches!(&s[3], Statement::Explain { statement, .. } if matches!(**statement, Statement::StatementSet { .. }))
    );
    assert!(
        matches!(&s[4], Statement::Explain { statement, .. } if matches!(**statement, Statement::StatementSet { .. }))
    );
    assert!(matches!(&s[5], Statement::ShowTables { .. }));
    assert!(matches!(&s[6], Statement::ShowViews { .. }));
    assert!(matches!(&s[7], Statement::ShowFunctions { .. }));
    assert!(matches!(&s[8], Statement::ShowFunctions { .. }));
    assert!(matches!(&s[9], Statement::Describe { name, .. } if name == "t"));
    assert!(matches!(&s[10], Statement::Describe { name, .. } if name == "x.y"));
}

#[test]
fn unsupported_statements_are_named() {
    for (sql, name) in [
        ("CREATE FUNCTION f AS 'com.x.F'", "CREATE FUNCTION"),
        (
            "CREATE TEMPORARY SYSTEM FUNCTION f AS 'x'",
            "CREATE TEMPORARY SYSTEM",
        ),
        ("ALTER TABLE t RENAME TO u", "ALTER TABLE"),
        ("USE CATALOG c", "USE CATALOG"),
        ("SHOW CATALOGS", "SHOW CATALOGS"),
        ("INSERT OVERWRITE t SELECT 1", "INSERT OVERWRITE"),
        (
            "CREATE TABLE t (a INT) PARTITIONED BY (a) WITH ()",
            "PARTITIONED BY",
        ),
        (
            "CREATE TABLE t WITH ('connector' = 'x') AS SELECT 1",
            "AS SELECT",
        ),
        ("CREATE TABLE t (a INT, UNIQUE (a)) WITH ()", "UNIQUE"),
        ("DROP FUNCTION f", "DROP FUNCTION"),
    ] {
        let e = parse_err(sql);
        assert_eq!(e.kind, SqlErrorKind::Unsupported, "{sql}: {e}");
        assert!(e.message.contains(name), "{sql}: {}", e.message);
        assert!(e.span.is_some(), "{sql}");
    }
}

#[test]
fn window_tvfs() {
    let sql = "SELECT * FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_ts), INTERVAL '20' MINUTES)) AS w";
    let s = parse_one(sql);
    let w = window_tvf(sql, first_from(&s))
        .expect("valid")
        .expect("a window TVF");
    assert_eq!(w.kind, WindowKind::Tumble);
    assert_eq!(w.table, "orders");
    assert_eq!(&sql[w.table_span.clone()], "orders");
    assert_eq!(w.time_col, "order_ts");
    assert_eq!(&sql[w.time_col_span.clone()], "order_ts");
    assert_eq!(w.intervals.len(), 1);
    assert_eq!(
        interval_millis_or_months(&w.intervals[0]).expect("interval"),
        IntervalValue::DayTime(20 * 60_000)
    );
    assert_eq!(w.alias.as_deref(), Some("w"));
    assert!(sql[w.span.clone()].starts_with("TUMBLE"));
    assert!(sql[w.span.clone()].ends_with('w'));

    let sql = "SELECT * FROM TABLE(HOP(TABLE sensors, DESCRIPTOR(ts), INTERVAL '10' MINUTES, INTERVAL '30' MINUTES, INTERVAL '1' MINUTE))";
    let s = parse_one(sql);
    let w = window_tvf(sql, first_from(&s))
        .expect("valid")
        .expect("tvf");
    assert_eq!(w.kind, WindowKind::Hop);
    assert_eq!(w.intervals.len(), 3);
    assert!(w.alias.is_none());

    let sql = "SELECT * FROM TABLE(CUMULATE(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), \
               SIZE => INTERVAL '1' HOUR, STEP => INTERVAL '15' MINUTES))";
    let s = parse_one(sql);
    let w = window_tvf(sql, first_from(&s))
        .expect("valid")
        .expect("tvf");
    assert_eq!(w.kind, WindowKind::Cumulate);
    let values: Vec<IntervalValue> = w
        .intervals
        .iter()
        .map(|e| interval_millis_or_months(e).expect("interval"))
        .collect();
    assert_eq!(
        values,
        vec![
            IntervalValue::DayTime(15 * 60_000),
            IntervalValue::DayTime(3_600_000)
        ]
    );

    let sql = "SELECT * FROM TABLE(SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(click_ts), INTERVAL '10' MINUTES))";
    let s = parse_one(sql);
    let w = window_tvf(sql, first_from(&s))
        .expect("valid")
        .expect("tvf");
    assert_eq!(w.kind, WindowKind::Session);
    assert_eq!(w.partition_by, vec!["user_id"]);
    assert_eq!(&sql[w.partition_spans[0].clone()], "user_id");

    let sql = "SELECT * FROM TABLE(SESSION(TABLE c PARTITION BY (a, `b`), DESCRIPTOR(ts), INTERVAL '1' SECOND)) s";
    let s = parse_one(sql);
    let w = window_tvf(sql, first_from(&s))
        .expect("valid")
        .expect("tvf");
    assert_eq!(w.partition_by, vec!["a", "b"]);
    assert_eq!(w.alias.as_deref(), Some("s"));

    let sql = "SELECT * FROM t";
    assert_eq!(
        window_tvf(sql, first_from(&parse_one(sql))).expect("ok"),
        None
    );
}

#[test]
fn window_tvf_argument_errors() {
    for sql in [
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))",
        "SELECT * FROM TABLE(TUMBLE(t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        "SELECT * FROM TABLE(TUMBLE(TABLE t, ts, INTERVAL '1' MINUTE))",
        "SELECT * FROM TABLE(TUMBLE(TABLE t PARTITION BY a, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' MINUTE, INTERVAL '1' MINUTE))",
        "SELECT * FROM TABLE(TUMBLE(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), WIDTH => INTERVAL '1' MINUTE))",
    ] {
        let s = parse_one(sql);
        let e = window_tvf(sql, first_from(&s)).expect_err(sql);
        assert_eq!(e.kind, SqlErrorKind::Validation, "{sql}");
        assert!(e.span.is_some(), "{sql}");
    }
}

#[test]
fn interval_literals() {
    let cases = [
        ("INTERVAL '20' MINUTES", IntervalValue::DayTime(1_200_000)),
        ("INTERVAL '1' DAY", IntervalValue::DayTime(86_400_000)),
        ("INTERVAL '10' SECOND", IntervalValue::DayTime(10_000)),
        ("INTERVAL '1.5' SECOND", IntervalValue::DayTime(1_500)),
        (
            "INTERVAL '1:30' HOUR TO MINUTE",
            IntervalValue::DayTime(5_400_000),
        ),
        (
            "INTERVAL '1 02:03:04.5' DAY TO SECOND",
            IntervalValue::DayTime(93_784_500),
        ),
        ("INTERVAL '2' YEAR", IntervalValue::YearMonth(24)),
        ("INTERVAL '1-3' YEAR TO MONTH", IntervalValue::YearMonth(15)),
        ("INTERVAL '-1' HOUR", IntervalValue::DayTime(-3_600_000)),
        ("-INTERVAL '2' MONTHS", IntervalValue::YearMonth(-2)),
        (
            "INTERVAL '100' DAY(3)",
            IntervalValue::DayTime(8_640_000_000),
        ),
        ("INTERVAL '120' SECOND(3)", IntervalValue::DayTime(120_000)),
    ];
    for (text, expected) in cases {
        let s = parse_one(&format!("SELECT {text}"));
        let SetExpr::Select(select) = query_of(&s).body.as_ref() else {
            panic!()
        };
        let SelectItem::UnnamedExpr(e) = &select.projection[0] else {
            panic!()
        };
        assert_eq!(
            interval_millis_or_months(e).unwrap_or_else(|err| panic!("{text}: {err}")),
            expected,
            "{text}"
        );
    }
    for (text, message) in [
        (
            "INTERVAL '100' DAY",
            "Interval field value 100 exceeds precision of DAY(2) field",
        ),
        (
            "INTERVAL '500' MINUTE",
            "Interval field value 500 exceeds precision of MINUTE(2) field",
        ),
        (
            "INTERVAL '1:60' HOUR TO MINUTE",
            "Illegal interval literal format '1:60' for INTERVAL HOUR TO MINUTE",
        ),
        (
            "INTERVAL 'x' DAY",
            "Illegal interval literal format 'x' for INTERVAL DAY",
        ),
        ("INTERVAL '1' WEEK", "WEEK"),
        ("INTERVAL '1'", "unit"),
    ] {
        let s = parse_one(&format!("SELECT {text}"));
        let SetExpr::Select(select) = query_of(&s).body.as_ref() else {
            panic!()
        };
        let SelectItem::UnnamedExpr(e) = &select.projection[0] else {
            panic!()
        };
        let err = interval_millis_or_months(e).expect_err(text);
        assert!(err.message.contains(message), "{text}: {}", err.message);
    }
}

#[test]
fn legacy_group_windows_and_temporal_joins_parse() {
    let sql = "SELECT k, TUMBLE_START(ts, INTERVAL '15' MINUTE), HOP_END(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
               FROM t GROUP BY k, TUMBLE(ts, INTERVAL '15' MINUTE), SESSION(ts, INTERVAL '1' HOUR)";
    let s = parse_one(sql);
    let SetExpr::Select(select) = query_of(&s).body.as_ref() else {
        panic!()
    };
    let GroupByExpr::Expressions(keys, _) = &select.group_by else {
        panic!()
    };
    assert_eq!(keys.len(), 3);
    assert!(matches!(&keys[1], Expr::Function(f) if f.name.to_string() == "TUMBLE"));

    let sql = "SELECT * FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.c = r.c";
    let s = parse_one(sql);
    let SetExpr::Select(select) = query_of(&s).body.as_ref() else {
        panic!()
    };
    let TableFactor::Table { version, alias, .. } = &select.from[0].joins[0].relation else {
        panic!()
    };
    assert!(matches!(version, Some(TableVersion::ForSystemTimeAsOf(e)) if e.to_string() == "o.ts"));
    assert_eq!(alias.as_ref().map(|a| a.name.value.as_str()), Some("r"));
}

#[test]
fn expression_spans_map_to_bytes() {
    let sql = "-- héllo\nSELECT  upper(ñame) FROM t";
    let s = parse_one(sql);
    assert_eq!(s.text(sql), "SELECT  upper(ñame) FROM t");
    let SetExpr::Select(select) = query_of(&s).body.as_ref() else {
        panic!()
    };
    let SelectItem::UnnamedExpr(e) = &select.projection[0] else {
        panic!()
    };
    // sqlparser's spans of calls end at their last argument.
    assert!(sql[span_of(sql, e.span()).expect("span")].starts_with("upper(ñame"));
    assert_eq!(location_to_offset(sql, 1, 1), 0);
    assert_eq!(location_to_offset(sql, 2, 1), "-- héllo\n".len());
    assert_eq!(location_to_offset(sql, 9, 1), sql.len());
    assert_eq!(location_to_offset(sql, 1, 100), "-- héllo".len());
}

#[test]
fn syntax_errors_point_at_the_token() {
    let sql = "SELECT * FORM t";
    let e = parse_err(sql);
    assert_eq!(e.kind, SqlErrorKind::Parse);
    assert!(
        e.message
            .starts_with("SQL parse failed. Encountered \"FORM\" at line 1, column 10."),
        "{}",
        e.message
    );
    assert!(e.message.contains("found: FORM"), "{}", e.message);
    assert_eq!(&sql[e.span.expect("span")], "FORM");

    let sql = "SELECT *\nFROM t WHERE CAST(a AS ) = 1";
    let e = parse_err(sql);
    assert!(
        e.message
            .starts_with("SQL parse failed. Encountered \")\" at line 2, column 24."),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("Expected: a data type name"),
        "{}",
        e.message
    );
    assert_eq!(&sql[e.span.expect("span")], ")");

    let sql = "SELECT a FROM t;\nSELEC b FROM t";
    let e = parse_err(sql);
    assert_eq!(&sql[e.span.clone().expect("span")], "SELEC");
    assert!(e.message.contains("line 2, column 1"), "{}", e.message);

    let sql = "SELECT (1 + ";
    let e = parse_err(sql);
    assert!(e.message.contains("<EOF>"), "{}", e.message);
    assert_eq!(e.span, Some(sql.len()..sql.len()));

    let sql = "SELECT 'unterminated";
    let e = parse_err(sql);
    assert_eq!(e.kind, SqlErrorKind::Parse);
    assert!(e.span.is_some());

    let e = parse_err("SELECT 1 SELECT 2");
    assert!(
        e.message.contains("Expected: ';' or the end of the script"),
        "{}",
        e.message
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for sql in [
        format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)),
        format!("SELECT {}", "-".repeat(5000) + "1"),
        format!("SELECT * FROM {}t{}", "(".repeat(3000), ")".repeat(3000)),
        "SELECT * FROM (SELECT * FROM ".repeat(2000),
        format!("SELECT {}1", "NOT ".repeat(5000)),
        format!("SELECT CAST({} AS INT)", "CAST(".repeat(3000)),
    ] {
        let e = parse_err(&sql);
        assert_eq!(e.kind, SqlErrorKind::Parse);
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const FALLBACK: &str = "CREATE TABLE t (a INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND, PRIMARY KEY (a) NOT ENFORCED) WITH ('connector' = 'x');
        SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start;
        EXECUTE STATEMENT SET BEGIN INSERT INTO s SELECT a FROM t; END;";

    fn corpus() -> Vec<String> {
        let mut scripts: Vec<String> = conformance_scripts().into_iter().map(|(_, s)| s).collect();
        scripts.push(FALLBACK.to_string());
        scripts
    }

    /// Everything the parser returns must be safe to use: spans slice the script.
    fn check(sql: &str) {
        match parse_script(sql) {
            Ok(statements) => {
                for s in &statements {
                    let span = s.span();
                    assert!(sql.get(span.clone()).is_some(), "bad span {span:?}");
                    if let Statement::Query { query, .. } = s {
                        if let SetExpr::Select(select) = query.body.as_ref() {
                            for from in &select.from {
                                let _ = window_tvf(sql, &from.relation);
                            }
                            for item in &select.projection {
                                if let SelectItem::UnnamedExpr(e) = item {
                                    let _ = interval_millis_or_months(e);
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(span) = e.span {
                    assert!(sql.get(span.clone()).is_some(), "bad error span {span:?}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn random_text_never_panics(sql in "\\PC{0,200}") {
            check(&sql);
        }

        #[test]
        fn random_sql_tokens_never_panic(words in proptest::collection::vec(
            proptest::sample::select(vec![
                "SELECT", "FROM", "TABLE", "(", ")", ",", ";", "TUMBLE", "DESCRIPTOR", "INTERVAL",
                "'1'", "MINUTES", "CREATE", "WATERMARK", "FOR", "AS", "PRIMARY", "KEY", "NOT",
                "ENFORCED", "WITH", "TIMESTAMP", "LOCAL", "TIME", "ZONE", "INSERT", "INTO",
                "EXECUTE", "STATEMENT", "SET", "BEGIN", "END", "EXPLAIN", "t", "`a`", "=>",
                "PARTITION", "BY", "1", "'x'", "=", "-", "CAST", "STRING", "SESSION", "DATA",
            ]),
            0..40,
        )) {
            check(&words.join(" "));
        }

        #[test]
        fn mutated_scripts_never_panic(
            pick in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 1..6),
        ) {
            let scripts = corpus();
            let mut sql: Vec<char> = scripts[pick.index(scripts.len())].chars().collect();
            for (at, op, c) in edits {
                if sql.is_empty() {
                    break;
                }
                let i = at.index(sql.len());
                match op {
                    0 => { sql.remove(i); }
                    1 => sql.insert(i, c),
                    2 => sql[i] = c,
                    _ => { sql.truncate(i); }
                }
            }
            let sql: String = sql.into_iter().collect();
            check(&sql);
        }
    }
}
