//! `coordinator`: takes Wasm tasks from a source, runs each through a backend, publishes
//! every result.
//!
//! A task's path: [`source`] (where tasks come from) → [`ledger`] (every accepted task,
//! durably) → [`reconciler`] (concurrency, retries, resuming, shutdown) → [`backend`] (how
//! a task runs: local pods or Kubernetes Jobs) → the ledger → [`publisher`] and [`sink`]
//! (where results go, each exactly once per sink).
//!
//! Around it: [`config`] (figment layers), [`task`] (the task and report wire formats,
//! validated once for every source), [`receipt`] (what the coordinator signs about each
//! task), [`cache`] (deterministic tasks answered from equal ones done before),
//! [`verify`] (re-execution: checks and `coordinator receipt verify`), [`http`] (health, readiness, [`metrics`] and the task
//! API over the ledger), [`election`] (the leader Lease) and [`startup`] (the wiring `main`
//! runs). Everything Kubernetes is in [`backend::kubernetes`]: the Job built from the
//! template (`job`), what a Job and its pod say happened (`status`), the shared watches
//! (`watch`) and events. Each concept in its own module.

pub mod backend;
pub mod cache;
pub mod chain;
pub mod config;
pub mod election;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod publisher;
pub mod receipt;
pub mod receipt_verify;
pub mod reconciler;
pub mod sink;
pub mod source;
pub mod startup;
pub mod task;
pub mod verify;
