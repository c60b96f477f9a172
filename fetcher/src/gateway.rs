//! One HTTP gateway, asked for one CID: a CAR of the whole DAG if it offers one, else raw
//! blocks one by one, else the plain file (checked by recomputing its CID).
//!
//! Every response is streamed through the verifier into the output file; nothing is kept
//! whole in memory. An idle timeout applies to the response and to every body read; the
//! caller bounds the whole attempt by the gateway's share of the total timeout. A body that
//! goes past the size cap before it is verified is this gateway's fault
//! ([`Failure::OverCap`]), not proof that the file is too large.

use std::time::{Duration, Instant};

use cid::Cid;
use reqwest::{Client, Response, StatusCode};
use tracing::{debug, info};

use crate::car::{CarDecoder, MAX_FRAME_LEN};
use crate::cid::RAW;
use crate::error::{report, FetchError};
use crate::fetch::Failure;
use crate::importer::FileCheck;
use crate::output::Output;
use crate::verify::DagVerifier;

const ACCEPT_CAR: &str = "application/vnd.ipld.car;version=1;order=dfs;dups=y";
const ACCEPT_RAW: &str = "application/vnd.ipld.raw";

/// Settings for gateway requests.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub idle_timeout: Duration,
    pub max_size: u64,
    pub progress_every: Duration,
}

/// `http://host:port` or `http://host:port/ipfs` (any trailing slash) → `http://host:port`.
pub fn normalize_base(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    trimmed
        .strip_suffix("/ipfs")
        .unwrap_or(trimmed)
        .trim_end_matches('/')
        .to_owned()
}

/// Fetches `cid` from the gateway at `base` into `out`, trying CAR, raw, then plain.
pub async fn fetch(
    client: &Client,
    base: &str,
    cid: &Cid,
    out: &mut Output,
    s: &HttpSettings,
) -> Result<(), Failure> {
    let car = match fetch_car(client, base, cid, out, s).await {
        Err(Failure::NotOffered(why)) => why,
        other => return other,
    };
    debug!(gateway = base, %cid, "no CAR ({car}); trying raw blocks");
    out.reset()?;
    let raw = match fetch_raw(client, base, cid, out, s).await {
        Err(Failure::NotOffered(why)) => why,
        other => return other,
    };
    debug!(gateway = base, %cid, "no raw blocks ({raw}); trying the plain file");
    out.reset()?;
    match fetch_plain(client, base, cid, out, s).await {
        Err(Failure::NotOffered(plain)) => Err(Failure::NotFound(format!(
            "offers no usable format (CAR: {car}; raw: {raw}; plain: {plain})"
        ))),
        other => other,
    }
}

async fn fetch_car(
    client: &Client,
    base: &str,
    cid: &Cid,
    out: &mut Output,
    s: &HttpSettings,
) -> Result<(), Failure> {
    let url = format!("{base}/ipfs/{cid}?format=car&dups=y");
    let mut resp = get(client, &url, Some(ACCEPT_CAR), s).await?;
    require_type(&resp, "application/vnd.ipld.car")?;
    let mut decoder = CarDecoder::new();
    let mut verifier = DagVerifier::new(*cid, s.max_size);
    let mut progress = Progress::new(cid, s.progress_every);
    while let Some(chunk) = next_chunk(&mut resp, s).await? {
        progress.add(chunk.len());
        decoder.push(&chunk);
        while let Some((block_cid, block)) = decoder.next_frame()? {
            let emits = verifier.accept(&block_cid, &block)?;
            out.apply(&block, emits)?;
        }
    }
    decoder.finish()?;
    let emits = verifier.finish()?;
    out.apply(&[], emits)?;
    Ok(())
}

async fn fetch_raw(
    client: &Client,
    base: &str,
    cid: &Cid,
    out: &mut Output,
    s: &HttpSettings,
) -> Result<(), Failure> {
    let mut verifier = DagVerifier::new(*cid, s.max_size);
    let mut progress = Progress::new(cid, s.progress_every);
    let mut first = true;
    loop {
        let (next, emits) = verifier.next_needed()?;
        out.apply(&[], emits)?;
        let Some(block_cid) = next else {
            return Ok(());
        };
        let url = format!("{base}/ipfs/{block_cid}?format=raw");
        let mut resp = match get(client, &url, Some(ACCEPT_RAW), s).await {
            // A gateway that had the root but lacks a child does not have the file.
            Err(Failure::NotOffered(why)) if !first => return Err(Failure::NotFound(why)),
            other => other?,
        };
        if first {
            require_type(&resp, ACCEPT_RAW)?;
            first = false;
        }
        // A raw leaf is all file bytes: one longer than the room left under the cap would
        // take the file past it, and is not read to the end to find out whether it is true.
        let room = match block_cid.codec() {
            RAW => Some(s.max_size.saturating_sub(verifier.written())),
            _ => None,
        };
        let mut block = Vec::new();
        while let Some(chunk) = next_chunk(&mut resp, s).await? {
            let len = (block.len() as u64).saturating_add(chunk.len() as u64);
            if room.is_some_and(|room| len > room) {
                return Err(Failure::OverCap {
                    what: "a raw block".into(),
                    limit: s.max_size,
                });
            }
            if len > MAX_FRAME_LEN {
                return Err(Failure::BadData(FetchError::Malformed {
                    cid: block_cid.to_string(),
                    what: "raw block",
                    detail: format!("larger than {MAX_FRAME_LEN} bytes"),
                }));
            }
            progress.add(chunk.len());
            block.extend_from_slice(&chunk);
        }
        let emits = verifier.accept(&block_cid, &block)?;
        out.apply(&block, emits)?;
    }
}

