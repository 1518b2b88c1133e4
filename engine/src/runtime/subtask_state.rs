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

use streamsql_storage::{snapshot, EncodedSnapshot, Snapshot};

use crate::codec::{self, corrupt};
use crate::error::{EngineError, Result};

/// The first byte of an encoded [`SubtaskState`], so that state of another format is refused.
const MARKER: u8 = b'S';
const KEYED_NONE: u8 = 0;
const KEYED_INLINE: u8 = 1;
const KEYED_FILE: u8 = 2;
const KEYED_CHAIN: u8 = 3;
/// Tags the optional trailing section holding in-flight data.
const IN_FLIGHT: u8 = b'F';

/// The directory of the job (`<checkpoint dir>/..`) where incremental checkpoints keep the files
/// they share.
pub const SHARED_DIR: &str = "shared";

/// One file of an incremental chain: a path relative to the job directory, and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainFile {
    pub path: String,
    pub size: u64,
}

/// Where a subtask's keyed state is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedHandle {
    /// The subtask has no keyed state.
    None,
    /// The snapshot file's bytes, inlined in `_metadata`.
    Inline(Vec<u8>),
    /// A snapshot file, relative to the checkpoint directory, and its length.
    File { path: String, size: u64 },
    /// An incremental chain in the job's `shared/` directory: a full snapshot and the deltas
    /// after it, in order; the last file is the one this checkpoint wrote.
    Chain(Vec<ChainFile>),
}

/// A subtask's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtaskState {
    /// Operator (non-keyed) state.
    pub operator: Vec<u8>,
    /// Keyed state.
    pub keyed: KeyedHandle,
    /// The encoded [`crate::runtime::channel_state::ChannelState`] of an unaligned checkpoint
    /// (empty: nothing in flight). Encoded as an optional trailing section, so entries written
    /// without it still decode.
    pub in_flight: Vec<u8>,
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
            KeyedHandle::Chain(files) => {
                out.push(KEYED_CHAIN);
                codec::put_uvarint(&mut out, files.len() as u64);
                for f in files {
                    codec::put_str(&mut out, &f.path);
                    codec::put_uvarint(&mut out, f.size);
                }
            }
        }
        if !self.in_flight.is_empty() {
            out.push(IN_FLIGHT);
            codec::put_uvarint(&mut out, self.in_flight.len() as u64);
            out.extend_from_slice(&self.in_flight);
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
            KEYED_CHAIN => {
                let n = codec::get_len(input)?;
                let mut files = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let path = codec::get_str(input)?.to_string();
                    let size = codec::get_uvarint(input)?;
                    if !is_shared_file_name(&path) {
                        return Err(corrupt(format!(
                            "state file '{path}' is not in the job's shared directory"
                        )));
                    }
                    files.push(ChainFile { path, size });
                }
                if files.is_empty() {
                    return Err(corrupt("an incremental chain without files"));
                }
                KeyedHandle::Chain(files)
            }
            t => return Err(corrupt(format!("unknown keyed-state handle {t}"))),
        };
        let mut in_flight = Vec::new();
        if !input.is_empty() {
            if codec::get_u8(input)? != IN_FLIGHT {
                return Err(corrupt("unknown section after the keyed-state handle"));
            }
            let n = codec::get_len(input)?;
            in_flight = codec::get_bytes(input, n)?.to_vec();
        }
        codec::expect_end(input)?;
        Ok(SubtaskState {
            operator,
            keyed,
            in_flight,
        })
    }

    /// The state of a subtask that restores nothing.
    pub fn empty() -> Self {
        SubtaskState {
            operator: Vec::new(),
            keyed: KeyedHandle::None,
            in_flight: Vec::new(),
        }
    }

    /// Bytes this state takes in the checkpoint (inline bytes and the file's length).
    pub fn checkpointed_size(&self) -> u64 {
        let keyed = match &self.keyed {
            KeyedHandle::None => 0,
            KeyedHandle::Inline(b) => b.len() as u64,
            KeyedHandle::File { size, .. } => *size,
            // Only the file this checkpoint added; the rest was written by earlier ones.
            KeyedHandle::Chain(files) => files.last().map_or(0, |f| f.size),
        };
        self.operator.len() as u64 + keyed + self.in_flight.len() as u64
    }

    /// The files of the job's `shared/` directory this state needs (relative to the job dir).
    pub fn shared_files(&self) -> &[ChainFile] {
        match &self.keyed {
            KeyedHandle::Chain(files) => files,
            _ => &[],
        }
    }

    /// Reads the keyed snapshots (none, one, or an incremental chain), resolving a file against
    /// `checkpoint_dir` (a chain's files against its parent, the job directory) and verifying
    /// lengths and checksums.
    pub fn load_keyed(&self, checkpoint_dir: &Path) -> Result<Vec<Snapshot>> {
        self.load_keyed_preferring(checkpoint_dir, None)
    }

    /// [`SubtaskState::load_keyed`], reading each file first from its task-local copy below
    /// `local_job_dir` (`<local dir>/<job id>`, the job directory's layout) when there is one: a
    /// local copy that is missing, has another length than `_metadata` recorded, or does not
    /// decode (checksum) is reported on stderr and the checkpoint directory's file is read.
    pub fn load_keyed_preferring(
        &self,
        checkpoint_dir: &Path,
        local_job_dir: Option<&Path>,
    ) -> Result<Vec<Snapshot>> {
        let decode = |bytes: &[u8]| {
            snapshot::decode(bytes)
                .map_err(|e| EngineError::data(format!("cannot restore keyed state: {e}")))
        };
        let job_dir = checkpoint_dir.parent().unwrap_or(checkpoint_dir);
        // A file relative to the job directory: its local copy first, then the checkpoint's.
        let load = |rel: &Path, size: u64| -> Result<Snapshot> {
            if let Some(local) = local_job_dir {
                let copy = local.join(rel);
                match read_sized(&copy, size).and_then(|b| decode(&b)) {
                    Ok(s) => return Ok(s),
                    Err(e) => eprintln!(
                        "streamsql: the local copy '{}' of keyed state is not usable ({e}); \
                         restoring from the checkpoint directory",
                        copy.display()
                    ),
                }
            }
            decode(&read_sized(&job_dir.join(rel), size)?)
        };
        match &self.keyed {
            KeyedHandle::None => Ok(Vec::new()),
            KeyedHandle::Inline(b) => Ok(vec![decode(b)?]),
            KeyedHandle::File { path, size } => {
                let checkpoint = checkpoint_dir
                    .file_name()
                    .map_or_else(PathBuf::new, PathBuf::from);
                Ok(vec![load(&checkpoint.join(path), *size)?])
            }
            KeyedHandle::Chain(files) => files
                .iter()
                .map(|f| load(Path::new(&f.path), f.size))
                .collect(),
        }
    }
}

