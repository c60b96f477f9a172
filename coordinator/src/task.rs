//! A task and the published report of its run: the coordinator's two wire formats, defined
//! once here. The report embeds its task and the runner's result object
//! ([`runner::TaskResult`]), whose schema the runner owns.
//!
//! Every task is validated here, whichever source it came from (a task file, `POST
//! /tasks`, the placeholder, a Job read back at adoption): deserializing a [`Task`] checks
//! it ([`Task::validate`]), so no source can hand the service a task that would fail later
//! for a reason known now.

use std::time::Duration;

use runner::result::cap_text;
use runner::{Status, TaskResult};
use serde::{Deserialize, Serialize};

use crate::receipt::Receipt;

/// The longest task id, in bytes.
pub const MAX_TASK_ID_BYTES: usize = 256;
/// The longest entry name, in bytes.
pub const MAX_ENTRY_BYTES: usize = 256;
/// The longest CID accepted for parsing (a sha2-256 CIDv1 in base32 is 59 characters).
pub const MAX_CID_BYTES: usize = 128;
/// The longest reason a refused task ([`Task::invalid`]) carries, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// The longest time limit a task or the coordinator (`task_timeout`) may set: a week.
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 86400;

/// One unit of work. The Go coordinator's field names are accepted as aliases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TaskFields")]
pub struct Task {
    pub task_id: String,
    pub wasm_cid: String,
    pub input_cid: Option<String>,
    pub entry: Option<String>,
    /// Limits the task asks for, below the coordinator's own; `{}` when it asks for none.
    #[serde(default, skip_serializing_if = "TaskLimits::is_none")]
    pub limits: TaskLimits,
    /// Why this task cannot run, when a source had to record a malformed task rather than
    /// drop it (a `TaskSubmitted` event on chain gets an answer either way): the task then
    /// holds only its id and this reason ([`Task::refused`]), and ends `invalid_input` unrun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// The task asks for deterministic execution (the runner's `--deterministic`: fixed
    /// clocks, random bytes seeded from the module and input), which also lets its result
    /// be answered from the cache of equal tasks (see [`crate::cache`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
}

/// Limits a task may ask for (`"limits": {"timeout_seconds": 5, "fuel": 1000000}`). Each
/// can only lower the coordinator's maximum (`task_timeout`, `fuel`), never raise it: see
/// [`RunLimits::for_task`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskLimits {
    /// Wall-clock seconds for fetching and running, 1 to [`MAX_TIMEOUT_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The runner's fuel budget, at least 1 (a task cannot turn metering off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

impl TaskLimits {
    pub fn is_none(&self) -> bool {
        *self == TaskLimits::default()
    }

    fn validate(self) -> Result<TaskLimits, TaskError> {
        if let Some(t) = self.timeout_seconds {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&t) {
                return Err(TaskError::Limit {
                    field: "limits.timeout_seconds",
                    value: t,
                    range: format!("1 to {MAX_TIMEOUT_SECONDS}"),
                });
            }
        }
        if self.fuel == Some(0) {
            return Err(TaskError::Limit {
                field: "limits.fuel",
                value: 0,
                range:
                    "at least 1 (metering can only be turned off by the coordinator's `fuel = 0`)"
                        .into(),
            });
        }
        Ok(self)
    }
}

/// What one run of a task gets. The coordinator's configured values are the maxima; a task's
/// own [`TaskLimits`] can lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// For fetching and running together.
    pub timeout: Duration,
    /// The runner's fuel budget; 0 turns metering off.
    pub fuel: u64,
}

impl RunLimits {
    /// These maxima lowered by what `asked` names. A task asking for more gets the maximum
    /// (it is capped, not refused: the same task file works on coordinators configured
    /// differently). A task asking for fuel where metering is off (`fuel = 0`) gets its fuel.
    pub fn for_task(self, asked: TaskLimits) -> RunLimits {
        RunLimits {
            timeout: asked
                .timeout_seconds
                .map_or(self.timeout, |s| self.timeout.min(Duration::from_secs(s))),
            fuel: match (asked.fuel, self.fuel) {
                (None, max) => max,
                (Some(f), 0) => f,
                (Some(f), max) => f.min(max),
            },
        }
    }
}

/// A task as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFields {
    #[serde(alias = "TaskID")]
    task_id: String,
    #[serde(alias = "WasmCID")]
    wasm_cid: String,
    #[serde(alias = "InputCID", default)]
    input_cid: Option<String>,
    #[serde(alias = "Entry", default)]
    entry: Option<String>,
    #[serde(default)]
    limits: Option<TaskLimits>,
    #[serde(default)]
    invalid: Option<String>,
    #[serde(default)]
    deterministic: bool,
}

