//! The `nexmark` source: the Nexmark benchmark's event stream (people, auctions, bids), a port of
//! the generator of Flink's Nexmark connector (github.com/nexmark/nexmark, `nexmark-flink`), with
//! its option keys and defaults.
//!
//! Every event is one row `(event_type INT, person ROW<8>, auction ROW<10>, bid ROW<7>)`: the type
//! (0 person, 1 auction, 2 bid) and the one ROW that type fills, the other two NULL. An event's
//! id decides its type (`id % total proportion`), the person / auction ids it carries and which
//! earlier ids it refers to (hot sellers, bidders and auctions); its timestamp is
//! `base time + event number * inter-event delay`, where the delay is `parallelism / first-event.rate`
//! seconds per subtask. The random fields come from a `java.util.Random` seeded per event with
//! [`event_seed`] of the event id (Flink's connector draws them from an unseeded generator, so
//! there they differ between runs; seeding per event makes every event reproducible at any
//! parallelism and after a restore). The constant tables (the hot URLs, 10 000 channel URLs, and
//! the 1 MiB text `extra` fields are cut from) come from generators with fixed seeds.
//!
//! Work is split as Flink's `GeneratorConfig.split` splits it: subtask `i` of `n` generates the
//! `i`-th run of `events.num / n` consecutive event ids (the last one the remainder), each
//! subtask on its own timeline starting at event number 1. The source ends after its events
//! unless `keep-alive` is set; `events.num = 0` is unbounded. It emits as fast as it can unless
//! `max-emit-speed` is `false`, when it waits for each event's wall-clock time (the first event's
//! time plus its distance from the base time). The base time is the wall clock when the table is
//! planned, as in Flink (which has no option for it), unless `base-time` (epoch milliseconds, our
//! own key) fixes it, which makes timestamps and windowed results repeatable.
//!
//! A subtask's position is the list of splits it has left (first event id, event limit, events
//! emitted, delay, wall-clock base) and the base time; restored at another parallelism, the old
//! splits are dealt out to the new subtasks, which continue each one on its own timeline.
//!
//! `next-event.rate`, `rate.shape`, `rate.period` and `rate.limited` are validated and have no
//! effect, as in Flink's generator, which only uses `first-event.rate`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connectors::options::{invalid_value, OptionReader, Options};
use crate::connectors::{ProjectedColumn, Source, SourceFactory, SourceStatus};
use crate::error::{EngineError, Result};
use crate::operator::{Output, TaskContext};
use crate::types::{DataType, Field, Schema};
use crate::value::{Change, Value};

/// `java.util.Random`: the 48-bit linear congruential generator, bit for bit.
#[derive(Clone, Debug)]
pub struct JavaRandom {
    seed: u64,
}

const MULTIPLIER: u64 = 0x5_DEEC_E66D;
const ADDEND: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

