//! The `coordinator` binary: flags, logging and configuration, then [`startup::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coordinator::config::{self, Overrides};
use coordinator::startup::{self, EXIT_CONFIG, EXIT_INFRA};
use tracing::error;

#[derive(Debug, Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Run WebAssembly tasks: take them from a source, run each through a backend, publish every result",
    after_long_help = "Configuration layers: defaults < TOML file (--config, COORDINATOR_CONFIG) < \
COORDINATOR_* environment (e.g. COORDINATOR_CONCURRENCY=4) < flags. --print-config shows every \
key, its effective value and where it came from.\n\nResults: one JSON line per task on stdout \
(logs go to stderr), and appended to --results FILE.\n\nExit codes: 0 every task ran (a task \
that trapped still ran); 1 a task failed for infrastructure reasons (fetch failed, runner \
error), a result could not be published, the task source broke while read, or \
this replica lost its leader Lease; 2 bad configuration (including a task file that cannot \
be opened and a Job template that cannot serve).\n\nLedger: every accepted task is recorded in --state (SQLite) before it runs; a \
restarted coordinator resumes from it, and a task is never run or published twice.\n\nBackends: local runs the fetcher and runner binaries in a pod process per task, which \
outlives the coordinator; kubernetes runs one Job per task from job_template (client: the pod's service \
account, else KUBECONFIG or ~/.kube/config), adopts the Jobs a previous coordinator left, and \
with --leader-election takes tasks only while holding the Lease."
)]
struct Cli {
    /// A TOML file with any of the keys (see --print-config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the effective configuration with each value's source, and exit.
    #[arg(long = "print-config")]
    print_config: bool,

    /// Print, as YAML, the Job the kubernetes backend would create for TASK (a JSON task
    /// object, as in a task file), and exit. Needs no cluster.
    #[arg(long = "print-job", value_name = "TASK")]
    print_job: Option<String>,

    /// Internal: run the local task pod in DIR (the local backend starts it).
    #[arg(long = "local-pod", value_name = "DIR", hide = true)]
    local_pod: Option<PathBuf>,

    #[command(flatten)]
    overrides: Overrides,

    /// Log format on stderr: human or json.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_name = "FORMAT", default_value = "human", value_parser = ["human", "json"], global = true)]
    log_format: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Execution receipts (every published report carries one as `receipt`).
    #[command(subcommand)]
    Receipt(ReceiptCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ReceiptCommand {
    /// Check a receipt's fields and Ed25519 signature; with --reexecute, run its task again
    /// and compare the output.
    #[command(
        after_long_help = "FILE holds a receipt, or a published report (a line of --results) whose \"receipt\" is checked.\n\n--reexecute fetches the module and input by CID (every byte verified) from --gateway or --mirror, runs the task with the receipt's engine settings (fuel metering, deterministic) and limits (fuel, memory, timeout) through the fetcher and runner beside this binary, and compares the output_sha256 (what the computation produced: status, result values, exit code, captured stdout and stderr, fuel consumed). A task that reads the clock or random bytes outside deterministic execution may not match itself.\n\nExit codes: 0 the signature is valid (and, re-executed, the output matches); 1 the receipt does not hold: bad or missing signature (see --allow-unsigned), malformed field, or a re-execution that gave another output, module or input; 2 bad usage: the file cannot be read, is larger than 4 MiB or holds no receipt; 3 the re-execution could not be done (fetch failed, runner missing): nothing was decided."
    )]
    Verify {
        /// The receipt (or report) JSON file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Run the task again and compare its output_sha256 with the receipt's.
        #[arg(long, requires = "from")]
        reexecute: bool,
        /// IPFS gateway URL to fetch the module and input from (127.0.0.1 in tests).
        #[arg(long, value_name = "URL", group = "from")]
        gateway: Option<String>,
        /// Directory of files named by CID to fetch from instead of a gateway.
        #[arg(long, value_name = "DIR", group = "from")]
        mirror: Option<PathBuf>,
        /// Accept a receipt without a signature (its fields, and a re-execution, are still checked).
        #[arg(long = "allow-unsigned")]
        allow_unsigned: bool,
    },
}

/// `coordinator receipt verify`.
fn verify_receipt(
    file: PathBuf,
    reexecute: bool,
    gateway: Option<String>,
    mirror: Option<PathBuf>,
    allow_unsigned: bool,
) -> ExitCode {
    use coordinator::receipt_verify::{self, VerifyOptions, USAGE};
    let reexecute_from = match (reexecute, gateway, mirror) {
        (false, _, _) => None,
        (true, Some(url), _) => Some(url),
        (true, None, Some(dir)) => match dir.canonicalize() {
            Ok(abs) => Some(format!("file://{}", abs.display())),
            Err(e) => {
                eprintln!("error: --mirror {}: {e}", dir.display());
                return ExitCode::from(USAGE);
            }
        },
        (true, None, None) => None, // clap requires one of them with --reexecute
    };
    let opts = VerifyOptions {
        file,
        allow_unsigned,
        reexecute_from,
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => ExitCode::from(rt.block_on(receipt_verify::run(&opts))),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(receipt_verify::UNCHECKED)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(dir) = &cli.local_pod {
        return coordinator::backend::run_pod(dir);
    }
    if let Some(Command::Receipt(ReceiptCommand::Verify {
        file,
        reexecute,
        gateway,
        mirror,
        allow_unsigned,
    })) = cli.command
    {
        logging::init(
            cli.log_format.parse().unwrap_or(logging::Format::Human),
            "warn",
        );
        return verify_receipt(file, reexecute, gateway, mirror, allow_unsigned);
    }
    logging::init(
        cli.log_format.parse().unwrap_or(logging::Format::Human),
        "info",
    );
    let loaded = match config::load(cli.config.as_deref(), &cli.overrides) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", loaded.describe());
        return ExitCode::SUCCESS;
    }
    if let Some(task) = &cli.print_job {
        return match startup::print_job(&loaded, task) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INFRA);
        }
    };
    match runtime.block_on(startup::run(loaded)) {
        Ok(code) => code,
        Err(e) => {
            error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
