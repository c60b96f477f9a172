//! What the task API answers from: every task this process has seen, queued, running or
//! done, with its report. Bounded: past the capacity, the oldest finished tasks are
//! forgotten (an unfinished one never is).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::task::{ReportStatus, Task, TaskReport};

pub const DEFAULT_CAPACITY: usize = 10_000;

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

#[derive(Debug)]
pub enum Submitted {
    /// New: queued now.
    New(TaskView),
    /// Already known (queued, running or done): nothing new was queued.
    Known(TaskView),
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, TaskView>,
    /// Ids, oldest first.
    order: VecDeque<String>,
}

#[derive(Debug)]
pub struct TaskStore {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for TaskStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl TaskStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
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
        if let Some(v) = inner.by_id.get(&task.task_id) {
            return Submitted::Known(v.clone());
        }
        let view = TaskView {
            task_id: task.task_id.clone(),
            state: TaskState::Queued,
            status: None,
            task,
            report: None,
        };
        Self::insert(&mut inner, view.clone(), self.capacity);
        Submitted::New(view)
    }

    /// Undoes a submit whose task could not be queued after all.
    pub fn withdraw(&self, task_id: &str) {
        let mut inner = self.lock();
        if inner
            .by_id
            .get(task_id)
            .is_some_and(|v| v.state == TaskState::Queued)
        {
            inner.by_id.remove(task_id);
            inner.order.retain(|id| id != task_id);
        }
    }

    /// A task started, from whichever source it came.
    pub fn running(&self, task: &Task) {
        let mut inner = self.lock();
        match inner.by_id.get_mut(&task.task_id) {
            Some(v) => v.state = TaskState::Running,
            None => {
                let view = TaskView {
                    task_id: task.task_id.clone(),
                    state: TaskState::Running,
                    status: None,
                    task: task.clone(),
                    report: None,
                };
                Self::insert(&mut inner, view, self.capacity);
            }
        }
    }

    pub fn done(&self, report: &TaskReport) {
        let mut inner = self.lock();
        let view = TaskView {
            task_id: report.task_id.clone(),
            state: TaskState::Done,
            status: Some(report.status),
            task: Task {
                task_id: report.task_id.clone(),
                wasm_cid: report.wasm_cid.clone(),
                input_cid: report.input_cid.clone(),
                entry: report.entry.clone(),
            },
            report: Some(report.clone()),
        };
        match inner.by_id.get_mut(&report.task_id) {
            Some(v) => *v = view,
            None => Self::insert(&mut inner, view, self.capacity),
        }
    }

    pub fn get(&self, task_id: &str) -> Option<TaskView> {
        self.lock().by_id.get(task_id).cloned()
    }

    /// The most recent tasks first, optionally only those with a final `status` (or the
    /// state `queued` / `running`).
    pub fn list(&self, filter: Option<&str>, limit: usize) -> Vec<TaskView> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.by_id.get(id))
            .filter(|v| match filter {
                None => true,
                Some("queued") => v.state == TaskState::Queued,
                Some("running") => v.state == TaskState::Running,
                Some(s) => v.status.is_some_and(|st| st.as_str() == s),
            })
            .take(limit)
            .cloned()
            .collect()
    }

    fn insert(inner: &mut Inner, view: TaskView, capacity: usize) {
        inner.order.push_back(view.task_id.clone());
        inner.by_id.insert(view.task_id.clone(), view);
        while inner.order.len() > capacity {
            let Some(pos) = inner.order.iter().position(|id| {
                inner
                    .by_id
                    .get(id)
                    .is_some_and(|v| v.state == TaskState::Done)
            }) else {
                break;
            };
            if let Some(id) = inner.order.remove(pos) {
                inner.by_id.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = TaskStore::new(10);
        assert!(matches!(s.submit(task("a")), Submitted::New(_)));
        assert!(matches!(s.submit(task("a")), Submitted::Known(v) if v.state == TaskState::Queued));
        s.running(&task("a"));
        assert_eq!(s.get("a").unwrap().state, TaskState::Running);
        s.done(&TaskReport::new(&task("a"), ReportStatus::Trap));
        let v = s.get("a").unwrap();
        assert_eq!(
            (v.state, v.status),
            (TaskState::Done, Some(ReportStatus::Trap))
        );
        assert_eq!(s.list(Some("trap"), 10).len(), 1);
        assert_eq!(s.list(Some("ok"), 10).len(), 0);
    }

    #[test]
    fn only_finished_tasks_are_forgotten() {
        let s = TaskStore::new(2);
        s.submit(task("q1"));
        s.submit(task("q2"));
        s.submit(task("q3"));
        assert_eq!(
            s.list(None, 10).len(),
            3,
            "queued tasks are kept beyond capacity"
        );
        s.done(&TaskReport::new(&task("q1"), ReportStatus::Ok));
        s.submit(task("q4"));
        assert!(s.get("q1").is_none());
        assert_eq!(s.list(None, 10)[0].task_id, "q4", "most recent first");
        s.withdraw("q4");
        assert!(s.get("q4").is_none());
    }
}
