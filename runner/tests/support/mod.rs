//! Shared helpers for the runner's CLI tests: WAT fixtures compiled into a temp dir, the
//! real binary run on them, and its result read back from all three places.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// The repository root (the workspace), for the committed samples in `host/wasm`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_owned()
}

pub fn sample(name: &str) -> PathBuf {
    let p = repo_root().join("host/wasm").join(name);
    assert!(
        p.exists(),
        "missing sample {} (run `make wasm`)",
        p.display()
    );
    p
}

/// A temp dir holding fixtures, the result file and a termination-log stand-in.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The last line of stdout, parsed.
    pub line: Value,
    /// The result file, parsed (`Value::Null` when it was not written).
    pub file: Value,
    pub file_bytes: Vec<u8>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    pub fn status(&self) -> &str {
        self.line["status"].as_str().unwrap_or("<none>")
    }

    pub fn error(&self) -> &str {
        self.line["error"].as_str().unwrap_or("")
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Compiles `wat` into `<name>.wasm` and returns its path.
    pub fn wat(&self, name: &str, wat: &str) -> PathBuf {
        let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        self.file(&format!("{name}.wasm"), &bytes)
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// The runner with a clean environment, writing its result inside the sandbox.
    pub fn runner(&self) -> Command {
        self.runner_writing_to(&self.path("out/result.json"))
    }

    /// The runner with a clean environment, writing its result file to `output`.
    pub fn runner_writing_to(&self, output: &Path) -> Command {
        let mut cmd = Command::cargo_bin("runner").unwrap();
        for var in [
            "WASM_PATH",
            "INPUT_PATH",
            "ARGS_JSON",
            "ENTRY",
            "OUTPUT_PATH",
            "TIMEOUT_SEC",
            "ADD_X",
            "ADD_Y",
            "TASK_ID",
            "FUEL",
            "MAX_MEMORY",
            "MAX_OUTPUT",
            "MAX_MODULE_SIZE",
            "MAX_INPUT_SIZE",
            "MAX_TABLE_ELEMENTS",
            "TERMINATION_LOG",
            "DETERMINISTIC",
            "LOG_FORMAT",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("--output")
            .arg(output)
            .arg("--termination-log")
            .arg(self.path("termination-log"))
            // No input unless a test gives one (an empty INPUT_PATH means none).
            .env("INPUT_PATH", "");
        cmd
    }

    /// Runs a task-mode command and reads its result back.
    pub fn run(&self, cmd: &mut Command) -> Run {
        let out = cmd.output().unwrap();
        self.read(&out)
    }

    pub fn read(&self, out: &Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let last = stdout.lines().last().unwrap_or("");
        let line: Value = serde_json::from_str(last).unwrap_or_else(|e| {
            panic!("last stdout line is not JSON ({e}): {last:?}\nstderr: {stderr}")
        });
        let file_bytes = std::fs::read(self.path("out/result.json")).unwrap_or_default();
        let file = serde_json::from_slice(&file_bytes).unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            line,
            file,
            file_bytes,
        }
    }

    /// Runs `entry` of a WAT fixture with JSON `args` and extra flags.
    pub fn call(&self, wat: &str, entry: &str, args: &str, flags: &[&str]) -> Run {
        let module = self.wat("fixture", wat);
        let mut cmd = self.runner();
        cmd.arg("--wasm")
            .arg(module)
            .arg("--entry")
            .arg(entry)
            .arg("--args-json")
            .arg(args)
            .args(flags);
        self.run(&mut cmd)
    }
}

/// A WAT module importing the WASI calls the fixtures use, with a memory and a helper
/// `$print` that writes `len` bytes at `ptr` to stdout. `body` adds functions.
pub fn wasi_module(body: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func $print (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
  {body}
)"#
    )
}
