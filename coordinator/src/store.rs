//! What the task API answers from: every task this process has seen, queued, running or
//! done, with its report. Bounded in count ([`DEFAULT_CAPACITY`] tasks) and in the bytes of
//! the reports kept ([`DEFAULT_MAX_BYTES`]): past either, the oldest finished tasks are
//! forgotten (an unfinished one never is).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::task::{ReportStatus, Task, TaskReport};

pub const DEFAULT_CAPACITY: usize = 10_000;
/// Bytes of reports kept (as JSON): a report is at most about a megabyte (the runner's
/// result cap), so a burst of large results cannot grow the coordinator without bound.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Done,
}

/// A task as `GET /tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub state: TaskState,
    /// The final status once done.
    pub status: Option<ReportStatus>,
    pub task: Task,
    pub report: Option<TaskReport>,
}

/// Which tasks `GET /tasks?status=…` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Queued,
    Running,
    /// Done, with this final status.
    Status(ReportStatus),
}

impl Filter {
    /// `queued`, `running` or a final status; `None` for anything else.
    pub fn parse(s: &str) -> Option<Filter> {
        match s {
            "queued" => Some(Filter::Queued),
            "running" => Some(Filter::Running),
            other => ReportStatus::parse(other).map(Filter::Status),
        }
    }

    /// Every value `parse` accepts, for an error message.
    pub fn choices() -> String {
        let mut all = vec!["queued", "running"];
        all.extend(ReportStatus::ALL.iter().map(|s| s.as_str()));
        all.join(", ")
    }
}

#[derive(Debug)]
pub enum Submitted {
    /// New: queued now.
    New(TaskView),
    /// Already known (queued, running or done): nothing new was queued.
    Known(TaskView),
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, (TaskView, usize)>,
    /// Ids, oldest first.
    order: VecDeque<String>,
    /// The sum of the views' sizes.
    bytes: usize,
}

#[derive(Debug)]
pub struct TaskStore {
    inner: Mutex<Inner>,
    capacity: usize,
    max_bytes: usize,
}

impl Default for TaskStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_MAX_BYTES)
    }
}

/// Bytes a view takes as JSON: what the store accounts for it.
fn size_of(view: &TaskView) -> usize {
    serde_json::to_vec(view).map_or(0, |v| v.len())
}

