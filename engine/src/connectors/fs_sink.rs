//! The `filesystem` sink: appends rows as csv or json lines to part files in a directory.
//!
//! File names follow Flink's: each subtask writes `part-<uuid>-<subtask>-<n>` (one uuid per sink,
//! `n` counting the subtask's part files from 0). A part file is written as the hidden
//! `.part-<uuid>-<subtask>-<n>.inprogress.<uuid2>` and renamed to its final name when it is
//! committed, so a reader of the directory never sees a half-written visible file. Hidden files
//! are skipped by the filesystem source. The sink is append-only: it takes `+I` rows (the planner
//! rejects updating inputs before a job starts).
//!
//! A part file rolls (before a row, once it is larger than `sink.rolling-policy.file-size`,
//! default 128 MB; after `sink.rolling-policy.rollover-interval`, default 30 min) and closes at
//! every checkpoint barrier and at the end of input. What happens to a closed file depends on
//! whether the job checkpoints, as in Flink's `FileSink` two-phase commit:
//! - In a job without checkpoints, a rolled file is published at once and the end of input
//!   publishes the rest.
//! - In a job with checkpoints, from its start, a closed file is *pending*: at the barrier of
//!   checkpoint `c` every file closed
//!   since the previous barrier is recorded as pending for `c` in the snapshot, and only when `c`
//!   completes are the pending files of `c` and earlier checkpoints renamed to their final names.
//!   A row written after the last completed checkpoint is therefore never visible; after a failure
//!   the source re-produces it from the restored position.
//! - On restore the pending files of the restored checkpoint (which is complete) are committed;
//!   this is idempotent (a file already under its final name is left alone; one under neither name
//!   means data was lost and is an error). Every other in-progress file of the restored sink uuid
//!   and subtask (written after that checkpoint) is deleted, and the subtask keeps the restored
//!   uuid and part counter so new names never collide with published ones.
//! - Restored at another parallelism, each old subtask's state goes to exactly one new subtask
//!   (old `j` to new `j % n`), which does the same for it: every pending file is committed once,
//!   and a new subtask continues the numbering of the old one of its own index, if any.
//! - The end of input of a job without checkpoints publishes everything; with checkpoints, the
//!   job's final checkpoint does, once it is durable. Publishing earlier would duplicate rows if
//!   the process died before that checkpoint was written: a new run would start from the previous
//!   checkpoint (or from the beginning) and write the published rows again.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checkpoint::rescale::StateDistribution;
use crate::codec;
use crate::connectors::csv::CsvEncoder;
use crate::connectors::filesystem::{read_common, FileFormat};
use crate::connectors::json::JsonEncoder;
use crate::connectors::options::Options;
use crate::error::{EngineError, Result};
use crate::operator::{Operator, OperatorFactory, Output, TaskContext};
use crate::types::Schema;
use crate::value::{Change, RowKind};

/// Flink's default `sink.rolling-policy.file-size`.
pub const DEFAULT_FILE_SIZE: u64 = 128 << 20;
/// Flink's default `sink.rolling-policy.rollover-interval`.
pub const DEFAULT_ROLLOVER_MILLIS: u64 = 30 * 60 * 1000;

/// The infix between a part file's hidden name and the random suffix of the writer instance.
const IN_PROGRESS_INFIX: &str = ".inprogress.";

/// Builds the subtasks of one filesystem sink table.
#[derive(Debug)]
pub struct FileSystemSinkFactory {
    table: String,
    dir: PathBuf,
    format: FileFormat,
    schema: Schema,
    uuid: String,
    file_size: u64,
    rollover: Duration,
    /// `sink.parallelism`.
    pub parallelism: Option<usize>,
}

