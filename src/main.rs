//! The `streamsql` command line: `run` a pipeline, `explain` its dataflow, show a job's
//! `checkpoints`, `bench` the Nexmark queries.
//!
//! Standard output carries only result rows (and EXPLAIN / SHOW output); logs and diagnostics go
//! to standard error, so `streamsql run q.sql > out.txt` captures exactly the result.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamsql::config::{apply_overrides, find_config_file, load_toml};
use streamsql::engine::config::Configuration;
use streamsql::engine::runtime::JobOutcome;
use streamsql::sql::session::StatementOutput;
use streamsql::{Error, Restore, Streamsql};

mod bench;

/// Rows are allocated by one task thread and freed by another; mimalloc's per-thread heaps make
/// those cross-thread frees cheap, where the system allocator contends on its arenas (measured in
/// docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "streamsql",
    version,
    about = "An embeddable stream processor that runs Flink SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by commands that plan a pipeline.
#[derive(clap::Args)]
struct PipelineArgs {
    /// The pipeline: a Flink SQL script.
    pipeline: PathBuf,
    /// A TOML configuration file (default: PIPELINE.toml beside the script, else ./streamsql.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Set a configuration key; wins over the file and over SET in the script.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    define: Vec<String>,
    /// Default parallelism (parallelism.default).
    #[arg(short = 'p', long = "parallelism")]
    parallelism: Option<usize>,
}

/// Where `run` resumes from.
#[derive(clap::Args)]
struct ResumeArgs {
    /// Resume from a checkpoint directory (chk-<n>) or its _metadata file.
    #[arg(
        short = 's',
        long = "fromSavepoint",
        value_name = "PATH",
        conflicts_with = "resume"
    )]
    from: Option<PathBuf>,
    /// `latest`: resume from the newest intact checkpoint of this pipeline, if any.
    #[arg(long, value_name = "latest", value_parser = ["latest"])]
    resume: Option<String>,
    /// Skip checkpointed state of operators the pipeline no longer has.
    #[arg(long = "allow-non-restored-state", alias = "allowNonRestoredState")]
    allow_non_restored_state: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its bounded sources are exhausted (or Ctrl-C).
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[command(flatten)]
        resume: ResumeArgs,
    },
    /// Print the dataflow of a pipeline: one operator per line with parallelism and exchanges.
    Explain(PipelineArgs),
    /// Take a savepoint of the running job of a pipeline (started by `streamsql run` with the
    /// same script and configuration); prints its directory.
    Savepoint {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The directory to create the savepoint in (default: execution.checkpointing.savepoint-dir).
        target: Option<PathBuf>,
    },
    /// Stop the running job of a pipeline with a savepoint: the job ends once the savepoint
    /// completed, and `run -s <savepoint>` resumes it.
    Stop {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The directory to create the savepoint in (default: execution.checkpointing.savepoint-dir).
        #[arg(long = "savepointPath", alias = "savepoint-path", value_name = "DIR")]
        savepoint_path: Option<PathBuf>,
    },
    /// Show a job's checkpoint monitoring: overview, history, summary and configuration.
    Checkpoints {
        /// The job's checkpoint directory (<state.checkpoints.dir>/<job-id>), or a checkpoints
        /// directory holding one job.
        dir: PathBuf,
        /// Print the body of Flink's REST `GET /jobs/:jobid/checkpoints` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the Nexmark queries (examples/nexmark/), each in its own process, and report their
    /// throughput, CPU time, peak memory, checkpoints and result check.
    Bench(Box<bench::BenchArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { pipeline, resume } => run(&pipeline, &resume),
        Command::Explain(args) => explain(&args),
        Command::Savepoint { pipeline, target } => savepoint(&pipeline, target, false),
        Command::Stop {
            pipeline,
            savepoint_path,
        } => savepoint(&pipeline, savepoint_path, true),
        Command::Checkpoints { dir, json } => return checkpoints(&dir, json),
        Command::Bench(args) => return bench::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::FAILURE
        }
    }
}

