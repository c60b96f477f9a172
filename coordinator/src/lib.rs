//! `coordinator`: takes Wasm tasks from a source, runs each through a backend, publishes
//! every result.
//!
//! [`config`] (figment layers), [`task`] (the task and report wire formats), [`source`]
//! (where tasks come from), [`sink`] (where results go), [`backend`] (how a task runs),
//! [`service`] (concurrency, retries, shutdown), [`http`] (health, readiness, [`metrics`]
//! and the task API over the [`store`]), [`job`] (a task's Kubernetes Job, built from the
//! template) and [`job_status`] (what a Job and its pod say happened; the backend
//! that creates and watches Jobs comes next): each concept in its own module.

pub mod backend;
pub mod config;
pub mod election;
pub mod http;
pub mod job;
pub mod job_status;
pub mod metrics;
pub mod service;
pub mod sink;
pub mod source;
pub mod store;
pub mod task;