/// Reads `file`, which must have `size` bytes.
pub(crate) fn read_sized(file: &Path, size: u64) -> Result<Vec<u8>> {
    let bytes = streamsql_storage::file::read(file).map_err(|e| {
        crate::state::storage_error(&format!("cannot read keyed state '{}'", file.display()), e)
    })?;
    if bytes.len() as u64 != size {
        return Err(EngineError::data(format!(
            "keyed state '{}' has {} bytes, the checkpoint recorded {size}",
            file.display(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Whether `path` names a file of the job's `shared/` directory (`shared/<name>`).
fn is_shared_file_name(path: &str) -> bool {
    path.strip_prefix(SHARED_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && is_relative_file_name(name) && !name.contains('/'))
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
    pub inline_threshold: usize,
    pub write_buffer_size: usize,
}

/// The asynchronous part's result: the handle and its figures.
#[derive(Debug)]
pub struct Written {
    pub keyed: KeyedHandle,
    /// Bytes of the snapshot as written (Flink's full state size of a full snapshot: the size of
    /// what a restore reads).
    pub state_size: u64,
}

/// Writes (or inlines) a keyed snapshot in its file form.
pub fn write_keyed(snapshot: &EncodedSnapshot, settings: &WriteSettings) -> Result<Written> {
    let bytes = &snapshot.bytes;
    let state_size = bytes.len() as u64;
    let keyed = match &settings.checkpoint_dir {
        Some(dir) if bytes.len() >= settings.inline_threshold => {
            let rel = settings.file_name.clone();
            let path = dir.join(&rel);
            // Flink's write buffer is at least the inline threshold.
            let buffer = settings.write_buffer_size.max(settings.inline_threshold);
            streamsql_storage::file::write_atomic_buffered(&path, bytes, buffer).map_err(|e| {
                EngineError::Task {
                    message: format!("cannot write keyed state: {e}"),
                }
            })?;
            KeyedHandle::File {
                path: rel,
                size: bytes.len() as u64,
            }
        }
        _ => KeyedHandle::Inline(bytes.clone()),
    };
    Ok(Written { keyed, state_size })
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

    /// [`snapshot`] in its file form, snappy-compressed.
    fn encoded(records: usize) -> EncodedSnapshot {
        EncodedSnapshot::of(&snapshot(records), streamsql_storage::Compression::Snappy)
    }

    fn settings(dir: &Path, threshold: usize) -> WriteSettings {
        WriteSettings {
            checkpoint_dir: Some(dir.to_path_buf()),
            file_name: "taskowned/op-0".into(),
            inline_threshold: threshold,
            write_buffer_size: 4096,
        }
    }

    #[test]
    fn small_state_is_inlined_and_large_state_gets_a_file() {
        let dir = temp_dir("threshold");
        let small = write_keyed(&encoded(3), &settings(&dir, 20 * 1024)).unwrap();
        assert!(matches!(small.keyed, KeyedHandle::Inline(_)));
        assert!(!dir.join("taskowned").exists());
        let large = write_keyed(&encoded(5000), &settings(&dir, 1024)).unwrap();
        let KeyedHandle::File { path, size } = &large.keyed else {
            panic!("expected a file, got {:?}", large.keyed);
        };
        assert_eq!(path, "taskowned/op-0");
        assert_eq!(std::fs::metadata(dir.join(path)).unwrap().len(), *size);
        let state = SubtaskState {
            operator: b"pos".to_vec(),
            keyed: large.keyed.clone(),
            in_flight: Vec::new(),
        };
        let back = SubtaskState::decode(&state.encode()).unwrap();
        assert_eq!(back, state);
        assert!(back.load_keyed(&dir).unwrap() == vec![snapshot(5000)]);
        // Relocated: the same handle resolves against the new directory.
        let moved = temp_dir("threshold-moved");
        std::fs::remove_dir_all(&moved).unwrap();
        std::fs::rename(&dir, &moved).unwrap();
        assert!(back.load_keyed(&moved).unwrap() == vec![snapshot(5000)]);
        let _ = std::fs::remove_dir_all(&moved);
    }

    #[test]
    fn damaged_or_truncated_files_and_escaping_paths_are_refused() {
        let dir = temp_dir("damage");
        let w = write_keyed(&encoded(2000), &settings(&dir, 16)).unwrap();
        let state = SubtaskState {
            operator: Vec::new(),
            keyed: w.keyed,
            in_flight: Vec::new(),
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
                in_flight: Vec::new(),
            };
            assert!(SubtaskState::decode(&s.encode()).is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_verified_local_copy_is_read_first_and_a_damaged_one_is_bypassed() {
        let job = temp_dir("local-job");
        let chk = job.join("chk-4");
        let w = write_keyed(&encoded(2000), &settings(&chk, 16)).unwrap();
        let state = SubtaskState {
            operator: Vec::new(),
            keyed: w.keyed,
            in_flight: Vec::new(),
        };
        let local = temp_dir("local-copy");
        let copy = local.join("chk-4/taskowned/op-0");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        let primary = chk.join("taskowned/op-0");
        std::fs::copy(&primary, &copy).unwrap();
        std::fs::remove_file(&primary).unwrap();
        // Only the local copy exists.
        assert!(state.load_keyed_preferring(&chk, Some(&local)).unwrap() == vec![snapshot(2000)]);
        assert!(state.load_keyed(&chk).is_err());
        // A damaged local copy is passed over for the checkpoint's file.
        std::fs::copy(&copy, &primary).unwrap();
        let mut bytes = std::fs::read(&copy).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&copy, &bytes).unwrap();
        assert!(state.load_keyed_preferring(&chk, Some(&local)).unwrap() == vec![snapshot(2000)]);
        std::fs::remove_file(&copy).unwrap();
        assert!(state.load_keyed_preferring(&chk, Some(&local)).unwrap() == vec![snapshot(2000)]);
        let _ = std::fs::remove_dir_all(&job);
        let _ = std::fs::remove_dir_all(&local);
    }
}
