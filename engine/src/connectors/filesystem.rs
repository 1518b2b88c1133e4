//! The `filesystem` source: bounded reading of csv or json files.
//!
//! `path` names a file or a directory; a directory contributes every regular file in it, sorted
//! by name, except hidden files (names starting with `.` or `_`), as Flink's file enumerator does.
//! A `file://` prefix is accepted. Files are split over the source subtasks: file `i` of the
//! sorted list goes to subtask `i % parallelism`. Each subtask reads its files one after the
//! other, line by line through one reused buffer, and finishes when they are exhausted.
//!
//! A subtask's position is the list of splits it has left (Flink's `FileSourceSplit`s): the file
//! being read at the offset of its next record, then the files not yet opened. Restored at another
//! parallelism, the splits of every old subtask are dealt out to the new ones in turn, so each is
//! read to its end exactly once. A position is refused when the listing of files changed.
//! Unbounded reading (`source.monitor-interval`) is not supported.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::connectors::csv::{CsvDecoder, CsvFormat, Decoded, Split};
use crate::connectors::json::{JsonDecoded, JsonDecoder, JsonFormat};
use crate::connectors::options::{OptionReader, Options};
use crate::connectors::{Source, SourceFactory, SourceStatus};
use crate::error::{EngineError, Result};
use crate::metrics::TaskMetrics;
use crate::operator::{Output, TaskContext};
use crate::types::Schema;
use crate::value::Change;

/// The file formats the filesystem connector reads and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Csv(CsvFormat),
    Json(JsonFormat),
}

/// Options of Flink's filesystem connector for features streamsql does not implement (partitioned
/// tables, partition commit, compaction, statistics, shuffling, inactivity rolling). They are
/// rejected with a clear error rather than silently ignored.
const UNSUPPORTED_FILESYSTEM_OPTIONS: [&str; 16] = [
    "partition.default-name",
    "source.path.regex-pattern",
    "source.report-statistics",
    "sink.shuffle-by-partition.enable",
    "sink.partition-commit.trigger",
    "sink.partition-commit.delay",
    "sink.partition-commit.watermark-time-zone",
    "sink.partition-commit.policy.kind",
    "sink.partition-commit.policy.class",
    "sink.partition-commit.success-file.name",
    "partition.time-extractor.timestamp-pattern",
    "auto-compaction",
    "compaction.file-size",
    "sink.rolling-policy.inactivity-interval",
    "partition.time-extractor.kind",
    "partition.time-extractor.class",
];

/// Watermark options the planner handles; every source accepts them.
pub(crate) const SCAN_WATERMARK_OPTIONS: [&str; 5] = [
    "scan.watermark.emit.strategy",
    "scan.watermark.alignment.group",
    "scan.watermark.alignment.max-drift",
    "scan.watermark.alignment.update-interval",
    "scan.watermark.idle-timeout",
];

/// The options shared by the filesystem source and sink: `path`, `format` and the format's.
#[derive(Clone, Debug)]
pub(crate) struct FileSystemOptions {
    pub path: PathBuf,
    pub format: FileFormat,
}

/// Reads `path`, `format` and the format's options; Flink's filesystem connector accepts the
/// options of both directions on either.
pub(crate) fn read_common(r: &mut OptionReader<'_>) -> Result<FileSystemOptions> {
    r.require(&["path", "format"])?;
    let path = r.string("path").unwrap_or_default();
    let path = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
    let format_name = r.string("format").unwrap_or_default();
    let format = match format_name {
        "csv" => FileFormat::Csv(CsvFormat::from_options(r)?),
        "json" => FileFormat::Json(JsonFormat::from_options(r)?),
        other => {
            let available = ["csv", "json"];
            return Err(EngineError::option(
                format!(
                    "Could not find any format factory for identifier '{other}' in the classpath.\n\nAvailable factory identifiers are:\n\n{}",
                    available.join("\n")
                ),
                crate::connectors::options::did_you_mean(other, &available)
                    .map(|s| format!("did you mean '{s}'?")),
            ));
        }
    };
    for key in UNSUPPORTED_FILESYSTEM_OPTIONS {
        if r.contains(key) {
            return Err(EngineError::option(
                format!(
                    "Option '{key}' of the filesystem connector is not supported: partitioned tables, partition commit, compaction and inactivity-based rolling are not implemented"
                ),
                Some(format!("remove '{key}' from the table's WITH options")),
            ));
        }
    }
    // Options of the other direction: Flink accepts them on either side, since one table may be
    // both read and written; each direction reads its own.
    r.accept("sink.parallelism");
    r.accept("sink.rolling-policy.file-size");
    r.accept("sink.rolling-policy.rollover-interval");
    r.accept("sink.rolling-policy.check-interval");
    r.accept("source.monitor-interval");
    Ok(FileSystemOptions { path, format })
}

