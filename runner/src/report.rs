//! Writing the result to its three places: the result file (atomically), the termination
//! message file (cut to 4096 bytes, only when it exists) and the last line of stdout. Every
//! copy is held to the result's caps ([`TaskResult::to_bounded_line`]).
//!
//! The result file is replaced through a temp file and a rename only when it is a regular
//! file or does not exist yet. Anything else at that path is never replaced: a character
//! device (`/dev/null`, `/dev/stdout`) or a FIFO with a reader is written in place, a
//! symlink is followed to what it names, and a directory, socket or FIFO without a reader
//! is refused by name.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use crate::result::{TaskResult, TERMINATION_MESSAGE_LIMIT};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write the result file {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the termination message {path}: {source}")]
    Termination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the result to stdout: {0}")]
    Stdout(#[source] io::Error),
}

/// Writes all three copies, each attempted even when another failed; returns the first
/// failure.
pub fn publish(
    result: &TaskResult,
    output: &Path,
    termination_log: &Path,
) -> Result<(), ReportError> {
    let line = result.to_bounded_line();
    let written = write_result_file(output, format!("{line}\n").as_bytes()).map_err(|source| {
        ReportError::Output {
            path: output.to_owned(),
            source,
        }
    });
    let terminated = write_termination_message(termination_log, result);
    let printed = {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(ReportError::Stdout)
    };
    written.and(terminated).and(printed)
}

/// Writes the termination message only where Kubernetes provides the file; elsewhere (a
/// laptop, a test) `/dev/termination-log` does not exist and nothing is written.
fn write_termination_message(path: &Path, result: &TaskResult) -> Result<(), ReportError> {
    if !path.exists() {
        return Ok(());
    }
    let mut capped = result.clone();
    capped.cap_fields();
    let msg = capped.fit_to(TERMINATION_MESSAGE_LIMIT);
    // In place, never by rename: Kubernetes bind-mounts this file. A FIFO without a reader
    // or a directory is refused rather than waited on.
    let kind = fs::metadata(path)
        .map_err(|source| ReportError::Termination {
            path: path.to_owned(),
            source,
        })?
        .file_type();
    let written = if kind.is_file() || kind.is_char_device() || kind.is_fifo() {
        write_in_place(path, msg.as_bytes(), kind.is_file())
    } else {
        Err(not_writable(path, kind))
    };
    written.map_err(|source| ReportError::Termination {
        path: path.to_owned(),
        source,
    })
}

/// Writes the result file: atomically when `path` is a regular file or nothing yet, in
/// place when it is a character device or a FIFO with a reader; a symlink is followed;
/// anything else is refused, naming what is there.
pub fn write_result_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(resolved) => resolved,
            // A dangling link: create what it names, as a write through it would.
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolve_dangling(path)?,
            Err(e) => return Err(e),
        },
        _ => path.to_owned(),
    };
    let kind = match fs::metadata(&target) {
        Ok(m) => m.file_type(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return write_atomic(&target, bytes),
        Err(e) => return Err(e),
    };
    if kind.is_file() {
        write_atomic(&target, bytes)
    } else if kind.is_char_device() || kind.is_fifo() {
        // Never replaced by a regular file.
        write_in_place(&target, bytes, false)
    } else {
        Err(not_writable(&target, kind))
    }
}

/// Writes `bytes` into what is at `path` (truncating a regular file first). O_NONBLOCK: a
/// FIFO without a reader fails at once (ENXIO) instead of hanging the runner, and one
/// whose reader stops reading fails the write (EAGAIN) rather than blocking; a device or a
/// file ignores the flag.
fn write_in_place(path: &Path, bytes: &[u8], truncate: bool) -> io::Result<()> {
    let kind = fs::metadata(path).map(|m| m.file_type()).ok();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(truncate)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            let what = kind.map_or("file", describe);
            io::Error::new(
                e.kind(),
                format!(
                    "{} is a {what} that cannot be opened for writing: {e}",
                    path.display()
                ),
            )
        })?;
    f.write_all(bytes)
}

fn not_writable(path: &Path, kind: fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a {}, not a file; a result is written only to a regular file, a character device or a FIFO",
            path.display(),
            describe(kind)
        ),
    )
}

/// The path a dangling symlink names, resolved against the link's directory.
fn resolve_dangling(link: &Path) -> io::Result<PathBuf> {
    let to = fs::read_link(link)?;
    Ok(match link.parent() {
        Some(dir) if to.is_relative() => dir.join(to),
        _ => to,
    })
}

fn describe(kind: fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so a
/// reader sees the old file or the whole new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Status;

    #[test]
    fn atomic_write_creates_parents_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/result.json");
        write_atomic(&path, b"{}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn atomic_write_into_a_file_path_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        assert!(write_atomic(&blocker.join("result.json"), b"{}").is_err());
    }

    #[test]
    fn a_termination_log_that_cannot_take_a_message_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let r = TaskResult::new(Some("t".into()), Status::Ok);
        let err = write_termination_message(&fifo, &r)
            .unwrap_err()
            .to_string();
        assert!(err.contains("FIFO"), "{err}");
        let err = write_termination_message(dir.path(), &r)
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory"), "{err}");
        write_termination_message(Path::new("/dev/null"), &r).unwrap();
    }

    #[test]
    fn termination_message_is_written_only_when_the_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("termination-log");
        let r = TaskResult::new(Some("t".into()), Status::Ok);
        write_termination_message(&log, &r).unwrap();
        assert!(!log.exists());
        fs::write(&log, b"").unwrap();
        write_termination_message(&log, &r).unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), r.to_line());
    }
}
