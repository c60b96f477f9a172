//! The pod's contract: how the coordinator drives a task's two programs, the `fetcher`
//! (init container) and the `runner` (main container), defined once for every crate that
//! sets or reads it.
//!
//! - [`env`]: the environment variables each program reads (the Go executor's names);
//! - [`path`]: where the module, the input and the result live in the pod;
//! - [`exit`]: what each program's exit code means;
//! - [`FetcherEnv`] and [`RunnerEnv`]: a task's environment for each program, as the
//!   Kubernetes Job builder and the local backend both set it.
//!
//! The local backend gives the programs the same environment over a temp dir laid out like
//! the pod (`input/` for [`path::INPUT_DIR`], `shared/` for [`path::SHARED_DIR`]).

use std::path::{Path, PathBuf};

/// Environment variable names.
pub mod env {
    /// Fetcher: gateways (one URL or a comma list; `file:///dir` for a mirror).
    pub const IPFS_GATEWAY: &str = "IPFS_GATEWAY";
    /// Fetcher: the module's CID, written to `FETCH_DIR/module.wasm`.
    pub const WASM_CID: &str = "WASM_CID";
    /// Fetcher: the input's CID, written to `FETCH_DIR/input.json` (optional).
    pub const INPUT_CID: &str = "INPUT_CID";
    /// Fetcher: where the module and input go.
    pub const FETCH_DIR: &str = "FETCH_DIR";

    /// Runner: the module.
    pub const WASM_PATH: &str = "WASM_PATH";
    /// Runner: the input JSON; empty means none.
    pub const INPUT_PATH: &str = "INPUT_PATH";
    /// Runner: the result file.
    pub const OUTPUT_PATH: &str = "OUTPUT_PATH";
    /// Runner: the termination message file (Kubernetes creates it).
    pub const TERMINATION_LOG: &str = "TERMINATION_LOG";
    /// Runner: the task id, put in the result.
    pub const TASK_ID: &str = "TASK_ID";
    /// Runner: the function to call; unset means the input's `entry`, then the fallbacks.
    pub const ENTRY: &str = "ENTRY";
    /// Runner: the wall-clock timeout in seconds.
    pub const TIMEOUT_SEC: &str = "TIMEOUT_SEC";
    /// Runner: the fuel budget; 0 turns metering off.
    pub const FUEL: &str = "FUEL";
    /// Runner: the linear-memory cap (bytes, or with a unit: `256MiB`).
    pub const MAX_MEMORY: &str = "MAX_MEMORY";
    /// Runner: `true` for deterministic execution (fixed clocks, seeded random bytes).
    pub const DETERMINISTIC: &str = "DETERMINISTIC";
}

/// Paths inside a task's pod.
pub mod path {
    /// The emptyDir the fetcher writes and the runner reads (read-only there).
    pub const INPUT_DIR: &str = "/mnt/input";
    /// The emptyDir the runner writes its result file to.
    pub const SHARED_DIR: &str = "/mnt/shared";
    /// The module's file name in [`INPUT_DIR`].
    pub const MODULE_FILE: &str = "module.wasm";
    /// The input's file name in [`INPUT_DIR`].
    pub const INPUT_FILE: &str = "input.json";
    /// The result's file name in [`SHARED_DIR`].
    pub const RESULT_FILE: &str = "result.json";
    /// Where Kubernetes reads a container's termination message.
    pub const TERMINATION_LOG: &str = "/dev/termination-log";
    /// `/mnt/input/module.wasm`.
    pub const MODULE: &str = "/mnt/input/module.wasm";
    /// `/mnt/input/input.json`.
    pub const INPUT: &str = "/mnt/input/input.json";
    /// `/mnt/shared/result.json`.
    pub const RESULT: &str = "/mnt/shared/result.json";
}

/// Exit codes. Both programs separate "the task itself failed" (a retry gives the same
/// answer) from "the machinery failed" (worth a retry).
pub mod exit {
    /// The fetcher's exit codes.
    pub mod fetcher {
        /// Every file is there, verified.
        pub const OK: u8 = 0;
        /// A fetch or verification failed, or a local error (disk, HTTP client): a retry
        /// may succeed.
        pub const FAILED: u8 = 1;
        /// Bad usage: an unparsable or unsupported CID, bad flags. A retry cannot help.
        pub const USAGE: u8 = 2;
    }

