//! Clocks, randomness and the determinism switch behind them (`poll_oneoff`, which waits
//! on these clocks, is in `poll`).
//!
//! With [`Determinism::Seeded`] nothing here consults the host: time is a
//! virtual counter that moves by a fixed step on every read (so busy-wait
//! loops still terminate and two runs observe identical sequences), sleeps
//! advance that counter instead of blocking, and random bytes come from a
//! seeded ChaCha20 stream.

use super::errno::{Errno, EBADF, EINVAL, EIO};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How clocks and randomness behave.
#[derive(Clone, Debug)]
pub enum Determinism {
    /// Host wall-clock time, a host monotonic clock and OS randomness.
    Real,
    /// Virtual time starting at 2000-01-01T00:00:00Z and ChaCha20 randomness
    /// from this seed; also hides host timestamps (0), devices (1) and inode numbers (1, 2,
    /// … in the order the guest first sees each file).
    Seeded([u8; 32]),
}

pub use super::abi::clockid::{
    MONOTONIC as CLOCK_MONOTONIC, PROCESS_CPUTIME_ID as CLOCK_PROCESS_CPUTIME_ID,
    REALTIME as CLOCK_REALTIME, THREAD_CPUTIME_ID as CLOCK_THREAD_CPUTIME_ID,
};

/// 2000-01-01T00:00:00Z: a fixed, obviously-synthetic but plausible epoch.
pub const SEEDED_REALTIME_START_NS: u64 = 946_684_800 * NANOS_PER_SEC;
/// How far virtual time moves on every `clock_time_get`.
pub const SEEDED_TICK_NS: u64 = 1_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

pub(crate) enum Clocks {
    Real {
        start: Instant,
    },
    Seeded {
        /// Virtual monotonic time; realtime is this plus the fixed epoch.
        now_ns: u64,
        rng: Box<ChaCha20Rng>,
    },
}

impl Clocks {
    pub(crate) fn new(determinism: &Determinism) -> Self {
        match determinism {
            Determinism::Real => Self::Real {
                start: Instant::now(),
            },
            Determinism::Seeded(seed) => Self::Seeded {
                now_ns: 0,
                rng: Box::new(ChaCha20Rng::from_seed(*seed)),
            },
        }
    }

    pub(crate) fn is_seeded(&self) -> bool {
        matches!(self, Self::Seeded { .. })
    }

    /// Reads `id` without moving virtual time (used by `poll_oneoff`).
    pub(crate) fn peek(&self, id: u32) -> Result<u64, Errno> {
        let monotonic = match self {
            Self::Real { start } => duration_ns(start.elapsed()),
            Self::Seeded { now_ns, .. } => *now_ns,
        };
        match id {
            CLOCK_REALTIME => Ok(match self {
                Self::Real { .. } => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(duration_ns)
                    .unwrap_or(0),
                Self::Seeded { now_ns, .. } => SEEDED_REALTIME_START_NS.saturating_add(*now_ns),
            }),
            CLOCK_MONOTONIC => Ok(monotonic),
            // As wasmtime: there are no CPU-time clocks (they would need per-thread host
            // accounting that is neither portable nor deterministic).
            CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => Err(EBADF),
            _ => Err(EINVAL),
        }
    }

    pub(crate) fn time_get(&mut self, id: u32) -> Result<u64, Errno> {
        let now = self.peek(id)?;
        if let Self::Seeded { now_ns, .. } = self {
            *now_ns = now_ns.saturating_add(SEEDED_TICK_NS);
        }
        Ok(now)
    }

    pub(crate) fn resolution(&self, id: u32) -> Result<u64, Errno> {
        self.peek(id)?;
        Ok(match self {
            Self::Real { .. } => 1,
            Self::Seeded { .. } => SEEDED_TICK_NS,
        })
    }

    pub(crate) fn fill_random(&mut self, buf: &mut [u8]) -> Result<(), Errno> {
        match self {
            Self::Real { .. } => getrandom::fill(buf).map_err(|error| {
                tracing::warn!(%error, "random_get: host randomness failed");
                EIO
            }),
            Self::Seeded { rng, .. } => {
                rng.fill_bytes(buf);
                Ok(())
            }
        }
    }

    /// Waits `ns`: really in `Real` mode, by moving virtual time when seeded.
    pub(crate) fn wait(&mut self, ns: u64) {
        match self {
            // The runner enforces a wall-clock limit by killing the whole
            // worker, so an oversized sleep needs no cap or interruption here.
            Self::Real { .. } => std::thread::sleep(Duration::from_nanos(ns)),
            Self::Seeded { now_ns, .. } => *now_ns = now_ns.saturating_add(ns),
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