/// Builds the filesystem source of table `table`.
pub fn create_source(
    table: &str,
    schema: &Schema,
    options: &Options,
) -> Result<FileSystemSourceFactory> {
    let mut r = options.reader();
    let common = read_common(&mut r)?;
    if r.string("source.monitor-interval").is_some() {
        return Err(EngineError::option(
            "'source.monitor-interval' is not supported: the filesystem source reads its files once (bounded)",
            Some("remove 'source.monitor-interval' to read the files present when the job starts".to_string()),
        ));
    }
    for key in SCAN_WATERMARK_OPTIONS {
        r.accept(key);
    }
    r.finish("filesystem")?;
    Ok(FileSystemSourceFactory {
        table: table.to_string(),
        schema: schema.clone(),
        path: common.path,
        format: common.format,
    })
}

/// Creates the per-subtask readers of one filesystem table.
#[derive(Clone, Debug)]
pub struct FileSystemSourceFactory {
    table: String,
    schema: Schema,
    path: PathBuf,
    format: FileFormat,
}

impl FileSystemSourceFactory {
    /// The files of this table, sorted by name.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        list_files(&self.table, &self.path)
    }
}

/// The files under `path`, as Flink enumerates them: the file itself, or the visible regular
/// files of a directory sorted by name.
pub fn list_files(table: &str, path: &Path) -> Result<Vec<PathBuf>> {
    let ctx = || format!("table '{table}': cannot read path '{}'", path.display());
    let meta = std::fs::metadata(path).map_err(|e| EngineError::io(ctx(), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| EngineError::io(ctx(), e))? {
        let entry = entry.map_err(|e| EngineError::io(ctx(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| EngineError::io(ctx(), e))?;
        if file_type.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

impl SourceFactory for FileSystemSourceFactory {
    fn create(&self, ctx: &TaskContext) -> Result<Box<dyn Source>> {
        let parallelism = ctx.parallelism.max(1);
        let listing = self.files()?;
        let files: Vec<FileSplit> = listing
            .iter()
            .enumerate()
            .filter(|(i, _)| i % parallelism == ctx.subtask_index)
            .map(|(_, f)| FileSplit::whole(f.clone()))
            .collect();
        let decoder = match &self.format {
            FileFormat::Csv(f) => Decoder::Csv(CsvDecoder::new(f.clone(), self.schema.types())),
            FileFormat::Json(f) => Decoder::Json(JsonDecoder::new(f.clone(), &self.schema)),
        };
        Ok(Box::new(FileSource {
            table: self.table.clone(),
            columns: self.schema.fields.iter().map(|f| f.name.clone()).collect(),
            files,
            next_file: 0,
            current: None,
            subtask: ctx.subtask_index,
            parallelism,
            listing,
            decoder,
            record: Vec::with_capacity(256),
            metrics: ctx.metrics.clone(),
        }))
    }
}

enum Decoder {
    Csv(CsvDecoder),
    Json(JsonDecoder),
}

/// One file being read.
struct OpenFile {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line: Vec<u8>,
    /// Number of the last line read (1-based).
    line_no: u64,
    /// Bytes of the file consumed so far: where the next record starts.
    offset: u64,
}

impl OpenFile {
    /// Reads the next line without its terminator into `self.line`; false at the end.
    fn next_line(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(false);
        }
        self.offset += n as u64;
        self.line_no += 1;
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
        }
        Ok(true)
    }
}

/// What reading one record of a file gave: `None` at the end of the file, else the row, if any
/// (comments, blank lines and skipped bad records give none).
type ReadOutcome = Option<Option<crate::value::Row>>;

/// What is left to read of one file: Flink's `FileSourceSplit` with its checkpointed position.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileSplit {
    path: PathBuf,
    /// Where the next record starts, in bytes.
    offset: u64,
    /// The number of the last line read before `offset`.
    line_no: u64,
}

impl FileSplit {
    fn whole(path: PathBuf) -> Self {
        FileSplit {
            path,
            offset: 0,
            line_no: 0,
        }
    }
}

/// A subtask of the filesystem source.
struct FileSource {
    table: String,
    columns: Vec<String>,
    /// The splits this subtask reads, in order.
    files: Vec<FileSplit>,
    next_file: usize,
    current: Option<OpenFile>,
    subtask: usize,
    parallelism: usize,
    /// Every file of the table when the job started, sorted: positions are checked against it.
    listing: Vec<PathBuf>,
    decoder: Decoder,
    /// A csv record that spans several lines.
    record: Vec<u8>,
    metrics: std::sync::Arc<TaskMetrics>,
}

/// A parse failure naming the table, the file, the line and the column.
fn data_error(
    table: &str,
    columns: &[String],
    file: &OpenFile,
    line: u64,
    column: Option<usize>,
    reason: &str,
) -> EngineError {
    let column = column
        .and_then(|c| columns.get(c))
        .map(|c| format!(", column '{c}'"))
        .unwrap_or_default();
    EngineError::data(format!(
        "Failed to parse a row of table '{table}' in file '{}', line {line}{column}: {reason}",
        file.path.display()
    ))
}

impl FileSource {
    /// Reads one record of the open file; `Ok(None)` at its end.
    fn read_one(&mut self, file: &mut OpenFile) -> Result<ReadOutcome> {
        let io_err =
            |e, path: &Path| EngineError::io(format!("cannot read '{}'", path.display()), e);
        if !file.next_line().map_err(|e| io_err(e, &file.path))? {
            return Ok(None);
        }
        let start_line = file.line_no;
        let FileSource {
            table,
            columns,
            decoder,
            record,
            metrics,
            ..
        } = self;
        let fail = |file: &OpenFile, column: Option<usize>, reason: &str| {
            data_error(table, columns, file, start_line, column, reason)
        };
        match decoder {
            Decoder::Csv(d) => {
                if d.is_ignorable(&file.line) {
                    return Ok(Some(None));
                }
                record.clear();
                record.extend_from_slice(&file.line);
                while d.split(record) == Split::OpenQuote {
                    if !file.next_line().map_err(|e| io_err(e, &file.path))? {
                        let ignore = d.format().ignore_parse_errors;
                        if ignore {
                            TaskMetrics::add(&metrics.parse_errors_skipped, 1);
                            return Ok(Some(None));
                        }
                        return Err(fail(
                            file,
                            None,
                            "a quoted field is not closed before the end of the file",
                        ));
                    }
                    record.push(b'\n');
                    record.extend_from_slice(&file.line);
                }
                match d.decode() {
                    Ok(Decoded::Row(row)) => Ok(Some(Some(row))),
                    Ok(Decoded::Nothing) => Ok(Some(None)),
                    Ok(Decoded::Skipped) => {
                        TaskMetrics::add(&metrics.parse_errors_skipped, 1);
                        Ok(Some(None))
                    }
                    Err(e) => Err(fail(file, e.column, &e.reason)),
                }
            }
            Decoder::Json(d) => {
                if file.line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Some(None));
                }
                let text = match std::str::from_utf8(&file.line) {
                    Ok(t) => t,
                    Err(_) => return Err(fail(file, None, "the line is not valid UTF-8")),
                };
                match d.decode(text) {
                    Ok(JsonDecoded::Row(row)) => Ok(Some(Some(row))),
                    Ok(JsonDecoded::Skipped) => {
                        TaskMetrics::add(&metrics.parse_errors_skipped, 1);
                        Ok(Some(None))
                    }
                    Err(reason) => Err(fail(file, None, &reason)),
                }
            }
        }
    }
}