impl JavaRandom {
    /// `new Random(seed)`.
    pub fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed as u64 ^ MULTIPLIER) & MASK,
        }
    }

    /// `next(bits)`: the top `bits` of the next state, as Java's `int`.
    #[inline]
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`.
    #[inline]
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextInt(bound)` for `bound > 0`, with Java's rejection loop; `bound <= 0` (an
    /// `IllegalArgumentException` in Java) gives 0, and callers never pass it.
    #[inline]
    pub fn next_int_bounded(&mut self, bound: i32) -> i32 {
        if bound <= 0 {
            return 0;
        }
        let mut r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            r = u % bound;
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }

    /// `nextLong()`.
    #[inline]
    pub fn next_long(&mut self) -> i64 {
        let hi = i64::from(self.next(32));
        let lo = i64::from(self.next(32));
        (hi << 32).wrapping_add(lo)
    }

    /// `nextDouble()`.
    #[inline]
    pub fn next_double(&mut self) -> f64 {
        let hi = i64::from(self.next(26));
        let lo = i64::from(self.next(27));
        ((hi << 27) + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The seed of event `event_id`'s generator: SplitMix64's output for the id. Seeding
/// `java.util.Random` with the id itself would make the first draw of consecutive events nearly
/// equal (its first output moves by only `0x5DEECE66D` per seed step), so that a hot-or-random
/// choice with a power-of-two ratio would come in runs of thousands of events.
pub fn event_seed(event_id: i64) -> i64 {
    let mut z = (event_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64
}

/// Ids start here so that queries find matches even in small data sets.
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: i32 = 5;
const PERSON_ID_LEAD: i64 = 10;
const AUCTION_ID_LEAD: i64 = 10;
const HOT_SELLER_RATIO: i64 = 100;
const HOT_AUCTION_RATIO: i64 = 100;
const HOT_BIDDER_RATIO: i64 = 100;
const HOT_CHANNELS_RATIO: i32 = 2;
const CHANNELS_NUMBER: usize = 10_000;
const MIN_STRING_LENGTH: i32 = 3;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
/// The length of the text `extra` fields are cut from.
const REUSABLE_EXTRA_LENGTH: usize = 1024 * 1024;
/// Seeds of the constant tables (Flink draws them from unseeded generators).
const URL_TABLE_SEED: i64 = 0;
const EXTRA_TEXT_SEED: i64 = 1;

const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// The generator's settings (Flink's `NexmarkConfiguration` as the generator uses it).
#[derive(Clone, Debug, PartialEq)]
pub struct NexmarkConfig {
    pub first_event_rate: i32,
    pub person_proportion: i64,
    pub auction_proportion: i64,
    pub bid_proportion: i64,
    pub avg_person_byte_size: i32,
    pub avg_auction_byte_size: i32,
    pub avg_bid_byte_size: i32,
    pub hot_auction_ratio: i32,
    pub hot_bidders_ratio: i32,
    pub hot_sellers_ratio: i32,
    /// `events.num`; 0 = unbounded.
    pub num_events: i64,
    pub keep_alive: bool,
    /// `stop-at`; negative = no stop.
    pub stop_at: i64,
    pub max_emit_speed: bool,
}

impl Default for NexmarkConfig {
    /// Flink's defaults.
    fn default() -> Self {
        NexmarkConfig {
            first_event_rate: 10_000,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
            hot_auction_ratio: 2,
            hot_bidders_ratio: 4,
            hot_sellers_ratio: 4,
            num_events: 0,
            keep_alive: false,
            stop_at: -1,
            max_emit_speed: true,
        }
    }
}

impl NexmarkConfig {
    /// The `event_type` of event `event_id`: 0 person, 1 auction, 2 bid.
    fn kind_of(&self, event_id: i64) -> usize {
        let rem = event_id % self.total_proportion();
        if rem < self.person_proportion {
            0
        } else if rem < self.person_proportion + self.auction_proportion {
            1
        } else {
            2
        }
    }

    fn total_proportion(&self) -> i64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }

    /// The event count of the whole table: `events.num`, or for 0 the largest count Flink's
    /// size estimate does not overflow with.
    fn max_events(&self, max_events_or_zero: i64) -> i64 {
        if max_events_or_zero != 0 {
            return max_events_or_zero;
        }
        let largest = i64::from(
            self.avg_person_byte_size
                .max(self.avg_auction_byte_size)
                .max(self.avg_bid_byte_size),
        );
        i64::MAX / (self.total_proportion() * largest).max(1)
    }

    /// The last person id and the last auction id (base 0) at event `event_id`, as Flink's
    /// `lastBase0PersonId` and `lastBase0AuctionId` give them: the current one for a person or
    /// auction event. One division serves both.
    fn last_base0_ids(&self, event_id: i64) -> (i64, i64) {
        let total = self.total_proportion();
        let (epoch, offset) = (event_id / total, event_id % total);
        let (pp, ap) = (self.person_proportion, self.auction_proportion);
        let person = epoch * pp + offset.min(pp - 1);
        let auction = if offset < pp {
            (epoch - 1) * ap + ap - 1
        } else if offset >= pp + ap {
            epoch * ap + ap - 1
        } else {
            epoch * ap + offset - pp
        };
        (person, auction)
    }

    /// A random person among the active ones, plus a few not created yet (base 0), given the
    /// last person id.
    fn next_base0_person_id(&self, last_person: i64, random: &mut JavaRandom) -> i64 {
        let num_people = last_person + 1;
        let active = num_people.min(NUM_ACTIVE_PEOPLE);
        let n = next_long_below(random, active + PERSON_ID_LEAD);
        num_people - active + n
    }

    /// A random auction among those likely still in flight, plus a few not created yet (base 0),
    /// given the last auction id.
    fn next_base0_auction_id(&self, last_auction: i64, random: &mut JavaRandom) -> i64 {
        let max_auction = last_auction;
        let min_auction = (max_auction - NUM_IN_FLIGHT_AUCTIONS).max(0);
        min_auction + next_long_below(random, max_auction - min_auction + 1 + AUCTION_ID_LEAD)
    }
}

/// Flink's `LongGenerator.nextLong`: `[0, n)`, skewed for very large `n` as in Flink.
fn next_long_below(random: &mut JavaRandom, n: i64) -> i64 {
    if n < i64::from(i32::MAX) {
        i64::from(random.next_int_bounded(n as i32))
    } else {
        random.next_long().wrapping_rem(n).wrapping_abs()
    }
}

/// `PriceGenerator.nextPrice`: a price spread over six orders of magnitude.
fn next_price(random: &mut JavaRandom) -> i64 {
    (10f64.powf(random.next_double() * 6.0) * 100.0).round() as i64
}

/// `StringsGenerator.nextString`: 3 to `max_length - 1` lower-case letters and `special`s,
/// trimmed of spaces at both ends (Java's `String.trim`), written into `out`.
fn next_string(random: &mut JavaRandom, max_length: i32, special: u8, out: &mut String) {
    let start = out.len();
    let len = MIN_STRING_LENGTH + random.next_int_bounded(max_length - MIN_STRING_LENGTH);
    for _ in 0..len {
        if random.next_int_bounded(13) == 0 {
            out.push(char::from(special));
        } else {
            out.push(char::from(b'a' + random.next_int_bounded(26) as u8));
        }
    }
    // Java's `String.trim`: the generated part loses the spaces at both of its ends.
    let kept = out[start..].trim_end_matches(' ').len();
    out.truncate(start + kept);
    let leading = out[start..].len() - out[start..].trim_start_matches(' ').len();
    if leading > 0 {
        out.drain(start..start + leading);
    }
}

/// `StringsGenerator.nextExactString` without the reusable text: `length` characters from
/// `nextInt()` six at a time (Java's signed `%` gives some below `a`).
fn exact_string_from_ints(random: &mut JavaRandom, length: usize) -> String {
    let mut s = String::with_capacity(length);
    let mut rnd: i32 = 0;
    let mut n = 0;
    for _ in 0..length {
        if n == 0 {
            rnd = random.next_int();
            n = 6;
        }
        s.push(char::from((i32::from(b'a') + rnd % 26) as u8));
        rnd /= 26;
        n -= 1;
    }
    s
}

/// The constant tables every subtask shares. Person events (a small share) take their names,
/// cities and states from here as shared strings; bids copy their channel and URL.
#[derive(Debug)]
struct Tables {
    /// 1 MiB of text `extra` fields are cut from.
    extra_text: String,
    hot_channels: [Arc<str>; 4],
    hot_urls: [Arc<str>; 4],
    channels: Vec<(Arc<str>, Arc<str>)>,
    states: Vec<Arc<str>>,
    cities: Vec<Arc<str>>,
    /// Every "first last" name, first name major.
    names: Vec<Arc<str>>,
    empty: Arc<str>,
}

/// `getBaseUrl`: `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`.
fn base_url(random: &mut JavaRandom) -> String {
    let mut s = String::from("https://www.nexmark.com/");
    for _ in 0..3 {
        next_string(random, 5, b'_', &mut s);
        s.push('/');
    }
    s.push_str("item.htm?query=1");
    s
}

impl Tables {
    fn new() -> Self {
        let mut random = JavaRandom::new(URL_TABLE_SEED);
        let hot_urls: [Arc<str>; 4] = std::array::from_fn(|_| Arc::from(base_url(&mut random)));
        let channels = (0..CHANNELS_NUMBER)
            .map(|i| {
                let mut url = base_url(&mut random);
                if random.next_int_bounded(10) > 0 {
                    let id = (i as i32).reverse_bits().wrapping_abs();
                    url.push_str(&format!("&channel_id={id}"));
                }
                (Arc::from(format!("channel-{i}")), Arc::from(url))
            })
            .collect();
        let names = FIRST_NAMES
            .iter()
            .flat_map(|f| {
                LAST_NAMES
                    .iter()
                    .map(move |l| Arc::from(format!("{f} {l}")))
            })
            .collect();
        Tables {
            extra_text: exact_string_from_ints(
                &mut JavaRandom::new(EXTRA_TEXT_SEED),
                REUSABLE_EXTRA_LENGTH,
            ),
            hot_channels: HOT_CHANNELS.map(Arc::from),
            hot_urls,
            channels,
            states: US_STATES.iter().map(|s| Arc::from(*s)).collect(),
            cities: US_CITIES.iter().map(|s| Arc::from(*s)).collect(),
            names,
            empty: Arc::from(""),
        }
    }

    /// `nextExactString`: a slice of the reusable text at a random offset (drawn, and NULL, when
    /// the field is not wanted).
    fn exact_string(&self, random: &mut JavaRandom, length: i32, want: bool) -> Value {
        let length = length.max(0) as usize;
        if length < self.extra_text.len() / 2 {
            let offset = random.next_int_bounded((self.extra_text.len() - length) as i32) as usize;
            if !want {
                return Value::Null;
            }
            Value::String(Arc::from(&self.extra_text[offset..offset + length]))
        } else {
            let s = exact_string_from_ints(random, length);
            if !want {
                return Value::Null;
            }
            Value::String(Arc::from(s))
        }
    }

    /// `nextExtra`: text that brings the event to about `desired_average` bytes.
    fn extra(
        &self,
        random: &mut JavaRandom,
        current_size: i32,
        desired_average: i32,
        want: bool,
    ) -> Value {
        if current_size > desired_average {
            return if want {
                Value::String(self.empty.clone())
            } else {
                Value::Null
            };
        }
        let rest = desired_average - current_size;
        let delta = (f64::from(rest) * 0.2).round() as i32;
        let min_size = rest - delta;
        let size = min_size
            + if delta == 0 {
                0
            } else {
                random.next_int_bounded(2 * delta)
            };
        self.exact_string(random, size, want)
    }
}

/// One generator timeline: consecutive event ids from `first_event_id`, event numbers from 1.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Split {
    first_event_id: i64,
    /// Events this split generates in all.
    limit: i64,
    /// Events generated so far.
    emitted: i64,
    /// Microseconds between two events of this timeline.
    delay_us: f64,
    /// Wall-clock millis of the first event (throttled emission only); -1 until it is emitted.
    wallclock_base: i64,
}

/// The first event number of every split (Flink's `firstEventNumber`).
const FIRST_EVENT_NUMBER: i64 = 1;

impl Split {
    fn timestamp_for_event(&self, base_time: i64, event_number: i64) -> i64 {
        base_time + ((event_number as f64 * self.delay_us) as i64) / 1000
    }
}

/// Builds the nexmark subtasks of one table.
#[derive(Debug)]
pub struct NexmarkSourceFactory {
    config: NexmarkConfig,
    base_time: i64,
    tables: Arc<Tables>,
    shape: Arc<Shape>,
}

/// Number of fields of the person, auction and bid rows.
const ROW_ARITY: [usize; 3] = [8, 10, 7];

/// What a subtask emits per event: the table's four columns, or the columns pushed down into it,
/// and which fields of each kind of event it materialises (the others are drawn from the random
/// generator in order, so that the wanted ones are the same, and dropped).
#[derive(Clone, Debug)]
struct Shape {
    projection: Option<Vec<ProjectedColumn>>,
    /// Per event kind (person, auction, bid): bit `i` set when field `i` is emitted.
    want: [u64; 3],
    /// Only events of this `event_type` are emitted (a pushed-down `event_type = k`); the others
    /// are skipped without being generated.
    only: Option<i32>,
}

impl Shape {
    fn full() -> Self {
        Shape {
            projection: None,
            want: ROW_ARITY.map(|n| (1u64 << n) - 1),
            only: None,
        }
    }
}

/// Reads an `int` option (Flink's `intType`), at least `min`.
fn int_option(r: &mut OptionReader<'_>, key: &str, default: i32, min: i32) -> Result<i32> {
    match r.i64(key)? {
        None => Ok(default),
        Some(v) => i32::try_from(v).ok().filter(|v| *v >= min).ok_or_else(|| {
            invalid_value(
                key,
                &v.to_string(),
                &format!("an integer between {min} and {}", i32::MAX),
            )
        }),
    }
}

/// Reads a memory-size option as a byte count that fits an `int`.
fn size_option(r: &mut OptionReader<'_>, key: &str, default: i32) -> Result<i32> {
    match r.memory_size(key)? {
        None => Ok(default),
        Some(v) => i32::try_from(v).map_err(|_| {
            invalid_value(
                key,
                r.string(key).unwrap_or_default(),
                "a size of at most 2147483647 bytes",
            )
        }),
    }
}

/// Checks that the table's columns are the four the connector produces, with the field types of
/// its rows (names are free; Flink matches by position).
fn check_schema(schema: &Schema) -> Result<()> {
    use DataType as T;
    type Check = fn(&DataType) -> bool;
    let person: [(&str, Check); 8] = [
        ("id", |t| *t == T::BigInt),
        ("name", |t| t.is_string()),
        ("emailAddress", |t| t.is_string()),
        ("creditCard", |t| t.is_string()),
        ("city", |t| t.is_string()),
        ("state", |t| t.is_string()),
        ("dateTime", |t| matches!(t, T::Timestamp(_))),
        ("extra", |t| t.is_string()),
    ];
    let auction: [(&str, Check); 10] = [
        ("id", |t| *t == T::BigInt),
        ("itemName", |t| t.is_string()),
        ("description", |t| t.is_string()),
        ("initialBid", |t| *t == T::BigInt),
        ("reserve", |t| *t == T::BigInt),
        ("dateTime", |t| matches!(t, T::Timestamp(_))),
        ("expires", |t| matches!(t, T::Timestamp(_))),
        ("seller", |t| *t == T::BigInt),
        ("category", |t| *t == T::BigInt),
        ("extra", |t| t.is_string()),
    ];
    let bid: [(&str, Check); 7] = [
        ("auction", |t| *t == T::BigInt),
        ("bidder", |t| *t == T::BigInt),
        ("price", |t| *t == T::BigInt),
        ("channel", |t| t.is_string()),
        ("url", |t| t.is_string()),
        ("dateTime", |t| matches!(t, T::Timestamp(_))),
        ("extra", |t| t.is_string()),
    ];
    let expected = "(event_type INT, person ROW<id BIGINT, name STRING, emailAddress STRING, \
creditCard STRING, city STRING, state STRING, dateTime TIMESTAMP(3), extra STRING>, auction \
ROW<id BIGINT, itemName STRING, description STRING, initialBid BIGINT, reserve BIGINT, dateTime \
TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING>, bid \
ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, dateTime \
TIMESTAMP(3), extra STRING>)";
    let mismatch = || {
        EngineError::option(
            format!(
                "The nexmark connector produces the columns {expected}; the table declares ({})",
                schema
                    .fields
                    .iter()
                    .map(|f| format!("{} {}", f.name, f.data_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        )
    };
    let row_matches = |ty: &DataType, checks: &[(&str, Check)]| -> bool {
        let fields: &[Field] = ty.row_fields();
        ty.is_row()
            && fields.len() == checks.len()
            && fields
                .iter()
                .zip(checks)
                .all(|(f, (_, check))| check(&f.data_type))
    };
    match schema.fields.as_slice() {
        [e, p, a, b]
            if e.data_type == DataType::Int
                && row_matches(&p.data_type, &person)
                && row_matches(&a.data_type, &auction)
                && row_matches(&b.data_type, &bid) =>
        {
            Ok(())
        }
        _ => Err(mismatch()),
    }
}

/// Reads the nexmark options of a table.
pub fn create_source(
    _table: &str,
    schema: &Schema,
    options: &Options,
) -> Result<NexmarkSourceFactory> {
    let mut r = options.reader();
    let d = NexmarkConfig::default();
    match r.string("rate.shape") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("SQUARE") || v.eq_ignore_ascii_case("SINE") => {}
        Some(v) => return Err(invalid_value("rate.shape", v, "one of SQUARE, SINE")),
    }
    r.duration_millis("rate.period")?;
    r.bool("rate.limited", false)?;
    int_option(&mut r, "next-event.rate", d.first_event_rate, 1)?;
    let config = NexmarkConfig {
        first_event_rate: int_option(&mut r, "first-event.rate", d.first_event_rate, 1)?,
        person_proportion: i64::from(int_option(&mut r, "person.proportion", 1, 0)?),
        auction_proportion: i64::from(int_option(&mut r, "auction.proportion", 3, 0)?),
        bid_proportion: i64::from(int_option(&mut r, "bid.proportion", 46, 0)?),
        avg_person_byte_size: size_option(&mut r, "person.avg-size", d.avg_person_byte_size)?,
        avg_auction_byte_size: size_option(&mut r, "auction.avg-size", d.avg_auction_byte_size)?,
        avg_bid_byte_size: size_option(&mut r, "bid.avg-size", d.avg_bid_byte_size)?,
        hot_auction_ratio: int_option(&mut r, "bid.hot-ratio.auctions", d.hot_auction_ratio, 1)?,
        hot_bidders_ratio: int_option(&mut r, "bid.hot-ratio.bidders", d.hot_bidders_ratio, 1)?,
        hot_sellers_ratio: int_option(&mut r, "auction.hot-ratio.sellers", d.hot_sellers_ratio, 1)?,
        num_events: match r.i64("events.num")? {
            None => 0,
            Some(n) if n >= 0 => n,
            Some(n) => {
                return Err(invalid_value(
                    "events.num",
                    &n.to_string(),
                    "a non-negative number of events (0 = unbounded)",
                ))
            }
        },
        keep_alive: r.bool("keep-alive", false)?,
        stop_at: r.i64("stop-at")?.unwrap_or(-1),
        max_emit_speed: r.bool("max-emit-speed", true)?,
    };
    // Not one of Flink's keys: Flink's generator always starts at the wall clock. A fixed base
    // time makes every timestamp, and so every windowed result, repeatable.
    let fixed_base_time = match r.i64("base-time")? {
        None => None,
        Some(t) if t >= 0 => Some(t),
        Some(t) => {
            return Err(invalid_value(
                "base-time",
                &t.to_string(),
                "epoch milliseconds (0 or more)",
            ))
        }
    };
    r.finish("nexmark")?;
    if config.total_proportion() == 0 {
        return Err(EngineError::option(
            "'person.proportion', 'auction.proportion' and 'bid.proportion' must not all be 0",
            None,
        ));
    }
    if config.person_proportion == 0 && (config.auction_proportion > 0 || config.bid_proportion > 0)
        || config.auction_proportion == 0 && config.bid_proportion > 0
    {
        // Auctions need sellers and bids need auctions: Flink's generator then derives ids from
        // negative offsets.
        return Err(EngineError::option(
            "'person.proportion' must be positive when auctions or bids are generated, and \
             'auction.proportion' when bids are",
            None,
        ));
    }
    check_schema(schema)?;
    let base_time = fixed_base_time.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    });
    Ok(NexmarkSourceFactory::new(config, base_time))
}

impl NexmarkSourceFactory {
    /// A factory with this configuration and base time (milliseconds since the epoch).
    pub fn new(config: NexmarkConfig, base_time: i64) -> Self {
        NexmarkSourceFactory {
            config,
            base_time,
            tables: Arc::new(Tables::new()),
            shape: Arc::new(Shape::full()),
        }
    }

    fn with_shape(&self, shape: Shape) -> Arc<dyn SourceFactory> {
        Arc::new(NexmarkSourceFactory {
            config: self.config.clone(),
            base_time: self.base_time,
            tables: self.tables.clone(),
            shape: Arc::new(shape),
        })
    }

    /// The split of subtask `index` of `parallelism`, as `GeneratorConfig.split` and the
    /// reader's `reconfigure` make it.
    fn split(&self, index: usize, parallelism: usize) -> Split {
        let c = &self.config;
        let n = parallelism.max(1) as i64;
        let i = index as i64;
        let max_events = c.max_events(c.num_events);
        let (first_event_id, mut split_max, mut stop_at) = if n == 1 {
            (1, max_events, c.stop_at)
        } else {
            let sub_max = max_events / n;
            let sub_stop = c.stop_at / n;
            if i == n - 1 {
                (
                    1 + sub_max * i,
                    max_events - sub_max * (n - 1),
                    c.stop_at - sub_stop * (n - 1),
                )
            } else {
                (1 + sub_max * i, sub_max, sub_stop)
            }
        };
        // A split given no events becomes unbounded, as a `GeneratorConfig` built with 0 does.
        split_max = c.max_events(split_max);
        if c.stop_at < 0 {
            stop_at = -1;
        }
        let limit = if stop_at < 0 {
            split_max
        } else {
            stop_at.min(split_max)
        };
        Split {
            first_event_id,
            limit,
            emitted: 0,
            delay_us: 1_000_000.0 / f64::from(c.first_event_rate) * n as f64,
            wallclock_base: -1,
        }
    }
}

impl SourceFactory for NexmarkSourceFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>> {
        let split = self.split(ctx.subtask_index, ctx.parallelism);
        Ok(Box::new(NexmarkSource {
            config: self.config.clone(),
            tables: self.tables.clone(),
            shape: self.shape.clone(),
            fields: ROW_ARITY.map(|n| vec![Value::Null; n]),
            base_time: self.base_time,
            current: Some(split),
            queued: VecDeque::new(),
            subtask: ctx.subtask_index,
            parallelism: ctx.parallelism.max(1),
            text: String::with_capacity(64),
        }))
    }

    /// Any column whole, and any field of the person, auction and bid columns.
    fn project(&self, columns: &[ProjectedColumn]) -> Option<Arc<dyn SourceFactory>> {
        let mut want = [0u64; 3];
        for c in columns {
            let kind = match c.column {
                0 => continue,
                1..=3 => c.column - 1,
                _ => return None,
            };
            match c.field {
                None => want[kind] = (1u64 << ROW_ARITY[kind]) - 1,
                Some(f) if f < ROW_ARITY[kind] => want[kind] |= 1u64 << f,
                Some(_) => return None,
            }
        }
        Some(self.with_shape(Shape {
            projection: Some(columns.to_vec()),
            want,
            only: self.shape.only,
        }))
    }

    /// `event_type = k`.
    fn filter_equal(&self, column: usize, value: &Value) -> Option<Arc<dyn SourceFactory>> {
        let (0, Value::Int(k)) = (column, value) else {
            return None;
        };
        if self.shape.only.is_some_and(|o| o != *k) {
            return None;
        }
        Some(self.with_shape(Shape {
            only: Some(*k),
            ..(*self.shape).clone()
        }))
    }
}