impl TaskStore {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
            max_bytes,
        }
    }

    /// Bytes of views kept now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every update is one
        // insert or field write), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `task` unless its id is known: submitting is idempotent on the task id.
    pub fn submit(&self, task: Task) -> Submitted {
        let mut inner = self.lock();
        if let Some((v, _)) = inner.by_id.get(&task.task_id) {
            return Submitted::Known(v.clone());
        }
        let view = TaskView {
            task_id: task.task_id.clone(),
            state: TaskState::Queued,
            status: None,
            task,
            report: None,
        };
        self.insert(&mut inner, view.clone());
        Submitted::New(view)
    }

    /// Undoes a submit whose task could not be queued after all.
    pub fn withdraw(&self, task_id: &str) {
        let mut inner = self.lock();
        if inner
            .by_id
            .get(task_id)
            .is_some_and(|(v, _)| v.state == TaskState::Queued)
        {
            if let Some((_, size)) = inner.by_id.remove(task_id) {
                inner.bytes -= size;
            }
            inner.order.retain(|id| id != task_id);
        }
    }

    /// A task started, from whichever source it came.
    pub fn running(&self, task: &Task) {
        let mut inner = self.lock();
        match inner.by_id.get_mut(&task.task_id) {
            Some((v, _)) => v.state = TaskState::Running,
            None => {
                let view = TaskView {
                    task_id: task.task_id.clone(),
                    state: TaskState::Running,
                    status: None,
                    task: task.clone(),
                    report: None,
                };
                self.insert(&mut inner, view);
            }
        }
    }

    pub fn done(&self, report: &TaskReport) {
        let mut inner = self.lock();
        let view = TaskView {
            task_id: report.task.task_id.clone(),
            state: TaskState::Done,
            status: Some(report.status),
            task: report.task.clone(),
            report: Some(report.clone()),
        };
        if let Some((_, size)) = inner.by_id.remove(&report.task.task_id) {
            inner.bytes -= size;
            inner.order.retain(|id| *id != report.task.task_id);
        }
        self.insert(&mut inner, view);
    }

    pub fn get(&self, task_id: &str) -> Option<TaskView> {
        self.lock().by_id.get(task_id).map(|(v, _)| v.clone())
    }

    /// The most recent tasks first, optionally only those matching `filter`.
    pub fn list(&self, filter: Option<Filter>, limit: usize) -> Vec<TaskView> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.by_id.get(id).map(|(v, _)| v))
            .filter(|v| match filter {
                None => true,
                Some(Filter::Queued) => v.state == TaskState::Queued,
                Some(Filter::Running) => v.state == TaskState::Running,
                Some(Filter::Status(s)) => v.status == Some(s),
            })
            .take(limit)
            .cloned()
            .collect()
    }

    /// Adds `view` (newest), then forgets the oldest finished tasks while over either bound.
    fn insert(&self, inner: &mut Inner, view: TaskView) {
        let size = size_of(&view);
        inner.order.push_back(view.task_id.clone());
        inner.bytes += size;
        inner.by_id.insert(view.task_id.clone(), (view, size));
        while inner.order.len() > self.capacity || inner.bytes > self.max_bytes {
            let Some(pos) = inner.order.iter().position(|id| {
                inner
                    .by_id
                    .get(id)
                    .is_some_and(|(v, _)| v.state == TaskState::Done)
            }) else {
                break;
            };
            if let Some(id) = inner.order.remove(pos) {
                if let Some((_, size)) = inner.by_id.remove(&id) {
                    inner.bytes -= size;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner::Status;

    fn task(id: &str) -> Task {
        Task {
            task_id: id.into(),
            wasm_cid: "Qm".into(),
            input_cid: None,
            entry: None,
        }
    }

    #[test]
    fn submit_is_idempotent_and_states_advance() {
        let s = TaskStore::new(10, DEFAULT_MAX_BYTES);
        assert!(matches!(s.submit(task("a")), Submitted::New(_)));
        assert!(matches!(s.submit(task("a")), Submitted::Known(v) if v.state == TaskState::Queued));
        s.running(&task("a"));
        assert_eq!(s.get("a").unwrap().state, TaskState::Running);
        s.done(&TaskReport::new(
            &task("a"),
            ReportStatus::Runner(Status::Trap),
        ));
        let v = s.get("a").unwrap();
        assert_eq!(
            (v.state, v.status),
            (TaskState::Done, Some(ReportStatus::Runner(Status::Trap)))
        );
        assert_eq!(s.list(Filter::parse("trap"), 10).len(), 1);
        assert_eq!(s.list(Filter::parse("ok"), 10).len(), 0);
        assert_eq!(Filter::parse("bogus"), None);
    }

    #[test]
    fn only_finished_tasks_are_forgotten() {
        let s = TaskStore::new(2, DEFAULT_MAX_BYTES);
        s.submit(task("q1"));
        s.submit(task("q2"));
        s.submit(task("q3"));
        assert_eq!(
            s.list(None, 10).len(),
            3,
            "queued tasks are kept beyond capacity"
        );
        s.done(&TaskReport::new(&task("q1"), ReportStatus::OK));
        s.submit(task("q4"));
        assert!(s.get("q1").is_none());
        assert_eq!(s.list(None, 10)[0].task_id, "q4", "most recent first");
        s.withdraw("q4");
        assert!(s.get("q4").is_none());
    }

    #[test]
    fn the_bytes_kept_are_bounded_too() {
        let s = TaskStore::new(1_000_000, 1 << 20);
        for i in 0..200 {
            let mut report = TaskReport::new(&task(&format!("t{i}")), ReportStatus::OK);
            report.error = Some("e".repeat(50_000));
            s.done(&report);
            assert!(s.bytes() <= 1 << 20, "{}", s.bytes());
        }
        assert!(s.get("t199").is_some(), "the newest stays");
        assert!(s.get("t0").is_none(), "the oldest went");
        // Unfinished tasks are never forgotten, even over the bound.
        for i in 0..50 {
            s.submit(task(&format!("q{i}")));
        }
        assert!(s.get("q0").is_some());
    }
}