    /// The runner's exit codes in task mode. A Job's `podFailurePolicy` fails at once on
    /// [`runner::TASK_FAILED`].
    pub mod runner {
        /// A result was produced: the task ran and returned (or exited).
        pub const RESULT: u8 = 0;
        /// The runner itself could not do its job: unreadable files, bad flags, a crash of
        /// its worker. Worth a retry.
        pub const RUNNER_FAILED: u8 = 1;
        /// The task failed deterministically (trap, out of fuel, invalid module or input,
        /// unknown entry). Running it again gives the same answer.
        pub const TASK_FAILED: u8 = 2;
        /// The wall-clock timeout fired.
        pub const TIMEOUT: u8 = 3;
    }
}

/// A task's environment for the fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherEnv<'a> {
    pub gateway: &'a str,
    pub wasm_cid: &'a str,
    pub input_cid: Option<&'a str>,
    /// [`path::INPUT_DIR`] in a pod; the work dir's `input/` locally.
    pub fetch_dir: &'a Path,
}

impl FetcherEnv<'_> {
    /// `(name, value)` pairs; a variable whose value is `None` must be left unset.
    pub fn vars(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            (env::IPFS_GATEWAY, Some(self.gateway.to_owned())),
            (env::WASM_CID, Some(self.wasm_cid.to_owned())),
            (env::INPUT_CID, self.input_cid.map(str::to_owned)),
            (
                env::FETCH_DIR,
                Some(self.fetch_dir.to_string_lossy().into_owned()),
            ),
        ]
    }
}

/// A task's environment for the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerEnv<'a> {
    pub task_id: &'a str,
    pub entry: Option<&'a str>,
    /// [`path::INPUT_DIR`] in a pod; the work dir's `input/` locally.
    pub input_dir: &'a Path,
    /// Whether the task has an input (the fetcher wrote `input.json`).
    pub has_input: bool,
    /// [`path::RESULT`] in a pod; the work dir's `shared/result.json` locally.
    pub output: &'a Path,
    pub timeout_sec: f64,
    pub fuel: u64,
    pub deterministic: bool,
}

impl RunnerEnv<'_> {
    /// `(name, value)` pairs; a variable whose value is `None` must be left unset.
    pub fn vars(&self) -> Vec<(&'static str, Option<String>)> {
        let file = |name: &str| -> PathBuf { self.input_dir.join(name) };
        let input = if self.has_input {
            file(path::INPUT_FILE).to_string_lossy().into_owned()
        } else {
            // Set, and empty: "no input", even where a default input file would exist.
            String::new()
        };
        vec![
            (env::TASK_ID, Some(self.task_id.to_owned())),
            (env::ENTRY, self.entry.map(str::to_owned)),
            (
                env::WASM_PATH,
                Some(file(path::MODULE_FILE).to_string_lossy().into_owned()),
            ),
            (env::INPUT_PATH, Some(input)),
            (
                env::OUTPUT_PATH,
                Some(self.output.to_string_lossy().into_owned()),
            ),
            (env::TIMEOUT_SEC, Some(self.timeout_sec.to_string())),
            (env::FUEL, Some(self.fuel.to_string())),
            (env::DETERMINISTIC, Some(self.deterministic.to_string())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_paths_agree_with_their_parts() {
        let join = |dir: &str, file: &str| Path::new(dir).join(file);
        assert_eq!(
            Path::new(path::MODULE),
            join(path::INPUT_DIR, path::MODULE_FILE)
        );
        assert_eq!(
            Path::new(path::INPUT),
            join(path::INPUT_DIR, path::INPUT_FILE)
        );
        assert_eq!(
            Path::new(path::RESULT),
            join(path::SHARED_DIR, path::RESULT_FILE)
        );
    }

    #[test]
    fn the_runner_is_told_there_is_no_input_by_an_empty_path() {
        let dir = Path::new(path::INPUT_DIR);
        let out = Path::new(path::RESULT);
        let mut e = RunnerEnv {
            task_id: "t",
            entry: None,
            input_dir: dir,
            has_input: false,
            output: out,
            timeout_sec: 1.5,
            fuel: 0,
            deterministic: false,
        };
        let vars = e.vars();
        let get = |vars: &[(&str, Option<String>)], k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get(&vars, env::INPUT_PATH).as_deref(), Some(""));
        assert_eq!(get(&vars, env::ENTRY), None);
        assert_eq!(get(&vars, env::WASM_PATH).as_deref(), Some(path::MODULE));
        assert_eq!(get(&vars, env::TIMEOUT_SEC).as_deref(), Some("1.5"));
        assert_eq!(get(&vars, env::DETERMINISTIC).as_deref(), Some("false"));
        e.has_input = true;
        e.entry = Some("fib");
        let vars = e.vars();
        assert_eq!(get(&vars, env::INPUT_PATH).as_deref(), Some(path::INPUT));
        assert_eq!(get(&vars, env::ENTRY).as_deref(), Some("fib"));
    }
}
