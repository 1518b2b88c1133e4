//! What one subtask contributes to a checkpoint, and the asynchronous part that writes it.
//!
//! A subtask's entry in `_metadata` is a [`SubtaskState`]: its operator state (a source's
//! position, a sink's pending files, an operator's watermark; always small, always inline) and a
//! handle to its keyed state: none, inline bytes, or a file in the checkpoint's `taskowned/`
//! directory named relative to the checkpoint directory, so that moving a checkpoint directory
//! keeps it usable. The keyed state itself is a `storage` snapshot file (magic, version, CRC-32,
//! optional snappy compression).
//!
//! Invariants: a file handle is recorded only after its file was written atomically (tmp, fsync,
//! rename, fsync directory), so a `_metadata` that names a file is never committed before the
//! file is durable; keyed state smaller than the inline threshold never gets a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use streamsql_storage::{snapshot, Compression, Snapshot};

use crate::codec::{self, corrupt};
use crate::error::{EngineError, Result};

/// The first byte of an encoded [`SubtaskState`], so that state of another format is refused.
const MARKER: u8 = b'S';
const KEYED_NONE: u8 = 0;
const KEYED_INLINE: u8 = 1;
const KEYED_FILE: u8 = 2;

/// Where a subtask's keyed state is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedHandle {
    /// The subtask has no keyed state.
    None,
    /// The snapshot file's bytes, inlined in `_metadata`.
    Inline(Vec<u8>),
    /// A snapshot file, relative to the checkpoint directory, and its length.
    File { path: String, size: u64 },
}

/// A subtask's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtaskState {
    /// Operator (non-keyed) state.
    pub operator: Vec<u8>,
    /// Keyed state.
    pub keyed: KeyedHandle,
}

