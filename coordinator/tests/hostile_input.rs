//! The coordinator binary against hostile input, each test a class of input that once ended
//! wrongly: a task file with unreadable lines, a source that cannot be read, results that
//! cannot be written, task fields that could only fail later, forged log lines, and the
//! API's answers to bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::http as http_client;
use support::*;

/// A coordinator without `--once` whose only tasks come through its API, on a free port.
fn api_only(m: &Mirror, flags: &[&str]) -> Spawned {
    let empty = write_lines(m.path(), "empty.jsonl", &[]);
    Coord::bare()
        .arg("--ipfs-mirror")
        .arg(m.path())
        .arg("--tasks")
        .arg(&empty)
        .args(flags)
        .env("COORDINATOR_LISTEN", "127.0.0.1:0")
        .spawn()
}

/// Issue: `printf '{"task_id":"u1",...}\n\xff\n{"task_id":"u2",...}\n'` ran u1 only. Lines of
/// every kind of garbage (bytes that are not UTF-8, NULs, not JSON, invalid tasks, lines over
/// the cap) stand between good lines, in generated orders: every good line runs, every bad
/// one is named by its number, and the run still succeeds.
#[test]
fn every_good_line_of_a_task_file_runs_whatever_lines_stand_between() {
    let (m, samples) = sample_mirror();
    let (add, add_in, _) = &samples["add"];
    let garbage: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00".to_vec(),
        b"{\"task_id\":\"x\0y\"}".to_vec(),
        vec![0u8; 40],
        b"not json {".to_vec(),
        format!(
            "{{\"task_id\":\"bad-cid\",\"wasm_cid\":\"Qm{}\"}}",
            "1".repeat(40)
        )
        .into_bytes(),
        format!(
            "{{\"task_id\":\"{}\",\"wasm_cid\":\"{add}\"}}",
            "L".repeat(300)
        )
        .into_bytes(),
        format!(
            "{{\"task_id\":\"nl\\n2026-11-30T00:00:00Z ERROR forged\",\"wasm_cid\":\"{add}\"}}"
        )
        .into_bytes(),
        vec![b'x'; 200 * 1024],
        b"[1,2,3]".to_vec(),
        format!("{{\"task_id\":\"dup\",\"task_id\":\"dup2\",\"wasm_cid\":\"{add}\"}}").into_bytes(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..3 {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut good = Vec::new();
        let mut bad_numbers = Vec::new();
        for i in 0..12 {
            if rng.random_bool(0.5) {
                let id = format!("good-{round}-{i}");
                lines.push(task_line(&id, add, Some(add_in), None).into_bytes());
                good.push(id);
            } else {
                lines.push(garbage[rng.random_range(0..garbage.len())].clone());
                bad_numbers.push(lines.len());
            }
        }
        let mut bytes = Vec::new();
        for l in &lines {
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        let path = m.path().join(format!("tasks-{round}.jsonl"));
        std::fs::write(&path, &bytes).unwrap();
        let run = Coord::with_mirror(m.path()).arg("--tasks").arg(&path).run();
        run.expect_code(0);
        let ids: Vec<String> = run.by_id().keys().cloned().collect();
        let mut want = good.clone();
        want.sort();
        assert_eq!(ids, want, "round {round}\n{}", run.describe());
        for n in &bad_numbers {
            assert!(
                run.stderr.contains(&format!("skipping line {n}:")),
                "line {n} not reported\n{}",
                run.describe()
            );
        }
        let summary = summary_line(&run);
        assert_eq!(
            summary_count(&summary, "skipped_lines").unwrap_or(0),
            bad_numbers.len() as u64,
            "{summary}"
        );
        // No forged line: every stderr line starts with a timestamp of this run.
        assert!(
            !run.stderr
                .lines()
                .any(|l| l.starts_with("2026-11-30T00:00:00Z")),
            "{}",
            run.stderr
        );
        run.expect_work_dir_clean();
    }
}

/// Issue: `--tasks` naming a directory exited 0 with `total=0`. A source that cannot be
/// opened is a configuration error (exit 2); one that breaks while read is a failed run
/// (exit 1), never a quiet end.
#[test]
fn a_task_source_that_cannot_be_read_fails_the_run() {
    let (m, _) = sample_mirror();
    let dir = tempfile::tempdir().unwrap();
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(dir.path())
        .run();
    run.expect_code(2);
    run.expect_stderr_mentions("directory", "why the task file is refused");
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(dir.path().join("missing.jsonl"))
        .run();
    run.expect_code(2);
    run.expect_stderr_mentions("missing.jsonl", "the missing file");
    // Reading /proc/self/mem from its start fails with EIO: a source that breaks.
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg("/proc/self/mem")
        .run();
    run.expect_code(1);
    run.expect_stderr_mentions("cannot read tasks", "the read error");
    assert_eq!(
        summary_count(&summary_line(&run), "source_failures"),
        Some(1)
    );
}

/// Issue: with `--results /dev/full` every result was an ERROR, then `summary: ok=2`, exit
/// 0. A result that could not be published fails the run, is counted, and is logged whole
/// (kept, not lost); stdout still got it.
#[test]
fn a_result_that_cannot_be_published_fails_the_run_and_is_not_lost() {
    let (m, samples) = sample_mirror();
    let (add, add_in, _) = &samples["add"];
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[
            task_line("p1", add, Some(add_in), None),
            task_line("p2", add, Some(add_in), None),
        ],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--results", "/dev/full", "--grace-period", "1"])
        .run();
    run.expect_code(1);
    let summary = summary_line(&run);
    assert_eq!(summary_count(&summary, "unpublished"), Some(2), "{summary}");
    for id in ["p1", "p2"] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains("was not published to file /dev/full")
                    && l.contains(&format!("\"task_id\":\"{id}\""))),
            "{id} not logged whole\n{}",
            run.describe()
        );
    }
    assert_eq!(run.by_id().len(), 2, "stdout, a working sink, got both");
}

