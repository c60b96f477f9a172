//! Running a module with wasmi: compile, choose the entry, instantiate with the WASI shim,
//! call, and classify how it ended.
//!
//! Compilation, entry choice and argument conversion happen on the calling thread, so a
//! timeout can still report which entry and arguments were meant. Instantiation and the
//! call run on a worker thread, because wasmi cannot be interrupted from outside: with fuel
//! metering off, a tight loop would never yield. When the wall-clock timeout fires the
//! worker is abandoned, still running; the caller reports `timeout` and must end the process
//! soon after (the `runner` binary exits at once). That is the price of an interpreter
//! without epoch interruption, and it is why the runner is one process per task.
//!
//! Guest code always runs in fuel slices of at most [`FUEL_SLICE`] (with metering "off" the
//! slices are simply refilled without end): wasmi's fast tail-call dispatch leaks one
//! native stack frame per `memory.grow` and `table.grow` until the call returns, so a loop
//! of them overflowed the worker's stack. A slice that runs out returns to the runner and
//! is resumed with fresh fuel, which unwinds the native stack; a slice can execute at most
//! [`FUEL_SLICE`] instructions, so the frames it can leak fit in [`WORKER_STACK`]. A
//! module's `start` function, which wasmi would run unsliced inside instantiation, is
//! moved to an export first ([`crate::start`]).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, warn};
use wasmi::errors::ErrorKind;
use wasmi::{
    CompilationMode, Config, Engine, Func, Linker, Module, ResumableCall, Store, TrapCode, Val,
};

/// The most fuel one slice of guest code gets (see the module docs): about as many
/// instructions, so at most as many leaked frames (wasmi's are about 128 bytes).
pub const FUEL_SLICE: u64 = 200_000;
/// The worker thread's stack: room for a slice's leaked frames several times over, plus
/// the host functions' own needs. Only the pages touched are ever committed.
pub const WORKER_STACK: usize = 256 << 20;

use crate::args::{decode_args, encode_value, to_argv, Signature};
use crate::entry::{self, Plan, Request, INITIALIZE};
use crate::limits::InstanceLimiter;
pub use crate::limits::Limits;
use crate::result::one_line;
use crate::result::Status;
use crate::start::{move_start, START_EXPORT};
use crate::wasi::{self, WasiConfig, WasiCtx};

/// Everything one run needs.
#[derive(Debug)]
pub struct Execution {
    pub module: Vec<u8>,
    pub request: Request,
    pub limits: Limits,
    /// The guest's WASI view; a command's arguments are appended to `args` here.
    pub wasi: WasiConfig,
}

/// How a run ended, before it becomes a [`crate::result::TaskResult`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub entry: Option<String>,
    pub args: Vec<Value>,
    pub result: Option<Vec<Value>>,
    pub exit_code: Option<i32>,
    pub fuel_consumed: Option<u64>,
    pub error: Option<String>,
}

impl Outcome {
    fn failed(status: Status, error: impl Into<String>) -> Self {
        Self {
            status,
            entry: None,
            args: Vec::new(),
            result: None,
            exit_code: None,
            fuel_consumed: None,
            error: Some(error.into()),
        }
    }
}

/// The module compiled and the call decided, ready to instantiate.
struct Prepared {
    engine: Engine,
    module: Module,
    /// The module's start function was moved to the [`START_EXPORT`] export.
    has_start: bool,
    plan: Plan,
    params: Vec<Val>,
}

struct Host {
    wasi: WasiCtx,
    limiter: InstanceLimiter,
}

