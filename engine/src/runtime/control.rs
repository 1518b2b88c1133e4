//! The control socket of a running job: a Unix domain socket through which another process
//! (`streamsql savepoint`, `streamsql stop`) asks the job for a savepoint. The socket lives in the
//! temporary directory (`streamsql-<job id>-<pid>.sock`: socket paths are limited to about 100
//! bytes, checkpoint directories are not), and `<job dir>/_control` names it.
//!
//! One request per connection, one line each way, tab-separated:
//! `savepoint\t<0|1 stop>\t<target directory>\n` is answered by `ok\t<savepoint directory>\n`
//! or `error\t<message>\n`. Every request gets an answer, also when the job ends first.
//!
//! The socket and `_control` exist while the job runs and are removed when it ends. A `_control`
//! left by a killed process is replaced; one whose socket still answers belongs to another
//! running job of the same pipeline, which keeps it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::checkpointing::SavepointRequest;
use crate::error::{EngineError, Result};

/// The file in the job directory that names the socket.
pub const CONTROL_FILE: &str = "_control";

/// How often the accept loop looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The running server; dropping it stops it and removes the socket.
pub(crate) struct ControlServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
    control: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        // Only our own: another run may have taken over the name meanwhile.
        if socket_named_in(&self.control).as_deref() == Some(self.socket.as_path()) {
            let _ = std::fs::remove_file(&self.control);
        }
    }
}

/// The socket `<job dir>/_control` names, if it names one.
fn socket_named_in(control: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(control).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| PathBuf::from(line))
}

/// Starts serving `<job dir>/_control`, forwarding requests to `requests`. `None` (with the reason
/// on stderr) when the socket cannot be served: the job runs anyway, without remote savepoints.
#[cfg(unix)]
pub(crate) fn serve(job_dir: &Path, requests: Sender<SavepointRequest>) -> Option<ControlServer> {
    use std::os::unix::net::{UnixListener, UnixStream};
    let control = job_dir.join(CONTROL_FILE);
    let job = job_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = std::env::temp_dir().join(format!("streamsql-{job}-{}.sock", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(job_dir) {
        eprintln!(
            "streamsql: no control socket (savepoints cannot be requested): cannot create '{}': {e}",
            job_dir.display()
        );
        return None;
    }
    if let Some(other) = socket_named_in(&control) {
        if UnixStream::connect(&other).is_ok() {
            eprintln!(
                "streamsql: another job of this pipeline serves '{}'; `streamsql savepoint` reaches that one",
                other.display()
            );
            return None;
        }
        // A killed run's socket; anything that is no socket is left alone.
        use std::os::unix::fs::FileTypeExt;
        let is_socket = std::fs::symlink_metadata(&other).is_ok_and(|m| m.file_type().is_socket());
        if is_socket {
            let _ = std::fs::remove_file(&other);
        }
    }
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "streamsql: no control socket (savepoints cannot be requested): cannot listen on '{}': {e}",
                path.display()
            );
            return None;
        }
    };
    // Named through a temporary file renamed into place: a reader never sees half a path.
    let tmp = job_dir.join(format!("{CONTROL_FILE}.{}", std::process::id()));
    let named = std::fs::write(&tmp, format!("{}\n", path.display()))
        .and_then(|()| std::fs::rename(&tmp, &control));
    if let Err(e) = named {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "streamsql: no control socket (savepoints cannot be requested): cannot write '{}': {e}",
            control.display()
        );
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_t = stop.clone();
    let thread = std::thread::Builder::new()
        .name("job-control".into())
        .spawn(move || loop {
            if stop_t.load(Ordering::SeqCst) {
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    let requests = requests.clone();
                    let stop = stop_t.clone();
                    let _ = std::thread::Builder::new()
                        .name("job-control-request".into())
                        .spawn(move || answer(stream, &requests, &stop));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                Err(_) => std::thread::sleep(POLL),
            }
        })
        .ok()?;
    Some(ControlServer {
        stop,
        thread: Some(thread),
        socket: path,
        control,
    })
}

/// Without Unix domain sockets there is no control socket.
#[cfg(not(unix))]
pub(crate) fn serve(_job_dir: &Path, _requests: Sender<SavepointRequest>) -> Option<ControlServer> {
    None
}

/// Reads one request from `stream`, hands it to the job and writes the answer.
#[cfg(unix)]
fn answer(
    stream: std::os::unix::net::UnixStream,
    requests: &Sender<SavepointRequest>,
    stop: &AtomicBool,
) {
    use std::io::{BufRead, BufReader, Write};
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut line = String::new();
    let outcome = match BufReader::new(stream).read_line(&mut line) {
        Ok(_) => match parse_request(&line) {
            Ok((stop_job, target)) => savepoint(requests, stop, target, stop_job),
            Err(e) => Err(e),
        },
        Err(e) => Err(format!("cannot read the request: {e}")),
    };
    let reply = match outcome {
        Ok(dir) => format!("ok\t{}\n", dir.display()),
        Err(message) => format!("error\t{}\n", message.replace(['\n', '\t'], " ")),
    };
    let _ = writer.write_all(reply.as_bytes());
}

