//! Module loading and instantiation under the runner's limits: `runner::exec::execute` on
//! a module nobody vetted (a task names any CID), with small caps (fuel 100 000, 4 MiB of
//! linear memory, 10 000 table elements, a 5 s timeout), the WASI shim wired in, a
//! read-only `/input` preopen and seeded determinism, as task mode runs it.
//!
//! The first byte picks how the module is made. Even: the rest is the module's bytes, after
//! one byte that picks the entry among its exports (seeds are the sample modules). Odd: the
//! rest drives `wasm-smith`, which builds a valid module with the features wasmi supports
//! here, often importing the WASI functions and exporting `memory` plus `_start`, `main`
//! or a reactor's `_initialize`, so generated code calls the shim with generated pointers.
//! In both, the entry is called with arguments of its parameter types.
//!
//! Checks, besides "no panic" (a panic on the execution thread aborts too):
//! - the status is never `error`: that means "the machinery failed, retry", and nothing a
//!   module does may look like that;
//! - an `ok` outcome has no error, any other outcome says why;
//! - the heap the run adds stays within what the caps allow (a single allocation within
//!   twice the memory cap, as a growing `Vec` may reserve, plus the module's own size; the
//!   peak within four times the cap plus the module's translation): an instance that could
//!   exceed `max_memory` or `max_table_elements` would show here;
//! - the result line built from the outcome fits `MAX_RESULT_BYTES` and reads back;
//! - a second run of the same task gives the same outcome (seeded runs are reproducible),
//!   but for wasmi's per-process store numbers in some error messages.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use runner::args::{encode_value, Signature};
use runner::entry::Request;
use runner::exec::{execute, Execution, Limits, Outcome};
use runner::result::{TaskResult, MAX_RESULT_BYTES};
use runner::wasi::{CaptureBuffer, Determinism, OutputSink, Preopen, StdinSource, WasiConfig};
use runner::Status;
use serde_json::Value;
use wasmi::{Engine, Module, Val, ValType, F32, F64};

const MAX_MEMORY: usize = 4 << 20;
const MAX_TABLE_ELEMENTS: usize = 10_000;
const FUEL: u64 = 100_000;

/// The system allocator, counting live bytes, their peak and the largest single request.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn added(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            Self::added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            Self::added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as a new allocation before the old one is freed: a moving realloc
            // holds both for a moment.
            Self::added(new_size);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (module, mut u) = if mode & 1 == 0 {
        if rest.is_empty() {
            return;
        }
        let (pick, bytes) = rest.split_at(1);
        (bytes.to_vec(), Unstructured::new(pick))
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(module) = generated_module(&mut u) else {
            return;
        };
        (module, u)
    };
    let request = request_for(&module, &mut u);

    let threads = thread_count();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    LARGEST.store(0, Ordering::Relaxed);
    let outcome = execute(execution(module.clone(), request.clone()));
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let largest = LARGEST.load(Ordering::Relaxed);
    settle(threads);

    assert_ne!(outcome.status, Status::Error, "{:?}", outcome.error);
    assert_eq!(
        outcome.status == Status::Ok,
        outcome.error.is_none(),
        "{outcome:?}"
    );
    let single_cap = 2 * MAX_MEMORY + 16 * module.len() + (1 << 20);
    assert!(
        largest <= single_cap,
        "one allocation of {largest} bytes (cap {single_cap}) for a {}-byte module: {:?}",
        module.len(),
        outcome.status
    );
    let peak_cap = 4 * MAX_MEMORY + 64 * module.len() + (32 << 20);
    assert!(
        peak <= peak_cap,
        "the run's heap peaked at {peak} bytes (cap {peak_cap}) for a {}-byte module: {:?}",
        module.len(),
        outcome.status
    );
    result_line_fits(&outcome);

    if outcome.status != Status::Timeout {
        let again = execute(execution(module, request));
        settle(threads);
        assert_eq!(
            without_store_ids(again),
            without_store_ids(outcome),
            "a seeded run is not reproducible"
        );
    }
});