/// Runs `exec` to the end, or until its timeout.
pub fn execute(mut exec: Execution) -> Outcome {
    let prepared = match prepare(&exec) {
        Ok(p) => p,
        Err(outcome) => return *outcome,
    };
    let entry = prepared.plan.signature.name.clone();
    let args = prepared.plan.args.clone();
    if prepared.plan.is_command() {
        exec.wasi.args.extend(to_argv(&prepared.plan.args));
    }
    let with_plan = |mut o: Outcome| {
        o.entry = Some(entry.clone());
        o.args = args.clone();
        o
    };

    let wasi = match WasiCtx::new(exec.wasi) {
        Ok(w) => w,
        Err(e) => return with_plan(Outcome::failed(Status::Error, e.to_string())),
    };
    let limits = exec.limits.clone();
    let timeout = limits.timeout;
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = thread::Builder::new()
        .name("wasm".into())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            // The receiver is gone only when the timeout already fired; nothing to tell.
            let _ = tx.send(run(prepared, wasi, &limits));
        });
    if let Err(e) = spawned {
        return with_plan(Outcome::failed(
            Status::Error,
            format!("cannot start the execution thread: {e}"),
        ));
    }
    let received = match timeout {
        Some(t) => rx.recv_timeout(t).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => Some(t),
            mpsc::RecvTimeoutError::Disconnected => None,
        }),
        None => rx.recv().map_err(|_| None),
    };
    match received {
        Ok(outcome) => with_plan(outcome),
        Err(Some(t)) => {
            warn!(
                timeout_sec = t.as_secs_f64(),
                "wall-clock timeout; abandoning the guest"
            );
            with_plan(Outcome::failed(
                Status::Timeout,
                format!("the task ran longer than its timeout of {}", describe(t)),
            ))
        }
        Err(None) => with_plan(Outcome::failed(
            Status::Error,
            "the execution thread ended without a result (it panicked; see the log)",
        )),
    }
}

fn describe(t: Duration) -> String {
    if t.subsec_nanos() == 0 {
        format!("{} s", t.as_secs())
    } else {
        format!("{:.3} s", t.as_secs_f64())
    }
}

/// Compiles the module and decides entry and arguments, all pure of side effects.
fn prepare(exec: &Execution) -> Result<Prepared, Box<Outcome>> {
    let mut config = Config::default();
    // Always on: fuel slices bound the native stack (module docs), budget or not.
    config.consume_fuel(true);
    // Validate and translate everything up front. Lazy translation started large modules
    // faster, but wasmi 2.0 charges a function's translation to the fuel of the slice that
    // first calls it, and when that slice runs short the call fails with a plain
    // out-of-fuel error instead of pausing (wasmi PR #2032, open): an ordinary C program
    // with fuel metering "off" died as `out_of_fuel` at its first getenv(). Eager
    // translation charges no fuel at run time.
    config.compilation_mode(CompilationMode::Eager);
    let engine = Engine::new(&config);
    if let Some(why) = not_a_core_module(&exec.module) {
        return Err(Box::new(Outcome::failed(Status::InvalidModule, why)));
    }
    let invalid = |e: wasmi::Error| {
        Box::new(Outcome::failed(
            Status::InvalidModule,
            format!(
                "the module is not valid WebAssembly: {}",
                one_line(&e.to_string())
            ),
        ))
    };
    let moved = move_start(&exec.module);
    let module = match &moved {
        None => Module::new(&engine, &exec.module).map_err(invalid)?,
        Some(m) => match Module::new(&engine, &m.bytes) {
            Ok(module) => module,
            // Reported from the original bytes, whose offsets the module's author knows;
            // should those compile (the move broke something), that is said instead.
            Err(moved_error) => {
                return Err(match Module::new(&engine, &exec.module) {
                    Err(e) => invalid(e),
                    Ok(_) => Box::new(Outcome::failed(
                        Status::Error,
                        format!(
                            "the module's start section could not be moved: {}",
                            one_line(&moved_error.to_string())
                        ),
                    )),
                })
            }
        },
    };
    let has_start = moved.is_some();
    let exports: Vec<Signature> = module
        .exports()
        .filter(|e| e.name() != START_EXPORT)
        .filter_map(|e| e.ty().func().map(|f| Signature::new(e.name(), f)))
        .collect();
    if let Some(init) = exports.iter().find(|s| s.name == INITIALIZE) {
        if !init.params.is_empty() || !init.results.is_empty() {
            return Err(Box::new(Outcome::failed(
                Status::InvalidModule,
                format!("`{init}` must take and return nothing (the WASI reactor ABI)"),
            )));
        }
    }
    let plan = entry::plan(&exec.request, &exports)
        .map_err(|e| Box::new(Outcome::failed(Status::InvalidInput, e.to_string())))?;
    if plan.is_command()
        && (!plan.signature.params.is_empty() || !plan.signature.results.is_empty())
    {
        // A WASI command's entry takes and returns nothing; its arguments are argv. This is
        // the module's fault, and deterministic: not worth a retry.
        return Err(Box::new(Outcome::failed(
            Status::InvalidModule,
            format!(
                "`{}` must take and return nothing (the WASI command ABI); call another export with --entry / \"entry\" to pass it arguments",
                plan.signature
            ),
        )));
    }
    let params = if plan.is_command() {
        Vec::new()
    } else {
        decode_args(&plan.signature, &plan.args).map_err(|e| {
            let mut o = Outcome::failed(Status::InvalidInput, e.to_string());
            o.entry = Some(plan.signature.name.clone());
            o.args = plan.args.clone();
            Box::new(o)
        })?
    };
    debug!(entry = %plan.signature, source = ?plan.source, "entry chosen");
    Ok(Prepared {
        engine,
        module,
        has_start,
        plan,
        params,
    })
}

