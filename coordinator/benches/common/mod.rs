//! Set-up shared by the coordinator benches: a clean environment for the binaries under
//! test, and where the release build puts them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "../../tests/support/env.rs"]
mod env;
pub use env::clean;

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