/// Reads `savepoint\t<0|1>\t<target>`.
fn parse_request(line: &str) -> std::result::Result<(bool, PathBuf), String> {
    let mut parts = line.trim_end_matches('\n').splitn(3, '\t');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("savepoint"), Some(stop @ ("0" | "1")), Some(target)) if !target.is_empty() => {
            Ok((stop == "1", PathBuf::from(target)))
        }
        _ => Err(format!("not a savepoint request: '{}'", line.trim_end())),
    }
}

/// Asks the job for a savepoint and waits for its outcome, or for the job to end.
fn savepoint(
    requests: &Sender<SavepointRequest>,
    stop: &AtomicBool,
    target: PathBuf,
    stop_job: bool,
) -> std::result::Result<PathBuf, String> {
    let (reply, outcome) = crossbeam_channel::bounded(1);
    requests
        .send(SavepointRequest {
            target,
            stop: stop_job,
            reply,
        })
        .map_err(|_| "the job has ended".to_string())?;
    loop {
        match outcome.recv_timeout(POLL) {
            Ok(result) => return result,
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the job ended before the savepoint completed".into())
            }
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::SeqCst) => {
                return Err("the job ended before the savepoint completed".into())
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Asks the job running with checkpoints in `job_dir` for a savepoint in `target` (stopping the
/// job after it when `stop`); returns the savepoint's directory once it completed.
#[cfg(unix)]
pub fn request_savepoint(job_dir: &Path, target: &Path, stop: bool) -> Result<PathBuf> {
    use std::io::{BufRead, BufReader, Write};
    let control = job_dir.join(CONTROL_FILE);
    let path = socket_named_in(&control).ok_or_else(|| {
        EngineError::io(
            format!(
                "no running job of this pipeline: '{}' does not name its control socket",
                control.display()
            ),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let target = target
        .to_str()
        .filter(|t| !t.contains(['\n', '\t']))
        .ok_or_else(|| {
            EngineError::option(
                format!(
                    "the savepoint directory '{}' must be valid UTF-8 without tabs or line breaks",
                    target.display()
                ),
                None,
            )
        })?;
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        EngineError::io(
            format!(
                "no running job of this pipeline answers on '{}'",
                path.display()
            ),
            e,
        )
    })?;
    let request = format!("savepoint\t{}\t{target}\n", u8::from(stop));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| EngineError::io("cannot send the savepoint request", e))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| EngineError::io("cannot read the job's answer", e))?;
    let line = line.trim_end_matches('\n');
    match line.split_once('\t') {
        Some(("ok", dir)) => Ok(PathBuf::from(dir)),
        Some(("error", message)) => Err(EngineError::Task {
            message: message.to_string(),
        }),
        _ => Err(EngineError::Task {
            message: format!("the job gave no answer to the savepoint request ('{line}')"),
        }),
    }
}

/// Without Unix domain sockets no job can be reached.
#[cfg(not(unix))]
pub fn request_savepoint(_job_dir: &Path, _target: &Path, _stop: bool) -> Result<PathBuf> {
    Err(EngineError::option(
        "savepoints of a running job can be requested only on Unix systems",
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(
            parse_request("savepoint\t1\t/sp dir\n"),
            Ok((true, PathBuf::from("/sp dir")))
        );
        assert_eq!(
            parse_request("savepoint\t0\t/a\tb"),
            Ok((false, PathBuf::from("/a\tb")))
        );
        for bad in [
            "",
            "savepoint\t2\t/x",
            "savepoint\t1\t",
            "cancel\t1\t/x",
            "savepoint",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_request_reaches_the_job_and_its_answer_comes_back() {
        let dir = std::env::temp_dir().join(format!("streamsql-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, rx) = crossbeam_channel::unbounded::<SavepointRequest>();
        let server = serve(&dir, tx).expect("serves");
        let job = std::thread::spawn(move || {
            for _ in 0..2 {
                let r = rx.recv().expect("a request");
                let answer = if r.stop {
                    Err("Checkpoint expired before completing.".to_string())
                } else {
                    Ok(r.target.join("savepoint-abcdef-0123456789ab"))
                };
                r.reply.send(answer).expect("answered");
            }
        });
        let sp = request_savepoint(&dir, Path::new("/sp"), false).expect("completes");
        assert_eq!(sp, PathBuf::from("/sp/savepoint-abcdef-0123456789ab"));
        let err = request_savepoint(&dir, Path::new("/sp"), true).unwrap_err();
        assert!(
            err.to_string()
                .contains("Checkpoint expired before completing."),
            "{err}"
        );
        job.join().unwrap();
        drop(server);
        assert!(
            !dir.join(CONTROL_FILE).exists(),
            "the socket's name is removed"
        );
        let err = request_savepoint(&dir, Path::new("/sp"), false).unwrap_err();
        assert!(err.to_string().contains("no running job"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
