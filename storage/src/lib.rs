//! # streamsql-storage
//!
//! Bytes on disk. This crate owns the one durable-write path of streamsql (write a temporary file,
//! fsync, rename, fsync the directory) and the framing every file carries (magic number, format
//! version, CRC-32 checksum), so that a crash never leaves a file that looks complete but is not.

pub mod file;

pub use file::{read_framed, write_atomic, write_framed_atomic, StorageError};
