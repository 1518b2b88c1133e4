//! Window assignment: which windows an event-time timestamp belongs to (tumble, hop, cumulate) and
//! how session windows merge. Pure functions, tested on their own.
//!
//! All arithmetic follows Flink's `TimeWindow.getWindowStartWithOffset`, so negative timestamps
//! and offsets land in the same windows as in Flink. Windows are half-open `[start, end)`; a
//! window is complete ("fired") once the watermark reaches `end - 1`, its `maxTimestamp()`.
//! Overflow of the i64 millisecond range is an error, never a wrap or a panic.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// A half-open event-time window `[start, end)` in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    pub start: i64,
    pub end: i64,
}

impl TimeWindow {
    /// Builds `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// `end - 1`: the last millisecond inside the window, Flink's `maxTimestamp()` and the value
    /// of `window_time`.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Flink's `TimeWindow.intersects`: bounds are inclusive, so `[0, 10)` and `[10, 20)`
    /// intersect, which is why a session continues when the next event is exactly `gap` later.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Whether a window ending at `end` has fired once the watermark is `watermark`: Flink fires
/// (and from then on treats rows of the window as late) when `watermark >= end - 1`.
pub fn is_window_fired(end: i64, watermark: i64) -> bool {
    watermark >= end.saturating_sub(1)
}

/// The kind of an event-time window, with sizes in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumble { size: i64, offset: i64 },
    /// Windows of `size` starting every `slide`.
    Hop { size: i64, slide: i64, offset: i64 },
    /// Windows that start every `max_size` and grow by `step` up to `max_size`.
    Cumulate {
        max_size: i64,
        step: i64,
        offset: i64,
    },
    /// Per-key sessions closed by `gap` of inactivity.
    Session { gap: i64 },
}

impl WindowKind {
    /// Checks the sizes: all positive, and a CUMULATE's max size a multiple of its step (Flink
    /// rejects the query otherwise).
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: i64| {
            if v > 0 {
                Ok(())
            } else {
                Err(EngineError::type_error(format!(
                    "the {name} of a window must be positive, but is {v} ms"
                )))
            }
        };
        match *self {
            WindowKind::Tumble { size, .. } => positive("size", size),
            WindowKind::Hop { size, slide, .. } => {
                positive("size", size)?;
                positive("slide", slide)
            }
            WindowKind::Cumulate { max_size, step, .. } => {
                positive("max size", max_size)?;
                positive("step", step)?;
                if max_size % step != 0 {
                    return Err(EngineError::type_error(format!(
                        "CUMULATE requires the max size ({max_size} ms) to be an integral \
                         multiple of the step ({step} ms)"
                    )));
                }
                Ok(())
            }
            WindowKind::Session { gap } => positive("gap", gap),
        }
    }

    /// Appends the windows containing `ts` to `out` (cleared first), in Flink's order. Sessions
    /// have no fixed windows: use [`SessionWindows`].
    pub fn assign(&self, ts: i64, out: &mut Vec<TimeWindow>) -> Result<()> {
        out.clear();
        match *self {
            WindowKind::Tumble { size, offset } => {
                let start = tumble(ts, size, offset)?;
                out.push(TimeWindow::new(start, add(start, size)?));
                Ok(())
            }
            WindowKind::Hop {
                size,
                slide,
                offset,
            } => hop(ts, slide, size, offset, out),
            WindowKind::Cumulate {
                max_size,
                step,
                offset,
            } => cumulate(ts, step, max_size, offset, out),
            WindowKind::Session { .. } => Err(EngineError::internal(
                "session windows are assigned by merging, not by WindowKind::assign",
            )),
        }
    }
}

fn add(a: i64, b: i64) -> Result<i64> {
    a.checked_add(b).ok_or_else(|| out_of_range(a))
}

fn out_of_range(ts: i64) -> EngineError {
    EngineError::data(format!(
        "event timestamp {ts} ms is too close to the limits of the time range to assign a window"
    ))
}

