//! The `fetcher` binary: parse, set up logging, run one command, print any error once
//! (saying what was being done, with which CID and path) and map it to an exit code.
//!
//! Every error gets its context here (`fetching CID to PATH`, `computing the CID of FILE`,
//! …) and is printed by [`report`], which says each cause once: never anyhow's `{:#}`,
//! which repeats a source that a message already embeds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cid::Cid;
use clap::Parser;
use fetcher::cid::parse_cid;
use fetcher::cli::{targets, Cli, Command, NetArgs};
use fetcher::error::report;
use fetcher::fetch::{client, fetch_to_path, verify_car_file};
use fetcher::importer::{cid_of_reader, Params};
use fetcher::FetchError;

use pod::exit::fetcher::{FAILED, OK, USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { USAGE } else { OK });
        }
    };
    logging::init(cli.log_format.into(), "info");
    match run(cli) {
        Ok(()) => ExitCode::from(OK),
        Err(e) => {
            tracing::error!("{}", report(e.as_ref()));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The fetcher's own errors say their code ([`FetchError::exit_code`]), whatever context
/// they are under; anything else (the async runtime would not start) is a local failure.
fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<FetchError>()
        .map_or(FAILED, FetchError::exit_code)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Cid { cid_version, files }) => {
            let params = if cid_version == 1 {
                Params::V1
            } else {
                Params::V0
            };
            for file in files {
                let cid = cid_of_file(params, &file)
                    .with_context(|| format!("computing the CID of {}", file.display()))?;
                println!("{cid}");
            }
            Ok(())
        }
        Some(Command::VerifyCar { car, cid, output }) => {
            let doing = |cid: &dyn std::fmt::Display| match &output {
                Some(o) => format!(
                    "verifying {} against {cid} and writing {}",
                    car.display(),
                    o.display()
                ),
                None => format!("verifying {} against {cid}", car.display()),
            };
            let cid = parse_cid(&cid).with_context(|| doing(&format_args!("{cid:?}")))?;
            let size = verify_car_file(&car, &cid, output.as_deref(), cli.net.max_size)
                .with_context(|| doing(&cid))?;
            tracing::info!(%cid, car = %car.display(), bytes = size, "the CAR verifies");
            Ok(())
        }
        Some(Command::Get { targets: t, output }) => {
            let pairs = targets(&t, output.as_ref())?;
            let jobs = pairs
                .iter()
                .map(|(c, p)| parse_target(c, p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            // Every pair is tried; the command fails if any did.
            fetch_all(&cli.net, &jobs, true)
        }
        None => {
            let Some(wasm) = cli.wasm_cid.filter(|c| !c.trim().is_empty()) else {
                return Err(FetchError::Usage(
                    "nothing to do: give a subcommand (get, cid, verify-car) or set WASM_CID (and IPFS_GATEWAY) for init-container mode; see --help".into(),
                )
                .into());
            };
            let mut jobs = vec![parse_target(
                &wasm,
                &cli.fetch_dir.join(pod::path::MODULE_FILE),
            )?];
            if let Some(input) = cli.input_cid.filter(|c| !c.trim().is_empty()) {
                jobs.push(parse_target(
                    &input,
                    &cli.fetch_dir.join(pod::path::INPUT_FILE),
                )?);
            }
            // The pod cannot run without both: stop at the first failure.
            fetch_all(&cli.net, &jobs, false)
        }
    }
}

fn cid_of_file(params: Params, file: &Path) -> Result<Cid, FetchError> {
    let f = std::fs::File::open(file).map_err(|e| FetchError::io(file, e))?;
    let (cid, _) =
        cid_of_reader(params, std::io::BufReader::new(f)).map_err(|e| FetchError::io(file, e))?;
    Ok(cid)
}

/// The CID to fetch to `path`; an error names the input as given (quoted: it may be empty).
fn parse_target(input: &str, path: &Path) -> anyhow::Result<(Cid, PathBuf)> {
    let cid =
        parse_cid(input).with_context(|| format!("fetching {input:?} to {}", path.display()))?;
    Ok((cid, path.to_owned()))
}

/// `fetching CID to PATH[, CID to PATH]…`: what an error in these fetches was part of.
fn fetching(jobs: &[(Cid, PathBuf)]) -> String {
    let each: Vec<String> = jobs
        .iter()
        .map(|(cid, path)| format!("{cid} to {}", path.display()))
        .collect();
    format!("fetching {}", each.join(", "))
}

/// Fetches each (CID, path); with `keep_going`, a failure is logged and the rest are still
/// tried, and the error at the end names every CID that failed.
fn fetch_all(net: &NetArgs, jobs: &[(Cid, PathBuf)], keep_going: bool) -> anyhow::Result<()> {
    let opts = net.options().with_context(|| fetching(jobs))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .with_context(|| fetching(jobs))?;
    runtime.block_on(async {
        let client = client(&opts).with_context(|| fetching(jobs))?;
        let mut failed = Vec::new();
        for job in jobs {
            let (cid, path) = job;
            let Err(e) = fetch_to_path(&client, &opts, cid, path).await else {
                continue;
            };
            let e = anyhow::Error::new(e).context(fetching(std::slice::from_ref(job)));
            if keep_going && jobs.len() > 1 {
                tracing::error!("{}", report(e.as_ref()));
                failed.push(cid.to_string());
            } else {
                return Err(e);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "{} of {} fetches failed: {}",
                failed.len(),
                jobs.len(),
                failed.join(", ")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_hold_under_context() {
        let Err(source) = reqwest::Client::builder().user_agent("a\nb").build() else {
            panic!("the builder must refuse a header value holding a newline");
        };
        let client = anyhow::Error::new(FetchError::HttpClient { source }).context("fetching");
        assert_eq!(
            exit_code(&client),
            FAILED,
            "an HTTP client failure is not usage"
        );
        let bad_cid = parse_target("not-a-cid", Path::new("/tmp/out")).unwrap_err();
        assert_eq!(exit_code(&bad_cid), USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("1 of 2 fetches failed")), FAILED);
    }

    #[test]
    fn a_bad_cid_is_named_once_with_the_path() {
        let e = parse_target("not-a-cid", Path::new("/tmp/out")).unwrap_err();
        let line = report(e.as_ref());
        assert!(
            line.starts_with("fetching \"not-a-cid\" to /tmp/out: not a CID"),
            "{line}"
        );
        assert_eq!(line.matches("not-a-cid").count(), 1, "{line}");
    }
}