/// Version byte of the first filesystem source position: one file index into the subtask's share
/// of the listing. Still read, never written.
const POSITION_V1: u8 = 1;
/// Version byte of a filesystem source position: the listing's fingerprint and the splits left.
const POSITION_V2: u8 = 2;

/// Reads a little-endian u64 at `at`.
fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads a little-endian u32 at `at`.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// A fingerprint of a listing of files: their number and a stable hash of their paths, so a
/// position taken over another set of files is refused.
fn fingerprint(listing: &[PathBuf]) -> (u64, u64) {
    let mut h = 0u64;
    for path in listing {
        h = crate::graph::stable_hash(path.to_string_lossy().as_bytes(), h);
    }
    (listing.len() as u64, h)
}

impl FileSource {
    /// `version 2 | listing size (u64) | listing hash (u64) | split count (u32) | per split: byte
    /// offset (u64), line number (u64), path length (u32), path`: every split this subtask has
    /// left, the one being read first, at the position of its next record.
    fn encode_position(&self) -> Vec<u8> {
        let mut splits: Vec<FileSplit> = Vec::new();
        if let Some(f) = &self.current {
            splits.push(FileSplit {
                path: f.path.clone(),
                offset: f.offset,
                line_no: f.line_no,
            });
        }
        splits.extend(self.files.iter().skip(self.next_file).cloned());
        let (count, hash) = fingerprint(&self.listing);
        let mut out = vec![POSITION_V2];
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(splits.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for split in &splits {
            let path = split.path.to_string_lossy();
            out.extend_from_slice(&split.offset.to_le_bytes());
            out.extend_from_slice(&split.line_no.to_le_bytes());
            out.extend_from_slice(&u32::try_from(path.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
        }
        out
    }

    fn malformed(&self) -> EngineError {
        EngineError::data(format!("table '{}': malformed source position", self.table))
    }

    fn files_changed(&self, detail: &str) -> EngineError {
        EngineError::data(format!(
            "table '{}': the input files changed since the checkpoint: {detail}",
            self.table
        ))
    }

    /// The splits a position of old subtask `subtask` of `parallelism` had left. A version-1
    /// position names a file of that subtask's share of the listing (file `i` went to subtask
    /// `i % parallelism`), so the listing must be the same.
    fn splits_of(&self, pos: &[u8], subtask: usize, parallelism: usize) -> Result<Vec<FileSplit>> {
        let bad = || self.malformed();
        match pos.first() {
            Some(&POSITION_V1) => {
                let index = usize::try_from(u64_at(pos, 1).ok_or_else(bad)?).map_err(|_| bad())?;
                let offset = u64_at(pos, 9).ok_or_else(bad)?;
                let line_no = u64_at(pos, 17).ok_or_else(bad)?;
                let len = u32_at(pos, 25).ok_or_else(bad)? as usize;
                let path = pos.get(29..29 + len).ok_or_else(bad)?;
                let path = String::from_utf8_lossy(path);
                let share: Vec<&PathBuf> = self
                    .listing
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % parallelism.max(1) == subtask)
                    .map(|(_, f)| f)
                    .collect();
                if index >= share.len() {
                    return Ok(Vec::new());
                }
                let expected = share[index].to_string_lossy();
                if expected != path {
                    return Err(self.files_changed(&format!(
                        "expected '{path}' at position {index}, found '{expected}'"
                    )));
                }
                let mut splits: Vec<FileSplit> = share[index..]
                    .iter()
                    .map(|f| FileSplit::whole((*f).clone()))
                    .collect();
                splits[0].offset = offset;
                splits[0].line_no = line_no;
                Ok(splits)
            }
            Some(&POSITION_V2) => {
                let count = u64_at(pos, 1).ok_or_else(bad)?;
                let hash = u64_at(pos, 9).ok_or_else(bad)?;
                if (count, hash) != fingerprint(&self.listing) {
                    return Err(self.files_changed(&format!(
                        "the checkpoint was taken over {count} files, the path now holds {} (or other ones)",
                        self.listing.len()
                    )));
                }
                let n = u32_at(pos, 17).ok_or_else(bad)?;
                let mut at = 21;
                let mut splits = Vec::new();
                for _ in 0..n {
                    let offset = u64_at(pos, at).ok_or_else(bad)?;
                    let line_no = u64_at(pos, at + 8).ok_or_else(bad)?;
                    let len = u32_at(pos, at + 16).ok_or_else(bad)? as usize;
                    let path = pos.get(at + 20..at + 20 + len).ok_or_else(bad)?;
                    at += 20 + len;
                    let path = PathBuf::from(String::from_utf8_lossy(path).into_owned());
                    if !self.listing.contains(&path) {
                        return Err(self.files_changed(&format!("'{}' is gone", path.display())));
                    }
                    splits.push(FileSplit {
                        path,
                        offset,
                        line_no,
                    });
                }
                if at != pos.len() {
                    return Err(bad());
                }
                Ok(splits)
            }
            _ => Err(bad()),
        }
    }

    fn apply_position(&mut self, pos: &[u8]) -> Result<()> {
        let splits = self.splits_of(pos, self.subtask, self.parallelism)?;
        self.read_splits(splits);
        Ok(())
    }

    /// Makes `splits` what this subtask reads, from the first.
    fn read_splits(&mut self, splits: Vec<FileSplit>) {
        self.current = None;
        self.files = splits;
        self.next_file = 0;
    }

    /// Opens a split at its position.
    fn open_split(&self, split: &FileSplit) -> Result<OpenFile> {
        let path = &split.path;
        let mut f = File::open(path).map_err(|e| {
            EngineError::io(
                format!("table '{}': cannot open '{}'", self.table, path.display()),
                e,
            )
        })?;
        if split.offset > 0 {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(split.offset)).map_err(|e| {
                EngineError::io(
                    format!(
                        "table '{}': cannot seek in '{}'",
                        self.table,
                        path.display()
                    ),
                    e,
                )
            })?;
        }
        Ok(OpenFile {
            path: path.clone(),
            reader: Box::new(BufReader::with_capacity(64 * 1024, f)),
            line: Vec::with_capacity(256),
            line_no: split.line_no,
            offset: split.offset,
        })
    }
}

impl Source for FileSource {
    fn snapshot_position(&mut self) -> Result<Vec<u8>> {
        Ok(self.encode_position())
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<()> {
        self.apply_position(position)
    }

    /// Flink's FileSource reassigns the splits left: every old subtask's splits, in the order of
    /// the listing (as a fresh job reads them, so event time keeps its order within a subtask),
    /// are dealt out to the new subtasks in turn.
    fn restore_rescaled(&mut self, positions: &[Vec<u8>]) -> Result<()> {
        let mut all = Vec::new();
        for (j, pos) in positions.iter().enumerate() {
            if pos.is_empty() {
                return Err(EngineError::data(format!(
                    "table '{}': the checkpoint has no position for former source subtask {j}",
                    self.table
                )));
            }
            all.extend(self.splits_of(pos, j, positions.len())?);
        }
        // Every file belongs to one old subtask, so no two splits share a path.
        all.sort_by(|a: &FileSplit, b| a.path.cmp(&b.path));
        let mine = crate::checkpoint::rescale::share(&all, self.subtask, self.parallelism);
        self.read_splits(mine);
        Ok(())
    }

    fn poll(&mut self, out: &mut Output, max_rows: usize) -> Result<SourceStatus> {
        let max_rows = max_rows.max(1);
        let mut emitted = 0;
        while emitted < max_rows {
            let mut file = match self.current.take() {
                Some(f) => f,
                None => {
                    let Some(split) = self.files.get(self.next_file) else {
                        return Ok(if emitted > 0 {
                            SourceStatus::More
                        } else {
                            SourceStatus::Finished
                        });
                    };
                    let file = self.open_split(split)?;
                    self.next_file += 1;
                    file
                }
            };
            match self.read_one(&mut file)? {
                None => continue,
                Some(row) => {
                    if let Some(row) = row {
                        out.changes.push(Change::insert(row));
                        emitted += 1;
                    }
                    self.current = Some(file);
                }
            }
        }
        Ok(SourceStatus::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DataType, Field};
    use crate::value::Value;
    use std::sync::Arc;

    pub(crate) fn ctx(subtask: usize, parallelism: usize) -> TaskContext {
        TaskContext {
            operator_id: 1,
            operator_name: "src".into(),
            subtask_index: subtask,
            parallelism,
            max_parallelism: 128,
            metrics: Arc::new(TaskMetrics::new()),
            state: Default::default(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("streamsql-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int),
            Field::new("name", DataType::STRING),
        ])
    }

    fn drain(src: &mut dyn Source, max: usize) -> Result<Vec<Change>> {
        let mut all = Vec::new();
        loop {
            let mut out = Output::new();
            let st = src.poll(&mut out, max)?;
            assert!(out.changes.len() <= max);
            all.extend(out.changes);
            if st == SourceStatus::Finished {
                return Ok(all);
            }
        }
    }

    #[test]
    fn reads_directory_sorted_and_split_over_subtasks() {
        let d = temp_dir("dir");
        std::fs::write(d.join("b.csv"), "2,b\n").unwrap();
        std::fs::write(d.join("a.csv"), "1,a\r\n1,aa\n").unwrap();
        std::fs::write(d.join(".hidden"), "9,h\n").unwrap();
        std::fs::write(d.join("_SUCCESS"), "").unwrap();
        let o = Options::from_pairs([
            ("connector", "filesystem"),
            ("path", d.to_str().unwrap()),
            ("format", "csv"),
        ]);
        let f = create_source("t", &schema(), &o).unwrap();
        let rows = drain(&mut *f.create(&ctx(0, 1)).unwrap(), 1).unwrap();
        let ids: Vec<Value> = rows.iter().map(|c| c.row[0].clone()).collect();
        assert_eq!(ids, vec![Value::Int(1), Value::Int(1), Value::Int(2)]);
        assert_eq!(rows[1].row[1], Value::string("aa"));
        let s0 = drain(&mut *f.create(&ctx(0, 2)).unwrap(), 10).unwrap();
        let s1 = drain(&mut *f.create(&ctx(1, 2)).unwrap(), 10).unwrap();
        assert_eq!((s0.len(), s1.len()), (2, 1));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_restored_position_resumes_exactly_after_the_last_emitted_row() {
        let d = temp_dir("position");
        std::fs::write(d.join("a.csv"), "1,a\n2,\"two\nlines\"\n3,c\n").unwrap();
        std::fs::write(d.join("b.csv"), "4,d\n5,e\n").unwrap();
        let o = Options::from_pairs([("path", d.to_str().unwrap()), ("format", "csv")]);
        let f = create_source("t", &schema(), &o).unwrap();
        let all = drain(&mut *f.create(&ctx(0, 1)).unwrap(), 10).unwrap();
        assert_eq!(all.len(), 5);
        // Stop after every possible number of rows, restore into a fresh source, finish.
        for k in 0..=5 {
            let mut first = f.create(&ctx(0, 1)).unwrap();
            let mut head = Vec::new();
            while head.len() < k {
                let mut out = Output::new();
                first.poll(&mut out, 1).unwrap();
                head.extend(out.changes);
            }
            let pos = first.snapshot_position().unwrap();
            let mut second = f.create(&ctx(0, 1)).unwrap();
            second.restore_position(&pos).unwrap();
            head.extend(drain(&mut *second, 2).unwrap());
            assert_eq!(head, all, "stopped after {k} rows");
        }
        // A position from another listing of files is refused, never misapplied.
        let mut src = f.create(&ctx(0, 1)).unwrap();
        let mut out = Output::new();
        src.poll(&mut out, 4).unwrap();
        let pos = src.snapshot_position().unwrap();
        std::fs::write(d.join("a0.csv"), "0,z\n").unwrap();
        let f2 = create_source("t", &schema(), &o).unwrap();
        let err = f2
            .create(&ctx(0, 1))
            .unwrap()
            .restore_position(&pos)
            .unwrap_err();
        assert!(err.to_string().contains("input files changed"), "{err}");
        assert!(f2
            .create(&ctx(0, 1))
            .unwrap()
            .restore_position(&[9, 9])
            .is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn splits_left_at_a_checkpoint_are_read_once_at_any_new_parallelism() {
        let d = temp_dir("rescale");
        for f in 0..5 {
            let rows: String = (0..7).map(|r| format!("{},f{f}\n", f * 100 + r)).collect();
            std::fs::write(d.join(format!("f{f}.csv")), rows).unwrap();
        }
        let o = Options::from_pairs([("path", d.to_str().unwrap()), ("format", "csv")]);
        let f = create_source("t", &schema(), &o).unwrap();
        let ids =
            |rows: &[Change]| -> Vec<Value> { rows.iter().map(|c| c.row[0].clone()).collect() };
        let mut all = ids(&drain(&mut *f.create(&ctx(0, 1)).unwrap(), 100).unwrap());
        all.sort();
        for (old_p, new_p) in [(2, 3), (2, 1), (3, 2), (1, 4)] {
            // Each old subtask reads a different number of rows, then the checkpoint is taken.
            let mut seen = Vec::new();
            let mut positions = Vec::new();
            for j in 0..old_p {
                let mut src = f.create(&ctx(j, old_p)).unwrap();
                for _ in 0..(j + 1) * 3 {
                    let mut out = Output::new();
                    src.poll(&mut out, 1).unwrap();
                    seen.extend(ids(&out.changes));
                }
                positions.push(src.snapshot_position().unwrap());
            }
            let mut per_subtask = Vec::new();
            for i in 0..new_p {
                let mut src = f.create(&ctx(i, new_p)).unwrap();
                src.restore_rescaled(&positions).unwrap();
                // And a position taken after the rescale restores at the same parallelism.
                let mut out = Output::new();
                src.poll(&mut out, 2).unwrap();
                seen.extend(ids(&out.changes));
                let pos = src.snapshot_position().unwrap();
                let mut again = f.create(&ctx(i, new_p)).unwrap();
                again.restore_position(&pos).unwrap();
                let rest = ids(&drain(&mut *again, 3).unwrap());
                per_subtask.push(rest.len());
                seen.extend(rest);
            }
            seen.sort();
            assert_eq!(seen, all, "{old_p} -> {new_p}");
            if new_p > 1 {
                assert!(
                    per_subtask.iter().filter(|&&n| n > 0).count() > 1,
                    "{per_subtask:?}"
                );
            }
        }
        // A version-1 position (one file index into the subtask's share) still restores.
        let mut v1 = vec![1u8];
        let path = d.join("f2.csv");
        let path = path.to_string_lossy();
        v1.extend_from_slice(&1u64.to_le_bytes());
        v1.extend_from_slice(&7u64.to_le_bytes());
        v1.extend_from_slice(&1u64.to_le_bytes());
        v1.extend_from_slice(&(path.len() as u32).to_le_bytes());
        v1.extend_from_slice(path.as_bytes());
        let mut src = f.create(&ctx(0, 2)).unwrap();
        src.restore_position(&v1).unwrap();
        let rest = ids(&drain(&mut *src, 10).unwrap());
        let expected: Vec<Value> = (201..207).chain(400..407).map(Value::Int).collect();
        assert_eq!(rest, expected);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_line_names_table_file_line_and_column() {
        let d = temp_dir("bad");
        let file = d.join("x.csv");
        std::fs::write(&file, "1,a\nzz,b\n").unwrap();
        let o = Options::from_pairs([("path", file.to_str().unwrap()), ("format", "csv")]);
        let f = create_source("orders", &schema(), &o).unwrap();
        let err = drain(&mut *f.create(&ctx(0, 1)).unwrap(), 10).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("table 'orders'"), "{msg}");
        assert!(msg.contains("line 2, column 'id'"), "{msg}");
        assert!(msg.contains("x.csv"), "{msg}");

        let o = Options::from_pairs([
            ("path", file.to_str().unwrap()),
            ("format", "csv"),
            ("csv.ignore-parse-errors", "true"),
        ]);
        let f = create_source("orders", &schema(), &o).unwrap();
        let rows = drain(&mut *f.create(&ctx(0, 1)).unwrap(), 10).unwrap();
        assert_eq!(rows[1].row, vec![Value::Null, Value::string("b")]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn json_lines_and_file_prefix() {
        let d = temp_dir("json");
        let file = d.join("x.jsonl");
        std::fs::write(&file, "{\"id\":1,\"name\":\"a\"}\n\n{\"id\":2}\n").unwrap();
        let path = format!("file://{}", file.display());
        let o = Options::from_pairs([("path", path.as_str()), ("format", "json")]);
        let f = create_source("t", &schema(), &o).unwrap();
        let rows = drain(&mut *f.create(&ctx(0, 1)).unwrap(), 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].row, vec![Value::Int(2), Value::Null]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn option_errors() {
        let o = Options::from_pairs([("connector", "filesystem")]);
        let err = create_source("t", &schema(), &o).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("Missing required options are:\n\npath\nformat"));
        let o = Options::from_pairs([
            ("path", "/x"),
            ("format", "csv"),
            ("csv.ignore-parse-error", "true"),
        ]);
        let err = create_source("t", &schema(), &o).unwrap_err();
        assert!(err.to_string().starts_with(
            "Unsupported options found for 'filesystem'.\n\nUnsupported options:\n\ncsv.ignore-parse-error\n\nSupported options:\n\n"
        ));
        let o = Options::from_pairs([
            ("path", "/x"),
            ("format", "csv"),
            ("source.monitor-interval", "1s"),
        ]);
        assert!(create_source("t", &schema(), &o)
            .unwrap_err()
            .to_string()
            .contains("source.monitor-interval"));
        let o = Options::from_pairs([("path", "/x"), ("format", "xml")]);
        assert!(create_source("t", &schema(), &o).is_err());
        let o = Options::from_pairs([("path", "/nonexistent-streamsql"), ("format", "csv")]);
        let f = create_source("t", &schema(), &o).unwrap();
        assert!(matches!(f.create(&ctx(0, 1)), Err(EngineError::Io { .. })));
    }
}
