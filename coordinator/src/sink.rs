//! Where results go, behind one trait: the log (one JSON line per result on stdout, the Go
//! coordinator's "publish", plus a readable line in the log) and a JSON-lines file,
//! appended and flushed per result. Several at once.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::info;

use crate::task::TaskReport;

pub trait ResultSink: Send {
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

fn line(report: &TaskReport) -> String {
    // A report holds only strings, numbers and the runner's result: it always serializes.
    serde_json::to_string(report)
        .unwrap_or_else(|e| format!("{{\"error\":\"unserializable report: {e}\"}}"))
}

/// One JSON line per result on stdout; logs go to stderr, so stdout is machine-readable.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl ResultSink for StdoutSink {
    fn publish(&mut self, report: &TaskReport) -> Result<(), SinkError> {
        info!(task_id = %report.task_id, status = report.status.as_str(), attempts = report.attempts, "{}", report.describe());
        let mut out = io::stdout().lock();
        writeln!(out, "{}", line(report))
            .and_then(|()| out.flush())
            .map_err(|source| SinkError::Write {
                task_id: report.task_id.clone(),
                target: "stdout".into(),
                source,
            })
    }
}

/// Appends each result to a file and flushes it, so a crash loses nothing published.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
}

impl FileSink {
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }
}

impl ResultSink for FileSink {
    fn publish(&mut self, report: &TaskReport) -> Result<(), SinkError> {
        writeln!(self.file, "{}", line(report))
            .and_then(|()| self.file.sync_data())
            .map_err(|source| SinkError::Write {
                task_id: report.task_id.clone(),
                target: self.path.display().to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{ReportStatus, Task};

    #[test]
    fn file_sink_appends_one_line_per_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/results.jsonl");
        let task = Task {
            task_id: "t".into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
        };
        for _ in 0..2 {
            let mut sink = FileSink::open(&path).unwrap();
            sink.publish(&TaskReport::new(&task, ReportStatus::Ok))
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: TaskReport = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back.task_id, "t");
    }
}