/// One nexmark subtask.
struct NexmarkSource {
    config: NexmarkConfig,
    tables: Arc<Tables>,
    shape: Arc<Shape>,
    /// The fields of the event being generated, per kind.
    fields: [Vec<Value>; 3],
    base_time: i64,
    /// The split being generated; `None` when all are done.
    current: Option<Split>,
    /// Splits to generate after the current one (a job restored at lower parallelism).
    queued: VecDeque<Split>,
    subtask: usize,
    parallelism: usize,
    /// Scratch space for building strings.
    text: String,
}

/// The longest a poll sleeps while throttled, so that the task stays responsive.
const MAX_THROTTLE_SLEEP: Duration = Duration::from_millis(50);

fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Generates the row of one event in the subtask's shape.
struct EventGen<'a> {
    config: &'a NexmarkConfig,
    tables: &'a Tables,
    text: &'a mut String,
    shape: &'a Shape,
    fields: &'a mut [Vec<Value>; 3],
}

/// Sets field `i` of `fields` when `want` has its bit.
fn put(fields: &mut [Value], want: u64, i: usize, value: impl FnOnce() -> Value) {
    if want & (1 << i) != 0 {
        fields[i] = value();
    }
}

impl EventGen<'_> {
    /// The row of event `event_id` of type `kind`, the `emitted`-th of its split, at
    /// `timestamp`.
    fn row(
        &mut self,
        event_id: i64,
        kind: usize,
        emitted: i64,
        timestamp: i64,
        split: &Split,
        base_time: i64,
    ) -> Vec<Value> {
        let mut random = JavaRandom::new(event_seed(event_id));
        let want = self.shape.want[kind];
        let mut fields = std::mem::take(&mut self.fields[kind]);
        match kind {
            0 => self.person(event_id, &mut random, timestamp, want, &mut fields),
            1 => self.auction(
                emitted,
                event_id,
                &mut random,
                timestamp,
                (split, base_time),
                want,
                &mut fields,
            ),
            _ => self.bid(event_id, &mut random, timestamp, want, &mut fields),
        }
        let whole = |fields: &mut Vec<Value>| -> Value {
            Value::Row(fields.iter_mut().map(std::mem::take).collect())
        };
        let row = match &self.shape.projection {
            None => {
                let mut row = vec![
                    Value::Int(kind as i32),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ];
                row[1 + kind] = whole(&mut fields);
                row
            }
            Some(columns) => columns
                .iter()
                .map(|p| match (p.column, p.field) {
                    (0, _) => Value::Int(kind as i32),
                    (col, Some(f)) if col == kind + 1 => std::mem::take(&mut fields[f]),
                    (col, None) if col == kind + 1 => whole(&mut fields),
                    _ => Value::Null,
                })
                .collect(),
        };
        self.fields[kind] = fields;
        row
    }

    /// The text built last, as a STRING when wanted.
    fn text_value(&self, want: bool) -> Value {
        if want {
            Value::String(Arc::from(self.text.as_str()))
        } else {
            Value::Null
        }
    }

    fn person(
        &mut self,
        event_id: i64,
        random: &mut JavaRandom,
        timestamp: i64,
        want: u64,
        f: &mut [Value],
    ) {
        let c = self.config;
        let t = self.tables;
        let id = c.last_base0_ids(event_id).0 + FIRST_PERSON_ID;
        put(f, want, 0, || Value::BigInt(id));
        let first = random.next_int_bounded(FIRST_NAMES.len() as i32) as usize;
        let last = random.next_int_bounded(LAST_NAMES.len() as i32) as usize;
        let name = &t.names[first * LAST_NAMES.len() + last];
        put(f, want, 1, || Value::String(name.clone()));
        self.text.clear();
        next_string(random, 7, b' ', self.text);
        self.text.push('@');
        next_string(random, 5, b' ', self.text);
        self.text.push_str(".com");
        let email_len = self.text.len();
        f[2] = self.text_value(want & (1 << 2) != 0);
        self.text.clear();
        for i in 0..4 {
            if i > 0 {
                self.text.push(' ');
            }
            let n = random.next_int_bounded(10_000) as u32;
            for d in [n / 1000, n / 100 % 10, n / 10 % 10, n % 10] {
                self.text.push(char::from(b'0' + d as u8));
            }
        }
        let credit_card_len = self.text.len();
        f[3] = self.text_value(want & (1 << 3) != 0);
        let city = &t.cities[random.next_int_bounded(US_CITIES.len() as i32) as usize];
        put(f, want, 4, || Value::String(city.clone()));
        let state = &t.states[random.next_int_bounded(US_STATES.len() as i32) as usize];
        put(f, want, 5, || Value::String(state.clone()));
        put(f, want, 6, || Value::Timestamp(timestamp));
        let current_size = 8 + name.len() + email_len + credit_card_len + city.len() + state.len();
        f[7] = t.extra(
            random,
            current_size as i32,
            c.avg_person_byte_size,
            want & (1 << 7) != 0,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn auction(
        &mut self,
        emitted: i64,
        event_id: i64,
        random: &mut JavaRandom,
        timestamp: i64,
        (split, base_time): (&Split, i64),
        want: u64,
        f: &mut [Value],
    ) {
        let c = self.config;
        let (last_person, last_auction) = c.last_base0_ids(event_id);
        let id = last_auction + FIRST_AUCTION_ID;
        let mut seller = if random.next_int_bounded(c.hot_sellers_ratio) > 0 {
            (last_person / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            c.next_base0_person_id(last_person, random)
        };
        seller += FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + i64::from(random.next_int_bounded(NUM_CATEGORIES));
        let initial_bid = next_price(random);
        // The auction lasts on average until numInFlightAuctions more auctions are generated.
        let current_event_number = FIRST_EVENT_NUMBER + emitted;
        let events_for_auctions =
            (NUM_IN_FLIGHT_AUCTIONS * c.total_proportion()) / c.auction_proportion;
        let future_auction =
            split.timestamp_for_event(base_time, current_event_number + events_for_auctions);
        let horizon_ms = future_auction - timestamp;
        let expires = timestamp + 1 + next_long_below(random, horizon_ms.saturating_mul(2).max(1));
        self.text.clear();
        next_string(random, 20, b' ', self.text);
        let name_len = self.text.len();
        f[1] = self.text_value(want & (1 << 1) != 0);
        self.text.clear();
        next_string(random, 100, b' ', self.text);
        let description_len = self.text.len();
        f[2] = self.text_value(want & (1 << 2) != 0);
        let reserve = initial_bid + next_price(random);
        let current_size = 8 + name_len + description_len + 8 + 8 + 8 + 8 + 8;
        put(f, want, 0, || Value::BigInt(id));
        put(f, want, 3, || Value::BigInt(initial_bid));
        put(f, want, 4, || Value::BigInt(reserve));
        put(f, want, 5, || Value::Timestamp(timestamp));
        put(f, want, 6, || Value::Timestamp(expires));
        put(f, want, 7, || Value::BigInt(seller));
        put(f, want, 8, || Value::BigInt(category));
        f[9] = self.tables.extra(
            random,
            current_size as i32,
            c.avg_auction_byte_size,
            want & (1 << 9) != 0,
        );
    }

    fn bid(
        &mut self,
        event_id: i64,
        random: &mut JavaRandom,
        timestamp: i64,
        want: u64,
        f: &mut [Value],
    ) {
        let c = self.config;
        let t = self.tables;
        let (last_person, last_auction) = c.last_base0_ids(event_id);
        let mut auction = if random.next_int_bounded(c.hot_auction_ratio) > 0 {
            (last_auction / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            c.next_base0_auction_id(last_auction, random)
        };
        auction += FIRST_AUCTION_ID;
        let mut bidder = if random.next_int_bounded(c.hot_bidders_ratio) > 0 {
            (last_person / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            c.next_base0_person_id(last_person, random)
        };
        bidder += FIRST_PERSON_ID;
        let price = next_price(random);
        // Copied rather than shared: the operators downstream drop these strings on other
        // threads, and a reference count shared by most bids (the four hot channels) would then
        // bounce between cores on every event, which costs more than a small allocation.
        let (channel, url) = if random.next_int_bounded(HOT_CHANNELS_RATIO) > 0 {
            let i = random.next_int_bounded(HOT_CHANNELS.len() as i32) as usize;
            (&t.hot_channels[i], &t.hot_urls[i])
        } else {
            let (ch, url) = &t.channels[random.next_int_bounded(CHANNELS_NUMBER as i32) as usize];
            (ch, url)
        };
        // Flink's generator adds the first person id twice to a bidder.
        bidder += FIRST_PERSON_ID;
        put(f, want, 0, || Value::BigInt(auction));
        put(f, want, 1, || Value::BigInt(bidder));
        put(f, want, 2, || Value::BigInt(price));
        put(f, want, 3, || Value::String(Arc::from(&**channel)));
        put(f, want, 4, || Value::String(Arc::from(&**url)));
        put(f, want, 5, || Value::Timestamp(timestamp));
        f[6] = t.extra(
            random,
            8 + 8 + 8 + 8,
            c.avg_bid_byte_size,
            want & (1 << 6) != 0,
        );
    }
}

/// Version byte of a nexmark position.
const POSITION_VERSION: u8 = 1;
/// Bytes of one split in a position.
const SPLIT_BYTES: usize = 40;

impl NexmarkSource {
    /// The splits left: the current one, then the queued ones.
    fn splits(&self) -> Vec<Split> {
        self.current
            .iter()
            .chain(self.queued.iter())
            .copied()
            .filter(|s| s.emitted < s.limit)
            .collect()
    }

    fn use_splits(&mut self, splits: Vec<Split>) {
        self.queued = splits.into_iter().filter(|s| s.emitted < s.limit).collect();
        self.current = self.queued.pop_front();
    }

    /// The base time and splits of a position.
    fn decode_position(position: &[u8]) -> Result<(i64, Vec<Split>)> {
        let bad = || EngineError::data("malformed nexmark source position");
        let (&version, rest) = position.split_first().ok_or_else(bad)?;
        if version != POSITION_VERSION || rest.len() < 8 || (rest.len() - 8) % SPLIT_BYTES != 0 {
            return Err(bad());
        }
        let i64_at = |b: &[u8], i: usize| -> Result<i64> {
            let bytes = b.get(i..i + 8).ok_or_else(bad)?;
            Ok(i64::from_le_bytes(bytes.try_into().map_err(|_| bad())?))
        };
        let base_time = i64_at(rest, 0)?;
        let splits = rest[8..]
            .chunks_exact(SPLIT_BYTES)
            .map(|c| {
                Ok(Split {
                    first_event_id: i64_at(c, 0)?,
                    limit: i64_at(c, 8)?,
                    emitted: i64_at(c, 16)?,
                    delay_us: f64::from_bits(i64_at(c, 24)? as u64),
                    wallclock_base: i64_at(c, 32)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((base_time, splits))
    }
}

impl Source for NexmarkSource {
    /// `version | base time (i64) | per split: first event id, limit, emitted (i64 each), delay
    /// in microseconds (f64 bits), wall-clock base (i64)`, little-endian.
    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        let splits = self.splits();
        let mut out = Vec::with_capacity(9 + SPLIT_BYTES * splits.len());
        out.push(POSITION_VERSION);
        out.extend_from_slice(&self.base_time.to_le_bytes());
        for s in &splits {
            out.extend_from_slice(&s.first_event_id.to_le_bytes());
            out.extend_from_slice(&s.limit.to_le_bytes());
            out.extend_from_slice(&s.emitted.to_le_bytes());
            out.extend_from_slice(&s.delay_us.to_bits().to_le_bytes());
            out.extend_from_slice(&s.wallclock_base.to_le_bytes());
        }
        Ok(out)
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        let (base_time, splits) = Self::decode_position(position)?;
        self.base_time = base_time;
        self.use_splits(splits);
        Ok(())
    }

    /// Every old subtask's splits dealt out round-robin over the new subtasks: each split is
    /// continued by exactly one of them, on its own timeline.
    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        if positions.iter().all(Vec::is_empty) {
            // Nothing was recorded: start afresh.
            return Ok(());
        }
        let mut all = Vec::new();
        for position in positions.iter().filter(|p| !p.is_empty()) {
            let (base_time, splits) = Self::decode_position(position)?;
            self.base_time = base_time;
            all.extend(splits);
        }
        let mine = all
            .into_iter()
            .enumerate()
            .filter(|(j, _)| j % self.parallelism == self.subtask)
            .map(|(_, s)| s)
            .collect();
        self.use_splits(mine);
        Ok(())
    }

    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus> {
        let Some(mut split) = self.current else {
            return Ok(if self.config.keep_alive {
                SourceStatus::Idle
            } else {
                SourceStatus::Finished
            });
        };
        let mut n = (max_rows.max(1) as i64).min(split.limit - split.emitted);
        if !self.config.max_emit_speed {
            // Emit only the events whose wall-clock time has come.
            let now = wall_millis();
            if split.wallclock_base < 0 {
                split.wallclock_base = now;
            }
            let mut due = 0;
            while due < n {
                let number = FIRST_EVENT_NUMBER + split.emitted + due;
                let at = split.wallclock_base
                    + (split.timestamp_for_event(self.base_time, number) - self.base_time);
                if at > now {
                    if due == 0 {
                        let wait = Duration::from_millis((at - now) as u64);
                        std::thread::sleep(wait.min(MAX_THROTTLE_SLEEP));
                    }
                    break;
                }
                due += 1;
            }
            n = due;
        }
        out.changes.reserve(n as usize);
        let mut gen = EventGen {
            config: &self.config,
            tables: &self.tables,
            text: &mut self.text,
            shape: &self.shape,
            fields: &mut self.fields,
        };
        // With a pushed-down `event_type = k` the skipped events cost no generation: at full
        // speed a poll looks at up to 64 batches' worth of events to fill one batch.
        let scan = match self.shape.only {
            Some(_) if self.config.max_emit_speed => {
                n.saturating_mul(64).min(split.limit - split.emitted)
            }
            _ => n,
        };
        let mut rows = 0;
        for _ in 0..scan {
            if rows == n {
                break;
            }
            let number = FIRST_EVENT_NUMBER + split.emitted;
            let event_id = split.first_event_id + number;
            let kind = gen.config.kind_of(event_id);
            if self.shape.only.is_some_and(|only| kind as i32 != only) {
                split.emitted += 1;
                continue;
            }
            let timestamp = split.timestamp_for_event(self.base_time, number);
            let row = gen.row(
                event_id,
                kind,
                split.emitted,
                timestamp,
                &split,
                self.base_time,
            );
            out.changes.push(Change::insert(row));
            split.emitted += 1;
            rows += 1;
        }
        if split.emitted >= split.limit {
            self.current = self.queued.pop_front();
        } else {
            self.current = Some(split);
        }
        Ok(SourceStatus::More)
    }
}

#[cfg(test)]
#[path = "nexmark_tests.rs"]
mod tests;
