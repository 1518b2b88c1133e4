//! Failure injection at the storage layer's I/O calls (cargo feature `failpoints`, off by
//! default).
//!
//! Every I/O call of [`file`](mod@crate::file) first passes its own named [`Point`] to `check`.
//! Without the feature, `check` is an empty inline function returning `Ok(())`: the mechanism
//! compiles to nothing. With it, a point whose `Action` says so fails the call *instead of*
//! doing it, with an `std::io::Error` of kind `Other` and the message `injected failure at
//! <point>`, so the failure travels the caller's normal error path exactly as a real one would.
//!
//! Configuration, with the feature: `set` and `clear` for tests in one process, and the
//! environment variable `STREAMSQL_FAILPOINTS`, read once at the first check, for tests that
//! drive the `streamsql` binary. The variable holds `point=action` entries separated by `;`,
//! where an action is `fail` (every call), `fail@N` (the N-th call only, counted from 1),
//! `fail@N..` (the N-th call and every later one) or `off`; for example
//! `STREAMSQL_FAILPOINTS='write_atomic.rename=fail@3;read_framed.read=fail'`.
//!
//! Invariants: a point counts its calls from the moment its action was set (process start for
//! the variable); a malformed entry of the variable is reported on stderr and ignored, never a
//! panic; every injected failure is reported on stderr as `streamsql: failpoint <point> fired
//! (call <n>)`, so a test can tell a point that fired from one that was never reached.

/// A place where the storage layer does I/O; each has a stable name ([`Point::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// [`write_atomic`](crate::file::write_atomic) creates the target's directory.
    WriteAtomicCreateDir,
    /// ... creates (truncates) its temporary file.
    WriteAtomicCreateTmp,
    /// ... writes a chunk of the temporary file (one call per write-buffer-sized chunk).
    WriteAtomicWrite,
    /// ... fsyncs the temporary file.
    WriteAtomicFsyncFile,
    /// ... renames the temporary file over the target: the commit point of the write.
    WriteAtomicRename,
    /// ... opens the directory to fsync it after the rename.
    WriteAtomicOpenDir,
    /// ... fsyncs the directory so the rename is durable.
    WriteAtomicFsyncDir,
    /// [`read_framed`](crate::file::read_framed) reads the file.
    ReadFramedRead,
    /// [`read`](crate::file::read) reads a whole file.
    Read,
    /// [`sync_dir`](crate::file::sync_dir) opens the directory.
    SyncDirOpen,
    /// [`sync_dir`](crate::file::sync_dir) fsyncs it.
    SyncDirFsync,
    /// [`remove_file`](crate::file::remove_file).
    RemoveFile,
    /// [`remove_dir_all`](crate::file::remove_dir_all).
    RemoveDirAll,
    /// [`list_dir`](crate::file::list_dir) reads a directory.
    ListDir,
    /// [`is_file`](crate::file::is_file) looks a path up.
    IsFile,
}

impl Point {
    /// Every point, in the order of the durable-file functions.
    pub const ALL: [Point; 15] = [
        Point::WriteAtomicCreateDir,
        Point::WriteAtomicCreateTmp,
        Point::WriteAtomicWrite,
        Point::WriteAtomicFsyncFile,
        Point::WriteAtomicRename,
        Point::WriteAtomicOpenDir,
        Point::WriteAtomicFsyncDir,
        Point::ReadFramedRead,
        Point::Read,
        Point::SyncDirOpen,
        Point::SyncDirFsync,
        Point::RemoveFile,
        Point::RemoveDirAll,
        Point::ListDir,
        Point::IsFile,
    ];

