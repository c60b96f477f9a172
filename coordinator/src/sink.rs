//! Where results go, behind one trait: stdout (one JSON line per result, the Go
//! coordinator's "publish") and a JSON-lines file, appended and flushed per result. The
//! [`crate::publisher`] sends every report to every sink and retries the ones that fail.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::task::TaskReport;

pub trait ResultSink: Send {
    /// How logs, metrics and `/readyz` name this sink: `stdout`, `file results.jsonl`.
    fn name(&self) -> String;

    /// Writes one report, whole or not at all (as far as the sink allows).
    fn publish(&mut self, report: &TaskReport) -> Result<(), SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write the result of {task_id} to {target}: {source}")]
    Write {
        task_id: String,
        target: String,
        #[source]
        source: io::Error,
    },
}

/// A report as one JSON line, with its newline.
fn line(report: &TaskReport) -> String {
    // A report holds only strings, numbers and the runner's result: it always serializes.
    let mut line = serde_json::to_string(report)
        .unwrap_or_else(|e| format!("{{\"error\":\"unserializable report: {e}\"}}"));
    line.push('\n');
    line
}

/// One JSON line per result on stdout; logs go to stderr, so stdout is machine-readable.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl ResultSink for StdoutSink {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn publish(&mut self, report: &TaskReport) -> Result<(), SinkError> {
        let mut out = io::stdout().lock();
        out.write_all(line(report).as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| SinkError::Write {
                task_id: report.task.task_id.clone(),
                target: "stdout".into(),
                source,
            })
    }
}

/// Appends each result to a file and flushes it to disk, so a crash loses nothing
/// published. A write that fails half-way is cut back off, so the file never holds half a
/// line.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
}

impl FileSink {
    /// Opens `path` for appending (created if missing). A FIFO without a reader is an error
    /// at once (ENXIO) instead of a coordinator hanging at startup: the file is opened
    /// non-blocking, then set to block again for the writes.
    pub fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)?;
        let flags =
            nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let blocking =
            nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(blocking))
            .map_err(io::Error::from)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }
}

impl ResultSink for FileSink {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn publish(&mut self, report: &TaskReport) -> Result<(), SinkError> {
        // Where the line starts, to cut a partial write back off (a regular file only; a
        // device such as /dev/full has no length to go back to).
        let before = self
            .file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let written = self
            .file
            .write_all(line(report).as_bytes())
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            if let Some(len) = before {
                let _ = self.file.set_len(len);
            }
        }
        written.map_err(|source| SinkError::Write {
            task_id: report.task.task_id.clone(),
            target: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{ReportStatus, Task};

    fn report(id: &str) -> TaskReport {
        let task = Task {
            task_id: id.into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
        };
        TaskReport::new(&task, ReportStatus::OK)
    }

    #[test]
    fn file_sink_appends_one_line_per_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/results.jsonl");
        for _ in 0..2 {
            let mut sink = FileSink::open(&path).unwrap();
            sink.publish(&report("t")).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back["task_id"], "t");
    }

    #[test]
    fn a_fifo_without_a_reader_is_refused_at_open_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = FileSink::open(&fifo).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENXIO), "{err}");
    }

    #[test]
    fn a_full_device_is_an_error_not_a_success() {
        let mut sink = FileSink::open(Path::new("/dev/full")).unwrap();
        let err = sink.publish(&report("t")).unwrap_err().to_string();
        assert!(err.contains("/dev/full") && err.contains('t'), "{err}");
    }
}
