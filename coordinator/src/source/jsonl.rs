//! Tasks from a JSON-lines file, or stdin (`-`): one object per line with `task_id`,
//! `wasm_cid`, optional `input_cid` and `entry` (or the Go names `TaskID`, `WasmCID`,
//! `InputCID`, `Entry`). Blank lines and lines starting with `#` are ignored.
//!
//! Lines are read as bytes, so one line that is not UTF-8, not JSON, not a valid task or
//! longer than [`MAX_LINE_BYTES`] is reported with its number and skipped, and every line
//! after it still runs. A source that cannot be read (an I/O error, a directory) is an
//! error, never a quiet end.

use std::path::Path;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tracing::warn;

use crate::source::{NextTask, SourceError, TaskSource};
use crate::task::Task;

/// The longest task line read; longer lines are skipped unread (a task is four short
/// strings; `POST /tasks` has the same cap).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// A "line" this long without a newline is no task file (`/dev/zero`): the source is
/// broken, rather than read on for ever.
pub const MAX_SKIPPED_LINE_BYTES: u64 = 16 << 20;

pub struct JsonLinesSource {
    name: String,
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
    /// The line being read: kept here, not in the future, so that a `next_task` future
    /// dropped mid-line (the reconciler races it) loses nothing.
    partial: Partial,
    line_no: u64,
    done: bool,
    /// Lines skipped so far, for the summary.
    skipped: u64,
}

impl std::fmt::Debug for JsonLinesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonLinesSource({}, line {})", self.name, self.line_no)
    }
}

impl JsonLinesSource {
    /// Opens `path`, or stdin for `-`. A directory or an unreadable file is an error now.
    pub async fn open(path: &Path) -> Result<Self, SourceError> {
        if path == Path::new("-") {
            return Ok(Self::from_reader(
                "stdin".into(),
                Box::new(BufReader::new(tokio::io::stdin())),
            ));
        }
        let open_error = |source: std::io::Error| SourceError::Open {
            path: path.to_owned(),
            source,
        };
        let meta = tokio::fs::metadata(path).await.map_err(open_error)?;
        if meta.is_dir() {
            return Err(SourceError::NotAFile {
                path: path.to_owned(),
                what: "a directory",
            });
        }
        let file = tokio::fs::File::open(path).await.map_err(open_error)?;
        Ok(Self::from_reader(
            path.display().to_string(),
            Box::new(BufReader::new(file)),
        ))
    }

    pub fn from_reader(name: String, reader: Box<dyn AsyncBufRead + Send + Unpin>) -> Self {
        Self {
            name,
            reader,
            partial: Partial::default(),
            line_no: 0,
            done: false,
            skipped: 0,
        }
    }

    /// Lines skipped as bad so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// What a line holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Task(Box<Task>),
    /// Blank, or a `#` comment.
    Nothing,
    /// Why the line is not a task.
    Bad(String),
}

/// One line's task, or why the line is not one. Pure: bytes in.
pub fn parse_line(bytes: &[u8]) -> Line {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Line::Bad(format!(
                "not UTF-8 text (invalid byte at {})",
                e.valid_up_to()
            ))
        }
    };
    let line = text.trim();
    if line.is_empty() || line.starts_with('#') {
        return Line::Nothing;
    }
    match serde_json::from_str::<Task>(line) {
        Ok(t) => Line::Task(Box::new(t)),
        Err(e) => Line::Bad(e.to_string()),
    }
}

/// Reads one line into `buf` (without its newline), keeping at most `max` bytes: returns
/// `None` at the end of input, `Some(true)` when the line was longer and cut. A line longer
/// than [`MAX_SKIPPED_LINE_BYTES`] is an `InvalidData` error.
/// A line read so far: its bytes (at most the cap), how many it really has, and whether
/// any byte came at all.
#[derive(Debug, Default)]
struct Partial {
    buf: Vec<u8>,
    seen: u64,
    any: bool,
}

/// Reads on with the line in `p` up to its newline (or the end of the input): `Some(cut)`
/// when a line is complete (`cut` if it was longer than `max`, its first `max` bytes in
/// `p.buf`), `None` at the end. Cancel-safe: the only await is `fill_buf`, and what was
/// consumed is in `p` before the next one.
async fn read_line(
    reader: &mut (dyn AsyncBufRead + Send + Unpin),
    p: &mut Partial,
    max: usize,
) -> std::io::Result<Option<bool>> {
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(p.any.then_some(p.seen > max as u64));
        }
        p.any = true;
        let (part, used, end) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        p.seen += part.len() as u64;
        let room = max.saturating_sub(p.buf.len());
        p.buf.extend_from_slice(&part[..part.len().min(room)]);
        reader.consume(used);
        if end {
            return Ok(Some(p.seen > max as u64));
        }
        if p.seen > MAX_SKIPPED_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_SKIPPED_LINE_BYTES} bytes: this is not a file of task lines"),
            ));
        }
    }
}