fn execution(module: Vec<u8>, request: Request) -> Execution {
    Execution {
        module,
        request,
        limits: Limits {
            fuel: Some(FUEL),
            max_memory: MAX_MEMORY,
            max_table_elements: MAX_TABLE_ELEMENTS,
            timeout: Some(Duration::from_secs(5)),
        },
        wasi: WasiConfig {
            args: vec!["fuzz.wasm".into()],
            env: vec![("TASK_ID".into(), "fuzz".into())],
            preopens: vec![Preopen {
                host: input_dir().clone(),
                guest: "/input".into(),
                writable: false,
            }],
            stdin: StdinSource::Null,
            stdout: OutputSink::Capture(CaptureBuffer::new(4096)),
            stderr: OutputSink::Capture(CaptureBuffer::new(4096)),
            determinism: Determinism::Seeded([7; 32]),
        },
    }
}

/// A directory with an `input.json`, made once per process, for the `/input` preopen.
fn input_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasm-exec-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        std::fs::write(dir.join("input.json"), br#"{"entry":"main","args":[1,2]}"#)
            .expect("the input file");
        dir
    })
}

/// Picks an exported function and makes arguments of its types.
fn request_for(module: &[u8], u: &mut Unstructured<'_>) -> Request {
    let mut config = wasmi::Config::default();
    config.consume_fuel(true);
    let exports: Vec<Signature> = Module::new(&Engine::new(&config), module)
        .map(|m| {
            m.exports()
                .filter_map(|e| e.ty().func().map(|f| Signature::new(e.name(), f)))
                .collect()
        })
        .unwrap_or_default();
    let pick = u.arbitrary::<u8>().unwrap_or(0);
    let Some(sig) = exports.get(usize::from(pick) % exports.len().max(1)) else {
        // Nothing to pick: the runner's own fallbacks (`_start`, `add`) decide.
        return Request::default();
    };
    let args = sig
        .params
        .iter()
        .map(|ty| argument(*ty, u).unwrap_or(Value::from(0)))
        .collect();
    Request {
        entry: Some(sig.name.clone()),
        args: Some(args),
        ..Request::default()
    }
}

/// A JSON argument of type `ty`: the result encoding of an arbitrary value, which the
/// argument decoding accepts back (non-finite floats and NaN payloads included).
fn argument(ty: ValType, u: &mut Unstructured<'_>) -> arbitrary::Result<Value> {
    Ok(match ty {
        ValType::I32 => encode_value(&Val::I32(u.arbitrary()?)),
        ValType::I64 => encode_value(&Val::I64(u.arbitrary()?)),
        ValType::F32 => encode_value(&Val::F32(F32::from_bits(u.arbitrary()?))),
        ValType::F64 => encode_value(&Val::F64(F64::from_bits(u.arbitrary()?))),
        // Not expressible in JSON: the runner refuses the call as invalid input.
        ValType::V128 | ValType::FuncRef | ValType::ExternRef => Value::Null,
    })
}

/// The WASI preview1 functions a generated module may import: those the shim implements
/// and two it does not (which trap when called).
const WASI_IMPORTS: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_tell" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
)"#;

/// Export shapes a generated module may be given: a command, a `main`, a reactor.
const EXPORT_SHAPES: [&str; 3] = [
    r#"(module (memory (export "memory") 1) (func (export "_start")))"#,
    r#"(module (memory (export "memory") 1) (func (export "main") (param i32 i32) (result i32) unreachable))"#,
    r#"(module (memory (export "memory") 1) (func (export "_initialize"))
       (func (export "run") (param i64 f64) (result f64 i32) unreachable))"#,
];

