//! Task mode: the runner as a Job's main container.
//!
//! Reads the module and the input, runs the entry, and builds the one result object. Every
//! failure becomes a result with a status; only [`crate::report`] can still fail after this.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::info;

use crate::entry::Request;
use crate::exec::{execute, Execution, Limits};
use crate::input::{parse_args_json, parse_input, TaskInput};
use crate::result::{canonical_sha256, AppliedLimits, Engine, GuestOutput, Status, TaskResult};
use crate::wasi::{CaptureBuffer, Determinism, OutputSink, Preopen, StdinSource, WasiConfig};

/// Where a task's input file is visible to a WASI command.
pub const INPUT_GUEST_DIR: &str = "/input";

/// Everything task mode needs, already validated by the CLI.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    pub task_id: Option<String>,
    pub wasm_path: PathBuf,
    /// The input file; `None` runs without input.
    pub input_path: Option<PathBuf>,
    pub entry: Option<String>,
    pub args_json: Option<String>,
    pub add_x: Option<u64>,
    pub add_y: Option<u64>,
    pub limits: Limits,
    /// Bytes kept of the guest's stdout, and again of its stderr.
    pub max_output: usize,
    /// The largest module and input file read; a larger one fails the task, named.
    pub max_module_size: u64,
    pub max_input_size: u64,
    pub env: Vec<(String, String)>,
    pub dirs: Vec<Preopen>,
    pub deterministic: bool,
}

/// Runs one task and returns its result, naming the engine and limits and with its
/// [`TaskResult::output_digest`]; never panics on bad input.
pub fn run_task(opts: &TaskOptions) -> TaskResult {
    let mut result = run(opts);
    result.engine = Some(Engine::wasmi(
        opts.limits.fuel.is_some(),
        opts.deterministic,
    ));
    result.limits = Some(AppliedLimits {
        fuel: opts.limits.fuel,
        memory_bytes: opts.limits.max_memory as u64,
        timeout_ms: opts
            .limits
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    });
    result.cap_fields();
    result.output_sha256 = Some(result.output_digest());
    result
}