/// While a sink fails, `/readyz` says so and the metrics count it.
#[test]
fn a_failing_sink_shows_in_readiness_and_metrics() {
    let (m, samples) = sample_mirror();
    let (add, add_in, _) = &samples["add"];
    let spawned = api_only(&m, &["--results", "/dev/full"]);
    let port = spawned.http_port();
    let (status, _) = http_client::request(port, "GET", "/readyz", b"");
    assert_eq!(status, 200);
    let body = json!({"task_id": "r1", "wasm_cid": add, "input_cid": add_in}).to_string();
    assert_eq!(
        http_client::request(port, "POST", "/tasks", body.as_bytes()).0,
        202
    );
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let (status, text) = loop {
        let (status, text) = http_client::request(port, "GET", "/readyz", b"");
        if status == 503 || std::time::Instant::now() > until {
            break (status, text);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("/dev/full") && text.contains("1 waiting"),
        "{text}"
    );
    let (_, metrics) = http_client::request(port, "GET", "/metrics", b"");
    assert!(
        metrics.contains("wasm_exec_unpublished_results{sink=\"file /dev/full\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasm_exec_publish_failures_total{sink=\"file /dev/full\"}"),
        "{metrics}"
    );
    spawned.signal(nix::sys::signal::Signal::SIGTERM);
    let run = spawned.wait();
    run.expect_code(1);
}

/// Issue: a NUL in `task_id` or `entry` was accepted (202) and failed later, retried three
/// times; a 1 MiB id died of `Argument list too long`. Every source validates every field
/// in one place: a task that would fail for a reason known now is refused now.
#[test]
fn task_fields_are_validated_at_intake_by_every_source() {
    let (m, samples) = sample_mirror();
    let (add, add_in, _) = &samples["add"];
    let bad: Vec<(Value, &str)> = vec![
        (json!({"task_id": "a\u{0}b", "wasm_cid": add}), "U+0000"),
        (json!({"task_id": "a\u{1b}[2Jb", "wasm_cid": add}), "U+001B"),
        (
            json!({"task_id": "t", "wasm_cid": add, "entry": "f\u{0}"}),
            "entry",
        ),
        (
            json!({"task_id": "t", "wasm_cid": add, "entry": "e".repeat(300)}),
            "entry",
        ),
        (
            json!({"task_id": "x".repeat(300), "wasm_cid": add}),
            "task_id",
        ),
        (json!({"task_id": " padded", "wasm_cid": add}), "whitespace"),
        (json!({"task_id": "t", "wasm_cid": "Qm\u{0}"}), "wasm_cid"),
        (
            json!({"task_id": "t", "wasm_cid": add, "input_cid": "bafy-nope"}),
            "input_cid",
        ),
        (
            json!({"task_id": "t", "wasm_cid": add, "bogus": 1}),
            "unknown field",
        ),
    ];
    // The API answers 400 naming the field, and keeps nothing.
    let spawned = api_only(&m, &[]);
    let port = spawned.http_port();
    for (task, says) in &bad {
        let (status, text) =
            http_client::request(port, "POST", "/tasks", task.to_string().as_bytes());
        assert_eq!(status, 400, "{task:.100}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(
            v["error"].as_str().unwrap().contains(says),
            "{says}: {text}"
        );
    }
    let huge = json!({"task_id": "i".repeat(1 << 20), "wasm_cid": add}).to_string();
    let (status, text) = http_client::request(port, "POST", "/tasks", huge.as_bytes());
    assert_eq!(status, 413, "{text}");
    assert!(
        serde_json::from_str::<Value>(&text).unwrap()["error"].is_string(),
        "{text}"
    );
    let (_, listed) = http_client::request(port, "GET", "/tasks", b"");
    assert_eq!(listed.trim(), "[]", "nothing refused is kept");
    spawned.signal(nix::sys::signal::Signal::SIGTERM);
    spawned.wait().expect_code(0);

    // A task file skips each bad line, naming it; `--print-job` refuses the task.
    let mut lines: Vec<String> = bad.iter().map(|(t, _)| t.to_string()).collect();
    lines.push(task_line("fine", add, Some(add_in), None));
    let tasks = write_lines(m.path(), "bad.jsonl", &lines);
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .run();
    run.expect_code(0);
    assert_eq!(run.by_id().keys().collect::<Vec<_>>(), ["fine"]);
    for n in 1..=bad.len() {
        assert!(
            run.stderr.contains(&format!("skipping line {n}:")),
            "{}",
            run.describe()
        );
    }
    let run = Coord::bare()
        .args(["--ipfs-endpoint", "http://127.0.0.1:1/ipfs", "--print-job"])
        .arg(bad[0].0.to_string())
        .current_dir(&support::repo_root())
        .run();
    run.expect_code(2);
    run.expect_stderr_mentions("U+0000", "the refused character");
}

/// Issue: a task id holding `\n2026-11-30T00:00:00Z ERROR forged` appeared as its own ERROR
/// line. Ids are refused at intake now; text from a module (an entry name from its input, an
/// error message) is escaped in the human log, so no value can start a line.
#[test]
fn no_value_from_a_task_or_a_module_can_forge_a_log_line() {
    let (m, samples) = sample_mirror();
    let (add, _, _) = &samples["add"];
    let forged = "\n2026-11-30T00:00:00Z ERROR forged\r\u{1b}[31m";
    let input = m.add(
        "forged-input.json",
        json!({"entry": format!("x{forged}")})
            .to_string()
            .as_bytes(),
    );
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[
            task_line("t1", add, Some(&input), None),
            json!({"task_id": format!("t2{forged}"), "wasm_cid": add}).to_string(),
        ],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .run();
    run.expect_code(0);
    assert_eq!(run.by_id()["t1"]["status"], "invalid_input");
    for line in run.stderr.lines() {
        assert!(
            !line.starts_with("2026-11-30T00:00:00Z"),
            "forged: {line:?}"
        );
        assert!(
            !line.contains('\r') && !line.contains('\u{1b}'),
            "unescaped: {line:?}"
        );
    }
    assert!(
        run.stderr.contains("\\n2026-11-30T00:00:00Z ERROR forged"),
        "{}",
        run.stderr
    );
}

/// Issue: 413 and query-string 400 answers were plain text, and `?status=bogus` answered
/// `200 []`. Every error answer is JSON; an unknown status is a 400 listing the choices.
#[test]
fn every_error_answer_of_the_api_is_json() {
    let (m, _) = sample_mirror();
    let spawned = api_only(&m, &[]);
    let port = spawned.http_port();
    let big = vec![b'x'; 100 * 1024];
    for (method, path, body, status, says) in [
        ("POST", "/tasks", &big[..], 413, "larger than"),
        ("POST", "/tasks", b"{\"task_id\":", 400, "not a valid task"),
        ("GET", "/tasks?limit=many", b"", 400, "limit"),
        ("GET", "/tasks?status=bogus", b"", 400, "fetch_failed"),
        (
            "GET",
            "/tasks?status=interrupted",
            b"",
            400,
            "queued, running",
        ),
        ("GET", "/tasks?after=-1", b"", 400, "after"),
        ("GET", "/tasks/nope", b"", 404, "nope"),
        ("GET", "/tasks/%FF%FE", b"", 400, "UTF-8"),
        ("GET", "/no/such/thing", b"", 404, "no such endpoint"),
        ("DELETE", "/tasks", b"", 405, "not allowed"),
        ("PUT", "/healthz", b"", 405, "not allowed"),
    ] {
        let (got, text) = http_client::request(port, method, path, body);
        assert_eq!(got, status, "{method} {path}: {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert!(
            v["error"].as_str().unwrap().contains(says),
            "{method} {path}: {text}"
        );
    }
    for status in ["queued", "running", "ok", "trap", "fetch_failed", "error"] {
        let (got, text) =
            http_client::request(port, "GET", &format!("/tasks?status={status}"), b"");
        assert_eq!(got, 200, "{status}: {text}");
    }
    spawned.signal(nix::sys::signal::Signal::SIGTERM);
    spawned.wait().expect_code(0);
}
