//! Tests of the nexmark source. `nexmark_expected.txt` holds events as the Java generator of
//! Flink's Nexmark connector prints them, with its random generator seeded per event id as this
//! port seeds it: one section per `# parallelism events base-time rate person auction bid`, one
//! line per event `split|type|fields...` (timestamps as `LocalDateTime`).

use super::*;
use crate::expr::format::write_print_value;
use crate::metrics::TaskMetrics;
use crate::types::Field;

fn ctx(subtask: usize, parallelism: usize) -> TaskContext {
    TaskContext {
        operator_id: 1,
        operator_name: "nexmark".into(),
        subtask_index: subtask,
        parallelism,
        max_parallelism: 128,
        metrics: Arc::new(TaskMetrics::new()),
        state: Default::default(),
    }
}

fn drain(source: &mut dyn Source, batch: usize) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    loop {
        let mut out = Output::new();
        if source.poll(&mut out, batch).unwrap() == SourceStatus::Finished {
            return rows;
        }
        rows.extend(out.changes.into_iter().map(|c| c.row));
    }
}

/// An event row as the Java dump prints it (without the split prefix).
fn render(row: &[Value]) -> String {
    let mut s = String::new();
    let Value::Int(t) = row[0] else {
        panic!("event type {:?}", row[0])
    };
    s.push_str(&t.to_string());
    let fields = row[1 + t as usize].as_row().expect("the event's row");
    for f in fields {
        s.push('|');
        let ty = if matches!(f, Value::Timestamp(_)) {
            DataType::Timestamp(3)
        } else {
            DataType::STRING
        };
        write_print_value(&mut s, f, &ty);
    }
    for (i, v) in row[1..].iter().enumerate() {
        assert_eq!(
            v.is_null(),
            i != t as usize,
            "only the event's own row is set"
        );
    }
    s
}

fn sections() -> Vec<(Vec<i64>, Vec<String>)> {
    let mut out: Vec<(Vec<i64>, Vec<String>)> = Vec::new();
    for line in include_str!("nexmark_expected.txt").lines() {
        if let Some(args) = line.strip_prefix("# ") {
            let args = args.split(' ').map(|a| a.parse().unwrap()).collect();
            out.push((args, Vec::new()));
        } else {
            out.last_mut().unwrap().1.push(line.to_string());
        }
    }
    out
}

fn config(args: &[i64]) -> NexmarkConfig {
    NexmarkConfig {
        num_events: args[1],
        first_event_rate: args[3] as i32,
        person_proportion: args[4],
        auction_proportion: args[5],
        bid_proportion: args[6],
        ..NexmarkConfig::default()
    }
}

#[test]
fn java_random_matches_java() {
    // new Random(seed): nextInt(), nextInt(100), nextInt(64), nextInt(1000000007), nextLong(),
    // doubleToLongBits(nextDouble()), nextInt(Integer.MAX_VALUE), printed by Java 17.
    let expected: [(i64, [i64; 7]); 4] = [
        (
            0,
            [
                -1155484576,
                48,
                15,
                302116440,
                -6688467811848818630,
                4603133115327553832,
                1283218719,
            ],
        ),
        (
            42,
            [
                -1170105035,
                63,
                43,
                102948884,
                5694868678511409995,
                4598663022256506966,
                1429255519,
            ],
        ),
        (
            -7,
            [
                1155869324,
                97,
                43,
                119890471,
                2701079913633722686,
                4599356373424092616,
                425474944,
            ],
        ),
        (
            123456789012345,
            [
                -1421006947,
                4,
                55,
                308132645,
                -2184844392376802456,
                4590900991198614008,
                1748432479,
            ],
        ),
    ];
    for (seed, want) in expected {
        let mut r = JavaRandom::new(seed);
        let got = [
            i64::from(r.next_int()),
            i64::from(r.next_int_bounded(100)),
            i64::from(r.next_int_bounded(64)),
            i64::from(r.next_int_bounded(1_000_000_007)),
            r.next_long(),
            r.next_double().to_bits() as i64,
            i64::from(r.next_int_bounded(i32::MAX)),
        ];
        assert_eq!(got, want, "seed {seed}");
    }
}

