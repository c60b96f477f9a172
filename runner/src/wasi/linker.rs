//! Wiring of the preview1 functions into a `wasmi::Linker`.
//!
//! Host functions receive raw `i32`/`i64` values; Wasm integers are
//! sign-agnostic and preview1 pointers, lengths and flags are unsigned, so
//! they are reinterpreted bit-for-bit (`as u32` / `as u64`, never a value
//! conversion) before any use.

use super::abi::{clockid, whence, ADVICE_MAX};
use super::errno::{Errno, EINVAL, ENOSYS, ENOTSOCK, ENOTSUP, SUCCESS};
use super::memory::GuestMemory;
use super::paths::{DirChange, OpenRequest};
use super::{poll, WasiCtx, WASI_MODULE};
use wasmi::errors::LinkerError;
use wasmi::{Caller, Error, Extern, ExternType, Linker, Module, Val, ValType};

type Getter<T> = fn(&mut T) -> &mut WasiCtx;

/// Runs `f` with the caller's exported `memory` and its [`WasiCtx`], turning
/// the outcome into the errno the guest receives.
fn with_memory<T>(
    caller: &mut Caller<'_, T>,
    get: Getter<T>,
    name: &'static str,
    f: impl FnOnce(&mut GuestMemory<'_>, &mut WasiCtx) -> Result<(), Errno>,
) -> Result<i32, Error> {
    // A module without an exported memory cannot be a preview1 program; a
    // trap that says so is far more useful than an errno it will ignore.
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Err(Error::new(format!(
            "WASI function `{name}` needs the module to export its linear memory as `memory`"
        )));
    };
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let mut mem = GuestMemory::new(data);
    let errno = finish(name, f(&mut mem, get(state)));
    charge_fuel(caller, get)?;
    Ok(errno)
}

/// Bytes a host call may move per unit of fuel; wasmi charges its own bulk-memory
/// instructions at about this rate.
pub const HOST_BYTES_PER_FUEL: u64 = 64;

/// Charges the bytes the call just moved (recorded with [`WasiCtx::moved`]) to the guest's
/// fuel, so that a guest cannot do unbounded work per unit of fuel through host calls: what
/// the current slice cannot pay is kept as an overdraft, which the runner adds to the fuel
/// consumed (and checks against the budget) when the slice ends, at once since the slice
/// is then empty.
fn charge_fuel<T>(caller: &mut Caller<'_, T>, get: Getter<T>) -> Result<(), Error> {
    let ctx = get(caller.data_mut());
    let bytes = std::mem::take(&mut ctx.moved_bytes);
    let cost = bytes.div_ceil(HOST_BYTES_PER_FUEL);
    if cost == 0 {
        return Ok(());
    }
    // Metering off in the engine: nothing to charge.
    let Ok(left) = caller.get_fuel() else {
        return Ok(());
    };
    let paid = cost.min(left);
    caller.set_fuel(left - paid)?;
    let ctx = get(caller.data_mut());
    ctx.fuel_overdraft = ctx.fuel_overdraft.saturating_add(cost - paid);
    Ok(())
}

fn finish(name: &'static str, result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => i32::from(SUCCESS),
        Err(errno) => {
            tracing::trace!(function = name, errno, "WASI call failed");
            i32::from(errno)
        }
    }
}

/// A trap for an enum argument outside its witx range, as wasmtime's generated bindings
/// trap rather than answer an errno.
fn invalid_enum(function: &str, what: &str, value: u32) -> Error {
    Error::new(format!(
        "WASI function `{function}` was given {value}, which is not a valid `{what}`"
    ))
}

/// A witx `u16` flags or enum argument: higher bits set by the guest are EINVAL rather than
/// silently dropped.
fn u16_arg(value: i32) -> Result<u16, Errno> {
    u16::try_from(value as u32).map_err(|_| EINVAL)
}

/// Defines every preview1 function in `linker` under [`WASI_MODULE`].
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: Getter<T>) -> Result<(), Error> {
    add_args_and_clocks(linker, get)?;
    add_fd_calls(linker, get)?;
    add_path_calls(linker, get)?;
    add_process_and_sockets(linker, get)
}