fn run(opts: &TaskOptions) -> TaskResult {
    let mut result = TaskResult::new(opts.task_id.clone(), Status::Error);
    let fail = |mut r: TaskResult, status: Status, error: String| {
        r.status = status;
        r.error = Some(error);
        r
    };

    let module = match read_capped(&opts.wasm_path, opts.max_module_size) {
        Ok(m) => m,
        Err(ReadError::TooLarge) => {
            let msg = format!(
                "the module {} is larger than the cap of {} bytes (--max-module-size / MAX_MODULE_SIZE)",
                opts.wasm_path.display(),
                opts.max_module_size
            );
            return fail(result, Status::InvalidModule, msg);
        }
        Err(ReadError::Io(e)) => {
            let msg = format!("cannot read the module {}: {e}", opts.wasm_path.display());
            return fail(result, Status::Error, msg);
        }
    };
    result.module_sha256 = Some(hex(&Sha256::digest(&module)));

    let input = match &opts.input_path {
        None => TaskInput::default(),
        Some(path) => match read_capped(path, opts.max_input_size) {
            Err(ReadError::TooLarge) => {
                let msg = format!(
                    "the input {} is larger than the cap of {} bytes (--max-input-size / MAX_INPUT_SIZE)",
                    path.display(),
                    opts.max_input_size
                );
                return fail(result, Status::InvalidInput, msg);
            }
            Err(ReadError::Io(e)) => {
                let msg = format!("cannot read the input {}: {e}", path.display());
                return fail(result, Status::Error, msg);
            }
            Ok(bytes) => {
                result.input_sha256 = Some(hex(&Sha256::digest(&bytes)));
                match parse_input(&bytes) {
                    Ok(i) => i,
                    Err(e) => {
                        let msg = format!("input {}: {e}", path.display());
                        return fail(result, Status::InvalidInput, msg);
                    }
                }
            }
        },
    };
    let args = match opts.args_json.as_deref().map(parse_args_json).transpose() {
        Ok(a) => a,
        Err(e) => return fail(result, Status::InvalidInput, e.to_string()),
    };

    let mut preopens = opts.dirs.clone();
    if let Some(dir) = opts.input_path.as_deref().map(input_dir) {
        preopens.push(Preopen {
            host: dir,
            guest: INPUT_GUEST_DIR.to_owned(),
            writable: false,
        });
    }
    let stdout = CaptureBuffer::new(opts.max_output);
    let stderr = CaptureBuffer::new(opts.max_output);
    let wasi = WasiConfig {
        args: vec![program_name(&opts.wasm_path)],
        env: opts.env.clone(),
        preopens,
        stdin: StdinSource::Null,
        stdout: OutputSink::Capture(stdout.clone()),
        stderr: OutputSink::Capture(stderr.clone()),
        determinism: determinism(
            opts.deterministic,
            result.module_sha256.as_deref(),
            result.input_sha256.as_deref(),
        ),
    };
    let exec = Execution {
        module,
        request: Request {
            entry: opts.entry.clone(),
            args,
            input,
            add_x: opts.add_x,
            add_y: opts.add_y,
        },
        limits: opts.limits.clone(),
        wasi,
    };

    let started = Instant::now();
    let outcome = execute(exec);
    let elapsed = started.elapsed();

    result.status = outcome.status;
    result.entry = outcome.entry;
    if outcome.status != Status::InvalidInput || !outcome.args.is_empty() {
        result.args_sha256 = Some(canonical_sha256(&outcome.args));
    }
    result.args = outcome.args;
    result.result = outcome.result;
    result.exit_code = outcome.exit_code;
    result.fuel_consumed = outcome.fuel_consumed;
    result.error = outcome.error;
    let out = stdout.snapshot();
    result.stdout = GuestOutput::from_capture(&out.bytes, out.total_bytes);
    let err = stderr.snapshot();
    result.stderr = GuestOutput::from_capture(&err.bytes, err.total_bytes);
    if !opts.deterministic {
        // Rounded to microseconds: more digits are noise.
        result.duration_ms = Some((elapsed.as_secs_f64() * 1e6).round() / 1e3);
    }
    info!(
        status = result.status.as_str(),
        entry = result.entry.as_deref().unwrap_or("-"),
        duration_ms = result.duration_ms,
        fuel = result.fuel_consumed,
        "task finished"
    );
    result
}

/// Why a file could not be read whole.
#[derive(Debug)]
pub enum ReadError {
    /// It holds more than the cap (a device such as `/dev/zero` never ends).
    TooLarge,
    Io(std::io::Error),
}

/// Reads `path` whole, but never more than `cap` bytes: whatever the file is (a regular
/// file, a pipe, a device), memory stays bounded by the cap.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    if hint > cap {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// `--deterministic`: fixed clocks, and random bytes seeded from the hex SHA-256 of the
/// module and of the input (none: empty), so that every run of one module on one input
/// sees the same world, whatever the task is called: what lets equal tasks share one
/// cached result and a receipt be checked by running it again.
pub fn determinism(
    enabled: bool,
    module_sha256: Option<&str>,
    input_sha256: Option<&str>,
) -> Determinism {
    if enabled {
        let mut seed = Sha256::new();
        seed.update(b"wasm-exec deterministic v1\n");
        seed.update(module_sha256.unwrap_or("").as_bytes());
        seed.update(b"\n");
        seed.update(input_sha256.unwrap_or("").as_bytes());
        Determinism::Seeded(seed.finalize().into())
    } else {
        Determinism::Real
    }
}

/// The directory holding the input file, preopened read-only at [`INPUT_GUEST_DIR`].
fn input_dir(input: &Path) -> PathBuf {
    match input.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `argv[0]` for a WASI command: the module's file name, as a shell would pass it.
pub fn program_name(module: &Path) -> String {
    module.file_name().map_or_else(
        || "module.wasm".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
