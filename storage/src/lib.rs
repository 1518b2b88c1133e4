//! # streamsql-storage
//!
//! Bytes on disk, and the keyed state that becomes them. This crate owns the one durable-write
//! path of streamsql (write a temporary file, fsync, rename, fsync the directory) and the framing
//! every file carries (magic number, format version, CRC-32 checksum), so that a crash never
//! leaves a file that looks complete but is not.
//!
//! - [`file`](mod@file): atomic, checksummed files, and every other file-system call of
//!   checkpoint storage (listing, reading, removing).
//! - [`failpoint`]: a named failure-injection point per I/O call of [`file`](mod@file), live only
//!   with the `failpoints` feature.
//! - [`state`]: keyed-state backends (in-memory, and sled with a write-back cache) addressed by
//!   (key group, state, key), with change tracking for cheap checkpoint snapshots.
//! - [`snapshot`]: the snapshot format of keyed state (full and delta, optionally snappy), built on
//!   [`file`](mod@file)'s framing.

pub mod failpoint;
pub mod file;
pub mod snapshot;
pub mod state;

pub use file::{frame, read_framed, write_atomic, write_framed_atomic, StorageError};
pub use snapshot::{Compression, EncodedSnapshot, Snapshot, SnapshotKind, SnapshotRecord};
pub use state::{
    HashMapBackend, KeyGroup, KeyGroupRange, KeyedStateBackend, SledBackend, SledOptions,
    StateEntry, StateId, StateRegistry, StateStats,
};
