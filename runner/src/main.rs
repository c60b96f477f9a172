//! The `runner` binary: parse the command line, set up logging, run one mode.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use runner::cli::{Cli, LogFormat, Mode};
use runner::result::{ExitStatus, Status};
use runner::{plain, report, task};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not failures; a bad flag or environment value is the
            // runner's own problem (exit 1), never "the task failed" (exit 2).
            return if e.use_stderr() {
                ExitCode::from(ExitStatus::RUNNER_FAILED)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format, cli.plain);
    let termination_log = cli.termination_log.clone();
    let output = cli.output.clone();
    match cli.into_mode() {
        Err(message) => {
            eprintln!("runner: {message}");
            ExitCode::from(ExitStatus::RUNNER_FAILED)
        }
        Ok(Mode::Plain(opts)) => ExitCode::from(plain::run_plain(*opts)),
        Ok(Mode::Task(opts)) => {
            let span =
                tracing::info_span!("task", task_id = opts.task_id.as_deref().unwrap_or("-"));
            let _entered = span.enter();
            let result = task::run_task(&opts);
            let code = match report::publish(&result, &output, &termination_log) {
                Ok(()) => result.status.exit_code(),
                Err(e) => {
                    tracing::error!("{e}");
                    ExitStatus::RUNNER_FAILED
                }
            };
            if result.status == Status::Timeout {
                // The guest thread may still be spinning: leave now rather than join it.
                std::process::exit(i32::from(code));
            }
            ExitCode::from(code)
        }
    }
}

/// Logs go to stderr; stdout carries only the result. `RUST_LOG` overrides the level.
fn init_logging(format: LogFormat, plain: bool) {
    let default = if plain { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