impl TryFrom<TaskFields> for Task {
    type Error = TaskError;

    fn try_from(f: TaskFields) -> Result<Self, TaskError> {
        Task {
            task_id: f.task_id,
            wasm_cid: f.wasm_cid,
            input_cid: f.input_cid,
            entry: f.entry,
            limits: f.limits.unwrap_or_default(),
            invalid: f.invalid,
            deterministic: f.deterministic,
        }
        .validate()
    }
}

/// Why a task is refused. Every variant names the field; values are shown cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} {shown:?} holds the character U+{code:04X} at byte {at}; control characters, line separators and bidirectional overrides are not allowed")]
    Character {
        field: &'static str,
        shown: String,
        code: u32,
        at: usize,
    },
    #[error("{field} {shown:?} begins or ends with whitespace")]
    Whitespace { field: &'static str, shown: String },
    #[error("{field}: {reason}")]
    Cid { field: &'static str, reason: String },
    #[error("{field} is {value}; it must be {range}")]
    Limit {
        field: &'static str,
        value: u64,
        range: String,
    },
}

impl Task {
    /// Checks every field, the one place that does: ids and entries are non-empty, at most
    /// [`MAX_TASK_ID_BYTES`] / [`MAX_ENTRY_BYTES`], printable (no control characters, line
    /// separators or bidirectional overrides: they end up in logs, env vars and Job names)
    /// and not padded with whitespace; CIDs parse and can be verified by the fetcher;
    /// limits are in range. Empty optional fields count as absent.
    pub fn validate(mut self) -> Result<Task, TaskError> {
        check_name("task_id", &self.task_id, MAX_TASK_ID_BYTES)?;
        if let Some(why) = &self.invalid {
            check_name("invalid", why, MAX_REASON_BYTES)?;
            self.wasm_cid = String::new();
            self.input_cid = None;
            self.entry = None;
            self.limits = TaskLimits::default();
            self.deterministic = false;
            return Ok(self);
        }
        self.input_cid = self.input_cid.filter(|c| !c.trim().is_empty());
        self.entry = self.entry.filter(|e| !e.is_empty());
        if let Some(entry) = &self.entry {
            check_name("entry", entry, MAX_ENTRY_BYTES)?;
        }
        self.wasm_cid = check_cid("wasm_cid", &self.wasm_cid)?;
        if let Some(c) = &self.input_cid {
            self.input_cid = Some(check_cid("input_cid", c)?);
        }
        self.limits = self.limits.validate()?;
        Ok(self)
    }
}

impl Task {
    /// A task a source must record although it cannot run (see [`Task::invalid`]): its id
    /// and why, which names the fields as given (escaped and cut, so they log safely). It
    /// holds no module, input or entry: nothing of it is run or fetched.
    pub fn refused(task_id: String, why: &str) -> Result<Task, TaskError> {
        let mut why = logging::escape(why);
        let mut cut = MAX_REASON_BYTES.min(why.len());
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
        Task {
            task_id,
            wasm_cid: String::new(),
            input_cid: None,
            entry: None,
            limits: TaskLimits::default(),
            invalid: Some(why.trim().to_owned()),
            deterministic: false,
        }
        .validate()
    }
}

#[cfg(test)]
impl Task {
    /// A valid task with this id (a CIDv0, no input, no entry), for tests.
    pub fn example(id: &str) -> Task {
        Task {
            task_id: id.into(),
            wasm_cid: "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB".into(),
            input_cid: None,
            entry: None,
            limits: TaskLimits::default(),
            invalid: None,
            deterministic: false,
        }
    }
}

fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), TaskError> {
    if value.is_empty() {
        return Err(TaskError::Empty { field });
    }
    if value.len() > max {
        return Err(TaskError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    if let Some((at, c)) = value
        .char_indices()
        .find(|(_, c)| logging::needs_escape(*c))
    {
        return Err(TaskError::Character {
            field,
            shown: logging::escape(&cap_text(value, 80)),
            code: u32::from(c),
            at,
        });
    }
    if value.trim() != value {
        return Err(TaskError::Whitespace {
            field,
            shown: cap_text(value, 80),
        });
    }
    Ok(())
}

/// The CID, trimmed, once the fetcher can parse and verify it.
fn check_cid(field: &'static str, value: &str) -> Result<String, TaskError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(TaskError::Empty { field });
    }
    if trimmed.len() > MAX_CID_BYTES {
        return Err(TaskError::TooLong {
            field,
            len: trimmed.len(),
            max: MAX_CID_BYTES,
        });
    }
    fetcher::cid::parse_cid(trimmed).map_err(|e| TaskError::Cid {
        field,
        reason: logging::escape(&e.to_string()),
    })?;
    Ok(trimmed.to_owned())
}

/// How a task ended, as published: the runner's own status when a runner reported, or what
/// only the coordinator knows. On the wire, one snake_case string (`ok`, `fetch_failed`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum ReportStatus {
    /// The runner's status: the task ran (`ok`), or failed in a way the runner named.
    Runner(Status),
    /// The fetcher could not get and verify the module or input (after retries).
    FetchFailed,
    /// A re-execution check (`verify_fraction`) ran the task a second time and the two
    /// runs' `output_sha256` differ: the module is not deterministic, or a node lied. The
    /// report's `verification` holds both hashes.
    Nondeterministic,
}

