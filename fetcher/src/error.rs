//! The fetcher's one error type, why each source gave no file ([`SourceFailure`]), and
//! [`report`], the one way an error and its causes are printed. Every variant names the
//! CID, source or file concerned and what was expected against what came, so a failed
//! init container's log says why.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use pod::exit::fetcher::{FAILED, USAGE};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{input:?}: not a CID: {reason}")]
    InvalidCid { input: String, reason: String },
    #[error("{cid}: unsupported {what}; this fetcher handles CIDv0/CIDv1 with codec dag-pb (0x70) or raw (0x55) and hash sha2-256 (0x12)")]
    Unsupported { cid: String, what: String },
    #[error("{cid}: the block's hash does not match: expected sha2-256 {expected}, got {actual}")]
    HashMismatch {
        cid: String,
        expected: String,
        actual: String,
    },
    #[error("{cid}: malformed {what}: {detail}")]
    Malformed {
        cid: String,
        what: &'static str,
        detail: String,
    },
    #[error("{cid}: {kind} nodes are not files; the fetcher retrieves UnixFS files only")]
    NotAFile { cid: String, kind: String },
    #[error("CAR stream: expected block {expected} next (depth-first order), got {got}")]
    UnexpectedBlock { expected: String, got: String },
    #[error("CAR stream: block {got} after the DAG was complete")]
    ExtraBlock { got: String },
    #[error("the stream ended before block {missing} arrived")]
    MissingBlock { missing: String },
    #[error("malformed CAR: {0}")]
    Car(String),
    /// The verified DAG itself shows the file is over the cap (its root's declared size, or
    /// verified blocks adding up past it): every source would send the same, so none is
    /// asked again. A body that merely keeps coming is its source's fault instead
    /// ([`Reason::OverCap`]).
    #[error("{cid}: the file is at least {size} bytes by its verified blocks, over the size cap of {limit} bytes (--max-size)")]
    TooLarge { cid: String, size: u64, limit: u64 },
    #[error("{cid}: the DAG exceeds a structural limit: {detail}")]
    DagLimit { cid: String, detail: String },
    #[error("{cid}: the body served as a plain file hashes to {got}, not to the requested CID (recomputed with kubo's defaults: 256 KiB chunks, balanced, 174 links)")]
    PlainMismatch { cid: String, got: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    /// A local fault (TLS roots, resolver set-up), not bad usage: a retry may succeed.
    #[error("cannot build the HTTP client: {source}")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    #[error("{cid}: no source delivered it: {}", list(failures))]
    AllSourcesFailed {
        cid: String,
        failures: Vec<SourceFailure>,
    },
}

pub type Result<T, E = FetchError> = std::result::Result<T, E>;

impl FetchError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FetchError::Io {
            path: path.into(),
            source,
        }
    }

    /// True when the data itself was wrong: a source that sent it is not asked again.
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            FetchError::HashMismatch { .. }
                | FetchError::Malformed { .. }
                | FetchError::NotAFile { .. }
                | FetchError::UnexpectedBlock { .. }
                | FetchError::ExtraBlock { .. }
                | FetchError::MissingBlock { .. }
                | FetchError::Car(_)
                | FetchError::PlainMismatch { .. }
                | FetchError::Unsupported { .. }
                | FetchError::DagLimit { .. }
        )
    }

    /// The binary's exit code for this error: [`USAGE`] when a retry cannot help because
    /// the request itself is wrong (a CID that cannot be parsed or verified, bad flags or
    /// paths), [`FAILED`] for everything else, local faults included.
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::Usage(_)
            | FetchError::InvalidCid { .. }
            | FetchError::Unsupported { .. } => USAGE,
            _ => FAILED,
        }
    }
}