/// A random version-4 uuid in its usual text form, from a generator seeded by the clock and the
/// process (part file names must differ between runs, not be reproducible).
fn random_uuid(salt: &str) -> String {
    let mut b: [u8; 16] = crate::unique::random_bytes(salt);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::unique::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// True for a uuid in the form [`random_uuid`] writes (lower-case hex, 8-4-4-4-12).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Reads the sink's options and builds its factory.
pub fn create_sink(
    table: &str,
    schema: &Schema,
    options: &Options,
) -> Result<FileSystemSinkFactory> {
    let mut r = options.reader();
    let common = read_common(&mut r)?;
    let file_size = r
        .memory_size("sink.rolling-policy.file-size")?
        .unwrap_or(DEFAULT_FILE_SIZE)
        .max(1);
    let rollover = r
        .duration_millis("sink.rolling-policy.rollover-interval")?
        .unwrap_or(DEFAULT_ROLLOVER_MILLIS);
    let parallelism = crate::connectors::registry::sink_parallelism(&mut r)?;
    r.finish("filesystem")?;
    Ok(FileSystemSinkFactory {
        table: table.to_string(),
        dir: common.path,
        format: common.format,
        schema: schema.clone(),
        uuid: random_uuid(table),
        file_size,
        rollover: Duration::from_millis(rollover.max(1)),
        parallelism,
    })
}

impl OperatorFactory for FileSystemSinkFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Operator>> {
        let encoder = match &self.format {
            FileFormat::Csv(f) => Encoder::Csv(CsvEncoder::new(f.clone(), self.schema.types())),
            FileFormat::Json(f) => Encoder::Json(JsonEncoder::new(f.clone(), &self.schema)),
        };
        Ok(Box::new(FileSystemSink {
            table: self.table.clone(),
            dir: self.dir.clone(),
            subtask: ctx.subtask_index,
            name_prefix: name_prefix(&self.uuid, ctx.subtask_index),
            uuid: self.uuid.clone(),
            in_progress_suffix: format!(
                "{IN_PROGRESS_INFIX}{}",
                random_uuid(&ctx.subtask_index.to_string())
            ),
            next_part: 0,
            current: None,
            encoder,
            buffer: Vec::with_capacity(64 * 1024),
            file_size: self.file_size,
            rollover: self.rollover,
            checkpointed: ctx.state.checkpointing,
            unsnapshotted: Vec::new(),
            pending: BTreeMap::new(),
        }))
    }
}

/// The start of the final names of one subtask's part files: `part-<uuid>-<subtask>-`.
fn name_prefix(uuid: &str, subtask: usize) -> String {
    format!("part-{uuid}-{subtask}-")
}

enum Encoder {
    Csv(CsvEncoder),
    Json(JsonEncoder),
}

/// The part file being written.
struct PartFile {
    /// Its final (visible) file name.
    final_name: String,
    /// Its hidden file name while it is written and until it is committed.
    in_progress_name: String,
    in_progress: PathBuf,
    writer: BufWriter<File>,
    bytes: u64,
    opened: Instant,
}

/// A closed part file, complete and synced, not yet visible. Names are file names inside the
/// sink's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingFile {
    in_progress: String,
    final_name: String,
}

/// One subtask of the filesystem sink.
struct FileSystemSink {
    table: String,
    dir: PathBuf,
    subtask: usize,
    /// The uuid in this subtask's final names: the factory's, or the restored one.
    uuid: String,
    name_prefix: String,
    in_progress_suffix: String,
    next_part: u64,
    current: Option<PartFile>,
    encoder: Encoder,
    buffer: Vec<u8>,
    file_size: u64,
    rollover: Duration,
    /// The job checkpoints (set from the start, and by any snapshot or restore): closed files wait
    /// for a completed checkpoint.
    checkpointed: bool,
    /// Files closed (rolled) since the last barrier; they belong to the next checkpoint.
    unsnapshotted: Vec<PendingFile>,
    /// Files closed before the barrier of each checkpoint not yet known complete, by id.
    pending: BTreeMap<u64, Vec<PendingFile>>,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> EngineError {
    EngineError::io(
        format!("filesystem sink: cannot {what} '{}'", path.display()),
        e,
    )
}

/// Fsyncs `dir` so the renames, creations and deletions inside it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    streamsql_storage::file::sync_dir(dir).map_err(|e| match e {
        streamsql_storage::StorageError::Io { source, .. } => {
            io_error(dir, "sync directory", source)
        }
        other => EngineError::data(format!("filesystem sink: {other}")),
    })
}

/// Publishes a pending file under its final name. Idempotent: a file already published (by an
/// earlier commit of the same checkpoint, before a failure) is left alone; a file under neither
/// name is lost data.
fn commit(dir: &Path, file: &PendingFile) -> Result<()> {
    let from = dir.join(&file.in_progress);
    let to = dir.join(&file.final_name);
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::symlink_metadata(&to) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(EngineError::data(format!(
                "filesystem sink: the part file '{}' of a completed checkpoint is lost: neither \
                 '{}' nor '{}' exists",
                file.final_name,
                from.display(),
                to.display()
            )))
                }
                Err(e) => Err(io_error(&to, "inspect", e)),
            }
        }
        Err(e) => Err(io_error(&to, "publish", e)),
    }
}