async fn fetch_plain(
    client: &Client,
    base: &str,
    cid: &Cid,
    out: &mut Output,
    s: &HttpSettings,
) -> Result<(), Failure> {
    let Some(mut check) = FileCheck::for_cid(cid) else {
        return Err(Failure::NotOffered(
            "a plain body cannot be checked against this CID form".into(),
        ));
    };
    let url = format!("{base}/ipfs/{cid}");
    let mut resp = get(client, &url, None, s).await?;
    // A plain body is unverified until its last byte: past the cap, it is this gateway's.
    if let Some(declared) = resp.content_length().filter(|n| *n > s.max_size) {
        return Err(Failure::OverCap {
            what: format!("the plain body (Content-Length {declared})"),
            limit: s.max_size,
        });
    }
    let mut progress = Progress::new(cid, s.progress_every);
    while let Some(chunk) = next_chunk(&mut resp, s).await? {
        if out.written().saturating_add(chunk.len() as u64) > s.max_size {
            return Err(Failure::OverCap {
                what: "the plain body".into(),
                limit: s.max_size,
            });
        }
        progress.add(chunk.len());
        check.write(&chunk);
        out.write(&chunk)?;
    }
    let got = check.finish();
    if got == *cid {
        Ok(())
    } else {
        Err(Failure::BadData(FetchError::PlainMismatch {
            cid: cid.to_string(),
            got: got.to_string(),
        }))
    }
}

async fn get(
    client: &Client,
    url: &str,
    accept: Option<&str>,
    s: &HttpSettings,
) -> Result<Response, Failure> {
    let mut req = client.get(url);
    if let Some(a) = accept {
        req = req.header(reqwest::header::ACCEPT, a);
    }
    let resp = match tokio::time::timeout(s.idle_timeout, req.send()).await {
        Err(_) => {
            return Err(Failure::Transient(format!(
                "no response within the idle timeout of {:?}",
                s.idle_timeout
            )))
        }
        Ok(Err(e)) => {
            return Err(Failure::Transient(format!(
                "request failed: {}",
                describe(e)
            )))
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    match status {
        StatusCode::OK => Ok(resp),
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            Err(Failure::NotFound(format!("HTTP {status}")))
        }
        StatusCode::TOO_MANY_REQUESTS => Err(Failure::Transient(format!("HTTP {status}"))),
        StatusCode::BAD_REQUEST
        | StatusCode::NOT_ACCEPTABLE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::NOT_IMPLEMENTED => Err(Failure::NotOffered(format!("HTTP {status}"))),
        s if s.is_server_error() => Err(Failure::Transient(format!("HTTP {status}"))),
        other => Err(Failure::NotFound(format!("unexpected HTTP {other}"))),
    }
}

fn require_type(resp: &Response, wanted: &str) -> Result<(), Failure> {
    let got = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if got.trim().to_ascii_lowercase().starts_with(wanted) {
        Ok(())
    } else {
        Err(Failure::NotOffered(format!(
            "answered with Content-Type {got:?}"
        )))
    }
}

async fn next_chunk(
    resp: &mut Response,
    s: &HttpSettings,
) -> Result<Option<bytes::Bytes>, Failure> {
    match tokio::time::timeout(s.idle_timeout, resp.chunk()).await {
        Err(_) => Err(Failure::Transient(format!(
            "no data for {:?} (idle timeout)",
            s.idle_timeout
        ))),
        Ok(Err(e)) => Err(Failure::Transient(format!(
            "the response broke off: {}",
            describe(e)
        ))),
        Ok(Ok(chunk)) => Ok(chunk),
    }
}

/// reqwest's top-level message is generic ("error sending request"); the causes say why.
/// The URL is left out: it holds the CID, which the report names already, and the gateway,
/// which the caller names.
fn describe(e: reqwest::Error) -> String {
    report(&e.without_url())
}

/// A progress line on stderr every few seconds for a large download.
struct Progress {
    cid: String,
    every: Duration,
    started: Instant,
    last: Instant,
    bytes: u64,
}

impl Progress {
    fn new(cid: &Cid, every: Duration) -> Self {
        let now = Instant::now();
        Self {
            cid: cid.to_string(),
            every,
            started: now,
            last: now,
            bytes: 0,
        }
    }

    fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            info!(
                cid = %self.cid,
                "{:.1} MiB received, {:.1} MiB/s",
                self.bytes as f64 / 1048576.0,
                self.bytes as f64 / 1048576.0 / secs
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_are_normalized() {
        for url in [
            "http://127.0.0.1:18480",
            "http://127.0.0.1:18480/",
            "http://127.0.0.1:18480/ipfs",
            "http://127.0.0.1:18480/ipfs/",
        ] {
            assert_eq!(normalize_base(url), "http://127.0.0.1:18480", "{url}");
        }
    }
}
