//! `coordinator`: takes Wasm tasks from a source, runs each through a backend, publishes
//! every result.
//!
//! [`config`] (figment layers), [`task`] (the task and report wire formats), [`source`]
//! (where tasks come from), [`sink`] (where results go), [`backend`] (how a task runs) and
//! [`service`] (concurrency, retries, shutdown) — each concept in its own module.

pub mod backend;
pub mod config;
pub mod service;
pub mod sink;
pub mod source;
pub mod task;
