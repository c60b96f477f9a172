//! The command line: subcommands for people, and init-container mode driven by the
//! environment for a task's pod.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::fetch::{FetchOptions, Source};
use crate::FetchError;

const AFTER_HELP: &str = "\
Init-container mode (no subcommand): fetches $WASM_CID to $FETCH_DIR/module.wasm and, when
set, $INPUT_CID to $FETCH_DIR/input.json, from the gateways in $IPFS_GATEWAY (one URL or
a comma list; http://host:port or http://host:port/ipfs; file:///dir for a mirror).
Exits 0 only when every file is there and verified.

Verification: a CAR (application/vnd.ipld.car) is checked block by block in depth-first
order; raw blocks (application/vnd.ipld.raw) one by one when no CAR is offered; a plain
body only if recomputing its CID with kubo's defaults gives the requested CID. Output
goes to a temp file beside the target and is renamed only after verification.

Sources: each source in turn gets an equal share of the time left of --total-timeout (the
last one all of it); one that is too slow is cut off at its share, one that sends more than
--max-size is skipped, and the next is asked. Sources cut off only for time get a second
turn with what is left. A file whose verified root says it is over --max-size fails at
once. The error names every source and why it failed.

Exit codes: 0 done; 1 a fetch or verification failed, or a local error (disk, HTTP
client); 2 bad usage (an unparsable or unsupported CID, bad flags or paths): a retry
cannot help.";

#[derive(Debug, Parser)]
#[command(
    name = "fetcher",
    version,
    about = "Fetch UnixFS files by CID from IPFS gateways or a mirror, verifying every byte",
    after_long_help = AFTER_HELP,
    after_help = "Run with --help for init-container mode, verification and exit codes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub net: NetArgs,

    /// Init mode: the module's CID, written to FETCH_DIR/module.wasm.
    #[arg(long = "wasm-cid", env = pod::env::WASM_CID, value_name = "CID")]
    pub wasm_cid: Option<String>,

    /// Init mode: the input's CID, written to FETCH_DIR/input.json (optional).
    #[arg(long = "input-cid", env = pod::env::INPUT_CID, value_name = "CID")]
    pub input_cid: Option<String>,

    /// Init mode: where module.wasm and input.json go.
    #[arg(long = "fetch-dir", env = pod::env::FETCH_DIR, value_name = "DIR", default_value = pod::path::INPUT_DIR)]
    pub fetch_dir: PathBuf,

    /// Log format on stderr.
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "human",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl From<LogFormat> for logging::Format {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Human => logging::Format::Human,
            LogFormat::Json => logging::Format::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch CIDs: `get CID -o PATH`, or `get CID=PATH [CID=PATH]...` (each pair is tried; the exit code is 1 if any failed).
    Get {
        /// A CID (with -o), or CID=PATH pairs.
        #[arg(value_name = "CID | CID=PATH", required = true)]
        targets: Vec<String>,
        /// Where to write the single CID's file.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Print each file's CID exactly as `ipfs add -Q --only-hash` does.
    Cid {
        /// 1 for what `ipfs add --cid-version=1` prints (raw leaves, base32).
        #[arg(long = "cid-version", value_name = "0|1", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        cid_version: u8,
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify a CAR file against a root CID; with -o also write the file.
    VerifyCar {
        #[arg(value_name = "FILE.car")]
        car: PathBuf,
        #[arg(value_name = "CID")]
        cid: String,
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

/// Options shared by `get` and init mode.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// A gateway, tried in order (repeatable, or a comma list); `/ipfs` suffix optional; file:///dir is a mirror.
    #[arg(
        long = "gateway",
        env = pod::env::IPFS_GATEWAY,
        value_name = "URL",
        value_delimiter = ',',
        global = true
    )]
    pub gateways: Vec<String>,

    /// A local directory whose files are addressable by CID (tried before gateways).
    #[arg(long = "mirror", value_name = "DIR", global = true)]
    pub mirrors: Vec<PathBuf>,

    /// Seconds to establish a connection.
    #[arg(long = "connect-timeout", value_name = "SECONDS", default_value = "10", value_parser = parse_seconds, global = true)]
    pub connect_timeout: Duration,

    /// Seconds without a byte from a gateway before the attempt fails (and is retried).
    #[arg(long = "idle-timeout", value_name = "SECONDS", default_value = "30", value_parser = parse_seconds, global = true)]
    pub idle_timeout: Duration,

    /// Seconds for one CID's whole fetch; each source in turn gets an equal share of what is left, and sources cut off for time get a second turn.
    #[arg(long = "total-timeout", value_name = "SECONDS", default_value = "600", value_parser = parse_seconds, global = true)]
    pub total_timeout: Duration,

    /// Retries per gateway on 5xx, 429 and network errors.
    #[arg(long = "retries", value_name = "N", default_value_t = 3, global = true)]
    pub retries: u32,

    /// The first retry's backoff in milliseconds; doubled each retry, plus jitter.
    #[arg(
        long = "backoff-ms",
        value_name = "MS",
        default_value_t = 500,
        global = true
    )]
    pub backoff_ms: u64,

    /// Largest file accepted (e.g. 256MiB, 1GiB): a source sending more is skipped; a verified root declaring more fails the CID.
    #[arg(long = "max-size", value_name = "SIZE", default_value = "256MiB", value_parser = parse_size, global = true)]
    pub max_size: u64,

    /// Seconds between progress lines on stderr for a long download.
    #[arg(long = "progress-every", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds, global = true)]
    pub progress_every: Duration,
}