fn generated_module(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mut config = wasm_smith::Config::arbitrary(u)?;
    // What the runner's wasmi accepts (its `stable` features, no SIMD, no memory64):
    // anything else would only be refused at validation, and is left to the raw mode.
    config.simd_enabled = false;
    config.relaxed_simd_enabled = false;
    config.threads_enabled = false;
    config.shared_everything_threads_enabled = false;
    config.gc_enabled = false;
    config.exceptions_enabled = false;
    config.memory64_enabled = false;
    config.wide_arithmetic_enabled = false;
    config.custom_page_sizes_enabled = false;
    config.custom_descriptors_enabled = false;
    // Small modules that still reach past the caps: memories up to 16 times the memory cap,
    // tables up to 10 times the table cap, several of each.
    config.max_memories = config.max_memories.min(8);
    config.max_tables = config.max_tables.min(8);
    config.max_memory32_bytes = config.max_memory32_bytes.min(16 * MAX_MEMORY as u64);
    config.max_table_elements = config
        .max_table_elements
        .min(10 * MAX_TABLE_ELEMENTS as u64);
    config.max_funcs = config.max_funcs.min(64);
    config.max_instructions = config.max_instructions.min(512);
    config.max_data_segments = config.max_data_segments.min(16);
    config.max_element_segments = config.max_element_segments.min(16);
    config.max_elements = config.max_elements.min(256);
    config.max_types = config.max_types.min(64);
    config.max_globals = config.max_globals.min(64);
    config.max_exports = config.max_exports.min(64);
    if u.arbitrary()? {
        config.available_imports = Some(wasi_imports().to_vec());
    }
    match u.int_in_range(0..=4u8)? {
        shape @ 0..=2 => config.exports = Some(export_shape(usize::from(shape)).to_vec()),
        3 => config.export_everything = true,
        _ => {}
    }
    let module = wasm_smith::Module::new(config, u)?;
    Ok(module.to_bytes())
}

fn wasi_imports() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| wat::parse_str(WASI_IMPORTS).expect("the imports module"))
}

fn export_shape(i: usize) -> &'static [u8] {
    static BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &BYTES.get_or_init(|| {
        EXPORT_SHAPES
            .iter()
            .map(|w| wat::parse_str(w).expect("an export shape"))
            .collect()
    })[i]
}

/// The result line the runner would write for `outcome` fits its cap and reads back.
fn result_line_fits(outcome: &Outcome) {
    let mut r = TaskResult::new(Some("fuzz".into()), outcome.status);
    r.entry = outcome.entry.clone();
    r.args = outcome.args.clone();
    r.result = outcome.result.clone();
    r.exit_code = outcome.exit_code;
    r.fuel_consumed = outcome.fuel_consumed;
    r.error = outcome.error.clone();
    let line = r.to_bounded_line();
    assert!(
        line.len() <= MAX_RESULT_BYTES,
        "a result line of {} bytes",
        line.len()
    );
    let back: TaskResult = serde_json::from_str(&line).expect("the result line reads back");
    assert_eq!(back.status, outcome.status);
}

/// `outcome` with the store numbers in its error message blanked. wasmi counts stores per
/// process, and some of its messages print a table's handle (`Table(Stored { store:
/// StoreId(14713), …`), so two runs in one process differ there; the runner runs one task
/// per process, where the number is the same every time.
fn without_store_ids(mut outcome: Outcome) -> Outcome {
    if let Some(error) = &mut outcome.error {
        let mut out = String::with_capacity(error.len());
        let mut rest = error.as_str();
        while let Some(at) = rest.find("StoreId(") {
            let (head, tail) = rest.split_at(at + "StoreId(".len());
            out.push_str(head);
            out.push('_');
            rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        *error = out;
    }
    outcome
}

/// Threads of this process now, from `/proc/self/status`.
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits (at most 5 s) until the run's execution thread has ended. `execute` does not join
/// it: the thread sends its outcome and then drops the store. Checked for leaks while it
/// was still exiting, its thread-local destructor list (32 bytes from glibc's
/// `__cxa_thread_atexit_impl`) showed up as a leak.
fn settle(threads: usize) {
    for _ in 0..5000 {
        if thread_count() <= threads {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
