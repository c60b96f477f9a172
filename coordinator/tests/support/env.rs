//! The environment the coordinator's tests and benches run its binaries in: every variable
//! that would change what the coordinator, fetcher or runner do is removed. Shared by the
//! test support, `tests/http_api.rs` and the benches (through `#[path]`).

use std::process::Command;

/// Variables the coordinator, fetcher or runner read, removed for every run (besides every
/// `COORDINATOR_*`). Proxies too: nothing may leave 127.0.0.1, and a proxy would catch it.
pub const FOREIGN_ENV: &[&str] = &[
    "IPFS_GATEWAY",
    "RUST_LOG",
    "LOG_FORMAT",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "KUBECONFIG",
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
    "ADD_X",
    "ADD_Y",
    "MAX_MEMORY",
    "MAX_OUTPUT",
    "TERMINATION_LOG",
    "DETERMINISTIC",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Removes every `COORDINATOR_*` variable and [`FOREIGN_ENV`] from `cmd`'s environment.
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
