//! The one way into the ledger: every source (a task file, the placeholder, `POST
//! /tasks`, adopted Jobs) accepts its tasks here, and the reconciler is woken to take them.
//! A task is durable in the ledger before [`Intake::accept`] returns, so before the API
//! answers 202 and before a source moves on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::ledger::{Accepted, Ledger, LedgerError};
use crate::task::Task;

#[derive(Debug)]
pub struct Intake {
    ledger: Arc<dyn Ledger>,
    wake: Notify,
    open: AtomicBool,
}

/// Why tasks were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the coordinator is not taking tasks any more (it is finishing or stopping)")]
    Closed,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Intake {
    pub fn new(ledger: Arc<dyn Ledger>) -> Self {
        Self {
            ledger,
            wake: Notify::new(),
            open: AtomicBool::new(true),
        }
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Records the tasks in the ledger (each queued if new; see
    /// [`crate::ledger::state::accept`]) and wakes the reconciler.
    pub async fn accept(&self, tasks: Vec<Task>) -> Result<Vec<Accepted>, IntakeError> {
        if !self.is_open() {
            return Err(IntakeError::Closed);
        }
        let accepted = self.ledger.accept(tasks).await?;
        if accepted.iter().any(|a| matches!(a, Accepted::New(_))) {
            self.wake.notify_one();
        }
        Ok(accepted)
    }

    /// Stops intake: every later [`Intake::accept`] is refused.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Wakes the reconciler (something may have changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when tasks were accepted (or [`Intake::wake`] was called) since the last
    /// time it resolved.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
