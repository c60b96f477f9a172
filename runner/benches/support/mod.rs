//! Shared by the runner's benchmarks: where the workspace and the release binaries are.

use std::env;
use std::path::{Path, PathBuf};

/// The release dir this bench was built into (it runs from `<target>/release/deps/`), so
/// that a `CARGO_TARGET_DIR` elsewhere is found too.
pub fn release_dir() -> PathBuf {
    env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target/release"))
}

/// The workspace root: this crate's manifest directory's parent.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `RUNNER_BENCH_RUNS` when set (a positive integer), else `default` under `cargo bench` and
/// 1 under `cargo test --benches`.
pub fn timed_runs(bench_mode: bool, default: usize) -> Result<usize, String> {
    match env::var("RUNNER_BENCH_RUNS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("RUNNER_BENCH_RUNS must be a positive integer, not {v:?}")),
        Err(_) if !bench_mode => Ok(1),
        Err(_) => Ok(default),
    }
}