impl NetArgs {
    /// Mirrors first (local and cheap), then gateways in the order given.
    pub fn options(&self) -> Result<FetchOptions, FetchError> {
        let mut sources: Vec<Source> = self.mirrors.iter().cloned().map(Source::Mirror).collect();
        for g in self.gateways.iter().filter(|g| !g.trim().is_empty()) {
            sources.push(Source::parse(g)?);
        }
        Ok(FetchOptions {
            sources,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            total_timeout: self.total_timeout,
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
            max_size: self.max_size,
            progress_every: self.progress_every,
        })
    }
}

pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} must be a positive number of seconds"))
}

/// A byte size: `65536`, `64KiB`, `256MiB`, `1GiB` (K/M/G are binary multiples). The same
/// syntax as the runner's `--max-memory`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let hint =
        || format!("{s:?} is not a size; use bytes or a unit, e.g. 65536, 64KiB, 256MiB, 1GiB");
    let n: u64 = digits.parse().map_err(|_| hint())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" | "kib" | "kb" => 10,
        "m" | "mi" | "mib" | "mb" => 20,
        "g" | "gi" | "gib" | "gb" => 30,
        _ => return Err(hint()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `get`'s targets as (CID string, path) pairs.
pub fn targets(
    targets: &[String],
    output: Option<&PathBuf>,
) -> Result<Vec<(String, PathBuf)>, FetchError> {
    match (targets, output) {
        ([cid], Some(out)) if !cid.contains('=') => Ok(vec![(cid.clone(), out.clone())]),
        (_, Some(_)) => Err(FetchError::Usage(
            "-o takes exactly one CID; for several, give CID=PATH pairs".into(),
        )),
        (pairs, None) => pairs
            .iter()
            .map(|p| match p.split_once('=') {
                Some((cid, path)) if !cid.is_empty() && !path.is_empty() => {
                    Ok((cid.to_owned(), PathBuf::from(path)))
                }
                _ => Err(FetchError::Usage(format!(
                    "{p:?}: give `CID -o PATH` or CID=PATH pairs"
                ))),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn target_forms() {
        let one = targets(&["Qm1".into()], Some(&PathBuf::from("x"))).unwrap();
        assert_eq!(one, vec![("Qm1".to_string(), PathBuf::from("x"))]);
        let pairs = targets(&["a=x".into(), "b=y/z".into()], None).unwrap();
        assert_eq!(pairs[1], ("b".to_string(), PathBuf::from("y/z")));
        assert!(targets(&["a".into()], None).is_err());
        assert!(targets(&["a".into(), "b".into()], Some(&PathBuf::from("x"))).is_err());
    }

    /// The help's exit-code line and the README's say what `pod::exit::fetcher` defines.
    #[test]
    fn exit_codes_in_help_and_readme_match_the_constants() {
        use pod::exit::fetcher::{FAILED, OK, USAGE};
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .unwrap_or_default();
        let section = readme
            .split("\n## ")
            .find(|s| s.starts_with("The fetcher"))
            .unwrap_or_default();
        let line = |text: &str| {
            let at = text.find("Exit codes:").unwrap_or(text.len());
            text[at..]
                .split("\n\n")
                .next()
                .unwrap_or_default()
                .replace('\n', " ")
        };
        for (what, text) in [("--help", line(AFTER_HELP)), ("README", line(section))] {
            for want in [
                format!("{OK} done"),
                format!("{FAILED} a fetch or verification failed, or a local error"),
                format!("{USAGE} bad usage"),
            ] {
                assert!(text.contains(&want), "{what}: {want:?} in {text:?}");
            }
        }
    }

    #[test]
    fn sizes_and_seconds() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
    }
}
