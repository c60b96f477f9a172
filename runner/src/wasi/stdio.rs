//! Sources and sinks for the guest's fds 0, 1 and 2.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where the guest's stdin comes from.
#[derive(Clone, Debug)]
pub enum StdinSource {
    /// Always at end of file.
    Null,
    /// The host process's stdin.
    Inherit,
}

/// Where one of the guest's output streams goes.
#[derive(Clone, Debug)]
pub enum OutputSink {
    Capture(CaptureBuffer),
    /// The host process's stdout/stderr, flushed after each `fd_write` so that
    /// output interleaves sensibly with the runner's own logging.
    Inherit,
}

/// Bounded in-memory capture of a guest stream: keeps the first `limit` bytes,
/// counts all bytes written.
#[derive(Clone, Debug)]
pub struct CaptureBuffer(Arc<Mutex<CaptureState>>);

#[derive(Debug)]
struct CaptureState {
    limit: usize,
    bytes: Vec<u8>,
    total_bytes: u64,
}

/// What a [`CaptureBuffer`] holds at one moment.
///
/// The capture was truncated iff `total_bytes > bytes.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub total_bytes: u64,
}

impl CaptureBuffer {
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Mutex::new(CaptureState {
            limit,
            bytes: Vec::new(),
            total_bytes: 0,
        })))
    }

    /// Copies out the current contents; callable from another thread while the
    /// guest still runs.
    pub fn snapshot(&self) -> Captured {
        let state = self.lock();
        Captured {
            bytes: state.bytes.clone(),
            total_bytes: state.total_bytes,
        }
    }

    /// Appends `data`, dropping whatever exceeds the limit but still counting it.
    pub(crate) fn append(&self, data: &[u8]) {
        let mut state = self.lock();
        let room = state.limit.saturating_sub(state.bytes.len());
        let keep = data.get(..room).unwrap_or(data);
        state.bytes.extend_from_slice(keep);
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        state.total_bytes = state.total_bytes.saturating_add(len);
    }

    // A panic while holding the lock cannot leave the state inconsistent (each
    // update is a plain append + counter), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, CaptureState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl OutputSink {
    /// Writes all of `data`; `is_stderr` picks the inherited stream.
    pub(crate) fn write(&self, data: &[u8], is_stderr: bool) -> io::Result<()> {
        match self {
            Self::Capture(buffer) => {
                buffer.append(data);
                Ok(())
            }
            Self::Inherit if is_stderr => write_flush(&mut io::stderr().lock(), data),
            Self::Inherit => write_flush(&mut io::stdout().lock(), data),
        }
    }
}

impl OutputSink {
    /// Whether the guest should see a terminal (only an inherited stream can be one).
    pub(crate) fn is_terminal(&self, is_stderr: bool) -> bool {
        use std::io::IsTerminal;
        match self {
            Self::Capture(_) => false,
            Self::Inherit if is_stderr => io::stderr().is_terminal(),
            Self::Inherit => io::stdout().is_terminal(),
        }
    }
}

impl StdinSource {
    /// Whether the guest should see a terminal (only the inherited stdin can be one).
    pub(crate) fn is_terminal(&self) -> bool {
        use std::io::IsTerminal;
        match self {
            Self::Null => false,
            Self::Inherit => io::stdin().is_terminal(),
        }
    }
}

fn write_flush(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    out.flush()
}

impl StdinSource {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Null => Ok(0),
            Self::Inherit => io::stdin().lock().read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_prefix_and_counts_everything() {
        let buffer = CaptureBuffer::new(4);
        buffer.append(b"ab");
        buffer.append(b"cdef");
        buffer.append(b"gh");
        let snap = buffer.snapshot();
        assert_eq!(snap.bytes, b"abcd");
        assert_eq!(snap.total_bytes, 8);
    }

    #[test]
    fn snapshot_from_another_thread() {
        let buffer = CaptureBuffer::new(16);
        let writer = buffer.clone();
        let handle = std::thread::spawn(move || writer.append(b"hello"));
        assert!(handle.join().is_ok());
        assert_eq!(buffer.snapshot().bytes, b"hello");
    }
}
