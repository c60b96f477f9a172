//! `coordinator`: takes Wasm tasks from a source, runs each through a backend, publishes
//! every result.
//!
//! [`config`] (figment layers), [`task`] (the task and report wire formats), [`source`]
//! (where tasks come from), [`sink`] (where results go), [`backend`] (how a task runs),
//! [`service`] (concurrency, retries, shutdown) and [`job`] (a task's Kubernetes Job, built
//! from the template; the backend that runs it comes next): each concept in its own module.

pub mod backend;
pub mod config;
pub mod job;
pub mod service;
pub mod sink;
pub mod source;
pub mod task;
