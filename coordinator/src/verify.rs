//! Re-execution checks (`verify_fraction`): which tasks are run a second time, and what
//! comparing the two runs says. Pure; the reconciler runs the second run through the
//! backend ([`crate::backend::Backend::run_check`]).
//!
//! A task is chosen by the SHA-256 of its id, so the choice is reproducible: the same task
//! is checked by every coordinator, after every restart. The two runs are compared by
//! their `output_sha256` (what the computation produced, see
//! [`runner::TaskResult::output_digest`]); when they differ the task is published
//! `nondeterministic` with both hashes.

use sha2::{Digest, Sha256};

use crate::backend::AttemptOutcome;
use crate::receipt::output_sha256;
use crate::task::{ReportStatus, TaskReport, Verification};

/// What a check found: the `outcome` label of `wasm_exec_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Both runs produced the same output.
    Match,
    /// The outputs differ: the task is published `nondeterministic`.
    Mismatch,
    /// The second run gave no result: nothing was decided.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Mismatch => "mismatch",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Whether `task_id` is among the `fraction` (0 to 1) of tasks checked: the first 8 bytes
/// of its SHA-256, as a fraction of 2^64, fall below `fraction`.
pub fn selected(task_id: &str, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    if fraction >= 1.0 {
        return true;
    }
    let digest = Sha256::digest(task_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) as f64) < fraction * 2f64.powi(64)
}

/// Whether a first run is worth checking: it produced a result that is the task's own
/// (not a failure of the machinery, where there is nothing to compare).
pub fn checkable(first: &AttemptOutcome) -> bool {
    first.result.is_some() && !first.status.is_infrastructure_failure()
}

/// The check's verdict on `report` (the first run's), from the second run's outcome: the
/// report's `verification`, and status `nondeterministic` when the outputs differ. A
/// second run without a result leaves the status alone (inconclusive).
pub fn apply(report: &mut TaskReport, second: &AttemptOutcome) -> Verdict {
    let Some(first) = report.result.as_ref().map(output_sha256) else {
        return Verdict::Inconclusive;
    };
    let check = second.result.as_ref().map(output_sha256);
    let matched = check.as_deref() == Some(first.as_str());
    let (outcome, error) = match &check {
        None => (
            Verdict::Inconclusive,
            Some(
                second
                    .error
                    .clone()
                    .unwrap_or_else(|| "the second run gave no result".into()),
            ),
        ),
        Some(_) if matched => (Verdict::Match, None),
        Some(_) => (Verdict::Mismatch, None),
    };
    if outcome == Verdict::Mismatch {
        report.status = ReportStatus::Nondeterministic;
        report.error = Some(format!(
            "a second run of the task gave another output: output_sha256 {first} then {}; the module is not deterministic (it reads the clock or random bytes without deterministic execution?), or a node misbehaved",
            check.as_deref().unwrap_or_default()
        ));
    }
    report.verification = Some(Verification {
        output_sha256: first,
        check_output_sha256: check,
        matched,
        error,
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Task;
    use runner::{Status, TaskResult};
    use serde_json::json;

    fn outcome(result: Option<Vec<serde_json::Value>>) -> AttemptOutcome {
        let mut r = TaskResult::new(Some("t".into()), Status::Ok);
        r.result = result;
        r.output_sha256 = Some(r.output_digest());
        AttemptOutcome::from_result(r, Some(0))
    }

    fn first() -> TaskReport {
        let mut report = TaskReport::new(&Task::example("t"), ReportStatus::OK);
        report.result = outcome(Some(vec![json!(1)])).result;
        report
    }

    #[test]
    fn the_choice_is_by_task_id_and_about_the_fraction() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("task-{i}")).collect();
        let count = |f: f64| ids.iter().filter(|id| selected(id, f)).count();
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 10_000);
        let quarter = count(0.25);
        assert!((2_200..2_800).contains(&quarter), "{quarter}");
        // Reproducible, and nested: a task checked at 0.1 is checked at 0.25 too.
        for id in &ids {
            assert_eq!(selected(id, 0.1), selected(id, 0.1));
            assert!(!selected(id, 0.1) || selected(id, 0.25));
        }
    }

    #[test]
    fn equal_outputs_match_and_keep_the_status() {
        let mut report = first();
        assert_eq!(
            apply(&mut report, &outcome(Some(vec![json!(1)]))),
            Verdict::Match
        );
        assert_eq!(report.status, ReportStatus::OK);
        let v = report.verification.unwrap();
        assert!(v.matched);
        assert_eq!(Some(v.output_sha256), v.check_output_sha256);
    }

    #[test]
    fn other_outputs_make_the_task_nondeterministic_with_both_hashes() {
        let mut report = first();
        assert_eq!(
            apply(&mut report, &outcome(Some(vec![json!(2)]))),
            Verdict::Mismatch
        );
        assert_eq!(report.status, ReportStatus::Nondeterministic);
        let v = report.verification.clone().unwrap();
        assert!(!v.matched);
        let (a, b) = (v.output_sha256, v.check_output_sha256.unwrap());
        assert_ne!(a, b);
        let error = report.error.unwrap();
        assert!(error.contains(&a) && error.contains(&b), "{error}");
    }

    #[test]
    fn a_second_run_without_a_result_is_inconclusive() {
        let mut report = first();
        let failed = AttemptOutcome::failed(
            crate::backend::FailureKind::Fetch,
            crate::task::Stage::Fetch,
            "gateway down".into(),
            true,
        );
        assert!(!checkable(&failed));
        assert_eq!(apply(&mut report, &failed), Verdict::Inconclusive);
        assert_eq!(report.status, ReportStatus::OK);
        let v = report.verification.unwrap();
        assert_eq!(v.error.as_deref(), Some("gateway down"));
        assert!(!v.matched);
    }
}