#[test]
fn events_are_those_of_the_java_generator() {
    for (args, expected) in sections() {
        let parallelism = args[0] as usize;
        let factory = NexmarkSourceFactory::new(config(&args), args[2]);
        let mut got = Vec::new();
        for i in 0..parallelism {
            let mut src = factory.create(&ctx(i, parallelism)).unwrap();
            for row in drain(src.as_mut(), 7) {
                got.push(format!("{i}|{}", render(&row)));
            }
        }
        assert_eq!(got.len(), expected.len(), "{args:?}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{args:?}");
        }
    }
}

#[test]
fn a_restored_position_continues_at_any_parallelism() {
    let args = [2, 60, 1_700_000_000_123, 1, 1, 3, 46];
    let factory = NexmarkSourceFactory::new(config(&args), args[2]);
    let all: Vec<String> = sections()
        .into_iter()
        .find(|(a, _)| a[..] == args[..])
        .unwrap()
        .1
        .into_iter()
        .map(|l| l.split_once('|').unwrap().1.to_string())
        .collect();
    // Stop both subtasks part-way, then resume at 1, 2 and 3 subtasks.
    for new_p in 1..=3 {
        let mut seen = Vec::new();
        let mut positions = Vec::new();
        for i in 0..2 {
            let mut src = factory.create(&ctx(i, 2)).unwrap();
            let mut out = Output::new();
            src.poll(&mut out, 5 + i * 4).unwrap();
            seen.extend(out.changes.iter().map(|c| render(&c.row)));
            positions.push(src.snapshot_position().unwrap());
        }
        let restored = NexmarkSourceFactory::new(config(&args), 0);
        for i in 0..new_p {
            let mut src = restored.create(&ctx(i, new_p)).unwrap();
            if new_p == 2 {
                src.restore_position(&positions[i]).unwrap();
            } else {
                src.restore_rescaled(&positions).unwrap();
            }
            seen.extend(drain(src.as_mut(), 3).iter().map(|r| render(r)));
        }
        let mut want = all.clone();
        want.sort();
        seen.sort();
        assert_eq!(seen, want, "resumed at {new_p}");
    }
    let mut src = factory.create(&ctx(0, 1)).unwrap();
    assert!(src.restore_position(&[9, 1, 2]).is_err());
}

#[test]
fn split_limits_follow_flink() {
    let c = NexmarkConfig {
        num_events: 10,
        ..NexmarkConfig::default()
    };
    let f = NexmarkSourceFactory::new(c.clone(), 0);
    let splits: Vec<(i64, i64)> = (0..3)
        .map(|i| {
            let s = f.split(i, 3);
            (s.first_event_id, s.limit)
        })
        .collect();
    assert_eq!(splits, vec![(1, 3), (4, 3), (7, 4)]);
    // stop-at splits the same way and caps each split.
    let f = NexmarkSourceFactory::new(
        NexmarkConfig {
            stop_at: 5,
            ..c.clone()
        },
        0,
    );
    assert_eq!(f.split(0, 2).limit, 2);
    assert_eq!(f.split(1, 2).limit, 3);
    // events.num = 0: unbounded in practice.
    let f = NexmarkSourceFactory::new(NexmarkConfig::default(), 0);
    assert_eq!(f.split(0, 1).limit, i64::MAX / (50 * 500));
}

#[test]
fn keep_alive_idles_instead_of_finishing() {
    let c = NexmarkConfig {
        num_events: 3,
        keep_alive: true,
        ..NexmarkConfig::default()
    };
    let f = NexmarkSourceFactory::new(c, 0);
    let mut src = f.create(&ctx(0, 1)).unwrap();
    let mut out = Output::new();
    assert_eq!(src.poll(&mut out, 10).unwrap(), SourceStatus::More);
    assert_eq!(out.changes.len(), 3);
    assert_eq!(src.poll(&mut out, 10).unwrap(), SourceStatus::Idle);
}

#[test]
fn throttled_emission_waits_for_each_events_time() {
    let c = NexmarkConfig {
        num_events: 6,
        first_event_rate: 50,
        max_emit_speed: false,
        ..NexmarkConfig::default()
    };
    let f = NexmarkSourceFactory::new(c, 0);
    let mut src = f.create(&ctx(0, 1)).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(drain(src.as_mut(), 100).len(), 6);
    // Event numbers 1..=6 at 20 ms each: the last is due 100 ms after the first.
    assert!(start.elapsed() >= Duration::from_millis(95));
}