fn checkpoints(dir: &Path, json: bool) -> ExitCode {
    match streamsql::checkpoints_cmd::run(dir, json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Loads the configuration with its precedence and a session over it.
fn session(args: &PipelineArgs) -> Result<(Streamsql, String), Error> {
    let mut config = Configuration::new();
    if let Some(file) = find_config_file(Some(&args.pipeline), args.config.as_deref()) {
        config = load_toml(&file).map_err(|e| Error::Config(Box::new(e)))?;
        eprintln!("streamsql: loaded configuration from {}", file.display());
    } else if let Some(explicit) = &args.config {
        return Err(Error::Read {
            path: explicit.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let mut defines = args.define.clone();
    if let Some(p) = args.parallelism {
        defines.push(format!("parallelism.default={p}"));
    }
    let mut pins = Configuration::new();
    apply_overrides(&mut pins, &defines).map_err(|e| Error::Config(Box::new(e)))?;
    config.merge(&pins);
    let mut s = Streamsql::new(config);
    for (k, v) in pins.iter() {
        s.pin(k, v);
    }
    let sql = read(&args.pipeline)?;
    Ok((s, sql))
}

fn savepoint(args: &PipelineArgs, target: Option<PathBuf>, stop: bool) -> Result<ExitCode, Error> {
    let (mut s, sql) = session(args)?;
    let name = args.pipeline.display().to_string();
    let dir = s.request_savepoint(&name, &sql, target, stop)?;
    // Flink's CLI words.
    println!("Savepoint completed. Path: {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn explain(args: &PipelineArgs) -> Result<ExitCode, Error> {
    let (mut s, sql) = session(args)?;
    let text = s.explain(&args.pipeline.display().to_string(), &sql)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn run(args: &PipelineArgs, resume: &ResumeArgs) -> Result<ExitCode, Error> {
    let (mut s, sql) = session(args)?;
    s.process_ends_with_job();
    if let Some(path) = &resume.from {
        s.restore_from(Restore::Path(path.clone()), resume.allow_non_restored_state);
    } else if resume.resume.is_some() {
        s.restore_from(Restore::Latest, resume.allow_non_restored_state);
    }
    let name = args.pipeline.display().to_string();
    let exec = s.execute(&name, &sql)?;
    let stdout = std::io::stdout();
    {
        let mut out = stdout.lock();
        for o in &exec.outputs {
            match o {
                StatementOutput::Info(msg) => eprintln!("{msg}"),
                StatementOutput::Table { header, rows } => {
                    let _ = writeln!(out, "{}", header.join("\t"));
                    for r in rows {
                        let _ = writeln!(out, "{}", r.join("\t"));
                    }
                }
                StatementOutput::Explain(text) => {
                    let _ = write!(out, "{text}");
                }
            }
        }
    }
    if let Some(r) = &exec.already_finished {
        let last = match r.final_checkpoint {
            0 => String::new(),
            id => format!(" with checkpoint {id}"),
        };
        eprintln!(
            "streamsql: the last run of this pipeline finished{last} at {}; there is nothing to \
             resume (run it without --resume to start it again)",
            streamsql::checkpoints_cmd::format_timestamp(r.finished_ms)
        );
    }
    let Some(job) = exec.job else {
        return Ok(ExitCode::SUCCESS);
    };
    let cancel = job.cancel_handle();
    // Ctrl-C and SIGTERM cancel the job; a second one exits at once.
    let mut signalled = false;
    let _ = ctrlc::set_handler(move || {
        if signalled {
            std::process::exit(130);
        }
        signalled = true;
        eprintln!("streamsql: cancelling the job");
        cancel.cancel();
    });
    // Not a held lock: print sinks on task threads write to stdout too.
    let mut out = std::io::BufWriter::new(stdout);
    let mut line = String::new();
    let outcome = job.for_each_change(|_, schema, change| {
        line.clear();
        streamsql::print::write_change(&mut line, schema, change);
        line.push('\n');
        let _ = out.write_all(line.as_bytes());
    });
    let _ = out.flush();
    match outcome? {
        JobOutcome::Finished => Ok(ExitCode::SUCCESS),
        JobOutcome::Cancelled => {
            eprintln!("streamsql: the job was cancelled");
            Ok(ExitCode::SUCCESS)
        }
    }
}
