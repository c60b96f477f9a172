//! The fetcher's one error type. Every variant names the CID, source or file concerned and
//! what was expected against what came, so a failed init container's log says why.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{input:?} is not a CID: {reason}")]
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
    #[error("{cid}: the content exceeds the size cap of {limit} bytes (--max-size)")]
    TooLarge { cid: String, limit: u64 },
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
    #[error("no file in the mirror {dir} has this CID{detail}")]
    NotInMirror { dir: PathBuf, detail: String },
    #[error("{0}")]
    Usage(String),
    #[error("{cid}: could not be fetched from any source: {attempts}")]
    AllSourcesFailed { cid: String, attempts: String },
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
}
