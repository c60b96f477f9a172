//! The command line: flags, the Go executor's environment variables, and their checks.
//!
//! Every flag that the old executor configured through the environment still reads the same
//! variable, so an existing Job template keeps working. Values are checked here, before
//! anything touches the system; the pure parsers are unit-tested below.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::limits::{Limits, DEFAULT_MAX_TABLE_ELEMENTS};
use crate::plain::PlainOptions;
use crate::result::MAX_OUTPUT_BYTES;
use crate::task::TaskOptions;
use crate::wasi::Preopen;

/// Task mode's default fuel budget: about a minute of interpretation on a modern core.
pub const DEFAULT_FUEL: u64 = 10_000_000_000;
/// Task mode's default wall-clock timeout in seconds.
pub const DEFAULT_TIMEOUT_SEC: f64 = 60.0;

const EXIT_CODES: &str = "\
Exit codes (task mode):
  0  a result was produced (status ok; a WASI command's own exit code is in the result)
  1  the runner could not do its job: unreadable module or input, unwritable output,
     bad flags or environment values, or its worker process died (worth a retry)
  2  the task failed deterministically: trap, out of fuel, invalid module or input,
     unknown entry (a retry gives the same answer)
  3  the wall-clock timeout fired
A result JSON object (at most 1 MiB; fields cut to their caps are named in \"elided\")
is written in every case where it can be: to --output, to the termination message file
when it exists, and as the last line of stdout. The task runs in a worker process, so a
worker that crashes still leaves a result (status error, the cause named).

Exit codes (--plain): the guest's exit code; 134 after a trap or running out of fuel
(the message on stderr); 124 after the timeout; 1 when the module cannot be run.

Entry resolution: --entry/ENTRY, then \"entry\" in the input JSON, then `_start` (a WASI
command; `_initialize` is called first when exported), then `add(u64,u64)` with
ADD_X/ADD_Y. Arguments: --args-json/ARGS_JSON, else \"args\" in the input JSON; a WASI
command gets them as argv[1..]. The input file's directory is preopened read-only at
/input.";

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Run one WebAssembly task with wasmi and a minimal WASI shim, and report one result JSON object",
    long_about = "Run one WebAssembly task with the wasmi interpreter and a minimal WASI preview1 \
shim, and report one result JSON object.\n\nTask mode (the default) is the `runner` container of a \
wasm-exec Job: it reads the module and input that the `fetcher` init container wrote, calls \
the entry, and writes the result. Every flag also reads the environment variable shown, \
as the Go executor did.\n\nPlain mode (--plain MODULE [ARGS]...) runs a module like \
`wasmtime run`: the guest's stdout and stderr pass straight through and the process exits \
with the guest's exit code.",
    after_long_help = EXIT_CODES,
    after_help = "Run with --help for exit codes and entry resolution."
)]
pub struct Cli {
    /// The module to run (task mode).
    #[arg(long = "wasm", env = pod::env::WASM_PATH, value_name = "PATH", default_value = pod::path::MODULE)]
    pub wasm: PathBuf,

    /// The input JSON, e.g. {"entry":"fib","args":[12]} [default: /mnt/input/input.json when it exists]
    #[arg(long = "input", env = pod::env::INPUT_PATH, value_name = "PATH", value_parser = empty_or_path())]
    pub input: Option<PathBuf>,

    /// Arguments as a JSON array, e.g. [13,9,2]; overrides the input's "args".
    #[arg(long = "args-json", env = "ARGS_JSON", value_name = "JSON")]
    pub args_json: Option<String>,

    /// The function to call; overrides the input's "entry". Empty means not set.
    #[arg(long, env = pod::env::ENTRY, value_name = "NAME")]
    pub entry: Option<String>,