fn nexmark_schema() -> Schema {
    let row = |fields: &[(&str, DataType)]| {
        DataType::Row(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone()))
                .collect::<Vec<_>>()
                .into(),
        )
    };
    let s = DataType::STRING;
    let ts = DataType::Timestamp(3);
    let b = DataType::BigInt;
    Schema::new(vec![
        Field::new("event_type", DataType::Int),
        Field::new(
            "person",
            row(&[
                ("id", b.clone()),
                ("name", s.clone()),
                ("emailAddress", s.clone()),
                ("creditCard", s.clone()),
                ("city", s.clone()),
                ("state", s.clone()),
                ("dateTime", ts.clone()),
                ("extra", s.clone()),
            ]),
        ),
        Field::new(
            "auction",
            row(&[
                ("id", b.clone()),
                ("itemName", s.clone()),
                ("description", s.clone()),
                ("initialBid", b.clone()),
                ("reserve", b.clone()),
                ("dateTime", ts.clone()),
                ("expires", ts.clone()),
                ("seller", b.clone()),
                ("category", b.clone()),
                ("extra", s.clone()),
            ]),
        ),
        Field::new(
            "bid",
            row(&[
                ("auction", b.clone()),
                ("bidder", b.clone()),
                ("price", b),
                ("channel", s.clone()),
                ("url", s.clone()),
                ("dateTime", ts),
                ("extra", s),
            ]),
        ),
    ])
}

#[test]
fn options_are_read_and_checked() {
    let schema = nexmark_schema();
    let ok = |pairs: &[(&str, &str)]| {
        create_source("t", &schema, &Options::from_pairs(pairs.iter().copied()))
    };
    let f = ok(&[
        ("connector", "nexmark"),
        ("first-event.rate", "10000000"),
        ("next-event.rate", "10000000"),
        ("events.num", "100000000"),
        ("person.proportion", "1"),
        ("auction.proportion", "3"),
        ("bid.proportion", "46"),
        ("rate.shape", "sine"),
        ("rate.period", "10 min"),
        ("rate.limited", "true"),
        ("person.avg-size", "1kb"),
        ("auction.avg-size", "500b"),
        ("bid.avg-size", "100"),
        ("bid.hot-ratio.auctions", "3"),
        ("bid.hot-ratio.bidders", "5"),
        ("auction.hot-ratio.sellers", "6"),
        ("keep-alive", "false"),
        ("stop-at", "-1"),
        ("max-emit-speed", "true"),
    ])
    .unwrap();
    assert_eq!(f.config.first_event_rate, 10_000_000);
    assert_eq!(f.config.num_events, 100_000_000);
    assert_eq!(f.config.avg_person_byte_size, 1024);
    assert_eq!(f.config.hot_sellers_ratio, 6);
    assert_eq!(ok(&[]).unwrap().config, NexmarkConfig::default());
    // A fixed base time is kept as given; without it the wall clock is used.
    assert_eq!(
        ok(&[("base-time", "1700000000000")]).unwrap().base_time,
        1_700_000_000_000
    );
    assert!(ok(&[]).unwrap().base_time > 1_700_000_000_000);
    for (pairs, needle) in [
        (vec![("first-event.rate", "0")], "first-event.rate"),
        (vec![("first-event.rate", "3000000000")], "first-event.rate"),
        (vec![("events.num", "-1")], "events.num"),
        (vec![("rate.shape", "TRIANGLE")], "rate.shape"),
        (
            vec![("bid.hot-ratio.bidders", "0")],
            "bid.hot-ratio.bidders",
        ),
        (vec![("person.proportion", "0")], "person.proportion"),
        (
            vec![
                ("person.proportion", "0"),
                ("auction.proportion", "0"),
                ("bid.proportion", "0"),
            ],
            "must not all be 0",
        ),
        (vec![("scan.parallelism", "2")], "scan.parallelism"),
        (vec![("max-emit-speed", "maybe")], "max-emit-speed"),
        (vec![("base-time", "-5")], "base-time"),
    ] {
        let err = ok(&pairs).err().unwrap().to_string();
        assert!(err.contains(needle), "{pairs:?}: {err}");
    }
    let mut wrong = nexmark_schema();
    wrong.fields[0].data_type = DataType::BigInt;
    let err = create_source("t", &wrong, &Options::new()).err().unwrap();
    assert!(err
        .to_string()
        .contains("The nexmark connector produces the columns"));
}

