//! `poll_oneoff`: clock subscriptions wait, fd subscriptions on stdio and files are ready
//! at once (a file is always readable and writable; stdin, a null device or the host's
//! stdin, is reported readable and a read then blocks for as long as the host's would).
//!
//! As in wasmtime: no subscriptions is EINVAL; an fd subscription on anything but stdio or
//! a file, or one on a closed fd, fails the whole call with EBADF; a CPU-time clock fails
//! it with EINVAL. A wait never outlives the runner's wall-clock timeout: the worker is
//! abandoned and the process ends when it fires, whatever the guest is doing. Seeded runs
//! wait by moving virtual time, at once.

use super::abi::errno::{Errno, EBADF, EINVAL};
use super::abi::layout::{
    CLOCK_FLAGS, CLOCK_ID, CLOCK_TIMEOUT, EVENT_ERROR, EVENT_FLAGS, EVENT_NBYTES, EVENT_SIZE,
    EVENT_TYPE, SUBSCRIPTION_SIZE, SUB_PAYLOAD, SUB_TAG,
};
use super::abi::{clockid, eventtype, EVENTRWFLAGS_HANGUP, SUBCLOCKFLAGS_ABSTIME};
use super::clock::Clocks;
use super::fds::{FdEntry, FdTable};
use super::memory::{offset, GuestMemory};

struct Event {
    userdata: u64,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

/// One subscription, read and judged.
enum Sub {
    /// Due when the monotonic clock reaches `deadline`.
    Clock { userdata: u64, deadline: u64 },
    /// Ready now.
    Ready(Event),
}

/// `poll_oneoff(in, out, nsubscriptions, nevents_ptr)`.
pub(crate) fn poll_oneoff(
    mem: &mut GuestMemory<'_>,
    clocks: &mut Clocks,
    fds: &FdTable,
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

    // Judge every subscription before waiting, so that an invalid one fails the call
    // without a wait; nothing is collected, so a huge array costs no host memory.
    // Relative timeouts count from this one instant.
    let start = clocks.peek(clockid::MONOTONIC)?;
    let mut any_ready = false;
    let mut earliest: Option<u64> = None;
    for i in 0..nsubscriptions {
        match judge(mem, clocks, fds, start, subscription_at(subs, i)?)? {
            Sub::Ready(_) => any_ready = true,
            Sub::Clock { deadline, .. } => {
                earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            }
        }
    }
    match earliest {
        Some(deadline) if !any_ready && deadline > start => {
            clocks.wait(deadline.saturating_sub(start));
        }
        _ => {}
    }
    let now = clocks.peek(clockid::MONOTONIC)?;
    let mut ready = 0u32;
    for i in 0..nsubscriptions {
        let event = match judge(mem, clocks, fds, start, subscription_at(subs, i)?)? {
            Sub::Ready(event) => event,
            Sub::Clock { userdata, deadline } if deadline <= now => Event {
                userdata,
                kind: eventtype::CLOCK,
                // wasmtime reports 1 for a lone relative sleep, 0 otherwise.
                nbytes: u64::from(
                    nsubscriptions == 1 && !is_abstime(mem, subscription_at(subs, i)?)?,
                ),
                flags: 0,
            },
            Sub::Clock { .. } => continue,
        };
        write_event(mem, events, ready, &event)?;
        ready = ready.saturating_add(1);
    }
    mem.write_u32(nevents_ptr, ready)
}

fn is_abstime(mem: &GuestMemory<'_>, sub: u32) -> Result<bool, Errno> {
    let payload = offset(sub, SUB_PAYLOAD)?;
    let flags = mem.read_u16(offset(payload, CLOCK_FLAGS)?)?;
    Ok(flags & SUBCLOCKFLAGS_ABSTIME != 0)
}

fn judge(
    mem: &GuestMemory<'_>,
    clocks: &Clocks,
    fds: &FdTable,
    start: u64,
    sub: u32,
) -> Result<Sub, Errno> {
    let userdata = mem.read_u64(sub)?;
    let tag = mem.read_u8(offset(sub, SUB_TAG)?)?;
    let payload = offset(sub, SUB_PAYLOAD)?;
    match tag {
        eventtype::CLOCK => {
            let id = mem.read_u32(offset(payload, CLOCK_ID)?)?;
            let timeout = mem.read_u64(offset(payload, CLOCK_TIMEOUT)?)?;
            let deadline = match (id, is_abstime(mem, sub)?) {
                (clockid::MONOTONIC, true) => timeout,
                (clockid::MONOTONIC | clockid::REALTIME, false) => start.saturating_add(timeout),
                (clockid::REALTIME, true) => {
                    let wall = clocks.peek(clockid::REALTIME)?;
                    start.saturating_add(timeout.saturating_sub(wall))
                }
                _ => return Err(EINVAL),
            };
            Ok(Sub::Clock { userdata, deadline })
        }
        eventtype::FD_READ | eventtype::FD_WRITE => {
            let fd = mem.read_u32(payload)?;
            let mut flags = 0;
            match (tag, fds.get(fd)?) {
                (eventtype::FD_READ, FdEntry::Stdin(_))
                | (
                    eventtype::FD_WRITE,
                    FdEntry::Stdout(_) | FdEntry::Stderr(_) | FdEntry::File(_),
                ) => {}
                (eventtype::FD_READ, FdEntry::File(file)) => {
                    if file.at_end() {
                        flags = EVENTRWFLAGS_HANGUP;
                    }
                }
                _ => return Err(EBADF),
            }
            Ok(Sub::Ready(Event {
                userdata,
                kind: tag,
                nbytes: 1,
                flags,
            }))
        }
        _ => Err(EINVAL),
    }
}

fn subscription_at(subs: u32, index: u32) -> Result<u32, Errno> {
    index
        .checked_mul(SUBSCRIPTION_SIZE)
        .and_then(|o| subs.checked_add(o))
        .ok_or(EINVAL)
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
    mem.write_u16(offset(at, EVENT_ERROR)?, 0)?;
    mem.write_u8(offset(at, EVENT_TYPE)?, event.kind)?;
    mem.write_u64(offset(at, EVENT_NBYTES)?, event.nbytes)?;
    mem.write_u16(offset(at, EVENT_FLAGS)?, event.flags)
}