impl SubtaskState {
    /// Encodes for `_metadata`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.operator.len() + 16);
        codec::put_version(&mut out);
        out.push(MARKER);
        codec::put_uvarint(&mut out, self.operator.len() as u64);
        out.extend_from_slice(&self.operator);
        match &self.keyed {
            KeyedHandle::None => out.push(KEYED_NONE),
            KeyedHandle::Inline(bytes) => {
                out.push(KEYED_INLINE);
                codec::put_uvarint(&mut out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            KeyedHandle::File { path, size } => {
                out.push(KEYED_FILE);
                codec::put_str(&mut out, path);
                codec::put_uvarint(&mut out, *size);
            }
        }
        out
    }

    /// Decodes bytes of [`SubtaskState::encode`].
    pub fn decode(mut input: &[u8]) -> Result<Self> {
        let input = &mut input;
        codec::check_version(input)?;
        if codec::get_u8(input)? != MARKER {
            return Err(corrupt("not a subtask state"));
        }
        let n = codec::get_len(input)?;
        let operator = codec::get_bytes(input, n)?.to_vec();
        let keyed = match codec::get_u8(input)? {
            KEYED_NONE => KeyedHandle::None,
            KEYED_INLINE => {
                let n = codec::get_len(input)?;
                KeyedHandle::Inline(codec::get_bytes(input, n)?.to_vec())
            }
            KEYED_FILE => {
                let path = codec::get_str(input)?.to_string();
                let size = codec::get_uvarint(input)?;
                if !is_relative_file_name(&path) {
                    return Err(corrupt(format!(
                        "state file '{path}' is not inside the checkpoint"
                    )));
                }
                KeyedHandle::File { path, size }
            }
            t => return Err(corrupt(format!("unknown keyed-state handle {t}"))),
        };
        codec::expect_end(input)?;
        Ok(SubtaskState { operator, keyed })
    }

    /// The state of a subtask that restores nothing.
    pub fn empty() -> Self {
        SubtaskState {
            operator: Vec::new(),
            keyed: KeyedHandle::None,
        }
    }

    /// Bytes this state takes in the checkpoint (inline bytes and the file's length).
    pub fn checkpointed_size(&self) -> u64 {
        let keyed = match &self.keyed {
            KeyedHandle::None => 0,
            KeyedHandle::Inline(b) => b.len() as u64,
            KeyedHandle::File { size, .. } => *size,
        };
        self.operator.len() as u64 + keyed
    }

    /// Reads the keyed snapshot, resolving a file against `checkpoint_dir` and verifying its
    /// length and checksum.
    pub fn load_keyed(&self, checkpoint_dir: &Path) -> Result<Option<Snapshot>> {
        let bytes = match &self.keyed {
            KeyedHandle::None => return Ok(None),
            KeyedHandle::Inline(b) => std::borrow::Cow::Borrowed(b.as_slice()),
            KeyedHandle::File { path, size } => {
                let file = checkpoint_dir.join(path);
                let bytes = streamsql_storage::file::read(&file).map_err(|e| {
                    crate::state::storage_error(
                        &format!("cannot read keyed state '{}'", file.display()),
                        e,
                    )
                })?;
                if bytes.len() as u64 != *size {
                    return Err(EngineError::data(format!(
                        "keyed state '{}' has {} bytes, the checkpoint recorded {size}",
                        file.display(),
                        bytes.len()
                    )));
                }
                std::borrow::Cow::Owned(bytes)
            }
        };
        snapshot::decode(&bytes)
            .map(Some)
            .map_err(|e| EngineError::data(format!("cannot restore keyed state: {e}")))
    }
}

/// Whether `path` names a file below the checkpoint directory (no absolute path, no `..`).
fn is_relative_file_name(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && p.is_relative()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// How the asynchronous part writes keyed state.
#[derive(Clone, Debug)]
pub struct WriteSettings {
    /// The directory the file goes to (`<job dir>/chk-<n>`, `<job dir>/chk-final` for a final
    /// state, or a savepoint's directory), or `None` to inline whatever the size.
    pub checkpoint_dir: Option<PathBuf>,
    /// The file's path relative to the checkpoint directory (`taskowned/<name>` in a checkpoint,
    /// `<name>` in a savepoint).
    pub file_name: String,
    pub compression: bool,
    pub inline_threshold: usize,
    pub write_buffer_size: usize,
}

/// The asynchronous part's result: the handle and its figures.
#[derive(Debug)]
pub struct Written {
    pub keyed: KeyedHandle,
    /// Bytes of keys and values in the snapshot (Flink's full state size).
    pub state_size: u64,
    pub async_duration: Duration,
}

/// Encodes, compresses, checksums and writes (or inlines) a keyed snapshot.
pub fn write_keyed(snapshot: &Snapshot, settings: &WriteSettings) -> Result<Written> {
    let start = Instant::now();
    let bytes = snapshot::encode(snapshot, Compression::from_flag(settings.compression));
    let state_size = snapshot.data_size() as u64;
    let keyed = match &settings.checkpoint_dir {
        Some(dir) if bytes.len() >= settings.inline_threshold => {
            let rel = settings.file_name.clone();
            let path = dir.join(&rel);
            // Flink's write buffer is at least the inline threshold.
            let buffer = settings.write_buffer_size.max(settings.inline_threshold);
            streamsql_storage::file::write_atomic_buffered(&path, &bytes, buffer).map_err(|e| {
                EngineError::Task {
                    message: format!("cannot write keyed state: {e}"),
                }
            })?;
            KeyedHandle::File {
                path: rel,
                size: bytes.len() as u64,
            }
        }
        _ => KeyedHandle::Inline(bytes),
    };
    Ok(Written {
        keyed,
        state_size,
        async_duration: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamsql_storage::{KeyGroupRange, SnapshotKind, SnapshotRecord};

    /// A snapshot with records in (key group, state, key) order, as files hold them.
    fn snapshot(records: usize) -> Snapshot {
        let mut s = Snapshot {
            checkpoint_id: 3,
            kind: SnapshotKind::Full,
            base: None,
            key_groups: KeyGroupRange::new(0, 127),
            states: vec![(0, "group".into())],
            records: (0..records)
                .map(|i| SnapshotRecord {
                    key_group: (i % 128) as u16,
                    state: 0,
                    key: format!("key-{i:06}").into_bytes(),
                    value: Some(vec![7; 20]),
                })
                .collect(),
        };
        s.records
            .sort_by(|a, b| (a.key_group, &a.key).cmp(&(b.key_group, &b.key)));
        s
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("streamsql-subtask-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn settings(dir: &Path, threshold: usize) -> WriteSettings {
        WriteSettings {
            checkpoint_dir: Some(dir.to_path_buf()),
            file_name: "taskowned/op-0".into(),
            compression: true,
            inline_threshold: threshold,
            write_buffer_size: 4096,
        }
    }

    #[test]
    fn small_state_is_inlined_and_large_state_gets_a_file() {
        let dir = temp_dir("threshold");
        let small = write_keyed(&snapshot(3), &settings(&dir, 20 * 1024)).unwrap();
        assert!(matches!(small.keyed, KeyedHandle::Inline(_)));
        assert!(!dir.join("taskowned").exists());
        let large = write_keyed(&snapshot(5000), &settings(&dir, 1024)).unwrap();
        let KeyedHandle::File { path, size } = &large.keyed else {
            panic!("expected a file, got {:?}", large.keyed);
        };
        assert_eq!(path, "taskowned/op-0");
        assert_eq!(std::fs::metadata(dir.join(path)).unwrap().len(), *size);
        let state = SubtaskState {
            operator: b"pos".to_vec(),
            keyed: large.keyed.clone(),
        };
        let back = SubtaskState::decode(&state.encode()).unwrap();
        assert_eq!(back, state);
        assert!(back.load_keyed(&dir).unwrap().unwrap() == snapshot(5000));
        // Relocated: the same handle resolves against the new directory.
        let moved = temp_dir("threshold-moved");
        std::fs::remove_dir_all(&moved).unwrap();
        std::fs::rename(&dir, &moved).unwrap();
        assert!(back.load_keyed(&moved).unwrap().unwrap() == snapshot(5000));
        let _ = std::fs::remove_dir_all(&moved);
    }

    #[test]
    fn damaged_or_truncated_files_and_escaping_paths_are_refused() {
        let dir = temp_dir("damage");
        let w = write_keyed(&snapshot(2000), &settings(&dir, 16)).unwrap();
        let state = SubtaskState {
            operator: Vec::new(),
            keyed: w.keyed,
        };
        let file = dir.join("taskowned/op-0");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let e = state.load_keyed(&dir).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        bytes.pop();
        std::fs::write(&file, &bytes).unwrap();
        let e = state.load_keyed(&dir).unwrap_err().to_string();
        assert!(e.contains("the checkpoint recorded"), "{e}");
        for bad in ["../x", "/etc/passwd", ""] {
            let s = SubtaskState {
                operator: Vec::new(),
                keyed: KeyedHandle::File {
                    path: bad.into(),
                    size: 1,
                },
            };
            assert!(SubtaskState::decode(&s.encode()).is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
