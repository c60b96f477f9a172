//! Fetching one CID to one path: sources in order, each with its share of the total
//! timeout; retries with backoff and jitter within a gateway's share; a second turn for the
//! sources that only ran out of time; the temp-file-then-rename discipline of [`Output`].
//!
//! Time: a source gets the time left divided by the number of sources still to try (the
//! last one all of it), so a dripping or stalled source is cut off at its share and the
//! sources after it still get theirs, and what a quick failure did not use passes on. A
//! source cut off for time, and only for time (not for bad data, a 404 or a body over the
//! cap), gets a second turn, from the start, with what is left once every source has had
//! its first: a slow but honest gateway among quick failures still gets most of the total.
//!
//! Size: a body that keeps coming past `--max-size` is its source's fault: the source is
//! skipped and the next one asked. Only verified content (the root's declared size, or
//! verified blocks adding up past the cap) proves the file too large for every source.
//!
//! The fetch fails with [`FetchError::AllSourcesFailed`], naming every source and why.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cid::Cid;
use reqwest::{Client, ClientBuilder};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{over_cap, FetchError, Reason, Result, SourceFailure};
use crate::gateway::{self, HttpSettings};
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
            "{s:?}: not a gateway: use http://host:port (optionally with /ipfs), https://… or file:///dir"
        )))
    }

    pub fn name(&self) -> String {
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
    /// Bound on one CID's whole fetch, shared out among the sources (see the module doc).
    pub total_timeout: Duration,
    /// Retries per gateway after the first attempt, for transient failures only.
    pub retries: u32,
    /// The first backoff; doubled each retry, with up to 50% jitter added.
    pub backoff: Duration,
    pub max_size: u64,
    pub progress_every: Duration,
}

/// How an attempt at one source ended, when it did not deliver the file.
#[derive(Debug)]
pub enum Failure {
    /// The source does not have the content: try the next one, no retry.
    NotFound(String),
    /// The gateway does not offer this response format: try the next format.
    NotOffered(String),
    /// A transient failure (5xx, 429, network, idle timeout): retry with backoff.
    Transient(String),
    /// The source sent data that failed verification: never ask it again for this CID.
    BadData(FetchError),
    /// The source sent `what` past the size cap, unverified: skip it, ask the next.
    OverCap { what: String, limit: u64 },
    /// The source's share of the total timeout ran out (a mirror checks between reads).
    OutOfTime,
    /// Retrying anywhere cannot help (the verified file is over the cap, a local IO error).
    Fatal(FetchError),
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        if e.is_bad_data() {
            Failure::BadData(e)
        } else {
            Failure::Fatal(e)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotFound(why) | Failure::NotOffered(why) | Failure::Transient(why) => {
                f.write_str(why)
            }
            Failure::BadData(e) | Failure::Fatal(e) => write!(f, "{e}"),
            Failure::OverCap { what, limit } => f.write_str(&over_cap(what, *limit)),
            Failure::OutOfTime => f.write_str("its share of --total-timeout ran out"),
        }
    }
}

/// Builds the HTTP client once for all fetches.
pub fn client(opts: &FetchOptions) -> Result<Client> {
    build_client(
        Client::builder()
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("wasm-exec-fetcher/", env!("CARGO_PKG_VERSION"))),
    )
}

/// A builder that fails (TLS roots, resolver) is a local fault, not bad usage.
fn build_client(builder: ClientBuilder) -> Result<Client> {
    builder
        .build()
        .map_err(|source| FetchError::HttpClient { source })
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
    try_sources(client, opts, cid, &mut out).await?;
    let size = out.commit(target)?;
    info!(%cid, path = %target.display(), bytes = size, "fetched and verified");
    Ok(size)
}

/// Far enough for any fetch, near enough that adding it to now cannot overflow.
const LONGEST_TOTAL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

async fn try_sources(
    client: &Client,
    opts: &FetchOptions,
    cid: &Cid,
    out: &mut Output,
) -> Result<()> {
    let turns = Turns {
        client,
        opts,
        settings: HttpSettings {
            idle_timeout: opts.idle_timeout,
            max_size: opts.max_size,
            progress_every: opts.progress_every,
        },
        cid,
    };
    let now = Instant::now();
    let deadline = now
        .checked_add(opts.total_timeout.min(LONGEST_TOTAL))
        .unwrap_or(now);
    let mut failures = Vec::with_capacity(opts.sources.len());
    let mut cut_off = Vec::new();
    for (i, source) in opts.sources.iter().enumerate() {
        let left = opts.sources.len() - i;
        let Some(reason) = turns.take(source, out, deadline, left).await? else {
            return Ok(());
        };
        if matches!(reason, Reason::TooSlow { .. }) {
            cut_off.push(i);
        }
        failures.push(SourceFailure {
            source: source.name(),
            reason,
        });
    }
    // The second turn: only time stopped these, and the others have all had theirs.
    for (k, &i) in cut_off.iter().enumerate() {
        let (Some(source), Some(failure)) = (opts.sources.get(i), failures.get_mut(i)) else {
            continue;
        };
        if Instant::now() >= deadline {
            break;
        }
        info!(%cid, source = %source.name(), "a second turn for a source cut off for time");
        let Some(again) = turns.take(source, out, deadline, cut_off.len() - k).await? else {
            return Ok(());
        };
        let first = std::mem::replace(&mut failure.reason, Reason::NotTried);
        failure.reason = match (first, again) {
            (
                Reason::TooSlow {
                    given,
                    passes,
                    last,
                },
                Reason::TooSlow {
                    given: more,
                    passes: more_passes,
                    last: later,
                },
            ) => Reason::TooSlow {
                given: given.saturating_add(more),
                passes: passes.saturating_add(more_passes),
                last: later.or(last),
            },
            (_, again) => again,
        };
    }
    Err(FetchError::AllSourcesFailed {
        cid: cid.to_string(),
        failures,
    })
}

