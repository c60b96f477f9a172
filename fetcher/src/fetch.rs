//! Fetching one CID to one path: sources in order, retries with backoff and jitter, a total
//! deadline, and the temp-file-then-rename discipline of [`Output`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use cid::Cid;
use reqwest::Client;
use tracing::{info, warn};

use crate::error::{FetchError, Result};
use crate::gateway::{self, Failure, HttpSettings};
use crate::mirror::fetch_from_mirror;
use crate::output::Output;

/// Where content may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An HTTP gateway, normalized to `http://host:port` (no `/ipfs`).
    Gateway(String),
    /// A local directory (`--mirror DIR`, or a `file://` gateway).
    Mirror(PathBuf),
}

impl Source {
    /// `http(s)://…` (with or without `/ipfs`) or `file:///dir`.
    pub fn parse(s: &str) -> Result<Source> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Source::Mirror(PathBuf::from(path)));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Source::Gateway(gateway::normalize_base(s)));
        }
        Err(FetchError::Usage(format!(
            "{s:?} is not a gateway: use http://host:port (optionally with /ipfs), https://… or file:///dir"
        )))
    }

    fn name(&self) -> String {
        match self {
            Source::Gateway(url) => url.clone(),
            Source::Mirror(dir) => format!("mirror {}", dir.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub sources: Vec<Source>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Bound on one CID's whole fetch, across sources and retries.
    pub total_timeout: Duration,
    /// Retries per gateway after the first attempt, for transient failures only.
    pub retries: u32,
    /// The first backoff; doubled each retry, with up to 50% jitter added.
    pub backoff: Duration,
    pub max_size: u64,
    pub progress_every: Duration,
}

/// Builds the HTTP client once for all fetches.
pub fn client(opts: &FetchOptions) -> Result<Client> {
    Client::builder()
        .connect_timeout(opts.connect_timeout)
        .user_agent(concat!("wasm-exec-fetcher/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Usage(format!("cannot build the HTTP client: {e}")))
}

/// Fetches `cid` to `target`; returns the file's size. On failure nothing is at `target`.
pub async fn fetch_to_path(
    client: &Client,
    opts: &FetchOptions,
    cid: &Cid,
    target: &Path,
) -> Result<u64> {
    if opts.sources.is_empty() {
        return Err(FetchError::Usage(
            "no source: give --gateway URL (or IPFS_GATEWAY) or --mirror DIR".into(),
        ));
    }
    let mut out = Output::create(target)?;
    let deadline = tokio::time::Instant::now() + opts.total_timeout;
    match tokio::time::timeout_at(deadline, try_sources(client, opts, cid, &mut out)).await {
        Ok(Ok(())) => {
            let size = out.commit(target)?;
            info!(%cid, path = %target.display(), bytes = size, "fetched and verified");
            Ok(size)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(FetchError::AllSourcesFailed {
            cid: cid.to_string(),
            attempts: format!("the total timeout of {:?} ran out", opts.total_timeout),
        }),
    }
}

async fn try_sources(
    client: &Client,
    opts: &FetchOptions,
    cid: &Cid,
    out: &mut Output,
) -> Result<()> {
    let settings = HttpSettings {
        idle_timeout: opts.idle_timeout,
        max_size: opts.max_size,
        progress_every: opts.progress_every,
    };
    let mut attempts = Vec::new();
    for source in &opts.sources {
        // Each path below starts from an empty output itself (mirror copy, gateway attempt).
        let base = match source {
            Source::Mirror(dir) => match fetch_from_mirror(dir, cid, out, opts.max_size) {
                Ok(()) => return Ok(()),
                Err(e @ FetchError::TooLarge { .. }) => return Err(e),
                Err(e) => {
                    warn!(%cid, source = %source.name(), "{e}");
                    attempts.push(format!("{}: {e}", source.name()));
                    continue;
                }
            },
            Source::Gateway(base) => base,
        };
        for attempt in 0..=opts.retries {
            out.reset()?;
            let failure = match gateway::fetch(client, base, cid, out, &settings).await {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            let note = |what: &str| format!("{base}: {what}");
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::NotFound(why) | Failure::NotOffered(why) => {
                    warn!(%cid, gateway = %base, "not found: {why}");
                    attempts.push(note(&format!("not found ({why})")));
                    break;
                }
                Failure::BadData(e) => {
                    // Never ask this gateway again for this CID.
                    warn!(%cid, gateway = %base, "served data that failed verification: {e}");
                    attempts.push(note(&format!("served bad data: {e}")));
                    break;
                }
                Failure::Transient(why) => {
                    warn!(%cid, gateway = %base, attempt = attempt + 1, "{why}");
                    attempts.push(note(&why));
                    if attempt < opts.retries {
                        tokio::time::sleep(backoff(opts.backoff, attempt)).await;
                    }
                }
            }
        }
    }
    Err(FetchError::AllSourcesFailed {
        cid: cid.to_string(),
        attempts: attempts.join("; "),
    })
}

/// `base * 2^attempt`, plus up to half of that again at random, so that many init
/// containers retrying one gateway do not retry in lockstep.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let jitter = exp.mul_f64(rand::random::<f64>() * 0.5);
    exp.saturating_add(jitter)
}

/// Verifies a CAR file against `cid`, writing the file to `target` when given.
pub fn verify_car_file(car: &Path, cid: &Cid, target: Option<&Path>, max_size: u64) -> Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(car).map_err(|e| FetchError::io(car, e))?;
    let mut out = target.map(Output::create).transpose()?;
    let mut decoder = crate::car::CarDecoder::new();
    let mut verifier = crate::verify::DagVerifier::new(*cid, max_size);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::io(car, e)),
        };
        decoder.push(&buf[..n]);
        while let Some((block_cid, block)) = decoder.next_frame()? {
            let emits = verifier.accept(&block_cid, &block)?;
            if let Some(o) = out.as_mut() {
                o.apply(&block, emits)?;
            }
        }
    }
    decoder.finish()?;
    let emits = verifier.finish()?;
    if let Some(o) = out.as_mut() {
        o.apply(&[], emits)?;
    }
    match (out, target) {
        (Some(o), Some(t)) => o.commit(t),
        _ => Ok(verifier.written()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("http://127.0.0.1:18480/ipfs").unwrap(),
            Source::Gateway("http://127.0.0.1:18480".into())
        );
        assert_eq!(
            Source::parse("file:///srv/wasm").unwrap(),
            Source::Mirror(PathBuf::from("/srv/wasm"))
        );
        assert!(Source::parse("ftp://x").is_err());
    }

    #[test]
    fn backoff_grows_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let d = backoff(base, attempt);
            let floor = base * (1 << attempt);
            assert!(d >= floor && d <= floor.mul_f64(1.5), "{attempt}: {d:?}");
        }
    }
}
