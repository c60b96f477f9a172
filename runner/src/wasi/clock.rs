//! Clocks, randomness, `poll_oneoff` and the determinism switch behind them.
//!
//! With [`Determinism::Seeded`] nothing here consults the host: time is a
//! virtual counter that moves by a fixed step on every read (so busy-wait
//! loops still terminate and two runs observe identical sequences), sleeps
//! advance that counter instead of blocking, and random bytes come from a
//! seeded ChaCha20 stream.

use super::errno::{Errno, EINVAL, EIO, ENOTSUP};
use super::memory::{offset, GuestMemory};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How clocks and randomness behave.
#[derive(Clone, Debug)]
pub enum Determinism {
    /// Host wall-clock time, a host monotonic clock and OS randomness.
    Real,
    /// Virtual time starting at 2000-01-01T00:00:00Z and ChaCha20 randomness
    /// from this seed; also hides host inode numbers and timestamps.
    Seeded([u8; 32]),
}

pub const CLOCK_REALTIME: u32 = 0;
pub const CLOCK_MONOTONIC: u32 = 1;
pub const CLOCK_PROCESS_CPUTIME_ID: u32 = 2;
pub const CLOCK_THREAD_CPUTIME_ID: u32 = 3;

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
    fn peek(&self, id: u32) -> Result<u64, Errno> {
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
            // CPU-time clocks would need per-thread host accounting that is
            // neither portable nor deterministic; monotonic time is an upper
            // bound for a single-threaded guest, which is what they assume.
            CLOCK_MONOTONIC | CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => Ok(monotonic),
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
    fn wait(&mut self, ns: u64) {
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

// Layouts from wasi_snapshot_preview1.witx.
const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: u32 = 32;
/// `subscription.u` tag (u8) at 8, union payload at 16.
const SUB_TAG: u32 = 8;
const SUB_PAYLOAD: u32 = 16;
/// `subscription_clock`: id u32 @0, timeout u64 @8, precision u64 @16, flags u16 @24.
const CLOCK_ID: u32 = 0;
const CLOCK_TIMEOUT: u32 = 8;
const CLOCK_FLAGS: u32 = 24;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
/// `event`: userdata u64 @0, error u16 @8, type u8 @10, fd_readwrite @16 (zeroed).
const EVENT_ERROR: u32 = 8;
const EVENT_TYPE: u32 = 10;

const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

struct Event {
    userdata: u64,
    error: Errno,
    kind: u8,
}

/// `poll_oneoff(in, out, nsubscriptions, nevents_ptr)`.
///
/// Only clock subscriptions really wait. fd subscriptions are answered at
/// once with ENOTSUP (there are no pollable streams in a batch runner), which
/// also ends the call without waiting, as any ready event would.
pub(crate) fn poll_oneoff(
    mem: &mut GuestMemory<'_>,
    clocks: &mut Clocks,
    subs: u32,
    events: u32,
    nsubscriptions: u32,
    nevents_ptr: u32,
) -> Result<(), Errno> {
    if nsubscriptions == 0 {
        return Err(EINVAL);
    }
    let subs_len = nsubscriptions
        .checked_mul(SUBSCRIPTION_SIZE)
        .ok_or(EINVAL)?;
    let events_len = nsubscriptions.checked_mul(EVENT_SIZE).ok_or(EINVAL)?;
    mem.check(subs, subs_len)?;
    mem.check(events, events_len)?;
    mem.check(nevents_ptr, 4)?;

    // First pass: answer what is ready now and find the earliest timeout.
    // Nothing is collected, so a huge subscription array costs no host memory.
    let mut ready = 0u32;
    let mut earliest: Option<u64> = None;
    for i in 0..nsubscriptions {
        let sub = subscription_at(subs, i)?;
        match parse_subscription(mem, clocks, sub)? {
            Parsed::Clock {
                wait_ns: 0,
                userdata,
            } => {
                write_event(mem, events, ready, &clock_event(userdata, 0))?;
                ready = ready.saturating_add(1);
            }
            Parsed::Clock { wait_ns, .. } => {
                earliest = Some(earliest.map_or(wait_ns, |e| e.min(wait_ns)));
            }
            Parsed::Immediate(event) => {
                write_event(mem, events, ready, &event)?;
                ready = ready.saturating_add(1);
            }
        }
    }

    if let (0, Some(waited)) = (ready, earliest) {
        clocks.wait(waited);
        // Second pass: every clock subscription due by now fires. An
        // absolute deadline is re-evaluated against the clock; a relative
        // one is due if it was no longer than the wait just performed.
        for i in 0..nsubscriptions {
            let sub = subscription_at(subs, i)?;
            if let Parsed::Clock { wait_ns, userdata } = parse_subscription(mem, clocks, sub)? {
                let due = if is_abstime(mem, sub)? {
                    wait_ns == 0
                } else {
                    wait_ns <= waited
                };
                if due {
                    write_event(mem, events, ready, &clock_event(userdata, 0))?;
                    ready = ready.saturating_add(1);
                }
            }
        }
    }
    mem.write_u32(nevents_ptr, ready)
}

enum Parsed {
    Clock { wait_ns: u64, userdata: u64 },
    Immediate(Event),
}

fn is_abstime(mem: &GuestMemory<'_>, sub: u32) -> Result<bool, Errno> {
    let payload = offset(sub, SUB_PAYLOAD)?;
    let flags = mem.read_u16(offset(payload, CLOCK_FLAGS)?)?;
    Ok(flags & SUBCLOCKFLAGS_ABSTIME != 0)
}

fn parse_subscription(mem: &GuestMemory<'_>, clocks: &Clocks, sub: u32) -> Result<Parsed, Errno> {
    let userdata = mem.read_u64(sub)?;
    let tag = mem.read_u8(offset(sub, SUB_TAG)?)?;
    let payload = offset(sub, SUB_PAYLOAD)?;
    match tag {
        EVENTTYPE_CLOCK => {
            let id = mem.read_u32(offset(payload, CLOCK_ID)?)?;
            let timeout = mem.read_u64(offset(payload, CLOCK_TIMEOUT)?)?;
            let wait_ns = if is_abstime(mem, sub)? {
                match clocks.peek(id) {
                    Ok(now) => timeout.saturating_sub(now),
                    Err(error) => return Ok(Parsed::Immediate(clock_event(userdata, error))),
                }
            } else {
                if let Err(error) = clocks.peek(id) {
                    return Ok(Parsed::Immediate(clock_event(userdata, error)));
                }
                timeout
            };
            Ok(Parsed::Clock { wait_ns, userdata })
        }
        EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE => Ok(Parsed::Immediate(Event {
            userdata,
            error: ENOTSUP,
            kind: tag,
        })),
        _ => Err(EINVAL),
    }
}

fn subscription_at(subs: u32, index: u32) -> Result<u32, Errno> {
    index
        .checked_mul(SUBSCRIPTION_SIZE)
        .and_then(|o| subs.checked_add(o))
        .ok_or(EINVAL)
}

fn clock_event(userdata: u64, error: Errno) -> Event {
    Event {
        userdata,
        error,
        kind: EVENTTYPE_CLOCK,
    }
}

fn write_event(
    mem: &mut GuestMemory<'_>,
    events: u32,
    index: u32,
    event: &Event,
) -> Result<(), Errno> {
    let at = events
        .checked_add(index.checked_mul(EVENT_SIZE).ok_or(EINVAL)?)
        .ok_or(EINVAL)?;
    mem.slice_mut(at, EVENT_SIZE)?.fill(0);
    mem.write_u64(at, event.userdata)?;
    mem.write_u16(offset(at, EVENT_ERROR)?, event.error)?;
    mem.write_u8(offset(at, EVENT_TYPE)?, event.kind)
}