impl ReportStatus {
    pub const OK: Self = Self::Runner(Status::Ok);

    /// Failures of the machinery rather than of the task: they make `--once` exit non-zero.
    pub fn is_infrastructure_failure(self) -> bool {
        matches!(self, Self::Runner(Status::Error) | Self::FetchFailed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Runner(s) => s.as_str(),
            Self::FetchFailed => "fetch_failed",
            Self::Nondeterministic => "nondeterministic",
        }
    }

    /// Every status, for validating a filter and for listing the choices.
    pub const ALL: [ReportStatus; 9] = [
        Self::Runner(Status::Ok),
        Self::Runner(Status::Trap),
        Self::Runner(Status::OutOfFuel),
        Self::Runner(Status::Timeout),
        Self::Runner(Status::InvalidModule),
        Self::Runner(Status::InvalidInput),
        Self::Runner(Status::Error),
        Self::FetchFailed,
        Self::Nondeterministic,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl From<Status> for ReportStatus {
    fn from(s: Status) -> Self {
        Self::Runner(s)
    }
}

impl From<ReportStatus> for &'static str {
    fn from(s: ReportStatus) -> Self {
        s.as_str()
    }
}

impl TryFrom<String> for ReportStatus {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("{s:?} is not a task status"))
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

/// What the coordinator publishes for each task: one JSON object per line, the task's
/// fields first (`task_id`, `wasm_cid`, `input_cid`, `entry`), then how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    #[serde(flatten)]
    pub task: Task,
    pub status: ReportStatus,
    /// The stage that failed; `null` when the task's status is `ok`.
    pub stage: Option<Stage>,
    /// Runs of the task, retries included.
    pub attempts: u32,
    /// The runner's result object, when the runner produced one.
    pub result: Option<TaskResult>,
    pub error: Option<String>,
    /// Answered from the result cache: `result` is that of the equal task in `cached_from`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<CachedFrom>,
    /// A re-execution check's outcome (`verify_fraction`), when the task was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// What the coordinator attests about this task, signed when it has a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// The run a cached answer comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFrom {
    pub task_id: String,
    /// [`Receipt::sha256`] of that run's receipt.
    pub receipt_sha256: String,
}