/// Flink's `TimeWindow.getWindowStartWithOffset`: the start of the `size`-long window (aligned
/// to `offset`) that contains `ts`. Works for negative timestamps (rounds down, not to zero).
pub fn window_start_with_offset(ts: i64, offset: i64, size: i64) -> Result<i64> {
    if size <= 0 {
        return Err(EngineError::internal(format!(
            "window size must be positive, got {size}"
        )));
    }
    // i128 so that `ts - offset` cannot overflow; the remainder is in [0, size).
    let rem = (i128::from(ts) - i128::from(offset)).rem_euclid(i128::from(size));
    i64::try_from(i128::from(ts) - rem).map_err(|_| out_of_range(ts))
}

/// The start of the TUMBLE window of `size` (shifted by `offset`) containing `ts`.
pub fn tumble(ts: i64, size: i64, offset: i64) -> Result<i64> {
    window_start_with_offset(ts, offset, size)
}

/// The HOP windows containing `ts`, latest start first (Flink's `SlidingWindowAssigner` order),
/// written to `out` (cleared first).
pub fn hop(ts: i64, slide: i64, size: i64, offset: i64, out: &mut Vec<TimeWindow>) -> Result<()> {
    out.clear();
    if size <= 0 {
        return Err(EngineError::internal(format!(
            "window size must be positive, got {size}"
        )));
    }
    let last_start = window_start_with_offset(ts, offset, slide)?;
    let lowest = i128::from(ts) - i128::from(size);
    let mut start = last_start;
    while i128::from(start) > lowest {
        out.push(TimeWindow::new(start, add(start, size)?));
        match start.checked_sub(slide) {
            Some(s) => start = s,
            None => break,
        }
    }
    Ok(())
}

/// The CUMULATE windows containing `ts`, shortest first: they all start at the `max_size`-aligned
/// start and end at every multiple of `step` after `ts`, up to `start + max_size`. Written to
/// `out` (cleared first).
pub fn cumulate(
    ts: i64,
    step: i64,
    max_size: i64,
    offset: i64,
    out: &mut Vec<TimeWindow>,
) -> Result<()> {
    out.clear();
    let start = window_start_with_offset(ts, offset, max_size)?;
    let last_end = add(start, max_size)?;
    let mut end = add(window_start_with_offset(ts, offset, step)?, step)?;
    while end <= last_end {
        out.push(TimeWindow::new(start, end));
        end = match end.checked_add(step) {
            Some(e) => e,
            None => break,
        };
    }
    Ok(())
}

/// The session windows of one key: disjoint, non-touching windows with a payload each (the
/// accumulators of the rows in the session). Adding a window merges it with every window it
/// intersects (inclusive bounds, as Flink), folding their payloads together.
#[derive(Clone, Debug)]
pub struct SessionWindows<T> {
    /// start -> (end, payload); starts and ends are both increasing since windows are disjoint.
    windows: BTreeMap<i64, (i64, T)>,
}

impl<T> Default for SessionWindows<T> {
    fn default() -> Self {
        SessionWindows {
            windows: BTreeMap::new(),
        }
    }
}