impl TaskSource for JsonLinesSource {
    fn next_task(&mut self) -> NextTask<'_> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            loop {
                let cut =
                    match read_line(&mut *self.reader, &mut self.partial, MAX_LINE_BYTES).await {
                        Ok(Some(cut)) => cut,
                        Ok(None) => {
                            self.done = true;
                            return Ok(None);
                        }
                        Err(source) => {
                            self.done = true;
                            return Err(SourceError::Read {
                                name: self.name.clone(),
                                line: self.line_no + 1,
                                source,
                            });
                        }
                    };
                self.line_no += 1;
                let line = std::mem::take(&mut self.partial);
                let why = if cut {
                    format!("longer than {MAX_LINE_BYTES} bytes")
                } else {
                    match parse_line(&line.buf) {
                        Line::Task(task) => return Ok(Some(*task)),
                        Line::Nothing => continue,
                        Line::Bad(why) => why,
                    }
                };
                self.skipped += 1;
                warn!(source = %self.name, line = self.line_no, "skipping line {}: {why}", self.line_no);
            }
        })
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CID: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

    fn task_line(id: &str) -> Vec<u8> {
        format!("{{\"task_id\":\"{id}\",\"wasm_cid\":\"{CID}\"}}\n").into_bytes()
    }

    async fn drain(bytes: Vec<u8>) -> (Vec<String>, u64) {
        let mut src = JsonLinesSource::from_reader(
            "t".into(),
            Box::new(BufReader::with_capacity(7, std::io::Cursor::new(bytes))),
        );
        let mut ids = Vec::new();
        while let Some(t) = src.next_task().await.unwrap() {
            ids.push(t.task_id);
        }
        (ids, src.skipped)
    }

    /// A reader that is not ready every other time it is asked.
    struct Hesitant<R> {
        inner: R,
        ready: bool,
    }

    impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Hesitant<R> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.ready = !self.ready;
            if self.ready {
                std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    }

    #[tokio::test]
    async fn a_read_dropped_mid_line_loses_nothing() {
        use futures_util::FutureExt;
        let mut text = Vec::new();
        for i in 0..50 {
            text.extend_from_slice(&task_line(&format!("t{i}")));
        }
        let reader = Hesitant {
            inner: std::io::Cursor::new(text),
            ready: false,
        };
        let mut src =
            JsonLinesSource::from_reader("t".into(), Box::new(BufReader::with_capacity(7, reader)));
        let mut ids = Vec::new();
        // Each try is dropped when not ready at once, as a lost race drops it.
        for _ in 0..100_000 {
            match src.next_task().now_or_never() {
                Some(Ok(Some(t))) => ids.push(t.task_id),
                Some(Ok(None)) => break,
                Some(Err(e)) => panic!("{e}"),
                None => {}
            }
        }
        let want: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        assert_eq!(ids, want);
        assert_eq!(src.skipped, 0);
    }

    #[tokio::test]
    async fn bad_lines_are_skipped_and_the_rest_run() {
        let mut text = task_line("a");
        text.extend_from_slice(b"not json\n\n# comment\n\xff\xfe\n");
        text.extend_from_slice(format!("{{\"task_id\":\"b\",\"wasm_cid\":\"bad\"}}\n{{\"TaskID\":\"c\",\"WasmCID\":\"{CID}\",\"Entry\":\"f\"}}\n").as_bytes());
        text.extend_from_slice(&vec![b'x'; MAX_LINE_BYTES * 3]);
        text.push(b'\n');
        text.extend_from_slice(&task_line("d"));
        text.extend_from_slice(&task_line("e")[..task_line("e").len() - 1]); // no final newline
        let (ids, skipped) = drain(text).await;
        assert_eq!(ids, vec!["a", "c", "d", "e"]);
        assert_eq!(skipped, 4);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever garbage lines (any bytes but a newline) stand between them, every good
        /// line's task is read, in order.
        #[test]
        fn every_good_line_survives_any_bad_neighbour(
            lines in proptest::collection::vec(
                prop_oneof![
                    "[a-z]{1,8}".prop_map(|id| (true, task_line(&id))),
                    proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300)
                        .prop_map(|mut b| { b.push(b'\n'); (false, b) }),
                ],
                0..20,
            )
        ) {
            let want: Vec<String> = lines
                .iter()
                .filter(|(good, _)| *good)
                .map(|(_, l)| serde_json::from_slice::<Task>(l).unwrap().task_id)
                .collect();
            let bytes: Vec<u8> = lines.into_iter().flat_map(|(_, l)| l).collect();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (ids, _) = rt.block_on(drain(bytes));
            // A garbage line may happen to be a valid task itself; every good one is there.
            let mut rest = ids.iter();
            for id in &want {
                prop_assert!(rest.any(|got| got == id), "{id} missing from {ids:?}");
            }
        }
    }

    #[tokio::test]
    async fn an_endless_line_breaks_the_source_instead_of_reading_for_ever() {
        let mut src = JsonLinesSource::from_reader(
            "zero".into(),
            Box::new(BufReader::new(tokio::io::repeat(0))),
        );
        let err = src.next_task().await.unwrap_err().to_string();
        assert!(err.contains("not a file of task lines"), "{err}");
    }

    #[tokio::test]
    async fn a_directory_or_a_missing_file_is_an_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let err = JsonLinesSource::open(dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory"), "{err}");
        let err = JsonLinesSource::open(&dir.path().join("missing"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[tokio::test]
    async fn a_read_error_is_an_error_not_the_end() {
        struct Broken;
        impl tokio::io::AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("EIO")))
            }
        }
        let mut src =
            JsonLinesSource::from_reader("broken".into(), Box::new(BufReader::new(Broken)));
        let err = src.next_task().await.unwrap_err().to_string();
        assert!(err.contains("broken") && err.contains("EIO"), "{err}");
        assert_eq!(src.next_task().await.unwrap(), None);
    }
}