/// Splits `<digits><rest>` into the part number and `rest`; `None` unless there is at least one
/// digit and the number fits a u64 (no sign, so `+1` is not a part number).
fn split_part_number(s: &str) -> Option<(u64, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let n = s[..end].parse().ok()?;
    Some((n, &s[end..]))
}

/// Deletes the in-progress files of the subtask whose final names start with `prefix` (after a
/// restore, every one left was written after the restored checkpoint), and returns the highest
/// part number among its published files.
fn discard_in_progress(dir: &Path, prefix: &str) -> Result<(bool, Option<u64>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((false, None)),
        Err(e) => return Err(io_error(dir, "list", e)),
    };
    let mut deleted = false;
    let mut highest: Option<u64> = None;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_prefix(prefix)) {
            let is_ours = split_part_number(rest)
                .is_some_and(|(_, tail)| tail.starts_with(IN_PROGRESS_INFIX));
            if is_ours {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => deleted = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path, "delete", e)),
                }
            }
        } else if let Some(rest) = name.strip_prefix(prefix) {
            if let Some((n, "")) = split_part_number(rest) {
                highest = Some(highest.map_or(n, |h| h.max(n)));
            }
        }
    }
    Ok((deleted, highest))
}

/// What a snapshot of one sink subtask holds.
///
/// Layout after the codec version byte: directory, uuid (strings), subtask, next part number
/// (varints), the number of checkpoints with pending files, then per checkpoint in increasing id
/// order its id, its file count and each file's in-progress and final name.
#[derive(Debug, PartialEq, Eq)]
struct SinkState {
    dir: PathBuf,
    uuid: String,
    subtask: usize,
    next_part: u64,
    pending: BTreeMap<u64, Vec<PendingFile>>,
}