    /// The point's name, as `set` and `STREAMSQL_FAILPOINTS` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Point::WriteAtomicCreateDir => "write_atomic.create_dir",
            Point::WriteAtomicCreateTmp => "write_atomic.create_tmp",
            Point::WriteAtomicWrite => "write_atomic.write",
            Point::WriteAtomicFsyncFile => "write_atomic.fsync_file",
            Point::WriteAtomicRename => "write_atomic.rename",
            Point::WriteAtomicOpenDir => "write_atomic.open_dir",
            Point::WriteAtomicFsyncDir => "write_atomic.fsync_dir",
            Point::ReadFramedRead => "read_framed.read",
            Point::Read => "read",
            Point::SyncDirOpen => "sync_dir.open",
            Point::SyncDirFsync => "sync_dir.fsync",
            Point::RemoveFile => "remove_file",
            Point::RemoveDirAll => "remove_dir_all",
            Point::ListDir => "list_dir",
            Point::IsFile => "is_file",
        }
    }

    /// The point named `name`.
    pub fn from_name(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The names of every failpoint, for tests that go through them all.
pub fn list() -> Vec<&'static str> {
    Point::ALL.into_iter().map(Point::name).collect()
}

/// Fails the I/O call at `point` when its action says so; a no-op without the feature.
#[inline(always)]
pub(crate) fn check(point: Point) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        injection::check(point)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = point;
        Ok(())
    }
}

#[cfg(feature = "failpoints")]
pub use injection::{clear, parse, set, Action, FailpointError, ENV_VAR};

#[cfg(feature = "failpoints")]
mod injection {
    use std::sync::{Mutex, OnceLock};

    use super::Point;

    /// The environment variable read once, at the first check.
    pub const ENV_VAR: &str = "STREAMSQL_FAILPOINTS";