impl<T> SessionWindows<T> {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is no open session.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The number of open sessions.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// The open sessions in start order.
    pub fn windows(&self) -> impl Iterator<Item = (TimeWindow, &T)> + '_ {
        self.windows
            .iter()
            .map(|(s, (e, t))| (TimeWindow::new(*s, *e), t))
    }

    /// Starts of the open sessions that `w` intersects, highest first.
    fn intersecting(&self, w: TimeWindow) -> Vec<i64> {
        let mut found = Vec::new();
        for (start, (end, _)) in self.windows.range(..=w.end).rev() {
            if *end < w.start {
                break;
            }
            found.push(*start);
        }
        found
    }

    /// The window `w` would become if added now: `w` covered with every session it intersects.
    pub fn merged_extent(&self, w: TimeWindow) -> TimeWindow {
        let mut merged = w;
        for (start, (end, _)) in self.windows.range(..=w.end).rev() {
            if *end < w.start {
                break;
            }
            merged = merged.cover(&TimeWindow::new(*start, *end));
        }
        merged
    }

    /// Adds `w` with `payload`, merging it with the sessions it intersects. `merge(into, from)`
    /// folds a replaced session's payload into the surviving one. Returns the resulting session
    /// and the sessions it replaced (their timers must go), and the payload to update.
    pub fn add(
        &mut self,
        w: TimeWindow,
        payload: T,
        mut merge: impl FnMut(&mut T, T) -> Result<()>,
    ) -> Result<(TimeWindow, Vec<TimeWindow>, &mut T)> {
        let mut merged = w;
        let mut acc = payload;
        let mut replaced = Vec::new();
        for start in self.intersecting(w) {
            let (end, other) = self
                .windows
                .remove(&start)
                .expect("invariant: start was just found in the map");
            let other_w = TimeWindow::new(start, end);
            merged = merged.cover(&other_w);
            // Fold into the older session's payload so its accumulated state is kept in place.
            let mut base = other;
            merge(&mut base, acc)?;
            acc = base;
            replaced.push(other_w);
        }
        replaced.sort();
        let slot = self
            .windows
            .entry(merged.start)
            .or_insert((merged.end, acc));
        Ok((merged, replaced, &mut slot.1))
    }

    /// Removes the session starting at `start`.
    pub fn remove(&mut self, start: i64) -> Option<(TimeWindow, T)> {
        self.windows
            .remove(&start)
            .map(|(end, t)| (TimeWindow::new(start, end), t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: &WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        kind.assign(ts, &mut out).unwrap();
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn window_start_matches_flink_for_negative_timestamps() {
        assert_eq!(window_start_with_offset(7, 0, 5).unwrap(), 5);
        assert_eq!(window_start_with_offset(5, 0, 5).unwrap(), 5);
        assert_eq!(window_start_with_offset(-1, 0, 5).unwrap(), -5);
        assert_eq!(window_start_with_offset(-5, 0, 5).unwrap(), -5);
        assert_eq!(window_start_with_offset(-6, 0, 5).unwrap(), -10);
        // Offset 2: windows [2, 7), [7, 12), [-3, 2).
        assert_eq!(window_start_with_offset(8, 2, 5).unwrap(), 7);
        assert_eq!(window_start_with_offset(1, 2, 5).unwrap(), -3);
        assert_eq!(window_start_with_offset(1, -3, 5).unwrap(), -3);
    }

    #[test]
    fn window_start_never_overflows() {
        assert!(window_start_with_offset(i64::MIN, 0, 7).is_err());
        assert!(window_start_with_offset(i64::MIN, 1, 0).is_err());
        assert_eq!(window_start_with_offset(i64::MAX, 0, 1).unwrap(), i64::MAX);
        let kind = WindowKind::Tumble {
            size: 10,
            offset: 0,
        };
        assert!(kind.assign(i64::MAX, &mut Vec::new()).is_err());
    }

    #[test]
    fn tumble_windows() {
        let k = WindowKind::Tumble {
            size: 10,
            offset: 0,
        };
        assert_eq!(windows(&k, 0), vec![(0, 10)]);
        assert_eq!(windows(&k, 9), vec![(0, 10)]);
        assert_eq!(windows(&k, 10), vec![(10, 20)]);
        assert_eq!(windows(&k, -1), vec![(-10, 0)]);
        // 20-minute windows on 2024-03-10 08:13:00 start at 08:00.
        let t = 1_710_058_380_000;
        assert_eq!(tumble(t, 1_200_000, 0).unwrap(), 1_710_057_600_000);
    }

    #[test]
    fn hop_windows_latest_start_first() {
        let k = WindowKind::Hop {
            size: 30,
            slide: 10,
            offset: 0,
        };
        assert_eq!(windows(&k, 25), vec![(20, 50), (10, 40), (0, 30)]);
        assert_eq!(windows(&k, 30), vec![(30, 60), (20, 50), (10, 40)]);
        assert_eq!(windows(&k, -1), vec![(-10, 20), (-20, 10), (-30, 0)]);
        // A size that is not a multiple of the slide.
        let k = WindowKind::Hop {
            size: 25,
            slide: 10,
            offset: 0,
        };
        assert_eq!(windows(&k, 24), vec![(20, 45), (10, 35), (0, 25)]);
        assert_eq!(windows(&k, 26), vec![(20, 45), (10, 35)]);
    }

    #[test]
    fn cumulate_windows_shortest_first() {
        let k = WindowKind::Cumulate {
            max_size: 60,
            step: 15,
            offset: 0,
        };
        assert_eq!(windows(&k, 0), vec![(0, 15), (0, 30), (0, 45), (0, 60)]);
        assert_eq!(windows(&k, 31), vec![(0, 45), (0, 60)]);
        assert_eq!(windows(&k, 59), vec![(0, 60)]);
        assert_eq!(
            windows(&k, 60),
            vec![(60, 75), (60, 90), (60, 105), (60, 120)]
        );
        assert_eq!(windows(&k, -1), vec![(-60, 0)]);
    }

    #[test]
    fn validate_rejects_bad_sizes() {
        assert!(WindowKind::Tumble { size: 0, offset: 0 }
            .validate()
            .is_err());
        assert!(WindowKind::Session { gap: -1 }.validate().is_err());
        assert!(WindowKind::Cumulate {
            max_size: 50,
            step: 15,
            offset: 0
        }
        .validate()
        .is_err());
        assert!(WindowKind::Hop {
            size: 25,
            slide: 10,
            offset: 0
        }
        .validate()
        .is_ok());
    }

    fn add_session(
        s: &mut SessionWindows<u32>,
        ts: i64,
        gap: i64,
    ) -> (TimeWindow, Vec<TimeWindow>) {
        let (w, replaced, payload) = s
            .add(TimeWindow::new(ts, ts + gap), 0, |a, b| {
                *a += b;
                Ok(())
            })
            .unwrap();
        *payload += 1;
        (w, replaced)
    }

    #[test]
    fn sessions_merge_including_touching_windows() {
        let mut s = SessionWindows::new();
        assert_eq!(add_session(&mut s, 100, 10).0, TimeWindow::new(100, 110));
        assert_eq!(add_session(&mut s, 130, 10).0, TimeWindow::new(130, 140));
        // Exactly `gap` after the last event: the windows touch, Flink merges them.
        let (w, replaced) = add_session(&mut s, 110, 10);
        assert_eq!(w, TimeWindow::new(100, 120));
        assert_eq!(replaced, vec![TimeWindow::new(100, 110)]);
        // Bridges both sessions.
        let (w, replaced) = add_session(&mut s, 120, 10);
        assert_eq!(w, TimeWindow::new(100, 140));
        assert_eq!(
            replaced,
            vec![TimeWindow::new(100, 120), TimeWindow::new(130, 140)]
        );
        assert_eq!(s.len(), 1);
        let all: Vec<_> = s.windows().map(|(w, n)| (w, *n)).collect();
        assert_eq!(all, vec![(TimeWindow::new(100, 140), 4)]);
        // Out of order, before the session.
        assert_eq!(
            s.merged_extent(TimeWindow::new(95, 105)),
            TimeWindow::new(95, 140)
        );
        assert_eq!(
            s.merged_extent(TimeWindow::new(80, 90)),
            TimeWindow::new(80, 90)
        );
        assert_eq!(s.remove(100), Some((TimeWindow::new(100, 140), 4)));
        assert!(s.is_empty());
    }

    #[test]
    fn fired_means_watermark_reached_end_minus_one() {
        assert!(!is_window_fired(10, 8));
        assert!(is_window_fired(10, 9));
        assert!(is_window_fired(i64::MIN, i64::MIN));
        assert!(is_window_fired(i64::MAX, i64::MAX));
    }
}
