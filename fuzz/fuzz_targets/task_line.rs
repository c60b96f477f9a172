//! Task lines: a JSON-lines task file (or stdin) read by the coordinator's
//! `JsonLinesSource`, and a single task as `POST /tasks` reads it
//! (`serde_json::from_slice::<coordinator::task::Task>`, which validates while
//! deserializing). Both carry text from whoever submits tasks into logs, environment
//! variables, Job names and the results file.
//!
//! `parse_line` itself sits in a private module (`coordinator::source` does not export
//! `jsonl`), so lines are fed through the public `JsonLinesSource::from_reader`, which calls
//! it for every line; that also covers the capped line reader in front of it. The first
//! byte picks the reader's buffer size (so lines straddle buffer refills everywhere) and
//! whether the first line is padded to just under or just over `MAX_LINE_BYTES`.
//!
//! Checks, besides "no panic": every task the source yields, and every task that
//! deserializes, satisfies `Task::validate` idempotently, holds no character
//! `logging::needs_escape` names in any field, keeps every field within its length cap,
//! names CIDs the fetcher can parse, and survives serializing and reading back; the source
//! yields exactly the tasks of the lines that parse on their own (in order), skips and
//! counts exactly the others, and never ends early.
#![no_main]

use std::io::Cursor;

use coordinator::source::{JsonLinesSource, TaskSource};
use coordinator::task::{Task, MAX_CID_BYTES, MAX_ENTRY_BYTES, MAX_TASK_ID_BYTES};
use libfuzzer_sys::fuzz_target;
use tokio::io::BufReader;

/// `coordinator::source::jsonl::MAX_LINE_BYTES` (not reachable from here).
const MAX_LINE_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    if let Ok(task) = serde_json::from_slice::<Task>(rest) {
        check_task(&task);
    }

    let mut stream = Vec::new();
    if knobs & 0x80 != 0 {
        // Leading blanks are trimmed from a line, so the padded line is the same task:
        // whether it runs depends only on the cap.
        let pad = MAX_LINE_BYTES - 40 + usize::from(knobs & 0x3f);
        stream.resize(pad, b' ');
    }
    stream.extend_from_slice(rest);
    let capacity = 1 + usize::from(knobs & 0x3f);
    let (tasks, skipped) = read_source(stream.clone(), capacity);

    let mut expected = Vec::new();
    let mut bad = 0;
    for line in lines(&stream) {
        match expected_line(line) {
            Expected::Task(t) => expected.push(t),
            Expected::Nothing => {}
            Expected::Bad => bad += 1,
        }
    }
    for task in &tasks {
        check_task(task);
    }
    assert_eq!(
        tasks, expected,
        "the source's tasks differ from the lines' own"
    );
    assert_eq!(skipped, bad, "skipped lines");
});

/// Every task and skipped-line count the source gives, to its end.
fn read_source(stream: Vec<u8>, capacity: usize) -> (Vec<Task>, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async move {
        let reader = BufReader::with_capacity(capacity, Cursor::new(stream));
        let mut source = JsonLinesSource::from_reader("fuzz".into(), Box::new(reader));
        let mut tasks = Vec::new();
        loop {
            match source.next_task().await {
                Ok(Some(t)) => tasks.push(t),
                Ok(None) => break,
                Err(e) => panic!("reading from memory failed: {e}"),
            }
        }
        // Drained stays drained.
        assert!(matches!(source.next_task().await, Ok(None)));
        (tasks, source.skipped())
    })
}

/// The lines of `stream` without their `\n`; a last line without one counts.
fn lines(stream: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    if out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

enum Expected {
    Task(Task),
    Nothing,
    Bad,
}

/// What the module docs of `source::jsonl` promise for one line.
fn expected_line(line: &[u8]) -> Expected {
    if line.len() > MAX_LINE_BYTES {
        return Expected::Bad;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Expected::Bad;
    };
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Expected::Nothing;
    }
    match serde_json::from_str::<Task>(text) {
        Ok(t) => Expected::Task(t),
        Err(_) => Expected::Bad,
    }
}

fn check_task(task: &Task) {
    assert_eq!(
        task.clone().validate().as_ref(),
        Ok(task),
        "validate is not idempotent"
    );
    let fields = [
        ("task_id", Some(&task.task_id), MAX_TASK_ID_BYTES),
        ("wasm_cid", Some(&task.wasm_cid), MAX_CID_BYTES),
        ("input_cid", task.input_cid.as_ref(), MAX_CID_BYTES),
        ("entry", task.entry.as_ref(), MAX_ENTRY_BYTES),
    ];
    for (name, value, max) in fields {
        let Some(value) = value.map(String::as_str) else {
            continue;
        };
        assert!(!value.is_empty(), "{name} is empty");
        assert!(value.len() <= max, "{name} is {} bytes", value.len());
        assert_eq!(value.trim(), value, "{name} {value:?} is padded");
        assert!(
            !value.chars().any(logging::needs_escape),
            "{name} {value:?} holds a character that needs escaping"
        );
    }
    for cid in std::iter::once(&task.wasm_cid).chain(&task.input_cid) {
        if let Err(e) = fetcher::cid::parse_cid(cid) {
            panic!("the CID {cid:?} of a valid task does not parse: {e}");
        }
    }
    let json = serde_json::to_vec(task).expect("a task serializes");
    let back: Task = serde_json::from_slice(&json).expect("a task reads back");
    assert_eq!(&back, task);
}
