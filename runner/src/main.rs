//! The `runner` binary: parse the command line, set up logging, run one mode.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pod::exit::runner as exit;
use runner::cli::{Cli, Mode};
use runner::{plain, supervise, task};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not failures; a bad flag or environment value is the
            // runner's own problem (exit 1), never "the task failed" (exit 2).
            return if e.use_stderr() {
                ExitCode::from(exit::RUNNER_FAILED)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    logging::init(
        cli.log_format.into(),
        if cli.plain { "warn" } else { "info" },
    );
    let termination_log = cli.termination_log.clone();
    let output = cli.output.clone();
    let worker = cli.worker;
    match cli.into_mode() {
        Err(message) => {
            eprintln!("runner: {message}");
            ExitCode::from(exit::RUNNER_FAILED)
        }
        Ok(Mode::Plain(opts)) => ExitCode::from(plain::run_plain(*opts)),
        Ok(Mode::Task(opts)) => {
            let span =
                tracing::info_span!("task", task_id = opts.task_id.as_deref().unwrap_or("-"));
            let _entered = span.enter();
            if !worker {
                return ExitCode::from(supervise::supervise(&opts, &output, &termination_log));
            }
            // The worker: run, print the one result line for the supervisor, and leave at
            // once (after a timeout the guest thread may still be spinning).
            let result = task::run_task(&opts);
            let mut out = std::io::stdout().lock();
            let printed = writeln!(out, "{}", result.to_bounded_line()).and_then(|()| out.flush());
            let code = match printed {
                Ok(()) => result.status.exit_code(),
                Err(e) => {
                    tracing::error!("cannot hand the result to the supervisor: {e}");
                    exit::RUNNER_FAILED
                }
            };
            std::process::exit(i32::from(code))
        }
    }
}