/// Why one source (a gateway or a mirror) gave no file, in [`FetchError::AllSourcesFailed`].
#[derive(Debug)]
pub struct SourceFailure {
    /// The gateway's URL, or `mirror DIR`.
    pub source: String,
    pub reason: Reason,
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

/// What went wrong at one source, by kind ([`Reason::kind`] is a metric label).
#[derive(Debug)]
pub enum Reason {
    /// 404 or 410, no usable response format, not in the mirror: ask the next source.
    NotFound(String),
    /// It sent data that failed verification: not asked again for this CID.
    BadData(Box<FetchError>),
    /// It sent `what` past the size cap before anything proved the file that large.
    OverCap { what: String, limit: u64 },
    /// Cut off at the end of the time it was `given`, over `passes` turns; `last` is the
    /// last transient failure it had, if any.
    TooSlow {
        given: Duration,
        passes: u32,
        last: Option<String>,
    },
    /// Every try failed transiently (5xx, 429, network, idle timeout).
    Unreachable { tries: u32, last: String },
    /// The total timeout ran out before its turn came.
    NotTried,
}

impl Reason {
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::NotFound(_) => "not found",
            Reason::BadData(_) => "bad data",
            Reason::OverCap { .. } => "too large",
            Reason::TooSlow { .. } => "too slow",
            Reason::Unreachable { .. } => "unreachable",
            Reason::NotTried => "not tried",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Reason::NotFound(why) => write!(f, "{kind} ({why})"),
            Reason::BadData(e) => write!(f, "{kind}: {e}"),
            Reason::OverCap { what, limit } => write!(f, "{kind}: {}", over_cap(what, *limit)),
            Reason::TooSlow {
                given,
                passes,
                last,
            } => {
                write!(
                    f,
                    "{kind}: no verified file within the {} it was given (its share of --total-timeout",
                    secs(*given)
                )?;
                if *passes > 1 {
                    write!(f, ", over {passes} turns")?;
                }
                f.write_str(")")?;
                match last {
                    Some(last) => write!(f, "; the last failure: {last}"),
                    None => Ok(()),
                }
            }
            Reason::Unreachable { tries, last } => {
                write!(f, "{kind}: {tries} tries failed, the last with: {last}")
            }
            Reason::NotTried => write!(f, "{kind}: --total-timeout had run out"),
        }
    }
}

/// How a body over the cap is described, for a source's failure and in logs.
pub fn over_cap(what: &str, limit: u64) -> String {
    format!("{what}: more than the size cap of {limit} bytes (--max-size)")
}

/// A duration as people read it in a log line: `1.5s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn list(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(SourceFailure::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `e` and its causes on one line, each thing said once.
///
/// A cause whose text the line already holds is left out: a thiserror message that embeds
/// its `#[source]` (as [`FetchError::Io`] does) would otherwise print it twice, as anyhow's
/// `{:#}` does. A cause that opens by naming a subject the line has already named (its text
/// up to the first `": "`: a CID, a path) does not name it again, so "fetching CID to PATH"
/// over "PATH: Is a directory" reads "fetching CID to PATH: Is a directory".
pub fn report(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        let text = match text.split_once(": ") {
            Some((subject, rest)) if names(&line, subject) => rest,
            _ => text.as_str(),
        };
        if !text.is_empty() && !line.contains(text) {
            line.push_str(": ");
            line.push_str(text);
        }
        cause = c.source();
    }
    line
}

