//! The result cache: a task that asks for deterministic execution is answered from the
//! ledger when an equal task was done `ok` before, without fetching or running anything.
//!
//! Equal means the same cache key: the hex SHA-256 of the RFC 8785 JSON of the module CID,
//! the input CID (which holds the arguments), the entry asked for, the engine (name,
//! wasmi version, fuel metering, deterministic) and the limits the task runs under (fuel,
//! timeout). CIDs name content, so equal keys mean equal bytes; deterministic execution
//! seeds its clocks and random bytes from those bytes alone (not from the task id), so the
//! run of one task stands for the run of the other.
//!
//! The key of a finished task is taken with the engine its runner reported, the key of a
//! new task with the engine this coordinator's runner is built with: a runner of another
//! wasmi version never answers for this one. Pure; the ledger stores the keys
//! ([`crate::ledger::Ledger::cache_put`]).

use runner::result::{canonical_sha256, Engine};
use serde_json::json;

use crate::task::{CachedFrom, ReportStatus, RunLimits, Task, TaskReport};

/// The key of `task` run under `limits` by `engine`; `None` for a task that may not be
/// cached (one that does not ask for deterministic execution, or a refused one).
pub fn key(task: &Task, limits: RunLimits, engine: &Engine) -> Option<String> {
    if !task.deterministic || task.invalid.is_some() || !engine.deterministic {
        return None;
    }
    Some(canonical_sha256(&json!({
        "module_cid": task.wasm_cid,
        "input_cid": task.input_cid,
        "entry": task.entry,
        "engine": engine,
        "limits": {
            "fuel": (limits.fuel > 0).then_some(limits.fuel),
            "timeout_ms": u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
        },
    })))
}

/// The engine this coordinator's runner runs a task with under `limits`.
pub fn engine_for(task: &Task, limits: RunLimits) -> Engine {
    Engine::wasmi(limits.fuel > 0, task.deterministic)
}

/// The key under which a finished report answers later tasks: only a deterministic task
/// done `ok`, run (not itself answered from the cache), whose runner named its engine.
pub fn key_of_report(report: &TaskReport, limits: RunLimits) -> Option<String> {
    if report.status != ReportStatus::OK || report.cached {
        return None;
    }
    let engine = report.result.as_ref()?.engine.as_ref()?;
    key(&report.task, limits, engine)
}

/// `task`'s report answered from `original`'s: its status, result and receipt reference;
/// no attempts of its own.
pub fn answer(task: &Task, original: &TaskReport) -> TaskReport {
    let mut report = TaskReport::new(task, original.status);
    report.result = original.result.clone();
    report.stage = original.stage;
    report.error = original.error.clone();
    report.cached = true;
    report.cached_from = Some(CachedFrom {
        task_id: original.task.task_id.clone(),
        receipt_sha256: original
            .receipt
            .as_ref()
            .map(|r| r.sha256())
            .unwrap_or_default(),
    });
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> RunLimits {
        RunLimits {
            timeout: Duration::from_secs(60),
            fuel: 1000,
        }
    }

    fn det(id: &str) -> Task {
        let mut t = Task::example(id);
        t.deterministic = true;
        t
    }

    #[test]
    fn equal_tasks_share_a_key_whatever_their_ids() {
        let e = engine_for(&det("a"), limits());
        let k = key(&det("a"), limits(), &e).unwrap();
        assert_eq!(key(&det("b"), limits(), &e), Some(k.clone()));
        assert_eq!(k.len(), 64);
    }

    #[test]
    fn every_part_of_the_key_counts() {
        let e = engine_for(&det("a"), limits());
        let k = key(&det("a"), limits(), &e).unwrap();
        let mut other_input = det("a");
        other_input.input_cid = Some("QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4".into());
        let mut other_entry = det("a");
        other_entry.entry = Some("main".into());
        let mut other_module = det("a");
        other_module.wasm_cid = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4".into();
        for t in [other_input, other_entry, other_module] {
            assert_ne!(key(&t, limits(), &e), Some(k.clone()), "{t:?}");
        }
        let less_fuel = RunLimits {
            fuel: 999,
            ..limits()
        };
        let less_time = RunLimits {
            timeout: Duration::from_secs(59),
            ..limits()
        };
        for l in [less_fuel, less_time] {
            assert_ne!(key(&det("a"), l, &e), Some(k.clone()));
        }
        let mut older = e.clone();
        older.version = "1.0.0".into();
        assert_ne!(key(&det("a"), limits(), &older), Some(k.clone()));
        let unmetered = RunLimits {
            fuel: 0,
            ..limits()
        };
        assert_ne!(
            key(&det("a"), unmetered, &engine_for(&det("a"), unmetered)),
            Some(k)
        );
    }

    #[test]
    fn only_deterministic_tasks_have_a_key() {
        let t = Task::example("a");
        assert_eq!(key(&t, limits(), &engine_for(&t, limits())), None);
        let mut refused = det("a");
        refused.invalid = Some("bad".into());
        assert_eq!(
            key(&refused, limits(), &engine_for(&refused, limits())),
            None
        );
        // A run that was not deterministic (an old runner ignoring the flag) is not cached.
        let mut e = engine_for(&det("a"), limits());
        e.deterministic = false;
        assert_eq!(key(&det("a"), limits(), &e), None);
    }

    #[test]
    fn a_report_is_cached_only_when_ok_run_and_its_engine_known() {
        let mut r = TaskReport::new(&det("a"), ReportStatus::OK);
        assert_eq!(key_of_report(&r, limits()), None, "no result, no engine");
        let mut result = runner::TaskResult::new(Some("a".into()), runner::Status::Ok);
        result.engine = Some(engine_for(&det("a"), limits()));
        r.result = Some(result);
        let k = key_of_report(&r, limits()).unwrap();
        assert_eq!(
            Some(k),
            key(&det("z"), limits(), &engine_for(&det("z"), limits()))
        );
        let mut trapped = r.clone();
        trapped.status = ReportStatus::Runner(runner::Status::Trap);
        assert_eq!(key_of_report(&trapped, limits()), None);
        let answered = answer(&det("b"), &r);
        assert!(answered.cached);
        assert_eq!(answered.task.task_id, "b");
        assert_eq!(answered.cached_from.as_ref().unwrap().task_id, "a");
        assert_eq!(key_of_report(&answered, limits()), None);
    }
}
