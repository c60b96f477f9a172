//! Tasks submitted through `POST /tasks`, as a task source. The HTTP handler holds the
//! sending side ([`ApiIntake`]); the service reads this side.

use tokio::sync::mpsc;

use crate::source::{NextTask, TaskSource};
use crate::task::Task;

/// Tasks accepted but not yet taken; beyond this `POST /tasks` answers 503.
pub const QUEUE_CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct ApiSource {
    rx: mpsc::Receiver<Task>,
}

/// The handler's side: queue a task.
pub type ApiIntake = mpsc::Sender<Task>;

pub fn channel() -> (ApiIntake, ApiSource) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    (tx, ApiSource { rx })
}

impl ApiSource {
    /// Stops intake: `POST /tasks` is refused from now on, but tasks already queued are
    /// still handed out, then `None`.
    pub fn close(&mut self) {
        self.rx.close();
    }
}

impl TaskSource for ApiSource {
    fn next_task(&mut self) -> NextTask<'_> {
        Box::pin(async move { Ok(self.rx.recv().await) })
    }
}