/// A re-execution check: the task ran a second time (on Kubernetes, on another node) and
/// the two runs' `output_sha256` were compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The first run's (the published result's).
    pub output_sha256: String,
    /// The second run's; `null` when it gave no result.
    pub check_output_sha256: Option<String>,
    /// Both runs produced the same output.
    pub matched: bool,
    /// Why the second run gave no result (the check is then inconclusive, and the task
    /// keeps its first run's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TaskReport {
    pub fn new(task: &Task, status: ReportStatus) -> Self {
        Self {
            task: task.clone(),
            status,
            stage: None,
            attempts: 0,
            result: None,
            error: None,
            cached: false,
            cached_from: None,
            verification: None,
            receipt: None,
        }
    }

    /// `fib(12) = [144]`-style summary for people reading the log.
    pub fn describe(&self) -> String {
        match (&self.result, self.status) {
            (Some(r), ReportStatus::OK) => {
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
                cap_text(
                    &format!(
                        "{}({}) = {result}{exit}",
                        r.entry.as_deref().unwrap_or("?"),
                        args.join(", ")
                    ),
                    1024,
                )
            }
            _ => cap_text(
                &format!(
                    "{}{}: {}",
                    self.status.as_str(),
                    self.stage
                        .map(|s| format!(" in {}", s.as_str()))
                        .unwrap_or_default(),
                    self.error.as_deref().unwrap_or("")
                ),
                1024,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CID: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

    fn parse(json: &str) -> Result<Task, String> {
        serde_json::from_str::<Task>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn go_field_names_are_accepted() {
        let t = parse(&format!(r#"{{"TaskID":"t","WasmCID":"{CID}","Entry":""}}"#)).unwrap();
        assert_eq!((t.task_id.as_str(), t.entry), ("t", None));
    }

    #[test]
    fn every_deserialized_task_is_validated() {
        for (json, says) in [
            (
                r#"{"task_id":"t","wasm_cid":"nope"}"#.to_string(),
                "wasm_cid",
            ),
            (
                format!(r#"{{"task_id":" ","wasm_cid":"{CID}"}}"#),
                "task_id",
            ),
            (
                format!(r#"{{"task_id":"","wasm_cid":"{CID}"}}"#),
                "task_id is empty",
            ),
            (
                format!(r#"{{"task_id":"a\u0000b","wasm_cid":"{CID}"}}"#),
                "U+0000",
            ),
            (
                format!(r#"{{"task_id":"a","wasm_cid":"{CID}","entry":"f\nERROR x"}}"#),
                "entry",
            ),
            (
                format!(r#"{{"task_id":"a","wasm_cid":"{CID}","input_cid":"Qm"}}"#),
                "input_cid",
            ),
            (
                format!(r#"{{"task_id":"{}","wasm_cid":"{CID}"}}"#, "x".repeat(257)),
                "at most 256",
            ),
            (
                format!(r#"{{"task_id":"a","wasm_cid":"{}"}}"#, "b".repeat(1 << 20)),
                "at most 128",
            ),
            (
                format!(r#"{{"task_id":"a","task_id":"b","wasm_cid":"{CID}"}}"#),
                "duplicate field",
            ),
            (
                format!(r#"{{"task_id":"a","TaskID":"b","wasm_cid":"{CID}"}}"#),
                "duplicate field",
            ),
            (
                format!(r#"{{"task_id":"a","wasm_cid":"{CID}","extra":1}}"#),
                "unknown field",
            ),
        ] {
            let err = parse(&json).unwrap_err();
            assert!(err.contains(says), "{json:.80}: {err}");
            assert!(err.len() < 1024, "{}", err.len());
        }
    }

    #[test]
    fn deterministic_is_read_written_only_when_asked_and_dropped_from_a_refused_task() {
        let t = parse(&format!(
            r#"{{"task_id":"t","wasm_cid":"{CID}","deterministic":true}}"#
        ))
        .unwrap();
        assert!(t.deterministic);
        let line = serde_json::to_string(&t).unwrap();
        assert!(line.contains(r#""deterministic":true"#), "{line}");
        assert_eq!(parse(&line).unwrap(), t);
        let plain = parse(&format!(r#"{{"task_id":"t","wasm_cid":"{CID}"}}"#)).unwrap();
        assert!(!plain.deterministic);
        assert!(!serde_json::to_string(&plain)
            .unwrap()
            .contains("deterministic"));
        assert!(parse(&format!(
            r#"{{"task_id":"t","wasm_cid":"{CID}","deterministic":"yes"}}"#
        ))
        .is_err());
        let mut refused = Task::refused("r".into(), "bad").unwrap();
        refused.deterministic = true;
        assert!(!refused.validate().unwrap().deterministic);
    }

    #[test]
    fn limits_are_optional_checked_and_named_in_errors() {
        let t = parse(&format!(
            r#"{{"task_id":"t","wasm_cid":"{CID}","limits":{{"timeout_seconds":5,"fuel":9}}}}"#
        ))
        .unwrap();
        assert_eq!(
            t.limits,
            TaskLimits {
                timeout_seconds: Some(5),
                fuel: Some(9)
            }
        );
        for absent in [
            format!(r#"{{"task_id":"t","wasm_cid":"{CID}"}}"#),
            format!(r#"{{"task_id":"t","wasm_cid":"{CID}","limits":null}}"#),
            format!(r#"{{"task_id":"t","wasm_cid":"{CID}","limits":{{}}}}"#),
        ] {
            let t = parse(&absent).unwrap();
            assert!(t.limits.is_none(), "{absent}");
            // Not written back when there are none: a task file line stays as it was.
            assert!(serde_json::to_value(&t).unwrap().get("limits").is_none());
        }
        for (limits, says) in [
            (r#"{"timeout_seconds":0}"#, "limits.timeout_seconds is 0"),
            (r#"{"timeout_seconds":604801}"#, "1 to 604800"),
            (r#"{"fuel":0}"#, "limits.fuel is 0"),
            (r#"{"fuel":-1}"#, "invalid value"),
            (r#"{"fuel":"many"}"#, "invalid type"),
            (r#"{"timeout_seconds":1.5}"#, "invalid type"),
            (r#"{"memory":1}"#, "unknown field `memory`"),
        ] {
            let err = parse(&format!(
                r#"{{"task_id":"t","wasm_cid":"{CID}","limits":{limits}}}"#
            ))
            .unwrap_err();
            assert!(err.contains(says), "{limits}: {err}");
        }
    }

    #[test]
    fn a_refused_task_holds_its_id_and_a_safe_bounded_reason_and_round_trips() {
        let raw = format!("wasm_cid \"bad\nERROR forged\" {}", "é".repeat(2000));
        let t = Task::refused("evm:1:0xab:7".into(), &raw).unwrap();
        let why = t.invalid.clone().unwrap();
        assert!(why.len() <= MAX_REASON_BYTES, "{}", why.len());
        assert!(!why.chars().any(logging::needs_escape), "{why}");
        assert!(why.contains("bad"), "{why}");
        assert_eq!(
            (t.wasm_cid.as_str(), &t.input_cid, &t.entry),
            ("", &None, &None)
        );
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), t, "{json}");
        assert_eq!(t.clone().validate(), Ok(t));
        assert!(
            Task::refused(String::new(), "x").is_err(),
            "the id is still checked"
        );
    }

    proptest! {
        /// A task's limits only ever lower the maxima; what it asks below them it gets.
        #[test]
        fn run_limits_never_exceed_the_maxima(
            max_secs in 1u64..=MAX_TIMEOUT_SECONDS,
            max_fuel in any::<u64>(),
            asked_secs in proptest::option::of(1u64..=MAX_TIMEOUT_SECONDS),
            asked_fuel in proptest::option::of(1u64..),
        ) {
            let max = RunLimits { timeout: Duration::from_secs(max_secs), fuel: max_fuel };
            let asked = TaskLimits { timeout_seconds: asked_secs, fuel: asked_fuel };
            let got = max.for_task(asked);
            prop_assert!(got.timeout <= max.timeout);
            prop_assert_eq!(got.timeout, asked_secs.map_or(max.timeout, |s| max.timeout.min(Duration::from_secs(s))));
            match (asked_fuel, max_fuel) {
                (None, _) => prop_assert_eq!(got.fuel, max_fuel),
                // Metering off is the largest budget: a task may still ask for a bound.
                (Some(f), 0) => prop_assert_eq!(got.fuel, f),
                (Some(f), m) => {
                    prop_assert!(got.fuel <= m && got.fuel >= 1);
                    prop_assert_eq!(got.fuel, f.min(m));
                }
            }
        }
    }

    proptest! {
        /// Whatever the strings, a task that validates holds nothing a log line, an env var
        /// or a Job could misread, and validation is idempotent.
        #[test]
        fn validated_fields_are_printable_and_bounded(
            id in any::<String>(),
            entry in proptest::option::of(any::<String>()),
        ) {
            let task = Task { task_id: id, wasm_cid: CID.into(), input_cid: None, entry, limits: TaskLimits::default(), invalid: None, deterministic: false };
            if let Ok(t) = task.validate() {
                for v in std::iter::once(&t.task_id).chain(t.entry.iter()) {
                    prop_assert!(!v.is_empty() && v.len() <= 256);
                    prop_assert!(!v.chars().any(logging::needs_escape));
                    prop_assert_eq!(v.trim(), v.as_str());
                }
                prop_assert_eq!(t.clone().validate(), Ok(t));
            }
        }
    }

    #[test]
    fn statuses_are_one_snake_case_string_on_the_wire() {
        for status in ReportStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, serde_json::json!(status.as_str()));
            assert_eq!(
                serde_json::from_value::<ReportStatus>(json).unwrap(),
                status
            );
        }
        assert_eq!(ReportStatus::FetchFailed.as_str(), "fetch_failed");
        assert_eq!(
            ReportStatus::from(Status::OutOfFuel).as_str(),
            "out_of_fuel"
        );
        assert!(!ReportStatus::Runner(Status::Trap).is_infrastructure_failure());
        assert!(serde_json::from_str::<ReportStatus>("\"bogus\"").is_err());
    }

    #[test]
    fn a_report_embeds_its_task_at_the_top_level() {
        let task = parse(&format!(
            r#"{{"task_id":"t","wasm_cid":"{CID}","entry":"fib"}}"#
        ))
        .unwrap();
        let report = TaskReport::new(&task, ReportStatus::OK);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["task_id"], "t");
        assert_eq!(v["wasm_cid"], CID);
        assert_eq!(v["entry"], "fib");
        assert_eq!(v["status"], "ok");
        let back: TaskReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
    }
}
