//! Set-up shared by the coordinator benches: a clean environment for the binaries under
//! test, and where the release build puts them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables that would change what the binaries do; removed for every run.
pub const FOREIGN_ENV: &[&str] = &[
    "IPFS_GATEWAY",
    "RUST_LOG",
    "LOG_FORMAT",
    "KUBERNETES_SERVICE_HOST",
    "WASM_CID",
    "INPUT_CID",
    "FETCH_DIR",
    "WASM_PATH",
    "INPUT_PATH",
    "OUTPUT_PATH",
    "ARGS_JSON",
    "ENTRY",
    "TIMEOUT_SEC",
    "FUEL",
    "TASK_ID",
    "TERMINATION_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

pub fn clean(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("COORDINATOR_") {
            cmd.env_remove(&k);
        }
    }
    for k in FOREIGN_ENV {
        cmd.env_remove(k);
    }
    cmd
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the coordinator crate sits in the workspace")
        .to_path_buf()
}

/// `target/release`: this bench runs from `target/release/deps/`.
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench's own path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target/release"))
}