    /// Where to write the result JSON (atomically; parent directories are created).
    #[arg(
        long,
        env = pod::env::OUTPUT_PATH,
        value_name = "PATH",
        default_value = pod::path::RESULT
    )]
    pub output: PathBuf,

    /// Wall-clock timeout in seconds (fractions allowed); 0 = none. Stops tight loops even with fuel off. [default: 60; none with --plain]
    #[arg(long = "timeout", env = pod::env::TIMEOUT_SEC, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<Timeout>,

    /// First argument of the `add(u64,u64)` fallback entry.
    #[arg(long = "add-x", env = "ADD_X", value_name = "U64")]
    pub add_x: Option<u64>,

    /// Second argument of the `add(u64,u64)` fallback entry.
    #[arg(long = "add-y", env = "ADD_Y", value_name = "U64")]
    pub add_y: Option<u64>,

    /// The task id: put in the result and on every log line.
    #[arg(long = "task-id", env = pod::env::TASK_ID, value_name = "ID")]
    pub task_id: Option<String>,

    /// Fuel budget (about one unit per instruction); 0 turns metering off. Running out is the status out_of_fuel. [default: 10000000000; 0 with --plain]
    #[arg(long, env = pod::env::FUEL, value_name = "UNITS")]
    pub fuel: Option<u64>,

    /// Linear-memory cap, all memories of the instance together, e.g. 256MiB, 1GiB, 65536 (bytes).
    #[arg(long = "max-memory", env = pod::env::MAX_MEMORY, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_memory: usize,

    /// Table cap: elements of all tables of the instance together.
    #[arg(long = "max-table-elements", env = "MAX_TABLE_ELEMENTS", value_name = "N", default_value_t = DEFAULT_MAX_TABLE_ELEMENTS)]
    pub max_table_elements: usize,

    /// The largest module read; a larger one is an invalid module.
    #[arg(long = "max-module-size", env = "MAX_MODULE_SIZE", value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_module_size: usize,

    /// The largest input file read; a larger one is an invalid input.
    #[arg(long = "max-input-size", env = "MAX_INPUT_SIZE", value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_input_size: usize,

    /// Bytes of the guest's stdout kept in the result, and again of its stderr (at most 256KiB).
    #[arg(long = "max-output", env = "MAX_OUTPUT", value_name = "SIZE", default_value = "64KiB", value_parser = parse_output_size)]
    pub max_output: usize,

    /// The termination message file; written only when it exists (Kubernetes creates it).
    #[arg(
        long = "termination-log",
        env = pod::env::TERMINATION_LOG,
        value_name = "PATH",
        default_value = pod::path::TERMINATION_LOG
    )]
    pub termination_log: PathBuf,

    /// Preopen a host directory read-only, at GUEST (default: the same path). Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_read_only_dir)]
    pub dirs: Vec<Preopen>,

    /// Preopen a host directory read-write. Repeatable; preopened after every --dir.
    #[arg(long = "dir-rw", value_name = "HOST[::GUEST]", value_parser = parse_writable_dir)]
    pub dirs_rw: Vec<Preopen>,

    /// Set an environment variable for the guest; it sees no other. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Fixed clocks, and random bytes seeded from the module's and the input's SHA-256: two runs of one module on one input give byte-identical results (duration_ms is then null).
    #[arg(long, env = "DETERMINISTIC")]
    pub deterministic: bool,

    /// Log format on stderr.
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "human"
    )]
    pub log_format: LogFormat,

    /// Run MODULE like `wasmtime run`: pass stdout/stderr through, print no result JSON, exit with the guest's exit code.
    #[arg(long)]
    pub plain: bool,

    /// With --plain: call this export instead of `_start`; ARGS are its parameters, and its results are printed one per line.
    #[arg(long, value_name = "NAME", requires = "plain")]
    pub invoke: Option<String>,

    /// With --plain: the module to run.
    #[arg(value_name = "MODULE", requires = "plain")]
    pub module: Option<PathBuf>,

    /// Internal: run the task in this process and print its result line; the runner
    /// starts itself so, and publishes what its worker prints (see `supervise`).
    #[arg(long, hide = true, conflicts_with = "plain")]
    pub worker: bool,

    /// With --plain: the guest's arguments (argv[1..]), or --invoke's parameters.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        requires = "module"
    )]
    pub guest_args: Vec<String>,
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

/// A command line that parses but cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("--plain needs a MODULE: runner --plain [OPTIONS] MODULE [ARGS]...")]
    PlainWithoutModule,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Mode {
    Task(Box<TaskOptions>),
    Plain(Box<PlainOptions>),
}

impl Cli {
    /// Resolves defaults that depend on the mode or on the file system.
    pub fn into_mode(self) -> Result<Mode, CliError> {
        let plain = self.plain;
        let fuel = match self.fuel {
            Some(0) => None,
            Some(n) => Some(n),
            None if plain => None,
            None => Some(DEFAULT_FUEL),
        };
        let timeout = match self.timeout {
            Some(Timeout(t)) => t,
            None if plain => None,
            None => Some(Duration::from_secs_f64(DEFAULT_TIMEOUT_SEC)),
        };
        let limits = Limits {
            fuel,
            max_memory: self.max_memory,
            max_table_elements: self.max_table_elements,
            timeout,
        };
        let mut dirs = self.dirs;
        dirs.extend(self.dirs_rw);

        if plain {
            let module = self.module.ok_or(CliError::PlainWithoutModule)?;
            return Ok(Mode::Plain(Box::new(PlainOptions {
                module,
                max_module_size: self.max_module_size as u64,
                invoke: self.invoke,
                args: self.guest_args,
                limits,
                env: self.env,
                dirs,
                deterministic: self.deterministic,
            })));
        }

        let input_path = match self.input {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
            None => Some(PathBuf::from(pod::path::INPUT)).filter(|p| p.exists()),
        };
        Ok(Mode::Task(Box::new(TaskOptions {
            task_id: self.task_id.filter(|t| !t.is_empty()),
            wasm_path: self.wasm,
            input_path,
            entry: self.entry,
            args_json: self.args_json.filter(|a| !a.trim().is_empty()),
            add_x: self.add_x,
            add_y: self.add_y,
            limits,
            max_output: self.max_output,
            max_module_size: self.max_module_size as u64,
            max_input_size: self.max_input_size as u64,
            env: self.env,
            dirs,
            deterministic: self.deterministic,
        })))
    }
}