    /// What a point does with its calls.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Action {
        /// Every call proceeds.
        Off,
        /// Every call fails.
        Fail,
        /// Only the n-th call (counted from 1) fails.
        FailNth(u64),
        /// The n-th call (counted from 1) and every later one fail.
        FailFrom(u64),
    }

    impl Action {
        /// Whether call number `call` (from 1) fails.
        fn fails(self, call: u64) -> bool {
            match self {
                Action::Off => false,
                Action::Fail => true,
                Action::FailNth(n) => call == n,
                Action::FailFrom(n) => call >= n,
            }
        }
    }

    impl std::str::FromStr for Action {
        type Err = FailpointError;

        /// `off`, `fail`, `fail@N` or `fail@N..`, with N at least 1.
        fn from_str(s: &str) -> Result<Self, Self::Err> {
            let bad = || FailpointError::BadAction(s.to_string());
            let count = |n: &str| n.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(bad);
            match s.trim() {
                "off" => Ok(Action::Off),
                "fail" => Ok(Action::Fail),
                other => {
                    let at = other.strip_prefix("fail@").ok_or_else(bad)?;
                    match at.strip_suffix("..") {
                        Some(n) => Ok(Action::FailFrom(count(n)?)),
                        None => Ok(Action::FailNth(count(at)?)),
                    }
                }
            }
        }
    }

    /// A failpoint configuration that cannot be applied.
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum FailpointError {
        #[error("unknown failpoint '{0}'")]
        UnknownPoint(String),
        #[error("'{0}' is not a failpoint action (off, fail, fail@N, fail@N..)")]
        BadAction(String),
        #[error("'{0}' is not a failpoint entry (point=action)")]
        BadEntry(String),
    }

    /// Parses `point=action` entries separated by `;` (the syntax of [`ENV_VAR`]); empty
    /// entries are skipped.
    pub fn parse(spec: &str) -> Result<Vec<(Point, Action)>, FailpointError> {
        spec.split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (name, action) = entry
                    .split_once('=')
                    .ok_or_else(|| FailpointError::BadEntry(entry.to_string()))?;
                let point = Point::from_name(name.trim())
                    .ok_or_else(|| FailpointError::UnknownPoint(name.trim().to_string()))?;
                Ok((point, action.parse()?))
            })
            .collect()
    }

    /// A point's action and the calls it has seen since the action was set.
    #[derive(Clone, Copy)]
    struct Slot {
        action: Action,
        calls: u64,
    }

    const OFF: Slot = Slot {
        action: Action::Off,
        calls: 0,
    };

    type Slots = [Slot; Point::ALL.len()];

    fn index(point: Point) -> usize {
        // `ALL` lists the variants in declaration order (checked by a test).
        point as usize
    }

    /// The slots, set up from [`ENV_VAR`] on first use.
    fn slots() -> &'static Mutex<Slots> {
        static SLOTS: OnceLock<Mutex<Slots>> = OnceLock::new();
        SLOTS.get_or_init(|| {
            let mut slots = [OFF; Point::ALL.len()];
            if let Ok(spec) = std::env::var(ENV_VAR) {
                // Entry by entry, so one bad entry does not disable the others.
                for entry in spec.split(';') {
                    match parse(entry) {
                        Ok(parsed) => {
                            for (point, action) in parsed {
                                slots[index(point)] = Slot { action, calls: 0 };
                            }
                        }
                        Err(e) => eprintln!("streamsql: {ENV_VAR}: {e}; entry ignored"),
                    }
                }
            }
            Mutex::new(slots)
        })
    }

    fn with_slots<T>(f: impl FnOnce(&mut Slots) -> T) -> T {
        // A panic elsewhere while the lock was held cannot leave the slots inconsistent: every
        // update is a plain store.
        let mut guard = slots().lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Sets the action of the point named `name`; its call count starts again from 0.
    pub fn set(name: &str, action: Action) -> Result<(), FailpointError> {
        let point =
            Point::from_name(name).ok_or_else(|| FailpointError::UnknownPoint(name.to_string()))?;
        with_slots(|s| s[index(point)] = Slot { action, calls: 0 });
        Ok(())
    }

    /// Turns every point off (also those set from [`ENV_VAR`]).
    pub fn clear() {
        with_slots(|s| *s = [OFF; Point::ALL.len()]);
    }

    pub(super) fn check(point: Point) -> std::io::Result<()> {
        let fired = with_slots(|s| {
            let slot = &mut s[index(point)];
            if slot.action == Action::Off {
                return None;
            }
            slot.calls = slot.calls.saturating_add(1);
            slot.action.fails(slot.calls).then_some(slot.calls)
        });
        match fired {
            None => Ok(()),
            Some(call) => {
                eprintln!("streamsql: failpoint {} fired (call {call})", point.name());
                Err(std::io::Error::other(format!(
                    "injected failure at {}",
                    point.name()
                )))
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn actions_parse_and_count_calls_from_one() {
            assert_eq!("off".parse(), Ok(Action::Off));
            assert_eq!("fail".parse(), Ok(Action::Fail));
            assert_eq!("fail@3".parse(), Ok(Action::FailNth(3)));
            assert_eq!("fail@3..".parse(), Ok(Action::FailFrom(3)));
            for bad in [
                "",
                "fail@",
                "fail@0",
                "fail@x",
                "fail@3..4",
                "panic",
                "fail@-1..",
            ] {
                assert!(bad.parse::<Action>().is_err(), "{bad:?}");
            }
            let calls = |a: Action| (1..=5).filter(|c| a.fails(*c)).collect::<Vec<_>>();
            assert_eq!(calls(Action::Off), Vec::<u64>::new());
            assert_eq!(calls(Action::Fail), vec![1, 2, 3, 4, 5]);
            assert_eq!(calls(Action::FailNth(3)), vec![3]);
            assert_eq!(calls(Action::FailFrom(3)), vec![3, 4, 5]);
        }

        #[test]
        fn the_variable_syntax_names_points_and_actions() {
            assert_eq!(
                parse(" write_atomic.rename=fail@3 ; read_framed.read=fail;"),
                Ok(vec![
                    (Point::WriteAtomicRename, Action::FailNth(3)),
                    (Point::ReadFramedRead, Action::Fail),
                ])
            );
            assert_eq!(
                parse("nowhere=fail"),
                Err(FailpointError::UnknownPoint("nowhere".into()))
            );
            assert_eq!(parse("read"), Err(FailpointError::BadEntry("read".into())));
            assert!(matches!(
                parse("read=often"),
                Err(FailpointError::BadAction(_))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_has_a_distinct_name_that_maps_back() {
        let names = list();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for (i, p) in Point::ALL.into_iter().enumerate() {
            assert_eq!(Point::from_name(p.name()), Some(p));
            // The slots of the injection are indexed by discriminant.
            assert_eq!(p as usize, i);
        }
    }

    #[test]
    fn an_unset_point_lets_calls_through() {
        // No test of this crate sets `Point::IsFile`.
        assert!(check(Point::IsFile).is_ok());
    }
}
