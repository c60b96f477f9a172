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

    /// Writes one report, whole or not at all (as far as the sink allows), or starts
    /// sending it ([`Sent::Pending`]: the sink says how it went through
    /// [`ResultSink::completed`]).
    fn publish(&mut self, report: &TaskReport) -> Result<Sent, SinkError>;

    /// The sends that [`Sent::Pending`] started and that have ended since the last call, by
    /// task id. A failed one is offered again later.
    fn completed(&mut self) -> Vec<(String, Result<(), SinkError>)> {
        Vec::new()
    }

    /// Given the [`Notify`](tokio::sync::Notify) to wake the publisher with when a pending
    /// send ends. Sinks that finish every write in `publish` ignore it.
    fn set_waker(&mut self, _waker: std::sync::Arc<tokio::sync::Notify>) {}

    /// At start-up, before anything is published: of `candidates` (tasks whose reports
    /// the ledger does not know this sink to have, in the order they would have been
    /// written), the ones this sink has after all (a coordinator died between writing a
    /// report and recording that it did). A sink that cannot be read back has none.
    fn reconcile(&mut self, _candidates: &[String]) -> Result<Vec<String>, SinkError> {
        Ok(Vec::new())
    }
}

/// What [`ResultSink::publish`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The sink has it.
    Done,
    /// On its way (a transaction waiting for its confirmations): the sink tells later.
    Pending,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot read back the end of {target} to reconcile it with the ledger: {source}")]
    Reconcile {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the result of {task_id} to {target}: {source}")]
    Write {
        task_id: String,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot post the result of {task_id} to {target}: {reason}")]
    Post {
        task_id: String,
        target: String,
        reason: String,
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

    fn publish(&mut self, report: &TaskReport) -> Result<Sent, SinkError> {
        let mut out = io::stdout().lock();
        out.write_all(line(report).as_bytes())
            .and_then(|()| out.flush())
            .map(|()| Sent::Done)
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

/// How much of a results file's end is read at a time when reconciling.
const TAIL_CHUNK: u64 = 64 * 1024;

impl FileSink {
    /// The task ids of the file's last complete lines, newest first, as long as each is in
    /// `candidates`: the reports written after the last one the ledger recorded (they are
    /// written in the order they are recorded, so they form the end of the file). A last
    /// line without its newline (a write cut off by a crash) is cut off the file first.
    fn unrecorded_tail(&mut self, candidates: &[String]) -> io::Result<Vec<String>> {
        use std::io::{Read, Seek, SeekFrom};
        let wanted: std::collections::HashSet<&str> =
            candidates.iter().map(String::as_str).collect();
        let meta = self.file.metadata()?;
        if !meta.is_file() || wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut file = File::open(&self.path)?;
        // `buf` holds the file's bytes from offset `start` to the end.
        let mut buf: Vec<u8> = Vec::new();
        let mut start = meta.len();
        let mut line_end = meta.len();
        let mut found = Vec::new();
        let mut last_line = true;
        while line_end > 0 {
            // The start of the line that ends at `line_end`: just after the newline before it.
            let line_start = loop {
                // The bytes of `buf` before the line's own newline (none while the line's
                // end is not read yet).
                let before = (line_end - 1)
                    .checked_sub(start)
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0);
                if let Some(p) = buf[..before].iter().rposition(|b| *b == b'\n') {
                    break start + p as u64 + 1;
                }
                if start == 0 {
                    break 0;
                }
                let from = start.saturating_sub(TAIL_CHUNK);
                let mut chunk = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
                file.seek(SeekFrom::Start(from))?;
                file.read_exact(&mut chunk)?;
                chunk.extend_from_slice(&buf);
                buf = chunk;
                start = from;
            };
            let line = &buf[usize::try_from(line_start - start).unwrap_or(0)
                ..usize::try_from(line_end - start).unwrap_or(0)];
            if std::mem::take(&mut last_line) && line.last() != Some(&b'\n') {
                // Cut off mid-write by a crash: no reader ever had a whole line here.
                self.file.set_len(line_start)?;
                self.file.sync_data()?;
                line_end = line_start;
                continue;
            }
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("task_id")?.as_str().map(str::to_owned));
            match id {
                Some(id) if wanted.contains(id.as_str()) && !found.contains(&id) => found.push(id),
                _ => break,
            }
            if found.len() == wanted.len() {
                break;
            }
            line_end = line_start;
        }
        Ok(found)
    }
}

impl ResultSink for FileSink {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn reconcile(&mut self, candidates: &[String]) -> Result<Vec<String>, SinkError> {
        self.unrecorded_tail(candidates)
            .map_err(|source| SinkError::Reconcile {
                target: self.path.display().to_string(),
                source,
            })
    }

    fn publish(&mut self, report: &TaskReport) -> Result<Sent, SinkError> {
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
        written
            .map(|()| Sent::Done)
            .map_err(|source| SinkError::Write {
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
            limits: Default::default(),
            invalid: None,
            deterministic: false,
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

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reconciling_finds_the_unrecorded_end_and_cuts_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let mut sink = FileSink::open(&path).unwrap();
        for id in ["a", "b", "c", "d"] {
            sink.publish(&report(id)).unwrap();
        }
        // The ledger recorded a and b; c and d were written, e is unknown to the file.
        let found = sink.reconcile(&ids(&["c", "d", "e"])).unwrap();
        assert_eq!(found, ids(&["d", "c"]));
        // Nothing unrecorded at the end: b is recorded, so the scan stops at d.
        assert!(sink.reconcile(&ids(&["b"])).unwrap().is_empty());
        // A line cut off mid-write is removed, the lines before it count.
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, [&whole[..], b"{\"task_id\":\"e\",\"sta"].concat()).unwrap();
        let mut sink = FileSink::open(&path).unwrap();
        assert_eq!(sink.reconcile(&ids(&["d", "e"])).unwrap(), ids(&["d"]));
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    proptest::proptest! {
        /// Whatever the line lengths (across chunk borders) and wherever the recorded part
        /// ends, the unrecorded end of the file is found exactly.
        #[test]
        fn reconciling_finds_exactly_the_unrecorded_lines(
            sizes in proptest::collection::vec(0usize..70_000, 1..8),
            recorded in 0usize..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("results.jsonl");
            let mut sink = FileSink::open(&path).unwrap();
            let mut all = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let mut r = report(&format!("t{i}"));
                r.error = Some("x".repeat(*size));
                sink.publish(&r).unwrap();
                all.push(format!("t{i}"));
            }
            let recorded = recorded.min(all.len());
            let mut candidates = all[recorded..].to_vec();
            candidates.push("never-written".into());
            let mut found = sink.reconcile(&candidates).unwrap();
            found.reverse();
            proptest::prop_assert_eq!(found, all[recorded..].to_vec());
        }
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