#[test]
fn a_projected_source_emits_the_same_fields_as_the_full_rows() {
    let factory = NexmarkSourceFactory::new(
        config(&[1, 3000, 1_700_000_000_000, 1000, 1, 3, 46]),
        1_700_000_000_000,
    );
    let full = drain(factory.create(&ctx(0, 1)).unwrap().as_mut(), 100);
    assert_eq!(full.len(), 3000);
    // Every kind's fields, some whole rows, some single fields, and in a shuffled order.
    let projections: Vec<Vec<ProjectedColumn>> = vec![
        vec![
            ProjectedColumn {
                column: 3,
                field: Some(6),
            },
            ProjectedColumn {
                column: 0,
                field: None,
            },
            ProjectedColumn {
                column: 3,
                field: Some(2),
            },
            ProjectedColumn {
                column: 2,
                field: Some(5),
            },
            ProjectedColumn {
                column: 1,
                field: Some(2),
            },
        ],
        vec![
            ProjectedColumn {
                column: 1,
                field: None,
            },
            ProjectedColumn {
                column: 2,
                field: Some(9),
            },
            ProjectedColumn {
                column: 2,
                field: Some(1),
            },
            ProjectedColumn {
                column: 3,
                field: Some(3),
            },
            ProjectedColumn {
                column: 3,
                field: Some(4),
            },
        ],
        Vec::new(),
    ];
    for columns in projections {
        let projected = factory
            .project(&columns)
            .expect("nexmark projects any field");
        let rows = drain(projected.create(&ctx(0, 1)).unwrap().as_mut(), 64);
        assert_eq!(rows.len(), full.len());
        for (row, whole) in rows.iter().zip(&full) {
            let expected: Vec<Value> = columns
                .iter()
                .map(|c| match c.field {
                    None => whole[c.column].clone(),
                    Some(f) => whole[c.column]
                        .as_row()
                        .map_or(Value::Null, |fields| fields[f].clone()),
                })
                .collect();
            assert_eq!(row, &expected);
        }
    }
    assert!(factory
        .project(&[ProjectedColumn {
            column: 3,
            field: Some(7)
        }])
        .is_none());
}

#[test]
fn a_filtered_source_emits_the_events_of_one_type_and_keeps_its_position() {
    let factory = NexmarkSourceFactory::new(
        config(&[1, 3000, 1_700_000_000_000, 1000, 1, 3, 46]),
        1_700_000_000_000,
    );
    let full = drain(factory.create(&ctx(0, 1)).unwrap().as_mut(), 100);
    for k in 0..3 {
        let filtered = factory.filter_equal(0, &Value::Int(k)).unwrap();
        let expected: Vec<&Vec<Value>> = full.iter().filter(|r| r[0] == Value::Int(k)).collect();
        let rows = drain(filtered.create(&ctx(0, 1)).unwrap().as_mut(), 7);
        assert_eq!(rows.iter().collect::<Vec<_>>(), expected, "event_type {k}");
        // Stopped midway and restored, it goes on with the same events.
        let mut first = filtered.create(&ctx(0, 1)).unwrap();
        let mut out = Output::new();
        first.poll(&mut out, 5).unwrap();
        let position = first.snapshot_position().unwrap();
        let mut second = filtered.create(&ctx(0, 1)).unwrap();
        second.restore_position(&position).unwrap();
        let mut resumed: Vec<Vec<Value>> = out.changes.into_iter().map(|c| c.row).collect();
        resumed.extend(drain(second.as_mut(), 7));
        assert_eq!(
            resumed.iter().collect::<Vec<_>>(),
            expected,
            "event_type {k}"
        );
    }
    // No event has type 3; another column or a second, different type is refused.
    let none = factory.filter_equal(0, &Value::Int(3)).unwrap();
    assert!(drain(none.create(&ctx(0, 1)).unwrap().as_mut(), 7).is_empty());
    assert!(factory.filter_equal(1, &Value::Int(0)).is_none());
    let bids = factory.filter_equal(0, &Value::Int(2)).unwrap();
    assert!(bids.filter_equal(0, &Value::Int(1)).is_none());
}
