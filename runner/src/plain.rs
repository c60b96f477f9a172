//! Plain mode: `runner --plain MODULE [ARGS]...`, for using the runner like `wasmtime run`
//! outside the pipeline. The guest's streams pass straight through, no result JSON is
//! printed, and the process exits with the guest's exit code.

use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::entry::{Request, START};
use crate::exec::{execute, Execution, Limits};
use crate::result::Status;
use crate::task::{determinism, hex, program_name, read_capped, ReadError};
use crate::wasi::{OutputSink, Preopen, StdinSource, WasiConfig};

/// Exit code after a trap or running out of fuel: 128 + SIGABRT, as wasmtime does.
pub const EXIT_TRAP: u8 = 134;
/// Exit code after the timeout, as coreutils' `timeout` does.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the module cannot be run at all.
pub const EXIT_ERROR: u8 = 1;

#[derive(Debug, Clone)]
pub struct PlainOptions {
    pub module: PathBuf,
    pub max_module_size: u64,
    /// Call this export instead of `_start`.
    pub invoke: Option<String>,
    /// argv[1..] for `_start`, or the parameters of `invoke`.
    pub args: Vec<String>,
    pub limits: Limits,
    pub env: Vec<(String, String)>,
    pub dirs: Vec<Preopen>,
    pub deterministic: bool,
}

/// Runs the module and returns the process exit code.
pub fn run_plain(opts: PlainOptions) -> u8 {
    let module = match read_capped(&opts.module, opts.max_module_size) {
        Ok(m) => m,
        Err(ReadError::TooLarge) => {
            eprintln!(
                "runner: the module {} is larger than the cap of {} bytes (--max-module-size)",
                opts.module.display(),
                opts.max_module_size
            );
            return EXIT_ERROR;
        }
        Err(ReadError::Io(e)) => {
            eprintln!(
                "runner: cannot read the module {}: {e}",
                opts.module.display()
            );
            return EXIT_ERROR;
        }
    };
    let module_sha256 = hex(&Sha256::digest(&module));
    let args = match &opts.invoke {
        // A command's arguments are strings, passed verbatim.
        None => opts.args.iter().cloned().map(Value::String).collect(),
        // A function's parameters are read as JSON where they parse (12, 1.5), else as
        // strings, which the float decoder accepts for inf and NaN.
        Some(_) => opts
            .args
            .iter()
            .map(|a| serde_json::from_str(a).unwrap_or_else(|_| Value::String(a.clone())))
            .collect(),
    };
    let exec = Execution {
        module,
        request: Request {
            entry: Some(opts.invoke.clone().unwrap_or_else(|| START.to_owned())),
            args: Some(args),
            ..Request::default()
        },
        limits: opts.limits,
        wasi: WasiConfig {
            args: vec![program_name(&opts.module)],
            env: opts.env,
            preopens: opts.dirs,
            stdin: StdinSource::Inherit,
            stdout: OutputSink::Inherit,
            stderr: OutputSink::Inherit,
            determinism: determinism(opts.deterministic, Some(&module_sha256), None),
        },
    };
    let outcome = execute(exec);
    match outcome.status {
        Status::Ok => {
            if opts.invoke.is_some() {
                let mut out = io::stdout().lock();
                for v in outcome.result.iter().flatten() {
                    let _ = writeln!(out, "{v}");
                }
            }
            match outcome.exit_code {
                None => 0,
                Some(code) => u8::try_from(code).unwrap_or(EXIT_ERROR),
            }
        }
        status => {
            let message = outcome.error.unwrap_or_default();
            eprintln!("runner: {message}");
            match status {
                Status::Trap | Status::OutOfFuel => EXIT_TRAP,
                Status::Timeout => EXIT_TIMEOUT,
                _ => EXIT_ERROR,
            }
        }
    }
}