/// Fuel handed out in slices, from a budget or without end.
struct Meter {
    budget: Option<u64>,
    consumed: u64,
    /// The fuel the current slice started with.
    slice: u64,
}

impl Meter {
    fn new(budget: Option<u64>) -> Self {
        Self {
            budget,
            consumed: 0,
            slice: 0,
        }
    }

    /// Counts what the current slice used, host calls' overdraft included (WASI calls
    /// charge the bytes they move, `wasi::HOST_BYTES_PER_FUEL`).
    fn account(&mut self, store: &mut Store<Host>) {
        let left = store.get_fuel().unwrap_or(0);
        let overdraft = store.data_mut().wasi.take_fuel_overdraft();
        self.consumed = self
            .consumed
            .saturating_add(self.slice.saturating_sub(left))
            .saturating_add(overdraft);
        self.slice = 0;
    }

    /// Gives the store its next slice, at least `needed` (one operation may cost more than
    /// a slice, e.g. a large `memory.grow`); false when the budget cannot pay for it.
    fn refill(&mut self, store: &mut Store<Host>, needed: u64) -> Result<bool, wasmi::Error> {
        let want = FUEL_SLICE.max(needed);
        let slice = match self.budget {
            None => want,
            Some(b) => {
                let left = b.saturating_sub(self.consumed);
                if left == 0 || left < needed {
                    return Ok(false);
                }
                want.min(left)
            }
        };
        store.set_fuel(slice)?;
        self.slice = slice;
        Ok(true)
    }
}

/// Calls `func` in fuel slices (see the module docs), resuming after each one until it
/// returns, traps or the budget is spent.
fn call_sliced(
    store: &mut Store<Host>,
    meter: &mut Meter,
    func: &Func,
    params: &[Val],
    results: &mut [Val],
) -> Result<(), wasmi::Error> {
    if !meter.refill(store, 0)? {
        return Err(wasmi::Error::from(TrapCode::OutOfFuel));
    }
    let mut call = func.call_resumable(&mut *store, params, results);
    loop {
        match call {
            Err(e) => {
                meter.account(store);
                return Err(e);
            }
            Ok(ResumableCall::Finished) => {
                meter.account(store);
                return Ok(());
            }
            // A host function's error (proc_exit, an unsupported call) ends the call as a
            // plain call would.
            Ok(ResumableCall::HostTrap(trap)) => {
                meter.account(store);
                return Err(trap.into_host_error());
            }
            Ok(ResumableCall::OutOfFuel(paused)) => {
                meter.account(store);
                if !meter.refill(store, paused.required_fuel())? {
                    return Err(wasmi::Error::from(TrapCode::OutOfFuel));
                }
                call = paused.resume(&mut *store, results);
            }
        }
    }
}

