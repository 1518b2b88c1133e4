//! The `filesystem` sink: appends rows as csv or json lines to part files in a directory.
//!
//! File names follow Flink's: each subtask writes `part-<uuid>-<subtask>-<n>` (one uuid per sink,
//! `n` counting the subtask's part files from 0). A part file is written as the hidden
//! `.part-<uuid>-<subtask>-<n>.inprogress.<uuid2>` and renamed to its final name when it rolls
//! (before a row, once it is larger than `sink.rolling-policy.file-size`, default 128 MB; `sink.rolling-policy.rollover-interval`,
//! default 30 min) or at the end of input, so a reader of the directory never sees a half-written
//! visible file. Hidden files are skipped by the filesystem source. The sink is append-only: it
//! takes `+I` rows (the planner rejects updating inputs before a job starts).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_le_bytes());
    seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    for (i, b) in salt.bytes().enumerate() {
        seed[20 + i % 12] ^= b;
    }
    let mut rng = ChaCha8Rng::from_seed(seed);
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
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
            name_prefix: format!("part-{}-{}-", self.uuid, ctx.subtask_index),
            in_progress_suffix: format!(
                ".inprogress.{}",
                random_uuid(&ctx.subtask_index.to_string())
            ),
            next_part: 0,
            current: None,
            encoder,
            buffer: Vec::with_capacity(64 * 1024),
            file_size: self.file_size,
            rollover: self.rollover,
        }))
    }
}

enum Encoder {
    Csv(CsvEncoder),
    Json(JsonEncoder),
}

/// The part file being written.
struct PartFile {
    in_progress: PathBuf,
    final_path: PathBuf,
    writer: BufWriter<File>,
    bytes: u64,
    opened: Instant,
}

/// One subtask of the filesystem sink.
struct FileSystemSink {
    table: String,
    dir: PathBuf,
    name_prefix: String,
    in_progress_suffix: String,
    next_part: u64,
    current: Option<PartFile>,
    encoder: Encoder,
    buffer: Vec<u8>,
    file_size: u64,
    rollover: Duration,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> EngineError {
    EngineError::io(
        format!("filesystem sink: cannot {what} '{}'", path.display()),
        e,
    )
}

impl FileSystemSink {
    fn open(&mut self) -> Result<&mut PartFile> {
        if self.current.is_none() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| io_error(&self.dir, "create directory", e))?;
            let name = format!("{}{}", self.name_prefix, self.next_part);
            self.next_part += 1;
            let in_progress = self.dir.join(format!(".{name}{}", self.in_progress_suffix));
            let file =
                File::create(&in_progress).map_err(|e| io_error(&in_progress, "create", e))?;
            self.current = Some(PartFile {
                final_path: self.dir.join(name),
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

    /// Flushes, syncs and publishes the current part file under its final name.
    fn close_current(&mut self) -> Result<()> {
        let Some(part) = self.current.take() else {
            return Ok(());
        };
        let file = part
            .writer
            .into_inner()
            .map_err(|e| io_error(&part.in_progress, "write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_error(&part.in_progress, "sync", e))?;
        std::fs::rename(&part.in_progress, &part.final_path)
            .map_err(|e| io_error(&part.final_path, "publish", e))
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
        if self
            .current
            .as_ref()
            .is_some_and(|p| p.opened.elapsed() >= self.rollover)
        {
            self.close_current()?;
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
                self.close_current()?;
            }
            match &mut self.encoder {
                Encoder::Csv(e) => e.encode(&change.row, &mut self.buffer),
                Encoder::Json(e) => e.encode(&change.row, &mut self.buffer),
            }
        }
        self.write_buffer()
    }

    fn on_timer(&mut self, _now_millis: i64, _out: &mut Output) -> Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|p| p.opened.elapsed() >= self.rollover)
        {
            self.close_current()?;
        }
        Ok(())
    }

    fn on_end_of_input(&mut self, _out: &mut Output) -> Result<()> {
        self.write_buffer()?;
        self.close_current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