/// True when `line` holds `subject` as a whole word (not inside a longer path or CID).
fn names(line: &str, subject: &str) -> bool {
    let edge = |c: Option<char>| {
        c.is_none_or(|c| c.is_whitespace() || matches!(c, ':' | ',' | ';' | '(' | ')'))
    };
    !subject.trim().is_empty()
        && line.match_indices(subject).any(|(at, _)| {
            edge(line[..at].chars().next_back()) && edge(line[at + subject.len()..].chars().next())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a context message above it, as anyhow's `.context()` makes.
    #[derive(Debug)]
    struct Context(String, FetchError);

    impl fmt::Display for Context {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl Error for Context {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    fn is_a_directory() -> std::io::Error {
        std::io::Error::from_raw_os_error(21)
    }

    #[test]
    fn an_embedded_source_is_printed_once() {
        let e = FetchError::io("/tmp/out", is_a_directory());
        let line = report(&e);
        let os = is_a_directory().to_string();
        assert_eq!(line, format!("/tmp/out: {os}"));
        assert_eq!(line.matches(&os).count(), 1, "{line}");
    }

    #[test]
    fn a_subject_the_context_named_is_not_named_again() {
        let e = Context(
            "fetching Qm1 to /tmp/out".into(),
            FetchError::io("/tmp/out", is_a_directory()),
        );
        let line = report(&e);
        assert_eq!(line.matches("/tmp/out").count(), 1, "{line}");
        assert!(line.ends_with(&is_a_directory().to_string()), "{line}");

        let e = Context(
            "fetching \"x y\" to out".into(),
            FetchError::InvalidCid {
                input: "x y".into(),
                reason: "bad base".into(),
            },
        );
        assert_eq!(report(&e), "fetching \"x y\" to out: not a CID: bad base");
    }

    #[test]
    fn a_subject_inside_a_longer_word_is_kept() {
        // `/tmp/f` is the parent of the target, not the target: it must stay.
        let e = Context(
            "fetching Qm1 to /tmp/f/out".into(),
            FetchError::io("/tmp/f", is_a_directory()),
        );
        assert!(
            report(&e).contains("/tmp/f/out: /tmp/f: "),
            "{}",
            report(&e)
        );
    }

    #[test]
    fn an_http_client_failure_is_not_a_usage_error() {
        // An invalid header value makes reqwest's builder fail, as broken TLS roots would.
        let Err(source) = reqwest::Client::builder().user_agent("a\nb").build() else {
            panic!("the builder must refuse a header value holding a newline");
        };
        let e = FetchError::HttpClient { source };
        assert_eq!(e.exit_code(), FAILED);
        let line = report(&e);
        assert!(line.starts_with("cannot build the HTTP client: "), "{line}");
        assert_eq!(line.matches("builder error").count(), 1, "{line}");
    }

    #[test]
    fn exit_codes_separate_usage_from_failure() {
        let usage = [
            FetchError::Usage("no source".into()),
            FetchError::InvalidCid {
                input: "x".into(),
                reason: "r".into(),
            },
            FetchError::Unsupported {
                cid: "c".into(),
                what: "codec dag-cbor (0x71)".into(),
            },
        ];
        assert!(usage.iter().all(|e| e.exit_code() == USAGE));
        let failed = [
            FetchError::io("/x", is_a_directory()),
            FetchError::TooLarge {
                cid: "c".into(),
                size: 2,
                limit: 1,
            },
            FetchError::AllSourcesFailed {
                cid: "c".into(),
                failures: Vec::new(),
            },
        ];
        assert!(failed.iter().all(|e| e.exit_code() == FAILED));
    }

    #[test]
    fn every_source_is_listed_with_its_reason() {
        let e = FetchError::AllSourcesFailed {
            cid: "Qm1".into(),
            failures: vec![
                SourceFailure {
                    source: "http://a".into(),
                    reason: Reason::OverCap {
                        what: "plain body".into(),
                        limit: 1024,
                    },
                },
                SourceFailure {
                    source: "http://b".into(),
                    reason: Reason::TooSlow {
                        given: Duration::from_millis(1500),
                        passes: 2,
                        last: None,
                    },
                },
                SourceFailure {
                    source: "mirror /m".into(),
                    reason: Reason::NotFound("no file in it has this CID".into()),
                },
            ],
        };
        let line = e.to_string();
        for want in [
            "http://a: too large: plain body: more than the size cap of 1024 bytes",
            "http://b: too slow: no verified file within the 1.5s",
            "over 2 turns",
            "mirror /m: not found",
        ] {
            assert!(line.contains(want), "{want:?} in {line}");
        }
    }
}
