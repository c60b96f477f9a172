//! A task and the published report of its run: the coordinator's two wire formats, defined
//! once here. The report embeds the runner's result object ([`runner::TaskResult`]), whose
//! schema the runner owns.

use runner::{Status, TaskResult};
use serde::{Deserialize, Serialize};

/// One unit of work. The Go coordinator's field names are accepted as aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    #[serde(alias = "TaskID")]
    pub task_id: String,
    #[serde(alias = "WasmCID")]
    pub wasm_cid: String,
    #[serde(alias = "InputCID", default)]
    pub input_cid: Option<String>,
    #[serde(alias = "Entry", default)]
    pub entry: Option<String>,
}

impl Task {
    /// Checks what can be checked before running: an id, and CIDs the fetcher can verify.
    /// Empty optional fields count as absent.
    pub fn validated(mut self) -> Result<Task, String> {
        if self.task_id.trim().is_empty() {
            return Err("task_id is empty".into());
        }
        fetcher::cid::parse_cid(&self.wasm_cid).map_err(|e| format!("wasm_cid: {e}"))?;
        self.input_cid = self.input_cid.filter(|c| !c.trim().is_empty());
        if let Some(c) = &self.input_cid {
            fetcher::cid::parse_cid(c).map_err(|e| format!("input_cid: {e}"))?;
        }
        self.entry = self.entry.filter(|e| !e.trim().is_empty());
        Ok(self)
    }
}

/// How a task ended, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Ok,
    Trap,
    OutOfFuel,
    Timeout,
    InvalidModule,
    InvalidInput,
    /// The runner could not do its job (after retries).
    Error,
    /// The fetcher could not get and verify the module or input (after retries).
    FetchFailed,
    /// A shutdown stopped the task before it finished.
    Interrupted,
}

impl From<Status> for ReportStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Ok => ReportStatus::Ok,
            Status::Trap => ReportStatus::Trap,
            Status::OutOfFuel => ReportStatus::OutOfFuel,
            Status::Timeout => ReportStatus::Timeout,
            Status::InvalidModule => ReportStatus::InvalidModule,
            Status::InvalidInput => ReportStatus::InvalidInput,
            Status::Error => ReportStatus::Error,
        }
    }
}

impl ReportStatus {
    /// Failures of the machinery rather than of the task: they make `--once` exit non-zero.
    pub fn is_infrastructure_failure(self) -> bool {
        matches!(
            self,
            ReportStatus::Error | ReportStatus::FetchFailed | ReportStatus::Interrupted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Ok => "ok",
            ReportStatus::Trap => "trap",
            ReportStatus::OutOfFuel => "out_of_fuel",
            ReportStatus::Timeout => "timeout",
            ReportStatus::InvalidModule => "invalid_module",
            ReportStatus::InvalidInput => "invalid_input",
            ReportStatus::Error => "error",
            ReportStatus::FetchFailed => "fetch_failed",
            ReportStatus::Interrupted => "interrupted",
        }
    }
}

/// Which part of a task's run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Fetch,
    Run,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Run => "run",
        }
    }
}

/// What the coordinator publishes for each task: one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_id: String,
    pub wasm_cid: String,
    pub input_cid: Option<String>,
    pub entry: Option<String>,
    pub status: ReportStatus,
    /// The stage that failed; `null` when the task's status is `ok` or it was interrupted
    /// before a stage could be blamed.
    pub stage: Option<Stage>,
    /// Runs of the task, retries included.
    pub attempts: u32,
    /// The runner's result object, when the runner produced one.
    pub result: Option<TaskResult>,
    pub error: Option<String>,
}

impl TaskReport {
    pub fn new(task: &Task, status: ReportStatus) -> Self {
        Self {
            task_id: task.task_id.clone(),
            wasm_cid: task.wasm_cid.clone(),
            input_cid: task.input_cid.clone(),
            entry: task.entry.clone(),
            status,
            stage: None,
            attempts: 0,
            result: None,
            error: None,
        }
    }

    /// `fib(12) = [144]`-style summary for people reading the log.
    pub fn describe(&self) -> String {
        match (&self.result, self.status) {
            (Some(r), ReportStatus::Ok) => {
                let args: Vec<String> = r.args.iter().map(ToString::to_string).collect();
                let result = r
                    .result
                    .as_ref()
                    .map(|v| {
                        v.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                let exit = r
                    .exit_code
                    .map(|c| format!(" (exit code {c})"))
                    .unwrap_or_default();
                format!(
                    "{}({}) = {result}{exit}",
                    r.entry.as_deref().unwrap_or("?"),
                    args.join(", ")
                )
            }
            _ => format!(
                "{}{}: {}",
                self.status.as_str(),
                self.stage
                    .map(|s| format!(" in {}", if s == Stage::Fetch { "fetch" } else { "run" }))
                    .unwrap_or_default(),
                self.error.as_deref().unwrap_or("")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_field_names_are_accepted() {
        let t: Task = serde_json::from_str(
            r#"{"TaskID":"t","WasmCID":"QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH","Entry":""}"#,
        )
        .unwrap();
        let t = t.validated().unwrap();
        assert_eq!((t.task_id.as_str(), t.entry), ("t", None));
    }

    #[test]
    fn bad_cids_and_empty_ids_are_refused() {
        let t = Task {
            task_id: "t".into(),
            wasm_cid: "nope".into(),
            input_cid: None,
            entry: None,
        };
        assert!(t.clone().validated().unwrap_err().contains("wasm_cid"));
        let t = Task {
            task_id: " ".into(),
            ..t
        };
        assert!(t.validated().is_err());
    }

    #[test]
    fn statuses_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_value(ReportStatus::FetchFailed).unwrap(),
            serde_json::json!("fetch_failed")
        );
        assert_eq!(
            ReportStatus::from(Status::OutOfFuel).as_str(),
            "out_of_fuel"
        );
        assert!(ReportStatus::Interrupted.is_infrastructure_failure());
        assert!(!ReportStatus::Trap.is_infrastructure_failure());
    }
}