/// Instantiates and calls; runs on the worker thread.
fn run(prepared: Prepared, wasi: WasiCtx, limits: &Limits) -> Outcome {
    let Prepared {
        engine,
        module,
        has_start,
        plan,
        params,
    } = prepared;
    let mut store = Store::new(
        &engine,
        Host {
            wasi,
            limiter: InstanceLimiter::new(limits),
        },
    );
    store.limiter(|host| &mut host.limiter);
    let mut meter = Meter::new(limits.fuel);

    let mut linker = Linker::<Host>::new(&engine);
    let linked = wasi::add_to_linker(&mut linker, |host| &mut host.wasi)
        .and_then(|()| wasi::define_unsupported(&mut linker, &module));
    if let Err(e) = linked {
        return Outcome::failed(Status::Error, format!("cannot set up the WASI shim: {e}"));
    }

    let mut instantiated = false;
    let calls = (|| -> Result<Vec<Val>, wasmi::Error> {
        // No start function runs here: a module's was moved to an export (`prepare`).
        let instance = linker.instantiate_and_start(&mut store, &module)?;
        instantiated = true;
        let named = |store: &Store<Host>, name: &str| {
            instance
                .get_func(store, name)
                .ok_or_else(|| wasmi::Error::new(format!("export `{name}` vanished")))
        };
        if has_start {
            let start = named(&store, START_EXPORT)?;
            call_sliced(&mut store, &mut meter, &start, &[], &mut [])?;
        }
        if plan.initialize {
            // Its signature was checked in `prepare`.
            let init = named(&store, INITIALIZE)?;
            call_sliced(&mut store, &mut meter, &init, &[], &mut [])?;
        }
        let func = named(&store, &plan.signature.name)?;
        let mut results: Vec<Val> = plan
            .signature
            .results
            .iter()
            .map(|ty| Val::default_for_ty(*ty))
            .collect();
        call_sliced(&mut store, &mut meter, &func, &params, &mut results)?;
        Ok(results)
    })();

    // With metering "off" (no budget) the slices are counted but not reported.
    let fuel_consumed = limits.fuel.map(|_| meter.consumed);
    let mut outcome = match calls {
        Ok(results) => Outcome {
            status: Status::Ok,
            entry: None,
            args: Vec::new(),
            result: Some(results.iter().map(encode_value).collect()),
            // A command that returns from `_start` exits with 0, as under any WASI host.
            exit_code: plan.is_command().then_some(0),
            fuel_consumed: None,
            error: None,
        },
        Err(e) => match e.i32_exit_status() {
            Some(code) => Outcome {
                status: Status::Ok,
                entry: None,
                args: Vec::new(),
                result: None,
                exit_code: Some(code),
                fuel_consumed: None,
                error: None,
            },
            None => match (store.data().limiter.denied(), instantiated) {
                // Instantiation failed because the module's own memories or tables exceed
                // the caps: the module cannot run here, whatever its input.
                (Some(denial), false) => Outcome::failed(
                    Status::InvalidModule,
                    format!("the module cannot be instantiated: {denial}"),
                ),
                _ => {
                    let (status, message) = classify(&e);
                    Outcome::failed(status, message)
                }
            },
        },
    };
    outcome.fuel_consumed = fuel_consumed;
    if outcome.status == Status::OutOfFuel {
        // The budget is spent, whatever the store last said: wasmi charges a block's fuel
        // up front and, when the block cannot pay, traps without deducting what the
        // function used so far, so counting slices could report 0 here.
        outcome.fuel_consumed = limits.fuel.or(outcome.fuel_consumed);
    }
    outcome
}

