//! The placeholder contract: the sample tasks of `host/wasm`, as the Go coordinator's
//! placeholder emitted them (`TaskID`, `WasmCID`, `InputCID`, `Entry`).
//!
//! The CIDs are the real CIDs of the files (what `ipfs add` gives them, and what
//! `make cids` prints); a test recomputes them and fails, showing the new values, when a
//! file changes.

use std::collections::VecDeque;

use crate::config::Scenario;
use crate::source::{NextTask, TaskSource};
use crate::task::Task;

/// A sample task: (task id, module file, its CID, input file, its CID, entry).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub task_id: &'static str,
    pub wasm_file: &'static str,
    pub wasm_cid: &'static str,
    pub input_file: &'static str,
    pub input_cid: &'static str,
    pub entry: &'static str,
}

pub const SAMPLES: [Sample; 3] = [
    Sample {
        task_id: "fib",
        wasm_file: "fib.wasm",
        wasm_cid: "Qmakqmav82dp99fynQmoZHUr8UgmnmopakEmEaTeTnMHg1",
        input_file: "fib-input.json",
        input_cid: "Qmaecf1kUsJ8Hv7A1amYTmYxVm4WWetBQv66qgXTg3WZiK",
        entry: "fib",
    },
    Sample {
        task_id: "affine",
        wasm_file: "affine.wasm",
        wasm_cid: "QmRSh2R6M4BLMLEZapMkYDVJtnXJts11sVwNnzPf3jQyHX",
        input_file: "affine-input.json",
        input_cid: "Qmew2KHny8cD5ZSPs5GLLD6Yb5Zu9f6v3jVZqHf1j3Bvwr",
        entry: "affine",
    },
    Sample {
        task_id: "add",
        wasm_file: "add.wasm",
        wasm_cid: "QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu",
        input_file: "add-input.json",
        input_cid: "QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN",
        entry: "add",
    },
];

#[derive(Debug)]
pub struct PlaceholderSource {
    tasks: VecDeque<Task>,
}

impl PlaceholderSource {
    pub fn new(scenario: Scenario) -> Self {
        let wanted = |id: &str| match scenario {
            Scenario::All => true,
            Scenario::Fib => id == "fib",
            Scenario::Affine => id == "affine",
            Scenario::Add => id == "add",
        };
        let tasks = SAMPLES
            .iter()
            .filter(|s| wanted(s.task_id))
            .map(|s| Task {
                task_id: s.task_id.into(),
                wasm_cid: s.wasm_cid.into(),
                input_cid: Some(s.input_cid.into()),
                entry: Some(s.entry.into()),
                limits: Default::default(),
                invalid: None,
                deterministic: false,
            })
            .collect();
        Self { tasks }
    }
}

impl TaskSource for PlaceholderSource {
    fn next_task(&mut self) -> NextTask<'_> {
        // Taken inside the future, so a future dropped unpolled (by `select!`) loses nothing.
        Box::pin(async move { Ok(self.tasks.pop_front()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fetcher::importer::{cid_of_bytes, Params};

    #[test]
    fn sample_cids_are_the_cids_of_the_files_in_host_wasm() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/wasm");
        let cid = |f: &str| {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            cid_of_bytes(Params::V0, &bytes).to_string()
        };
        let mut stale = Vec::new();
        for s in SAMPLES {
            for (file, recorded) in [(s.wasm_file, s.wasm_cid), (s.input_file, s.input_cid)] {
                let actual = cid(file);
                if actual != recorded {
                    stale.push(format!("{file}: recorded {recorded}, now {actual}"));
                }
            }
        }
        assert!(
            stale.is_empty(),
            "host/wasm changed; update SAMPLES in coordinator/src/source/placeholder.rs:\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn the_samples_are_valid_tasks() {
        for t in PlaceholderSource::new(Scenario::All).tasks {
            assert_eq!(t.clone().validate(), Ok(t));
        }
    }

    #[test]
    fn scenario_picks_one_sample() {
        let s = PlaceholderSource::new(Scenario::Affine);
        assert_eq!(s.tasks.len(), 1);
        assert_eq!(s.tasks[0].entry.as_deref(), Some("affine"));
        assert_eq!(PlaceholderSource::new(Scenario::All).tasks.len(), 3);
    }
}
