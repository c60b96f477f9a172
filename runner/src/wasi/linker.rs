//! Wiring of the preview1 functions into a `wasmi::Linker`.
//!
//! Host functions receive raw `i32`/`i64` values; Wasm integers are
//! sign-agnostic and preview1 pointers, lengths and flags are unsigned, so
//! they are reinterpreted bit-for-bit (`as u32` / `as u64`, never a value
//! conversion) before any use.

use super::errno::{Errno, ENOSYS, SUCCESS};
use super::memory::GuestMemory;
use super::{clock, WasiCtx, WASI_MODULE};
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
    let (data, state) = memory.data_and_store_mut(caller);
    let mut mem = GuestMemory::new(data);
    Ok(finish(name, f(&mut mem, get(state))))
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

/// Defines every implemented preview1 function in `linker` under
/// [`WASI_MODULE`].
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: Getter<T>) -> Result<(), Error> {
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
                ctx.clocks.fill_random(dst)
            })
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
        "fd_fdstat_get",
        move |mut caller: Caller<'_, T>, fd: i32, out: i32| {
            with_memory(&mut caller, get, "fd_fdstat_get", |mem, ctx| {
                ctx.fds.fdstat_get(mem, fd as u32, out as u32)
            })
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
                    .read(mem, fd as u32, iovs as u32, iovs_len as u32, nread as u32)
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
                    nwritten as u32,
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_seek",
        move |mut caller: Caller<'_, T>, fd: i32, offset: i64, whence: i32, out: i32| {
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
                )
            })
        },
    )?;
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
                // oflags and fdflags are u16 in the witx; higher bits set by
                // the guest are invalid rather than silently dropped.
                let oflags = u16::try_from(oflags as u32).map_err(|_| super::errno::EINVAL)?;
                let fdflags = u16::try_from(fdflags as u32).map_err(|_| super::errno::EINVAL)?;
                ctx.fds.path_open(
                    mem,
                    dirfd as u32,
                    dirflags as u32,
                    path as u32,
                    path_len as u32,
                    oflags,
                    rights_base as u64,
                    fdflags,
                    fd_out as u32,
                )
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
                    path as u32,
                    len as u32,
                    out as u32,
                )
            })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "proc_exit",
        |_caller: Caller<'_, T>, code: i32| -> Result<(), Error> { Err(Error::i32_exit(code)) },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sched_yield",
        |_caller: Caller<'_, T>| -> i32 {
            // A single-threaded guest has nobody to yield to.
            i32::from(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, T>, subs: i32, events: i32, n: i32, nevents: i32| {
            with_memory(&mut caller, get, "poll_oneoff", |mem, ctx| {
                clock::poll_oneoff(
                    mem,
                    &mut ctx.clocks,
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