/// Maps a wasmi error to the task status it means, with a message for people.
pub fn classify(e: &wasmi::Error) -> (Status, String) {
    let e_kind = e.kind();
    if let Some(code) = e.as_trap_code() {
        return match code {
            TrapCode::OutOfFuel => (
                Status::OutOfFuel,
                "the task ran out of fuel (raise --fuel / FUEL, or 0 to turn metering off)".into(),
            ),
            TrapCode::GrowthOperationLimited => (
                Status::Trap,
                format!("wasm trap: {code} (the memory or table cap was reached; see --max-memory / MAX_MEMORY)"),
            ),
            _ => (Status::Trap, format!("wasm trap: {code}")),
        };
    }
    let e = without_handles(&one_line(&e.to_string()));
    match e_kind {
        ErrorKind::Linker(_) | ErrorKind::Instantiation(_) => (
            Status::InvalidModule,
            format!("the module cannot be instantiated: {e}"),
        ),
        ErrorKind::Wasm(_) | ErrorKind::Translation(_) | ErrorKind::Read(_) | ErrorKind::Ir(_) => {
            (Status::InvalidModule, format!("the module is invalid: {e}"))
        }
        ErrorKind::Memory(_) | ErrorKind::Table(_) | ErrorKind::Global(_) => {
            (Status::Trap, format!("wasm trap: {e}"))
        }
        ErrorKind::ImplementationLimits(_) | ErrorKind::UserLimits(_) => (
            Status::InvalidModule,
            format!("the module exceeds a limit of this runner: {e}"),
        ),
        // Host errors come from the WASI shim (an unsupported call that cannot return an
        // errno) and messages from our own checks above: both stop the guest, like a trap.
        ErrorKind::Host(_) | ErrorKind::Message(_) => (Status::Trap, e),
        // A call whose arguments do not fit the function: the arguments are checked
        // before the call, so this is the task's input, never the machinery.
        ErrorKind::Func(_) => (
            Status::InvalidInput,
            format!("the call does not fit the function: {e}"),
        ),
        _ => (Status::Error, format!("execution failed: {e}")),
    }
}

/// Why `bytes` is not a core WebAssembly module, judged from its 8-byte preamble, so that a
/// wrong file is named plainly (wasmi's own message dumps the bytes over several lines).
pub fn not_a_core_module(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8; 4] = b"\0asm";
    const VERSION_1: [u8; 4] = [1, 0, 0, 0];
    let head = |n: usize| {
        bytes[..n.min(bytes.len())]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Some(format!(
            "the module is not WebAssembly: it starts with [{}], not the magic bytes [00 61 73 6d] (\"\\0asm\"); was the wrong file fetched?",
            head(4)
        ));
    }
    match bytes.get(4..8) {
        None => Some(format!(
            "the module is not valid WebAssembly: it ends after {} bytes, inside its 8-byte preamble",
            bytes.len()
        )),
        Some(v) if v == VERSION_1 => None,
        // Layer 1 with version 0x0d: the component model's binary format.
        Some([_, _, 1, 0]) => Some(
            "the module is a WebAssembly component, not a core module; the runner runs core modules (wasm32-wasip1, wasm32-unknown-unknown)".into(),
        ),
        Some(_) => Some(format!(
            "the module is not a WebAssembly 1.0 core module: its version field is [{}], not [01 00 00 00]",
            head(8).get(12..).unwrap_or_default()
        )),
    }
}

/// `text` without wasmi's debug dumps of store handles (`Table(Stored { store: StoreId(14),
/// value: … })` becomes `Table`): they differ from process to process and mean nothing to
/// a task's author, and a result should read the same on every run.
pub fn without_handles(text: &str) -> String {
    const MARK: &str = "(Stored {";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        // Skip to the parenthesis that closes the one opened at `at`.
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest[at..].char_indices() {
            match c {
                '(' | '{' => depth += 1,
                ')' | '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_handles_are_left_out_of_messages() {
        let text = "out of bounds table access: Table(Stored { store: StoreId(14713), value: RawHandle { index: 0 } }) does not fit 0 elements starting from offset 4294967295";
        assert_eq!(
            without_handles(text),
            "out of bounds table access: Table does not fit 0 elements starting from offset 4294967295"
        );
        assert_eq!(without_handles("plain"), "plain");
        assert_eq!(without_handles("x(Stored { open"), "x");
    }
}
