//! `runner`: runs one WebAssembly task with the wasmi interpreter and a sandboxed WASI
//! preview1 (every call, as wasmtime answers it), and reports one result JSON object.
//!
//! The pure cores: [`args`] (JSON ↔ Wasm values), [`input`] (the input file), [`entry`]
//! (which function, which arguments) and [`result`] (the result schema, owned here for
//! every crate that reads it). The shells: [`exec`] (wasmi), [`wasi`] (the guest's system
//! interface), [`limits`] (the caps on memories and tables), [`task`] and [`plain`] (the
//! two modes), [`supervise`] (task mode's worker process), [`report`] (writing the result)
//! and [`cli`] (flags and environment).

pub mod args;
pub mod cli;
pub mod entry;
pub mod exec;
pub mod input;
pub mod limits;
pub mod plain;
pub mod report;
pub mod result;
pub mod start;
pub mod supervise;
pub mod task;
pub mod wasi;

pub use result::{GuestOutput, Status, TaskResult, SCHEMA_VERSION};
