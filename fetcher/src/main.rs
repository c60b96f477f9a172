//! The `fetcher` binary: parse, set up logging, run one command, map errors to exit codes.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use fetcher::cid::parse_cid;
use fetcher::cli::{targets, Cli, Command};
use fetcher::fetch::{client, fetch_to_path, verify_car_file};
use fetcher::importer::{cid_of_reader, Params};
use fetcher::FetchError;

use pod::exit::fetcher::{FAILED, USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logging::init(cli.log_format.into(), "info");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            let usage = e.downcast_ref::<FetchError>().is_some_and(|f| {
                matches!(
                    f,
                    FetchError::Usage(_)
                        | FetchError::InvalidCid { .. }
                        | FetchError::Unsupported { .. }
                )
            });
            ExitCode::from(if usage { USAGE } else { FAILED })
        }
    }
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
                let f = std::fs::File::open(&file).map_err(|e| FetchError::io(&file, e))?;
                let (cid, _) = cid_of_reader(params, std::io::BufReader::new(f))
                    .map_err(|e| FetchError::io(&file, e))?;
                println!("{cid}");
            }
            Ok(())
        }
        Some(Command::VerifyCar { car, cid, output }) => {
            let cid = parse_cid(&cid)?;
            let size = verify_car_file(&car, &cid, output.as_deref(), cli.net.max_size)?;
            tracing::info!(%cid, car = %car.display(), bytes = size, "the CAR verifies");
            Ok(())
        }
        Some(Command::Get { targets: t, output }) => {
            let pairs = targets(&t, output.as_ref())?;
            let parsed = pairs
                .iter()
                .map(|(c, p)| parse_cid(c).map(|cid| (cid, p.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            // Every pair is tried; the command fails if any did.
            fetch_all(&cli.net, &parsed, true)
        }
        None => {
            let Some(wasm) = cli.wasm_cid.filter(|c| !c.trim().is_empty()) else {
                return Err(FetchError::Usage(
                    "nothing to do: give a subcommand (get, cid, verify-car) or set WASM_CID (and IPFS_GATEWAY) for init-container mode; see --help".into(),
                )
                .into());
            };
            let mut jobs = vec![(
                parse_cid(&wasm)?,
                cli.fetch_dir.join(pod::path::MODULE_FILE),
            )];
            if let Some(input) = cli.input_cid.filter(|c| !c.trim().is_empty()) {
                jobs.push((
                    parse_cid(&input)?,
                    cli.fetch_dir.join(pod::path::INPUT_FILE),
                ));
            }
            // The pod cannot run without both: stop at the first failure.
            fetch_all(&cli.net, &jobs, false)
        }
    }
}

/// Fetches each (CID, path); with `keep_going`, a failure is logged and the rest are still
/// tried, and the error at the end names every CID that failed.
fn fetch_all(
    net: &fetcher::cli::NetArgs,
    jobs: &[(cid::Cid, std::path::PathBuf)],
    keep_going: bool,
) -> anyhow::Result<()> {
    let opts = net.options()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = client(&opts)?;
        let mut failed = Vec::new();
        for (cid, path) in jobs {
            match fetch_to_path(&client, &opts, cid, Path::new(path)).await {
                Ok(_) => {}
                Err(e) if keep_going && jobs.len() > 1 => {
                    tracing::error!(%cid, path = %path.display(), "{e:#}");
                    failed.push(cid.to_string());
                }
                Err(e) => return Err(e.into()),
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