impl SinkState {
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let dir = self.dir.to_str().ok_or_else(|| {
            EngineError::data(format!(
                "filesystem sink: the path '{}' is not valid UTF-8 and cannot be checkpointed",
                self.dir.display()
            ))
        })?;
        codec::put_version(out);
        codec::put_str(out, dir);
        codec::put_str(out, &self.uuid);
        codec::put_uvarint(out, self.subtask as u64);
        codec::put_uvarint(out, self.next_part);
        codec::put_uvarint(out, self.pending.len() as u64);
        for (id, files) in &self.pending {
            codec::put_uvarint(out, *id);
            codec::put_uvarint(out, files.len() as u64);
            for f in files {
                codec::put_str(out, &f.in_progress);
                codec::put_str(out, &f.final_name);
            }
        }
        Ok(())
    }

    /// Decodes and validates a blob of [`SinkState::encode`]: every name must be one this subtask
    /// could have written, so a corrupt blob can never rename or delete anything else.
    fn decode(bytes: &[u8]) -> Result<SinkState> {
        let mut input = bytes;
        codec::check_version(&mut input)?;
        let dir = codec::get_str(&mut input)?;
        if dir.is_empty() {
            return Err(codec::corrupt("filesystem sink state has an empty path"));
        }
        let uuid = codec::get_str(&mut input)?;
        if !is_uuid(uuid) {
            return Err(codec::corrupt(format!(
                "filesystem sink state has an invalid uuid '{uuid}'"
            )));
        }
        let subtask = codec::get_len(&mut input)?;
        let next_part = codec::get_uvarint(&mut input)?;
        let prefix = name_prefix(uuid, subtask);
        let checkpoints = codec::get_len(&mut input)?;
        let mut pending = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut last_id = None;
        for _ in 0..checkpoints {
            let id = codec::get_uvarint(&mut input)?;
            if last_id.is_some_and(|last| id <= last) {
                return Err(codec::corrupt(format!(
                    "filesystem sink state lists checkpoint {id} out of order"
                )));
            }
            last_id = Some(id);
            let count = codec::get_len(&mut input)?;
            if count == 0 {
                return Err(codec::corrupt(format!(
                    "filesystem sink state lists checkpoint {id} without files"
                )));
            }
            // Each file takes at least two bytes, which bounds the allocation by the input.
            let mut files = Vec::with_capacity(count.min(input.len() / 2));
            for _ in 0..count {
                let in_progress = codec::get_str(&mut input)?;
                let final_name = codec::get_str(&mut input)?;
                let valid_final = final_name
                    .strip_prefix(prefix.as_str())
                    .and_then(split_part_number)
                    .is_some_and(|(n, tail)| tail.is_empty() && n < next_part);
                let valid_in_progress = in_progress
                    .strip_prefix('.')
                    .and_then(|n| n.strip_prefix(final_name))
                    .and_then(|n| n.strip_prefix(IN_PROGRESS_INFIX))
                    .is_some_and(|suffix| {
                        !suffix.is_empty()
                            && suffix
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !valid_final || !valid_in_progress || !seen.insert(final_name) {
                    return Err(codec::corrupt(format!(
                        "filesystem sink state lists an invalid pending file '{in_progress}' -> \
                         '{final_name}'"
                    )));
                }
                files.push(PendingFile {
                    in_progress: in_progress.to_string(),
                    final_name: final_name.to_string(),
                });
            }
            pending.insert(id, files);
        }
        codec::expect_end(input)?;
        Ok(SinkState {
            dir: PathBuf::from(dir),
            uuid: uuid.to_string(),
            subtask,
            next_part,
            pending,
        })
    }
}

impl FileSystemSink {
    fn open(&mut self) -> Result<&mut PartFile> {
        if self.current.is_none() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| io_error(&self.dir, "create directory", e))?;
            let final_name = format!("{}{}", self.name_prefix, self.next_part);
            self.next_part = self.next_part.checked_add(1).ok_or_else(|| {
                EngineError::internal("filesystem sink: part file counter overflow")
            })?;
            let in_progress_name = format!(".{final_name}{}", self.in_progress_suffix);
            let in_progress = self.dir.join(&in_progress_name);
            // Never truncate an existing file: names are unique, so one existing is a bug.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&in_progress)
                .map_err(|e| io_error(&in_progress, "create", e))?;
            self.current = Some(PartFile {
                final_name,
                in_progress_name,
                in_progress,
                writer: BufWriter::with_capacity(256 * 1024, file),
                bytes: 0,
                opened: Instant::now(),
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| EngineError::internal("part file missing right after opening it"))
    }

    /// Flushes, syncs and closes the current part file, still under its hidden name.
    fn close_current(&mut self) -> Result<Option<PendingFile>> {
        let Some(part) = self.current.take() else {
            return Ok(None);
        };
        let file = part
            .writer
            .into_inner()
            .map_err(|e| io_error(&part.in_progress, "write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_error(&part.in_progress, "sync", e))?;
        Ok(Some(PendingFile {
            in_progress: part.in_progress_name,
            final_name: part.final_name,
        }))
    }

    /// Closes the current part file by the rolling policy: published at once while the job has
    /// not checkpointed, else kept for the next checkpoint.
    fn roll(&mut self) -> Result<()> {
        if let Some(file) = self.close_current()? {
            if self.checkpointed {
                self.unsnapshotted.push(file);
            } else {
                commit(&self.dir, &file)?;
            }
        }
        Ok(())
    }

    fn rollover_due(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|p| p.opened.elapsed() >= self.rollover)
    }

    /// Appends the buffered rows to the current part file (opening one if needed).
    fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let part = self.open()?;
        let result = part.writer.write_all(&buffer);
        part.bytes += buffer.len() as u64;
        let path = part.in_progress.clone();
        self.buffer = buffer;
        self.buffer.clear();
        result.map_err(|e| io_error(&path, "write", e))
    }
}

impl Operator for FileSystemSink {
    fn on_batch(&mut self, _input: usize, batch: Vec<Change>, _out: &mut Output) -> Result<()> {
        if self.rollover_due() {
            self.roll()?;
        }
        for change in &batch {
            if change.kind != RowKind::Insert {
                return Err(EngineError::internal(format!(
                    "the filesystem sink of table '{}' is append-only but received a {} change",
                    self.table,
                    change.kind.short()
                )));
            }
            // Flink's DefaultRollingPolicy: before a row, roll when the part file is already
            // larger than the limit, so files end on whole rows.
            let size = self.current.as_ref().map_or(0, |p| p.bytes) + self.buffer.len() as u64;
            if size > self.file_size {
                self.write_buffer()?;
                self.roll()?;
            }
            match &mut self.encoder {
                Encoder::Csv(e) => e.encode(&change.row, &mut self.buffer),
                Encoder::Json(e) => e.encode(&change.row, &mut self.buffer),
            }
        }
        self.write_buffer()
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        if self.rollover_due() {
            self.roll()?;
        }
        Ok(())
    }

    fn on_end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        self.write_buffer()?;
        let closed = self.close_current()?;
        if self.checkpointed {
            // With checkpoints, the job's final checkpoint publishes the rest: publishing here
            // would duplicate rows if the job died before that checkpoint became durable.
            self.unsnapshotted.extend(closed);
            return Ok(());
        }
        let mut published = false;
        for files in self.pending.values() {
            for f in files {
                commit(&self.dir, f)?;
                published = true;
            }
        }
        self.pending.clear();
        for f in self.unsnapshotted.iter().chain(closed.as_ref()) {
            commit(&self.dir, f)?;
            published = true;
        }
        self.unsnapshotted.clear();
        if published {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<u8>> {
        self.checkpointed = true;
        self.write_buffer()?;
        let closed = self.close_current()?;
        let mut files = std::mem::take(&mut self.unsnapshotted);
        files.extend(closed);
        if !files.is_empty() {
            // The hidden files must survive a crash for the checkpoint to be restorable.
            sync_dir(&self.dir)?;
            self.pending.entry(checkpoint_id).or_default().extend(files);
        }
        let state = SinkState {
            dir: self.dir.clone(),
            uuid: self.uuid.clone(),
            subtask: self.subtask,
            next_part: self.next_part,
            pending: std::mem::take(&mut self.pending),
        };
        let mut out = Vec::with_capacity(128);
        let encoded = state.encode(&mut out);
        self.pending = state.pending;
        encoded.map(|()| out)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let mut published = false;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > checkpoint_id {
                break;
            }
            // Removed only once all its files are published: a failure leaves the rest to retry
            // (commits are idempotent).
            for f in entry.get() {
                commit(&self.dir, f)?;
                published = true;
            }
            entry.remove();
        }
        if published {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// An empty blob (no state was recorded for this operator) restores nothing.
    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        self.restore_rescaled(&[state])
    }

    /// Every old subtask's state goes to exactly one new subtask: its pending files are
    /// committed once and its stray in-progress files deleted once.
    fn state_distribution(&self) -> StateDistribution {
        StateDistribution::RoundRobin
    }

    /// The states of the old subtasks assigned to this one (one at the same parallelism).
    fn restore_rescaled(&mut self, states: &[&[u8]]) -> Result<()> {
        if self.current.is_some() || !self.pending.is_empty() || !self.unsnapshotted.is_empty() {
            return Err(EngineError::internal(
                "filesystem sink: state restored into a subtask that already wrote files",
            ));
        }
        self.checkpointed = true;
        for state in states.iter().filter(|s| !s.is_empty()) {
            self.restore_one(&SinkState::decode(state)?)?;
        }
        Ok(())
    }
}

impl FileSystemSink {
    /// Restores the state of one old subtask: commits what it prepared and deletes what it wrote
    /// after the restored checkpoint.
    fn restore_one(&mut self, state: &SinkState) -> Result<()> {
        // The restored checkpoint is complete, so everything it prepared is committed.
        let mut changed = false;
        for files in state.pending.values() {
            for f in files {
                commit(&state.dir, f)?;
                changed = true;
            }
        }
        let prefix = name_prefix(&state.uuid, state.subtask);
        let (deleted, highest) = discard_in_progress(&state.dir, &prefix)?;
        if changed || deleted {
            sync_dir(&state.dir)?;
        }
        // Keeping the uuid continues the subtask's numbering; the counter also skips any part
        // published later than the restored checkpoint (restoring an older one), so a new file
        // never replaces a visible one. State of another subtask index (a rescaled job) keeps
        // the fresh uuid, whose names cannot collide with any existing file.
        if state.subtask == self.subtask {
            let after_highest = highest.map_or(0, |h| h.saturating_add(1));
            self.next_part = state.next_part.max(after_highest);
            self.uuid = state.uuid.clone();
            self.name_prefix = prefix;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a checkpointed job: end of input, then the final checkpoint completes.
    fn end_with_final_checkpoint(op: &mut dyn Operator, out: &mut Output) {
        op.on_end_of_input(out).unwrap();
        op.snapshot_state(FINAL).unwrap();
        op.notify_checkpoint_complete(FINAL).unwrap();
    }

    const FINAL: u64 = crate::runtime::checkpointing::FINAL_CHECKPOINT;
    use crate::metrics::TaskMetrics;
    use crate::types::{DataType, Field};
    use crate::value::Value;
    use std::sync::Arc;

    fn ctx(subtask: usize) -> TaskContext {
        TaskContext {
            operator_id: 2,
            operator_name: "sink".into(),
            subtask_index: subtask,
            parallelism: 2,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("streamsql-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int),
            Field::new("s", DataType::STRING),
        ])
    }

    fn rows(n: i32) -> Vec<Change> {
        (0..n)
            .map(|i| Change::insert(vec![Value::Int(i), Value::string("a b")]))
            .collect()
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_in_progress_then_publishes() {
        let d = temp_dir("csv");
        let o = Options::from_pairs([("path", d.to_str().unwrap()), ("format", "csv")]);
        let f = create_sink("out", &schema(), &o).unwrap();
        let mut op = f.create(&ctx(1)).unwrap();
        let mut out = Output::new();
        op.on_batch(0, rows(2), &mut out).unwrap();
        let names = visible(&d);
        assert_eq!(names.len(), 1);
        assert!(
            names[0].starts_with(".part-") && names[0].contains("-1-0.inprogress."),
            "{names:?}"
        );
        op.on_end_of_input(&mut out).unwrap();
        let names = visible(&d);
        assert!(
            names[0].starts_with("part-") && names[0].ends_with("-1-0"),
            "{names:?}"
        );
        let text = std::fs::read_to_string(d.join(&names[0])).unwrap();
        assert_eq!(text, "0,\"a b\"\n1,\"a b\"\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rolls_by_size_and_writes_json() {
        let d = temp_dir("json");
        let o = Options::from_pairs([
            ("path", d.to_str().unwrap()),
            ("format", "json"),
            ("sink.rolling-policy.file-size", "20b"),
        ]);
        let f = create_sink("out", &schema(), &o).unwrap();
        let mut op = f.create(&ctx(0)).unwrap();
        let mut out = Output::new();
        op.on_batch(0, rows(3), &mut out).unwrap();
        op.on_end_of_input(&mut out).unwrap();
        let names = visible(&d);
        assert_eq!(names.len(), 2, "{names:?}");
        let text = std::fs::read_to_string(d.join(&names[0])).unwrap();
        assert_eq!(text, "{\"id\":0,\"s\":\"a b\"}\n{\"id\":1,\"s\":\"a b\"}\n");
        let text = std::fs::read_to_string(d.join(&names[1])).unwrap();
        assert_eq!(text, "{\"id\":2,\"s\":\"a b\"}\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rejects_updates_and_bad_options() {
        let d = temp_dir("upd");
        let o = Options::from_pairs([("path", d.to_str().unwrap()), ("format", "csv")]);
        let f = create_sink("out", &schema(), &o).unwrap();
        let mut op = f.create(&ctx(0)).unwrap();
        let mut out = Output::new();
        let batch = vec![Change::new(
            RowKind::Delete,
            vec![Value::Int(1), Value::Null],
        )];
        assert!(op.on_batch(0, batch, &mut out).is_err());
        let o = Options::from_pairs([
            ("path", "/x"),
            ("format", "csv"),
            ("sink.rolling-policy.file-size", "big"),
        ]);
        let err = create_sink("out", &schema(), &o).unwrap_err();
        assert!(err.to_string().contains("'big'"));
        let _ = std::fs::remove_dir_all(&d);
    }

    fn rows_from(from: i32, to: i32) -> Vec<Change> {
        (from..to)
            .map(|i| Change::insert(vec![Value::Int(i), Value::string("x")]))
            .collect()
    }

    fn csv_sink(d: &Path) -> FileSystemSinkFactory {
        let o = Options::from_pairs([("path", d.to_str().unwrap()), ("format", "csv")]);
        create_sink("out", &schema(), &o).unwrap()
    }

    /// The ids in the visible files of `dir`, sorted (duplicates kept).
    fn visible_ids(dir: &Path) -> Vec<i32> {
        let mut ids = Vec::new();
        for name in visible(dir) {
            if name.starts_with('.') {
                continue;
            }
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            for line in text.lines() {
                ids.push(line.split(',').next().unwrap().parse().unwrap());
            }
        }
        ids.sort_unstable();
        ids
    }

    fn hidden(dir: &Path) -> Vec<String> {
        visible(dir)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn commits_only_completed_checkpoints_and_recovers_exactly_once() {
        let d = temp_dir("ckpt");
        let mut out = Output::new();
        let mut op = csv_sink(&d).create(&ctx(1)).unwrap();
        op.on_batch(0, rows_from(0, 3), &mut out).unwrap();
        op.snapshot_state(1).unwrap();
        op.on_batch(0, rows_from(3, 5), &mut out).unwrap();
        assert_eq!(visible_ids(&d), Vec::<i32>::new());
        op.notify_checkpoint_complete(1).unwrap();
        assert_eq!(visible_ids(&d), vec![0, 1, 2]);
        let blob2 = op.snapshot_state(2).unwrap();
        assert_eq!(
            op.snapshot_state(2).unwrap(),
            blob2,
            "snapshots are deterministic"
        );
        op.on_batch(0, rows_from(5, 7), &mut out).unwrap();
        // Checkpoint 3 is taken but never completes before the failure.
        op.snapshot_state(3).unwrap();
        op.on_batch(0, rows_from(7, 8), &mut out).unwrap();
        assert_eq!(visible_ids(&d), vec![0, 1, 2]);
        drop(op);
        assert_eq!(hidden(&d).len(), 3, "{:?}", visible(&d));

        // A new run (new factory uuid) restores checkpoint 2.
        let f = csv_sink(&d);
        let mut op = f.create(&ctx(1)).unwrap();
        op.restore_state(&blob2).unwrap();
        assert_eq!(visible_ids(&d), vec![0, 1, 2, 3, 4]);
        assert_eq!(hidden(&d), Vec::<String>::new());
        let before = visible(&d);
        // The source replays from checkpoint 2's position.
        op.on_batch(0, rows_from(5, 9), &mut out).unwrap();
        end_with_final_checkpoint(&mut *op, &mut out);
        assert_eq!(visible_ids(&d), (0..9).collect::<Vec<_>>());
        assert_eq!(hidden(&d), Vec::<String>::new());
        // The restored uuid and counter continue the subtask's numbering.
        let names = visible(&d);
        assert_eq!(names.len(), 3, "{names:?}");
        let uuid_prefix = before[0].strip_suffix("0").unwrap();
        assert_eq!(
            before,
            vec![format!("{uuid_prefix}0"), format!("{uuid_prefix}1")]
        );
        // Parts 2 and 3 were discarded unpublished, so numbering resumes at the checkpoint's.
        assert_eq!(names[2], format!("{uuid_prefix}2"));
        assert!(uuid_prefix.ends_with("-1-"), "{uuid_prefix}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn restore_is_idempotent_and_detects_lost_files() {
        let d = temp_dir("idem");
        let mut out = Output::new();
        let f = csv_sink(&d);
        let mut op = f.create(&ctx(0)).unwrap();
        op.on_batch(0, rows_from(0, 2), &mut out).unwrap();
        let blob = op.snapshot_state(7).unwrap();
        op.on_batch(0, rows_from(2, 4), &mut out).unwrap();
        drop(op);
        for _ in 0..2 {
            let mut op = f.create(&ctx(0)).unwrap();
            op.restore_state(&blob).unwrap();
            assert_eq!(visible_ids(&d), vec![0, 1]);
            assert_eq!(hidden(&d), Vec::<String>::new());
        }
        // A committed file that disappeared is lost data, not silently skipped.
        for name in visible(&d) {
            std::fs::remove_file(d.join(name)).unwrap();
        }
        let mut op = f.create(&ctx(0)).unwrap();
        let err = op.restore_state(&blob).unwrap_err();
        assert!(matches!(err, EngineError::Data { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rolled_files_wait_for_their_checkpoint() {
        let d = temp_dir("rollckpt");
        let o = Options::from_pairs([
            ("path", d.to_str().unwrap()),
            ("format", "csv"),
            ("sink.rolling-policy.file-size", "5b"),
        ]);
        let mut op = create_sink("out", &schema(), &o)
            .unwrap()
            .create(&ctx(0))
            .unwrap();
        let mut out = Output::new();
        op.snapshot_state(1).unwrap();
        op.on_batch(0, rows_from(0, 3), &mut out).unwrap();
        assert_eq!(
            visible_ids(&d),
            Vec::<i32>::new(),
            "rolled but not checkpointed"
        );
        op.snapshot_state(2).unwrap();
        op.on_batch(0, rows_from(3, 4), &mut out).unwrap();
        op.notify_checkpoint_complete(1).unwrap();
        assert_eq!(visible_ids(&d), Vec::<i32>::new());
        op.notify_checkpoint_complete(2).unwrap();
        assert_eq!(visible_ids(&d), vec![0, 1, 2]);
        // Notifications repeat harmlessly; the end of input publishes the rest.
        op.notify_checkpoint_complete(2).unwrap();
        end_with_final_checkpoint(&mut *op, &mut out);
        assert_eq!(visible_ids(&d), vec![0, 1, 2, 3]);
        assert_eq!(visible(&d).len(), 3, "{:?}", visible(&d));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_checkpointing_job_publishes_nothing_before_a_checkpoint_completes() {
        let d = temp_dir("ckptjob");
        let o = Options::from_pairs([
            ("path", d.to_str().unwrap()),
            ("format", "csv"),
            ("sink.rolling-policy.file-size", "5b"),
        ]);
        let mut c = ctx(0);
        c.state.checkpointing = true;
        let mut op = create_sink("out", &schema(), &o)
            .unwrap()
            .create(&c)
            .unwrap();
        let mut out = Output::new();
        // Rolled files and the end of input, all before any barrier reached the sink.
        op.on_batch(0, rows_from(0, 3), &mut out).unwrap();
        op.on_end_of_input(&mut out).unwrap();
        assert_eq!(visible_ids(&d), Vec::<i32>::new());
        // The final checkpoint is written: only its completion publishes.
        op.snapshot_state(FINAL).unwrap();
        assert_eq!(visible_ids(&d), Vec::<i32>::new());
        op.notify_checkpoint_complete(FINAL).unwrap();
        assert_eq!(visible_ids(&d), vec![0, 1, 2]);
        assert_eq!(hidden(&d), Vec::<String>::new());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn end_of_input_publishes_pending_files() {
        let d = temp_dir("eoi");
        let mut out = Output::new();
        let mut op = csv_sink(&d).create(&ctx(0)).unwrap();
        op.on_batch(0, rows_from(0, 2), &mut out).unwrap();
        op.snapshot_state(1).unwrap();
        op.on_batch(0, rows_from(2, 3), &mut out).unwrap();
        end_with_final_checkpoint(&mut *op, &mut out);
        assert_eq!(visible_ids(&d), vec![0, 1, 2]);
        assert_eq!(hidden(&d), Vec::<String>::new());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn state_of_another_subtask_commits_but_keeps_its_own_names() {
        let d = temp_dir("rescale");
        let mut out = Output::new();
        let mut op = csv_sink(&d).create(&ctx(1)).unwrap();
        op.on_batch(0, rows_from(0, 2), &mut out).unwrap();
        let blob = op.snapshot_state(1).unwrap();
        op.on_batch(0, rows_from(2, 3), &mut out).unwrap();
        drop(op);
        // Another subtask's in-progress file must survive this subtask's clean-up.
        let mut other = csv_sink(&d).create(&ctx(0)).unwrap();
        other.on_batch(0, rows_from(10, 11), &mut out).unwrap();
        let mut op = csv_sink(&d).create(&ctx(0)).unwrap();
        op.restore_state(&blob).unwrap();
        assert_eq!(visible_ids(&d), vec![0, 1]);
        assert_eq!(hidden(&d).len(), 1);
        assert!(hidden(&d)[0].contains("-0-0.inprogress."));
        op.on_batch(0, rows_from(2, 3), &mut out).unwrap();
        end_with_final_checkpoint(&mut *op, &mut out);
        end_with_final_checkpoint(&mut *other, &mut out);
        assert_eq!(visible_ids(&d), vec![0, 1, 2, 10]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_state_is_refused() {
        let d = temp_dir("corrupt");
        let mut out = Output::new();
        let f = csv_sink(&d);
        let mut op = f.create(&ctx(0)).unwrap();
        op.on_batch(0, rows_from(0, 2), &mut out).unwrap();
        let blob = op.snapshot_state(1).unwrap();
        assert_eq!(blob[0], codec::CODEC_VERSION);
        let state = SinkState::decode(&blob).unwrap();
        assert_eq!(state.pending.len(), 1);
        assert_eq!(state.next_part, 1);
        let refused = |bytes: &[u8]| {
            let mut op = f.create(&ctx(0)).unwrap();
            let err = op.restore_state(bytes).unwrap_err();
            assert!(matches!(err, EngineError::Data { .. }), "{err}");
        };
        for cut in 1..blob.len() {
            refused(&blob[..cut]);
        }
        let mut longer = blob.clone();
        longer.push(0);
        refused(&longer);
        let mut version = blob.clone();
        version[0] = 99;
        refused(&version);
        // A pending name that points outside the subtask's files.
        let mut bad = state;
        bad.pending.get_mut(&1).unwrap()[0].final_name = "../etc/passwd".into();
        let mut bytes = Vec::new();
        bad.encode(&mut bytes).unwrap();
        refused(&bytes);
        // A part number the counter has not reached yet.
        bad.pending.get_mut(&1).unwrap()[0] = PendingFile {
            in_progress: format!(".part-{}-0-5.inprogress.abc", bad.uuid),
            final_name: format!("part-{}-0-5", bad.uuid),
        };
        bytes.clear();
        bad.encode(&mut bytes).unwrap();
        refused(&bytes);
        // Nothing was renamed or deleted by the refused blobs.
        assert_eq!(hidden(&d).len(), 1);
        assert_eq!(visible_ids(&d), Vec::<i32>::new());
        let _ = std::fs::remove_dir_all(&d);
    }
}
