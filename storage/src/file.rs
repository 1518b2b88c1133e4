//! Durable, checksummed files, and every other file-system call of checkpoint storage.
//!
//! Invariants: a file written by [`write_atomic`] is either absent or complete under its final
//! name (tmp, fsync, rename, fsync directory); a file written by [`write_framed_atomic`] starts
//! with a magic number and a format version and ends with a CRC-32 of everything before it, and
//! [`read_framed`] refuses a file whose checksum, magic or version is wrong. Each I/O call here
//! first passes its own [`failpoint`](crate::failpoint) (free without the `failpoints` feature),
//! so a test can fail any one of them and watch the error take its normal path.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::failpoint::{check, Point};

/// An error of the storage layer, naming the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Bytes that did not come from a file (a snapshot handed over in memory) failed validation.
    #[error("{what} is corrupt: {reason}")]
    CorruptBytes { what: &'static str, reason: String },
    /// A list of snapshots that cannot be restored as given (a delta without its base, out of
    /// order): a caller bug or a checkpoint whose files were mixed up.
    #[error("cannot restore state: {reason}")]
    InvalidRestore { reason: String },
    /// Keyed state was addressed with a state id never registered, or a key group the backend
    /// does not own: a caller bug.
    #[error("invalid state access: {reason}")]
    InvalidStateAccess { reason: String },
    /// The embedded key-value store failed (disk full, I/O error in its log).
    #[error("state store failure: {message}")]
    Store { message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never a
/// mix: a temporary file beside it is written and fsynced, renamed over `path`, and the directory
/// is fsynced so the rename itself survives.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    write_atomic_buffered(path, bytes, bytes.len())
}

/// [`write_atomic`], handing the file system at most `write_buffer_size` bytes per write call,
/// as a stream with a write buffer of that size does (Flink's
/// `state.storage.fs.write-buffer-size`).
pub fn write_atomic_buffered(
    path: &Path,
    bytes: &[u8],
    write_buffer_size: usize,
) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    check(Point::WriteAtomicCreateDir)
        .and_then(|()| fs::create_dir_all(dir))
        .map_err(io_err(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    {
        let mut f = check(Point::WriteAtomicCreateTmp)
            .and_then(|()| {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
            })
            .map_err(io_err(&tmp))?;
        for chunk in bytes.chunks(write_buffer_size.max(1)) {
            check(Point::WriteAtomicWrite)
                .and_then(|()| f.write_all(chunk))
                .map_err(io_err(&tmp))?;
        }
        check(Point::WriteAtomicFsyncFile)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
    }
    check(Point::WriteAtomicRename)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(io_err(path))?;
    fsync_dir(dir, Point::WriteAtomicOpenDir, Point::WriteAtomicFsyncDir)
}

/// Fsyncs a directory so that renames, creations and deletions inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    fsync_dir(dir, Point::SyncDirOpen, Point::SyncDirFsync)
}

/// [`sync_dir`] with the failpoints of its caller.
fn fsync_dir(dir: &Path, open: Point, fsync: Point) -> Result<(), StorageError> {
    check(open)
        .and_then(|()| File::open(dir))
        .and_then(|d| check(fsync).and_then(|()| d.sync_all()))
        .map_err(io_err(dir))
}

/// Reads a whole file (one without framing, or whose framing the caller checks).
pub fn read(path: &Path) -> Result<Vec<u8>, StorageError> {
    check(Point::Read)
        .and_then(|()| fs::read(path))
        .map_err(io_err(path))
}

/// Whether `path` is a file (following symbolic links); unlike `Path::is_file`, a failure to find
/// out is an error, not `false`.
pub fn is_file(path: &Path) -> Result<bool, StorageError> {
    match check(Point::IsFile).and_then(|()| fs::metadata(path)) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The entries of directory `dir`, in no particular order; a directory that does not exist has
/// none.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let entries = match check(Point::ListDir).and_then(|()| fs::read_dir(dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    entries
        .map(|e| e.map(|e| e.path()).map_err(io_err(dir)))
        .collect()
}

/// Removes a file; returns whether it existed (a file already gone is no error). The deletion is
/// durable only once the directory is synced ([`sync_dir`]).
pub fn remove_file(path: &Path) -> Result<bool, StorageError> {
    match check(Point::RemoveFile).and_then(|()| fs::remove_file(path)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Removes a directory and everything below it; a directory already gone is no error. A failure
/// can leave any part of it behind: a caller that needs an order (a commit file before the files
/// it names) removes those first.
pub fn remove_dir_all(dir: &Path) -> Result<(), StorageError> {
    match check(Point::RemoveDirAll).and_then(|()| fs::remove_dir_all(dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

const TRAILER: usize = 4;

/// Frames `payload` in memory as `magic (4) | version (2) | payload | crc32 (4)`: the bytes
/// [`write_framed_atomic`] puts on disk.
pub fn frame(magic: [u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(payload.len() + 10);
    buf.extend_from_slice(&magic);
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Checks magic, version and checksum of framed bytes and returns the payload, or the reason the
/// bytes are refused. The checksum is checked first, so a flipped bit anywhere is reported as such.
pub(crate) fn unframe(bytes: &[u8], magic: [u8; 4], version: u16) -> Result<&[u8], String> {
    if bytes.len() < 6 + TRAILER {
        return Err("too short".to_string());
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(trailer);
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch".to_string());
    }
    if body[..4] != magic {
        return Err("wrong magic number".to_string());
    }
    let found = u16::from_le_bytes([body[4], body[5]]);
    if found != version {
        return Err(format!("format version {found}, expected {version}"));
    }
    Ok(&body[6..])
}

/// Frames `payload` as `magic (4) | version (2) | payload | crc32 (4)` and writes it atomically.
pub fn write_framed_atomic(
    path: &Path,
    magic: [u8; 4],
    version: u16,
    payload: &[u8],
) -> Result<(), StorageError> {
    write_atomic(path, &frame(magic, version, payload))
}

/// Reads a file written by [`write_framed_atomic`], checking magic, version and checksum; returns
/// the payload.
pub fn read_framed(path: &Path, magic: [u8; 4], version: u16) -> Result<Vec<u8>, StorageError> {
    let bytes = check(Point::ReadFramedRead)
        .and_then(|()| fs::read(path))
        .map_err(io_err(path))?;
    unframe(&bytes, magic, version)
        .map(<[u8]>::to_vec)
        .map_err(|reason| StorageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("streamsql-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn framed_round_trip_and_corruption() {
        let d = tmpdir("framed");
        let p = d.join("x.bin");
        write_framed_atomic(&p, *b"SSQL", 1, b"hello").unwrap();
        assert_eq!(read_framed(&p, *b"SSQL", 1).unwrap(), b"hello");
        assert!(read_framed(&p, *b"SSQL", 2).is_err());
        let mut bytes = fs::read(&p).unwrap();
        bytes[7] ^= 0xff;
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            read_framed(&p, *b"SSQL", 1),
            Err(StorageError::Corrupt { .. })
        ));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn listing_lookup_and_removal_take_a_missing_path_as_empty_or_gone() {
        let d = tmpdir("missing");
        assert!(list_dir(&d).unwrap().is_empty());
        assert!(!is_file(&d.join("f")).unwrap());
        assert!(!remove_file(&d.join("f")).unwrap());
        remove_dir_all(&d).unwrap();

        write_atomic(&d.join("f"), b"x").unwrap();
        assert_eq!(list_dir(&d).unwrap(), vec![d.join("f")]);
        assert!(is_file(&d.join("f")).unwrap());
        assert!(!is_file(&d).unwrap(), "a directory is no file");
        assert_eq!(read(&d.join("f")).unwrap(), b"x");
        assert!(remove_file(&d.join("f")).unwrap());
        assert!(matches!(read(&d.join("f")), Err(StorageError::Io { .. })));
        remove_dir_all(&d).unwrap();
        assert!(!d.exists());
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let d = tmpdir("atomic");
        let p = d.join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two two");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&d);
    }
}
