//! Where tasks come from, behind one trait: the placeholder contract (the sample tasks) and
//! a JSON-lines file or stdin.

mod jsonl;
mod placeholder;

use std::future::Future;
use std::pin::Pin;

pub use jsonl::JsonLinesSource;
pub use placeholder::{PlaceholderSource, SAMPLES};

use crate::task::Task;

/// A stream of tasks. `None` means drained: no task will come any more.
pub trait TaskSource: Send {
    fn next_task(&mut self) -> Pin<Box<dyn Future<Output = Option<Task>> + Send + '_>>;
}
