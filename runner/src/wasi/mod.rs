//! A WASI preview1 (`wasi_snapshot_preview1`) host for the wasmi interpreter: every
//! preview1 function, behaving as wasmtime's preview1 does (the same errno for the same
//! misuse, the same fd numbers), inside a sandbox: arguments and environment as given,
//! clocks and randomness, files and directories beneath explicitly preopened directories
//! (read-only unless made writable), captured or inherited stdout/stderr, `poll_oneoff`
//! on clocks, stdio and files, and the exit status.
//!
//! It deliberately does not: expose any host environment variable, path or descriptor
//! that the [`WasiConfig`] does not name; let any path resolve outside its preopen
//! (cap-std enforces this, see `paths`); let anything beneath a read-only preopen change;
//! offer sockets (no fd is one: the `sock_*` calls answer ENOTSOCK or EBADF, as wasmtime's
//! do for a program given no sockets), signals or threads. With [`Determinism::Seeded`]
//! it also hides host time, randomness, inode numbers and file timestamps so that reruns
//! behave identically.
//!
//! By area: `abi` (every witx constant and layout), `fds` (the fd table and `fd_*`),
//! `paths` (`path_*`), `dirs` (preopens, `fd_readdir`), `clock` (clocks, random), `poll`
//! (`poll_oneoff`), `stdio`, `args`, `memory` (bounds-checked guest memory), `linker`.

pub mod abi;
mod args;
mod clock;
mod dirs;
pub mod errno;
mod fds;
mod linker;
mod memory;
mod paths;
mod poll;
mod stdio;

#[cfg(test)]
mod tests;

pub use clock::{
    Determinism, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_REALTIME,
    CLOCK_THREAD_CPUTIME_ID, SEEDED_REALTIME_START_NS, SEEDED_TICK_NS,
};
pub use fds::MAX_FDS;
pub use linker::{add_to_linker, define_unsupported, HOST_BYTES_PER_FUEL};
pub use memory::MAX_IOVS;
pub use paths::MAX_PATH_LEN;
pub use stdio::{CaptureBuffer, Captured, OutputSink, StdinSource};

use std::fmt;
use std::path::PathBuf;

/// The import module name every preview1 function lives under.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Everything a guest may see of the outside world.
#[derive(Debug)]
pub struct WasiConfig {
    /// argv, including argv[0].
    pub args: Vec<String>,
    /// The guest's entire environment; the host's is never passed through.
    pub env: Vec<(String, String)>,
    /// Become fds 3, 4, … in this order.
    pub preopens: Vec<Preopen>,
    pub stdin: StdinSource,
    pub stdout: OutputSink,
    pub stderr: OutputSink,
    pub determinism: Determinism,
}

/// A host directory made visible to the guest under the name `guest`.
#[derive(Clone, Debug)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    /// Without this the guest cannot create, truncate or write any file
    /// beneath the directory.
    pub writable: bool,
}

/// Why a [`WasiConfig`] could not be turned into a [`WasiCtx`].
#[derive(Debug, thiserror::Error)]
pub enum WasiError {
    #[error("cannot open preopen directory {host:?}: {source}")]
    PreopenOpen {
        host: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("preopen {host:?} is not a directory")]
    PreopenNotADirectory { host: PathBuf },
    #[error("preopen guest name {guest:?} {reason}")]
    PreopenGuestName { guest: String, reason: &'static str },
    #[error("argument {index} ({arg:?}) contains a NUL byte")]
    ArgContainsNul { index: usize, arg: String },
    #[error("environment variable name {name:?} {reason}")]
    EnvName { name: String, reason: &'static str },
    #[error("value of environment variable {name:?} contains a NUL byte")]
    EnvValueContainsNul { name: String },
    #[error("{what} are too large to describe to a 32-bit guest")]
    TooLarge { what: &'static str },
}

/// Per-instance WASI state; lives in the wasmi `Store` data.
pub struct WasiCtx {
    pub(crate) args: args::StringList,
    pub(crate) env: args::StringList,
    pub(crate) fds: fds::FdTable,
    pub(crate) clocks: clock::Clocks,
    /// Bytes the host call in progress moved, charged to fuel when it returns.
    pub(crate) moved_bytes: u64,
    /// Fuel host calls cost beyond what was left in the guest's fuel at the time.
    pub(crate) fuel_overdraft: u64,
}

// The store carrying this context is moved into a worker thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<WasiCtx>();
};

impl WasiCtx {
    /// Validates the configuration and opens every preopen now, so that a
    /// missing directory is reported before the guest starts; errors name the
    /// offending value.
    pub fn new(config: WasiConfig) -> Result<Self, WasiError> {
        for (index, arg) in config.args.iter().enumerate() {
            if arg.contains('\0') {
                return Err(WasiError::ArgContainsNul {
                    index,
                    arg: arg.clone(),
                });
            }
        }
        for (name, value) in &config.env {
            let reason = if name.is_empty() {
                Some("is empty")
            } else if name.contains('=') {
                Some("contains '='")
            } else if name.contains('\0') {
                Some("contains a NUL byte")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(WasiError::EnvName {
                    name: name.clone(),
                    reason,
                });
            }
            if value.contains('\0') {
                return Err(WasiError::EnvValueContainsNul { name: name.clone() });
            }
        }
        let args = args::StringList::new(config.args.into_iter().map(String::into_bytes))
            .ok_or(WasiError::TooLarge { what: "arguments" })?;
        let env = args::StringList::new(
            config
                .env
                .into_iter()
                .map(|(name, value)| format!("{name}={value}").into_bytes()),
        )
        .ok_or(WasiError::TooLarge {
            what: "environment variables",
        })?;
        let preopens = config
            .preopens
            .iter()
            .map(dirs::open_preopen)
            .collect::<Result<Vec<_>, _>>()?;
        let clocks = clock::Clocks::new(&config.determinism);
        let fds = fds::FdTable::new(
            config.stdin,
            config.stdout,
            config.stderr,
            preopens,
            clocks.is_seeded(),
        );
        Ok(Self {
            args,
            env,
            fds,
            clocks,
            moved_bytes: 0,
            fuel_overdraft: 0,
        })
    }
}

impl WasiCtx {
    /// Records bytes moved by the host call in progress (see `linker::charge_fuel`).
    pub(crate) fn moved(&mut self, bytes: u64) {
        self.moved_bytes = self.moved_bytes.saturating_add(bytes);
    }

    /// The fuel host calls cost beyond what the guest's fuel held at the time, since the
    /// last call; the runner adds it to the fuel consumed.
    pub fn take_fuel_overdraft(&mut self) -> u64 {
        std::mem::take(&mut self.fuel_overdraft)
    }
}

impl fmt::Debug for WasiCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasiCtx")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("seeded", &self.clocks.is_seeded())
            .finish_non_exhaustive()
    }
}