fn add_args_and_clocks<T: 'static>(linker: &mut Linker<T>, get: Getter<T>) -> Result<(), Error> {
    linker.func_wrap(
        WASI_MODULE,
        "args_get",
        move |mut caller: Caller<'_, T>, argv: i32, buf: i32| {
            with_memory(&mut caller, get, "args_get", |mem, ctx| {
                ctx.args.get(mem, argv as u32, buf as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "args_sizes_get",
        move |mut caller: Caller<'_, T>, argc: i32, size: i32| {
            with_memory(&mut caller, get, "args_sizes_get", |mem, ctx| {
                ctx.args.sizes_get(mem, argc as u32, size as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "environ_get",
        move |mut caller: Caller<'_, T>, environ: i32, buf: i32| {
            with_memory(&mut caller, get, "environ_get", |mem, ctx| {
                ctx.env.get(mem, environ as u32, buf as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "environ_sizes_get",
        move |mut caller: Caller<'_, T>, count: i32, size: i32| {
            with_memory(&mut caller, get, "environ_sizes_get", |mem, ctx| {
                ctx.env.sizes_get(mem, count as u32, size as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "clock_res_get",
        move |mut caller: Caller<'_, T>, id: i32, out: i32| {
            if id as u32 > clockid::THREAD_CPUTIME_ID {
                return Err(invalid_enum("clock_res_get", "clockid", id as u32));
            }
            with_memory(&mut caller, get, "clock_res_get", |mem, ctx| {
                let out = out as u32;
                mem.check(out, 8)?;
                let res = ctx.clocks.resolution(id as u32)?;
                mem.write_u64(out, res)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "clock_time_get",
        move |mut caller: Caller<'_, T>, id: i32, _precision: i64, out: i32| {
            if id as u32 > clockid::THREAD_CPUTIME_ID {
                return Err(invalid_enum("clock_time_get", "clockid", id as u32));
            }
            with_memory(&mut caller, get, "clock_time_get", |mem, ctx| {
                let out = out as u32;
                mem.check(out, 8)?;
                let now = ctx.clocks.time_get(id as u32)?;
                mem.write_u64(out, now)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "random_get",
        move |mut caller: Caller<'_, T>, buf: i32, len: i32| {
            with_memory(&mut caller, get, "random_get", |mem, ctx| {
                // Filled in place: the guest chooses the length, so the host
                // never allocates a buffer of that size.
                let dst = mem.slice_mut(buf as u32, len as u32)?;
                ctx.clocks.fill_random(dst)?;
                ctx.moved(u64::from(len as u32));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, T>, subs: i32, events: i32, n: i32, nevents: i32| {
            with_memory(&mut caller, get, "poll_oneoff", |mem, ctx| {
                // Every subscription is read (twice) and may get an event.
                ctx.moved(u64::from(n as u32).saturating_mul(2 * 48 + 32));
                poll::poll_oneoff(
                    mem,
                    &mut ctx.clocks,
                    &ctx.fds,
                    subs as u32,
                    events as u32,
                    n as u32,
                    nevents as u32,
                )
            })
        },
    )?;
    Ok(())
}

fn add_fd_calls<T: 'static>(linker: &mut Linker<T>, get: Getter<T>) -> Result<(), Error> {
    linker.func_wrap(
        WASI_MODULE,
        "fd_advise",
        move |mut caller: Caller<'_, T>, fd: i32, off: i64, len: i64, advice: i32| {
            if advice as u32 > ADVICE_MAX {
                return Err(invalid_enum("fd_advise", "advice", advice as u32));
            }
            let ctx = get(caller.data_mut());
            Ok(finish(
                "fd_advise",
                ctx.fds.advise(fd as u32, off as u64, len as u64),
            ))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_allocate",
        move |mut caller: Caller<'_, T>, fd: i32, _off: i64, _len: i64| -> i32 {
            let ctx = get(caller.data_mut());
            finish("fd_allocate", ctx.fds.allocate(fd as u32))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_close",
        move |mut caller: Caller<'_, T>, fd: i32| -> i32 {
            let ctx = get(caller.data_mut());
            finish("fd_close", ctx.fds.close(fd as u32))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_datasync",
        move |mut caller: Caller<'_, T>, fd: i32| -> i32 {
            let ctx = get(caller.data_mut());
            finish("fd_datasync", ctx.fds.sync(fd as u32, true))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_sync",
        move |mut caller: Caller<'_, T>, fd: i32| -> i32 {
            let ctx = get(caller.data_mut());
            finish("fd_sync", ctx.fds.sync(fd as u32, false))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_fdstat_get",
        move |mut caller: Caller<'_, T>, fd: i32, out: i32| {
            with_memory(&mut caller, get, "fd_fdstat_get", |mem, ctx| {
                ctx.fds.fdstat_get(mem, fd as u32, out as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_fdstat_set_flags",
        move |mut caller: Caller<'_, T>, fd: i32, flags: i32| -> i32 {
            let ctx = get(caller.data_mut());
            let result =
                u16_arg(flags).and_then(|flags| ctx.fds.fdstat_set_flags(fd as u32, flags));
            finish("fd_fdstat_set_flags", result)
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_fdstat_set_rights",
        move |mut caller: Caller<'_, T>, fd: i32, _base: i64, _inheriting: i64| -> i32 {
            let ctx = get(caller.data_mut());
            finish("fd_fdstat_set_rights", ctx.fds.fdstat_set_rights(fd as u32))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_filestat_get",
        move |mut caller: Caller<'_, T>, fd: i32, out: i32| {
            with_memory(&mut caller, get, "fd_filestat_get", |mem, ctx| {
                ctx.fds.filestat_get(mem, fd as u32, out as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_filestat_set_size",
        move |mut caller: Caller<'_, T>, fd: i32, size: i64| -> i32 {
            let ctx = get(caller.data_mut());
            finish(
                "fd_filestat_set_size",
                ctx.fds.filestat_set_size(fd as u32, size as u64),
            )
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_filestat_set_times",
        move |mut caller: Caller<'_, T>, fd: i32, atim: i64, mtim: i64, flags: i32| -> i32 {
            let ctx = get(caller.data_mut());
            let result = u16_arg(flags).and_then(|flags| {
                ctx.fds
                    .filestat_set_times(fd as u32, atim as u64, mtim as u64, flags)
            });
            finish("fd_filestat_set_times", result)
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_prestat_get",
        move |mut caller: Caller<'_, T>, fd: i32, out: i32| {
            with_memory(&mut caller, get, "fd_prestat_get", |mem, ctx| {
                ctx.fds.prestat_get(mem, fd as u32, out as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_prestat_dir_name",
        move |mut caller: Caller<'_, T>, fd: i32, path: i32, len: i32| {
            with_memory(&mut caller, get, "fd_prestat_dir_name", |mem, ctx| {
                ctx.fds
                    .prestat_dir_name(mem, fd as u32, path as u32, len as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_read",
        move |mut caller: Caller<'_, T>, fd: i32, iovs: i32, iovs_len: i32, nread: i32| {
            with_memory(&mut caller, get, "fd_read", |mem, ctx| {
                ctx.fds
                    .read(mem, fd as u32, iovs as u32, iovs_len as u32, nread as u32)?;
                ctx.moved(u64::from(mem.read_u32(nread as u32)?));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_pread",
        move |mut caller: Caller<'_, T>, fd: i32, iovs: i32, iovs_len: i32, at: i64, nread: i32| {
            with_memory(&mut caller, get, "fd_pread", |mem, ctx| {
                ctx.fds.pread(
                    mem,
                    fd as u32,
                    iovs as u32,
                    iovs_len as u32,
                    at as u64,
                    nread as u32,
                )?;
                ctx.moved(u64::from(mem.read_u32(nread as u32)?));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_write",
        move |mut caller: Caller<'_, T>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| {
            with_memory(&mut caller, get, "fd_write", |mem, ctx| {
                ctx.fds.write(
                    mem,
                    fd as u32,
                    iovs as u32,
                    iovs_len as u32,
                    None,
                    nwritten as u32,
                )?;
                ctx.moved(u64::from(mem.read_u32(nwritten as u32)?));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_pwrite",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              iovs: i32,
              iovs_len: i32,
              at: i64,
              nwritten: i32| {
            with_memory(&mut caller, get, "fd_pwrite", |mem, ctx| {
                ctx.fds.write(
                    mem,
                    fd as u32,
                    iovs as u32,
                    iovs_len as u32,
                    Some(at as u64),
                    nwritten as u32,
                )?;
                ctx.moved(u64::from(mem.read_u32(nwritten as u32)?));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_readdir",
        move |mut caller: Caller<'_, T>, fd: i32, buf: i32, len: i32, cookie: i64, used: i32| {
            with_memory(&mut caller, get, "fd_readdir", |mem, ctx| {
                ctx.fds.readdir(
                    mem,
                    fd as u32,
                    buf as u32,
                    len as u32,
                    cookie as u64,
                    used as u32,
                )?;
                ctx.moved(u64::from(mem.read_u32(used as u32)?));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_renumber",
        move |mut caller: Caller<'_, T>, from: i32, to: i32| -> i32 {
            let ctx = get(caller.data_mut());
            finish("fd_renumber", ctx.fds.renumber(from as u32, to as u32))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_seek",
        move |mut caller: Caller<'_, T>, fd: i32, offset: i64, whence: i32, out: i32| {
            if whence as u32 > whence::END {
                return Err(invalid_enum("fd_seek", "whence", whence as u32));
            }
            with_memory(&mut caller, get, "fd_seek", |mem, ctx| {
                ctx.fds
                    .seek(mem, fd as u32, offset, whence as u32, out as u32)
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_tell",
        move |mut caller: Caller<'_, T>, fd: i32, out: i32| {
            with_memory(&mut caller, get, "fd_tell", |mem, ctx| {
                ctx.fds.tell(mem, fd as u32, out as u32)
            })
        },
    )?;
    Ok(())
}

fn add_path_calls<T: 'static>(linker: &mut Linker<T>, get: Getter<T>) -> Result<(), Error> {
    linker.func_wrap(
        WASI_MODULE,
        "path_open",
        move |mut caller: Caller<'_, T>,
              dirfd: i32,
              dirflags: i32,
              path: i32,
              path_len: i32,
              oflags: i32,
              rights_base: i64,
              _rights_inheriting: i64,
              fdflags: i32,
              fd_out: i32| {
            with_memory(&mut caller, get, "path_open", |mem, ctx| {
                let req = OpenRequest {
                    dirflags: dirflags as u32,
                    oflags: u16_arg(oflags)?,
                    rights_base: rights_base as u64,
                    fdflags: u16_arg(fdflags)?,
                };
                ctx.fds.path_open(
                    mem,
                    dirfd as u32,
                    (path as u32, path_len as u32),
                    &req,
                    fd_out as u32,
                )
            })
        },
    )?;
    for (name, change) in [
        ("path_create_directory", DirChange::CreateDir),
        ("path_remove_directory", DirChange::RemoveDir),
        ("path_unlink_file", DirChange::UnlinkFile),
    ] {
        linker.func_wrap(
            WASI_MODULE,
            name,
            move |mut caller: Caller<'_, T>, fd: i32, path: i32, len: i32| {
                with_memory(&mut caller, get, name, |mem, ctx| {
                    ctx.fds
                        .change_at(mem, fd as u32, (path as u32, len as u32), change)
                })
            },
        )?;
    }
    linker.func_wrap(
        WASI_MODULE,
        "path_rename",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              from: i32,
              from_len: i32,
              to_fd: i32,
              to: i32,
              to_len: i32| {
            with_memory(&mut caller, get, "path_rename", |mem, ctx| {
                ctx.fds.path_rename(
                    mem,
                    fd as u32,
                    (from as u32, from_len as u32),
                    to_fd as u32,
                    (to as u32, to_len as u32),
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "path_link",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              flags: i32,
              from: i32,
              from_len: i32,
              to_fd: i32,
              to: i32,
              to_len: i32| {
            with_memory(&mut caller, get, "path_link", |mem, ctx| {
                ctx.fds.path_link(
                    mem,
                    fd as u32,
                    flags as u32,
                    (from as u32, from_len as u32),
                    to_fd as u32,
                    (to as u32, to_len as u32),
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "path_symlink",
        move |mut caller: Caller<'_, T>,
              target: i32,
              target_len: i32,
              fd: i32,
              link: i32,
              link_len: i32| {
            with_memory(&mut caller, get, "path_symlink", |mem, ctx| {
                ctx.fds.path_symlink(
                    mem,
                    (target as u32, target_len as u32),
                    fd as u32,
                    (link as u32, link_len as u32),
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "path_readlink",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              path: i32,
              path_len: i32,
              buf: i32,
              buf_len: i32,
              used: i32| {
            with_memory(&mut caller, get, "path_readlink", |mem, ctx| {
                ctx.fds.path_readlink(
                    mem,
                    fd as u32,
                    (path as u32, path_len as u32),
                    buf as u32,
                    buf_len as u32,
                    used as u32,
                )?;
                ctx.moved(u64::from(mem.read_u32(used as u32)?));
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "path_filestat_get",
        move |mut caller: Caller<'_, T>, fd: i32, flags: i32, path: i32, len: i32, out: i32| {
            with_memory(&mut caller, get, "path_filestat_get", |mem, ctx| {
                ctx.fds.path_filestat_get(
                    mem,
                    fd as u32,
                    flags as u32,
                    (path as u32, len as u32),
                    out as u32,
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "path_filestat_set_times",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              flags: i32,
              path: i32,
              len: i32,
              atim: i64,
              mtim: i64,
              fst: i32| {
            with_memory(&mut caller, get, "path_filestat_set_times", |mem, ctx| {
                ctx.fds.path_filestat_set_times(
                    mem,
                    fd as u32,
                    flags as u32,
                    (path as u32, len as u32),
                    atim as u64,
                    mtim as u64,
                    u16_arg(fst)?,
                )
            })
        },
    )?;
    Ok(())
}

fn add_process_and_sockets<T: 'static>(
    linker: &mut Linker<T>,
    get: Getter<T>,
) -> Result<(), Error> {
    linker.func_wrap(
        WASI_MODULE,
        "proc_exit",
        |_caller: Caller<'_, T>, code: i32| -> Result<(), Error> {
            // As wasmtime: statuses from 126 up are what shells make of signals and
            // failures to run, so a guest may not claim them; asking is an error.
            if code as u32 >= 126 {
                return Err(Error::new(format!(
                    "proc_exit({}): an exit status must be below 126",
                    code as u32
                )));
            }
            Err(Error::i32_exit(code))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "proc_raise",
        |_caller: Caller<'_, T>, _signal: i32| -> i32 {
            // As wasmtime: a guest cannot signal itself.
            i32::from(ENOTSUP)
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sched_yield",
        |_caller: Caller<'_, T>| -> i32 {
            // A single-threaded guest has nobody to yield to.
            i32::from(SUCCESS)
        },
    )?;
    // No fd is ever a socket: a closed fd is EBADF, any other ENOTSOCK, as in wasmtime.
    linker.func_wrap(
        WASI_MODULE,
        "sock_accept",
        move |mut caller: Caller<'_, T>, fd: i32, _flags: i32, _out: i32| -> i32 {
            finish("sock_accept", not_a_socket(get(caller.data_mut()), fd))
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_recv",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              _iovs: i32,
              _iovs_len: i32,
              _flags: i32,
              _nread: i32,
              _oflags: i32|
              -> i32 { finish("sock_recv", not_a_socket(get(caller.data_mut()), fd)) },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_send",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              _iovs: i32,
              _iovs_len: i32,
              _flags: i32,
              _nwritten: i32|
              -> i32 { finish("sock_send", not_a_socket(get(caller.data_mut()), fd)) },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_shutdown",
        move |mut caller: Caller<'_, T>, fd: i32, _how: i32| -> i32 {
            finish("sock_shutdown", not_a_socket(get(caller.data_mut()), fd))
        },
    )?;
    Ok(())
}

fn not_a_socket(ctx: &WasiCtx, fd: i32) -> Result<(), Errno> {
    ctx.fds.get(fd as u32)?;
    Err(ENOTSOCK)
}

/// For every import of `module` from [`WASI_MODULE`] that the linker does not
/// define yet, defines a function with the import's exact signature that
/// returns ENOSYS when its first result is `i32`, and otherwise traps with an
/// error naming the function. Imports from other modules are left alone.
///
/// "Already defined" is detected through the linker's duplicate-definition
/// error, so on a linker with shadowing enabled this would replace existing
/// definitions: call it on a linker that does not allow shadowing.
pub fn define_unsupported<T: 'static>(
    linker: &mut Linker<T>,
    module: &Module,
) -> Result<(), Error> {
    for import in module.imports() {
        if import.module() != WASI_MODULE {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let name = import.name().to_owned();
        let returns_errno = ty.results().first() == Some(&ValType::I32);
        let stub = move |_caller: Caller<'_, T>, _params: &[Val], results: &mut [Val]| {
            if returns_errno {
                tracing::debug!(function = %name, "unsupported WASI function called; returning ENOSYS");
                // Remaining results keep the zero defaults wasmi provides.
                if let Some(first) = results.first_mut() {
                    *first = Val::I32(i32::from(ENOSYS));
                }
                Ok(())
            } else {
                Err(Error::new(format!(
                    "WASI function `{name}` is not supported by this runner"
                )))
            }
        };
        match linker.func_new(WASI_MODULE, import.name(), ty.clone(), stub) {
            Ok(_) | Err(LinkerError::DuplicateDefinition { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