/// A path that may be empty: an empty `INPUT_PATH` (as a Job template may set) means none.
fn empty_or_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

/// A parsed `--timeout`: `None` is "no timeout" (the value 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

/// Seconds, fractions allowed; 0 means no timeout.
pub fn parse_seconds(s: &str) -> Result<Timeout, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 60 or 0.5; 0 = none)"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "{s:?} must be a finite number of seconds, 0 or more"
        ));
    }
    if secs == 0.0 {
        return Ok(Timeout(None));
    }
    Duration::try_from_secs_f64(secs)
        .map(|d| Timeout(Some(d)))
        .map_err(|e| format!("{s:?}: {e}"))
}

/// A byte size: `65536`, `64KiB`, `256MiB`, `1GiB`, `512M`, `2G`, `10k` (K/M/G are
/// binary multiples here, as Kubernetes' Ki/Mi/Gi are).
pub fn parse_size(s: &str) -> Result<usize, String> {
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
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `--max-output`: a size, at most [`MAX_OUTPUT_BYTES`] so that a result stays within its
/// documented maximum.
fn parse_output_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n > MAX_OUTPUT_BYTES {
        return Err(format!(
            "{s:?} is over the largest capture of {} KiB per stream",
            MAX_OUTPUT_BYTES >> 10
        ));
    }
    Ok(n)
}

fn parse_dir(s: &str, writable: bool) -> Result<Preopen, String> {
    let (host, guest) = match s.split_once("::") {
        Some((h, g)) => (h, g),
        None => (s, s),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!(
            "{s:?}: expected HOST or HOST::GUEST, e.g. ./data::/data"
        ));
    }
    Ok(Preopen {
        host: Path::new(host).to_owned(),
        guest: guest.to_owned(),
        writable,
    })
}

fn parse_read_only_dir(s: &str) -> Result<Preopen, String> {
    parse_dir(s, false)
}

fn parse_writable_dir(s: &str) -> Result<Preopen, String> {
    parse_dir(s, true)
}

/// `KEY=VALUE`; the value may be empty and may contain `=`.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE, e.g. LANG=C")),
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
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size(" 10 k "), Ok(10 << 10));
        for bad in ["", "MiB", "1.5GiB", "-1", "12XB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0"), Ok(Timeout(None)));
        assert_eq!(
            parse_seconds("1.5"),
            Ok(Timeout(Some(Duration::from_millis(1500))))
        );
        for bad in ["-1", "NaN", "inf", "soon", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dirs_and_env() {
        let p = parse_read_only_dir("./data::/data").unwrap();
        assert_eq!(
            (p.host, p.guest.as_str(), p.writable),
            (PathBuf::from("./data"), "/data", false)
        );
        let p = parse_writable_dir("/tmp/x").unwrap();
        assert_eq!((p.guest.as_str(), p.writable), ("/tmp/x", true));
        assert!(parse_read_only_dir("::/x").is_err());
        assert!(parse_read_only_dir("x::").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("NOEQ").is_err());
    }

    #[test]
    fn mode_defaults_differ_between_task_and_plain() {
        let task = Cli::try_parse_from(["runner", "--wasm", "m.wasm", "--input", ""]).unwrap();
        let Mode::Task(t) = task.into_mode().unwrap() else {
            unreachable!()
        };
        assert_eq!(t.limits.fuel, Some(DEFAULT_FUEL));
        assert_eq!(t.limits.timeout, Some(Duration::from_secs(60)));
        assert_eq!(t.input_path, None);

        let plain = Cli::try_parse_from(["runner", "--plain", "m.wasm", "a", "--b"]).unwrap();
        let Mode::Plain(p) = plain.into_mode().unwrap() else {
            unreachable!()
        };
        assert_eq!(p.limits.fuel, None);
        assert_eq!(p.limits.timeout, None);
        assert_eq!(p.args, vec!["a".to_string(), "--b".into()]);

        let fuel_off = Cli::try_parse_from(["runner", "--fuel", "0"]).unwrap();
        let Mode::Task(t) = fuel_off.into_mode().unwrap() else {
            unreachable!()
        };
        assert_eq!(t.limits.fuel, None);
    }

    #[test]
    fn positional_module_needs_plain() {
        assert!(Cli::try_parse_from(["runner", "m.wasm"]).is_err());
        assert!(Cli::try_parse_from(["runner", "--invoke", "f"]).is_err());
        let no_module = Cli::try_parse_from(["runner", "--plain"]).unwrap();
        assert!(no_module.into_mode().is_err());
    }
}