/// The share of `remaining` for the next of `left` sources: an equal part, so the last one
/// gets all that remains and what an early source leaves unused passes on.
pub fn share(remaining: Duration, left: usize) -> Duration {
    remaining / u32::try_from(left.max(1)).unwrap_or(u32::MAX)
}

/// What every source's turn needs.
struct Turns<'a> {
    client: &'a Client,
    opts: &'a FetchOptions,
    settings: HttpSettings,
    cid: &'a Cid,
}

impl Turns<'_> {
    /// One turn of `source`, with its share of the time to `deadline` among the `left`
    /// sources still to try. `Ok(None)`: it delivered; `Ok(Some)`: why not, and the next
    /// source is asked; `Err`: no source can deliver.
    async fn take(
        &self,
        source: &Source,
        out: &mut Output,
        deadline: Instant,
        left: usize,
    ) -> Result<Option<Reason>> {
        let cid = self.cid;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            warn!(%cid, source = %source.name(), "not tried: --total-timeout had run out");
            return Ok(Some(Reason::NotTried));
        }
        let given = share(remaining, left);
        let reason = match source {
            Source::Mirror(dir) => {
                let until = std::time::Instant::now().checked_add(given);
                match fetch_from_mirror(dir, cid, out, self.opts.max_size, until) {
                    Ok(()) => return Ok(None),
                    Err(f) => settle(f, given)?,
                }
            }
            Source::Gateway(base) => {
                let mut last = None;
                let tries = self.gateway(base, out, &mut last);
                match tokio::time::timeout(given, tries).await {
                    Ok(Ok(None)) => return Ok(None),
                    Ok(Ok(Some(reason))) => reason,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => Reason::TooSlow {
                        given,
                        passes: 1,
                        last,
                    },
                }
            }
        };
        warn!(%cid, source = %source.name(), "{reason}");
        Ok(Some(reason))
    }

    /// The tries at one gateway, answering as [`Turns::take`] does: transient failures are
    /// retried with backoff (within the share the caller's timeout enforces, so a backoff
    /// can be cut short too); `last` keeps the latest, for the report if time runs out.
    async fn gateway(
        &self,
        base: &str,
        out: &mut Output,
        last: &mut Option<String>,
    ) -> Result<Option<Reason>> {
        let (cid, opts) = (self.cid, self.opts);
        for attempt in 0..=opts.retries {
            out.reset()?;
            let why = match gateway::fetch(self.client, base, cid, out, &self.settings).await {
                Ok(()) => return Ok(None),
                Err(Failure::Transient(why)) => why,
                Err(f) => return settle(f, Duration::ZERO).map(Some),
            };
            warn!(%cid, gateway = %base, attempt = attempt.saturating_add(1), "{why}");
            *last = Some(why);
            if attempt < opts.retries {
                tokio::time::sleep(backoff(opts.backoff, attempt)).await;
            }
        }
        Ok(Some(Reason::Unreachable {
            tries: opts.retries.saturating_add(1),
            last: last.take().unwrap_or_default(),
        }))
    }
}

/// Why a source gave no file, from how its last attempt ended; `Err` when no source can
/// deliver. `given` is the time it had, for [`Failure::OutOfTime`].
fn settle(failure: Failure, given: Duration) -> Result<Reason> {
    Ok(match failure {
        Failure::Fatal(e) => return Err(e),
        Failure::NotFound(why) | Failure::NotOffered(why) => Reason::NotFound(why),
        Failure::BadData(e) => Reason::BadData(Box::new(e)),
        Failure::OverCap { what, limit } => Reason::OverCap { what, limit },
        Failure::OutOfTime => Reason::TooSlow {
            given,
            passes: 1,
            last: None,
        },
        Failure::Transient(last) => Reason::Unreachable { tries: 1, last },
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
    fn shares_split_what_remains_and_the_last_gets_all() {
        let total = Duration::from_secs(12);
        assert_eq!(share(total, 3), Duration::from_secs(4));
        assert_eq!(share(total, 1), total);
        assert_eq!(share(total, 0), total);
        // A source that used 1 s of its 4 leaves 11 s: the next two get 5.5 s each.
        assert_eq!(
            share(Duration::from_secs(11), 2),
            Duration::from_millis(5500)
        );
    }

    #[test]
    fn a_client_that_cannot_be_built_is_a_local_failure() {
        let err = build_client(Client::builder().user_agent("a\nb")).unwrap_err();
        assert!(matches!(err, FetchError::HttpClient { .. }), "{err:?}");
        assert_eq!(err.exit_code(), pod::exit::fetcher::FAILED);
    }

    #[test]
    fn only_a_fatal_failure_stops_the_other_sources() {
        let given = Duration::from_secs(2);
        let over = Failure::OverCap {
            what: "plain body".into(),
            limit: 10,
        };
        assert!(matches!(
            settle(over, given),
            Ok(Reason::OverCap { limit: 10, .. })
        ));
        assert!(matches!(
            settle(Failure::OutOfTime, given),
            Ok(Reason::TooSlow { given: g, .. }) if g == given
        ));
        let too_large = FetchError::TooLarge {
            cid: "c".into(),
            size: 11,
            limit: 10,
        };
        assert!(settle(Failure::from(too_large), given).is_err());
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
