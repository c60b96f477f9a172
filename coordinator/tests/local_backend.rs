//! End-to-end tests of the `coordinator` binary with the local backend: the real `fetcher`
//! and `runner` binaries beside it (`cargo build --workspace` first), a clean environment,
//! `--once`, and stdout parsed as JSON-lines results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use support::*;

/// The placeholder tasks: id, module, input, expected result.
const PLACEHOLDERS: [(&str, &str, &str, i64); 3] = [
    ("fib", "fib.wasm", "fib-input.json", 144),
    ("affine", "affine.wasm", "affine-input.json", 119),
    ("add", "add.wasm", "add-input.json", 5),
];

#[track_caller]
fn expect_ok(r: &Value, expected: &Value, run: &Run) {
    check_report_shape(r, run);
    assert_eq!(r["status"], "ok", "status of {r}\n{}", run.describe());
    assert_eq!(r["result"]["status"], "ok", "runner status in {r}");
    assert_eq!(&r["result"]["result"], expected, "result of {r}");
    assert_eq!(r["stage"], Value::Null, "stage of an ok task: {r}");
    assert_eq!(r["error"], Value::Null, "error of an ok task: {r}");
    assert_eq!(r["attempts"], 1, "attempts of an ok task: {r}");
}

#[track_caller]
fn expect_placeholders(run: &Run, ids: &[&str]) {
    run.expect_code(0);
    let by_id = run.by_id();
    let got: Vec<&str> = by_id.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "task ids published\n{}", run.describe());
    for (id, wasm, input, expected) in PLACEHOLDERS {
        let Some(r) = by_id.get(id) else { continue };
        expect_ok(r, &json!([expected]), run);
        assert_eq!(r["result"]["entry"], id, "entry the runner called: {r}");
        assert_eq!(
            r["wasm_cid"].as_str().unwrap(),
            cid_of_file(&samples().join(wasm)),
            "wasm_cid of {id} is the CIDv0 of host/wasm/{wasm}"
        );
        let input_path = samples().join(input);
        assert!(
            input_path.is_file(),
            "the placeholder task {id} needs {} (the contract's input file); it is missing",
            input_path.display()
        );
        assert_eq!(
            r["input_cid"].as_str(),
            Some(cid_of_file(&input_path).as_str()),
            "input_cid of {id} is the CIDv0 of host/wasm/{input}: {r}"
        );
    }
    let summary = summary_line(run);
    assert_eq!(
        summary_count(&summary, "ok"),
        Some(ids.len() as u64),
        "{summary}"
    );
    assert_eq!(summary_count(&summary, "failed"), Some(0), "{summary}");
    run.expect_work_dir_clean();
}

// ---------------------------------------------------------------------------------------------
// 1. The placeholder tasks
// ---------------------------------------------------------------------------------------------

#[test]
fn placeholder_tasks_give_their_documented_results() {
    let run = Coord::with_mirror(&samples()).run();
    expect_placeholders(&run, &["fib", "affine", "add"]);
}

#[test]
fn scenario_fib_runs_only_fib_with_the_default_mirror_from_the_repository_root() {
    // No --ipfs-mirror: the default ./host/wasm, relative to the working directory.
    let run = Coord::new()
        .current_dir(&repo_root())
        .args(["--scenario", "fib"])
        .run();
    expect_placeholders(&run, &["fib"]);
}

#[test]
fn results_file_gets_the_published_lines_and_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("results.jsonl");
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let first = Coord::with_mirror(&samples())
        .arg("--results")
        .arg(&file)
        .run();
    expect_placeholders(&first, &["fib", "affine", "add"]);
    assert_eq!(
        read(),
        first.results(),
        "the results file holds what stdout published"
    );

    let second = Coord::with_mirror(&samples())
        .arg("--results")
        .arg(&file)
        .run();
    expect_placeholders(&second, &["fib", "affine", "add"]);
    let all = read();
    assert_eq!(all.len(), 6, "two runs append 3 + 3 lines: {all:#?}");
    assert_eq!(
        all[..3],
        first.results()[..],
        "the first run's lines are kept"
    );
    assert_eq!(
        all[3..],
        second.results()[..],
        "the second run's lines follow"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Task failures: no retry, exit 0
// ---------------------------------------------------------------------------------------------

#[test]
fn trap_and_out_of_fuel_are_task_failures_and_never_retried() {
    let m = Mirror::new();
    let trap = m.add("trap.wasm", &wasm_of(TRAP_WAT));
    let trap_input = m.add("trap-input.json", br#"{"entry":"boom","args":[]}"#);
    let spin = m.add("spin.wasm", &wasm_of(SPIN_WAT));
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[
            task_line("trap-1", &trap, Some(&trap_input), None),
            // No input: the entry comes from the task.
            task_line("fuel-1", &spin, None, Some("spin")),
        ],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args([
            "--fuel",
            "100000",
            "--retries",
            "2",
            "--retry-backoff-ms",
            "10",
        ])
        .run();
    run.expect_code(0);
    let by_id = run.by_id();
    assert_eq!(by_id.len(), 2, "{}", run.describe());
    for (id, status) in [("trap-1", "trap"), ("fuel-1", "out_of_fuel")] {
        let r = &by_id[id];
        check_report_shape(r, &run);
        assert_eq!(r["status"], status, "{r}\n{}", run.describe());
        assert_eq!(r["stage"], "run", "{r}");
        assert_eq!(r["attempts"], 1, "a {status} is not retried: {r}");
        assert_eq!(r["result"]["status"], status, "the runner's result: {r}");
        assert_eq!(
            r["wasm_cid"],
            json!(if id == "trap-1" { &trap } else { &spin })
        );
    }
    assert_eq!(by_id["trap-1"]["input_cid"], json!(trap_input));
    assert_eq!(by_id["fuel-1"]["input_cid"], Value::Null);
    assert_eq!(by_id["fuel-1"]["entry"], "spin");
    let summary = summary_line(&run);
    assert_eq!(summary_count(&summary, "ok"), Some(0), "{summary}");
    run.expect_work_dir_clean();
}

/// A task's own limits lower the coordinator's (`--fuel`, `--task-timeout`) and never raise
/// them: fuel asked below the maximum is what the runner gets, fuel asked above it is cut to
/// it, and a task's short timeout stops a loop long before the coordinator's would.
#[test]
fn a_tasks_own_limits_are_capped_by_the_coordinators() {
    let m = Mirror::new();
    let spin = m.add("spin.wasm", &wasm_of(SPIN_WAT));
    let add = m.add_sample("add.wasm");
    let add_input = m.add_sample("add-input.json");
    let line = |id: &str, wasm: &str, input: Option<&str>, entry: Option<&str>, limits: Value| {
        let mut t: Value = serde_json::from_str(&task_line(id, wasm, input, entry)).unwrap();
        t["limits"] = limits;
        t.to_string()
    };
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[
            line("below", &spin, None, Some("spin"), json!({"fuel": 5_000})),
            line(
                "above",
                &spin,
                None,
                Some("spin"),
                json!({"fuel": 1_000_000_000_000u64}),
            ),
            line("none", &spin, None, Some("spin"), json!({})),
            line(
                "enough",
                &add,
                Some(&add_input),
                None,
                json!({"fuel": 10_000, "timeout_seconds": 30}),
            ),
        ],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--fuel", "100000"])
        .run();
    run.expect_code(0);
    let by_id = run.by_id();
    let consumed = |id: &str| {
        let r = &by_id[id];
        assert_eq!(
            r["status"],
            if id == "enough" { "ok" } else { "out_of_fuel" },
            "{r}\n{}",
            run.describe()
        );
        r["result"]["fuel_consumed"]
            .as_u64()
            .unwrap_or_else(|| panic!("{r}"))
    };
    let below = consumed("below");
    assert!(
        (4_000..=5_000).contains(&below),
        "asked 5000, consumed {below}"
    );
    for capped in ["above", "none"] {
        let used = consumed(capped);
        assert!(
            (90_000..=100_000).contains(&used),
            "{capped}: consumed {used}, the maximum is 100000"
        );
    }
    consumed("enough");
    // What the task asked for is part of the task, as published.
    assert_eq!(by_id["below"]["limits"], json!({"fuel": 5_000}));
    assert_eq!(by_id["none"].get("limits"), None, "{}", by_id["none"]);

    // With metering off, a task's one-second timeout stops it, not the coordinator's minute.
    let tasks = write_lines(
        m.path(),
        "timeout.jsonl",
        &[line(
            "short",
            &spin,
            None,
            Some("spin"),
            json!({"timeout_seconds": 1}),
        )],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--fuel", "0", "--task-timeout", "600"])
        .timeout(Duration::from_secs(120))
        .run();
    run.expect_code(0);
    assert!(
        run.elapsed < Duration::from_secs(60),
        "a task's 1 s timeout took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    let r = &run.by_id()["short"];
    assert_eq!(r["status"], "timeout", "{r}\n{}", run.describe());
    run.expect_work_dir_clean().expect_no_orphans();
}

// ---------------------------------------------------------------------------------------------
// 3. and 4. Fetch failures and the gateway path
// ---------------------------------------------------------------------------------------------

#[test]
fn a_cid_missing_from_the_mirror_fails_the_fetch_after_the_retries() {
    let m = Mirror::new();
    m.add_sample("add.wasm");
    let missing = cid_of(b"these bytes are in no mirror\n");
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[task_line("missing-1", &missing, None, Some("add"))],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--retries", "1", "--retry-backoff-ms", "10"])
        .run();
    run.expect_code(1);
    let by_id = run.by_id();
    let r = &by_id["missing-1"];
    check_report_shape(r, &run);
    assert_eq!(r["status"], "fetch_failed", "{r}\n{}", run.describe());
    assert_eq!(r["stage"], "fetch", "{r}");
    assert_eq!(r["attempts"], 2, "1 + --retries 1: {r}");
    assert_eq!(r["result"], Value::Null, "no runner result: {r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains(&missing), "error names the CID: {r}");
    let summary = summary_line(&run);
    assert_eq!(summary_count(&summary, "failed"), Some(1), "{summary}");
    run.expect_work_dir_clean();
}

#[test]
fn a_gateway_serving_tampered_bytes_fails_the_fetch() {
    let add = std::fs::read(samples().join("add.wasm")).unwrap();
    let gw = PlainGateway::start(&[&add, ADD_INPUT.as_bytes()], true);
    let empty = Mirror::new();
    let tasks = write_lines(
        empty.path(),
        "tasks.jsonl",
        &[task_line(
            "tampered-1",
            &cid_of(&add),
            Some(&cid_of(ADD_INPUT.as_bytes())),
            None,
        )],
    );
    let run = Coord::with_mirror(empty.path())
        .args(["--ipfs-endpoint", &gw.url()])
        .arg("--tasks")
        .arg(&tasks)
        .args(["--retries", "1", "--retry-backoff-ms", "10"])
        .run();
    run.expect_code(1);
    let r = &run.by_id()["tampered-1"];
    check_report_shape(r, &run);
    assert_eq!(r["status"], "fetch_failed", "{r}\n{}", run.describe());
    assert_eq!(r["stage"], "fetch", "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(r["result"], Value::Null, "{r}");
    let plain_served = gw
        .requests()
        .iter()
        .filter(|q| q.kind == Kind::Plain && q.status == 200)
        .count();
    assert!(
        plain_served >= 1,
        "the fetcher asked the gateway for the plain body: {:?}\n{}",
        gw.requests(),
        run.describe()
    );
    run.expect_work_dir_clean();
}

#[test]
fn a_gateway_serving_correct_plain_bytes_works() {
    let add = std::fs::read(samples().join("add.wasm")).unwrap();
    let gw = PlainGateway::start(&[&add, ADD_INPUT.as_bytes()], false);
    let empty = Mirror::new();
    let tasks = write_lines(
        empty.path(),
        "tasks.jsonl",
        &[task_line(
            "gateway-1",
            &cid_of(&add),
            Some(&cid_of(ADD_INPUT.as_bytes())),
            None,
        )],
    );
    let run = Coord::with_mirror(empty.path())
        .args(["--ipfs-endpoint", &format!("{}/ipfs", gw.url())])
        .arg("--tasks")
        .arg(&tasks)
        .args(["--retries", "0"])
        .run();
    run.expect_code(0);
    expect_ok(&run.by_id()["gateway-1"], &json!([5]), &run);
    let served: BTreeSet<String> = gw
        .requests()
        .iter()
        .filter(|q| q.kind == Kind::Plain && q.status == 200)
        .map(|q| q.path.clone())
        .collect();
    assert_eq!(
        served.len(),
        2,
        "module and input came from the gateway as plain bodies: {:?}",
        gw.requests()
    );
    run.expect_work_dir_clean();
}

// ---------------------------------------------------------------------------------------------
// 5. Timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn an_endless_loop_is_stopped_at_the_task_timeout() {
    let m = Mirror::new();
    let spin = m.add("spin.wasm", &wasm_of(SPIN_WAT));
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[task_line("spin-1", &spin, None, Some("spin"))],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--task-timeout", "2", "--fuel", "0", "--retries", "2"])
        .timeout(Duration::from_secs(60))
        .run();
    // A hang bound, not a benchmark: a 2 s timeout must not take anywhere near a minute.
    assert!(
        run.elapsed < Duration::from_secs(30),
        "a 2 s task timeout took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    // A timeout is the task's failure, not the infrastructure's: exit 0, no retry.
    run.expect_code(0);
    let r = &run.by_id()["spin-1"];
    check_report_shape(r, &run);
    assert_eq!(r["status"], "timeout", "{r}\n{}", run.describe());
    assert_ne!(r["stage"], "fetch", "{r}");
    assert_eq!(r["attempts"], 1, "a timeout is not retried: {r}");
    run.expect_work_dir_clean().expect_no_orphans();
}

/// A stand-in runner that ignores its flags and timeout, shrugs off SIGTERM and leaves a
/// background child: the coordinator must kill the whole process group at the timeout.
#[test]
fn a_runner_that_outlives_the_timeout_is_killed_with_its_process_group() {
    let (m, samples) = sample_mirror();
    let (add, add_in, _) = &samples["add"];
    let runner = write_script(
        m.path(),
        "stubborn-runner",
        "trap '' TERM INT HUP\n\
         sh -c 'trap \"\" TERM INT HUP; while :; do sleep 0.2; done' &\n\
         while :; do sleep 0.2; done",
    );
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[task_line("stubborn-1", add, Some(add_in), None)],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .arg("--runner-path")
        .arg(&runner)
        .args(["--task-timeout", "2", "--retries", "2"])
        .timeout(Duration::from_secs(60))
        .run();
    assert!(
        run.elapsed < Duration::from_secs(30),
        "a 2 s task timeout took {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    run.expect_no_orphans();
    run.expect_code(0);
    let r = &run.by_id()["stubborn-1"];
    check_report_shape(r, &run);
    assert_eq!(r["status"], "timeout", "{r}\n{}", run.describe());
    assert_eq!(r["stage"], "run", "{r}");
    assert_eq!(r["attempts"], 1, "a timeout is not retried: {r}");
    run.expect_work_dir_clean();
}

/// Runner exit code 1 is the machinery failing: retried, then `error`, and `--once` exits 1.
#[test]
fn a_runner_exiting_1_is_retried_then_reported_as_error() {
    let (m, samples) = sample_mirror();
    let (add, add_in, _) = &samples["add"];
    let runner = write_script(
        m.path(),
        "failing-runner",
        "echo 'stand-in runner: cannot read the module' >&2\nexit 1",
    );
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[task_line("flaky-1", add, Some(add_in), None)],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .arg("--runner-path")
        .arg(&runner)
        .args(["--retries", "2", "--retry-backoff-ms", "10"])
        .run();
    run.expect_code(1);
    let r = &run.by_id()["flaky-1"];
    check_report_shape(r, &run);
    assert_eq!(r["status"], "error", "{r}\n{}", run.describe());
    assert_eq!(r["stage"], "run", "{r}");
    assert_eq!(r["attempts"], 3, "1 + --retries 2: {r}");
    assert!(r["error"].is_string(), "{r}");
    run.expect_work_dir_clean();
}

// ---------------------------------------------------------------------------------------------
// 6. Many tasks at once
// ---------------------------------------------------------------------------------------------

#[test]
fn fifty_tasks_at_concurrency_four_each_run_exactly_once() {
    let (m, samples) = sample_mirror();
    let names: Vec<&str> = samples.keys().copied().collect();
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let name = names[i % names.len()];
        let (wasm, input, result) = &samples[name];
        let id = format!("many-{i:02}-{name}");
        lines.push(task_line(&id, wasm, Some(input), None));
        expected.push((id, result.clone()));
    }
    let tasks = write_lines(m.path(), "tasks.jsonl", &lines);
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--concurrency", "4"])
        .run();
    run.expect_code(0);
    let results = run.results();
    assert_eq!(results.len(), 50, "one result per task\n{}", run.describe());
    let by_id = run.by_id(); // fails on a task id published twice
    for (id, result) in &expected {
        let r = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no result for {id}\n{}", run.describe()));
        expect_ok(r, result, &run);
    }
    let summary = summary_line(&run);
    assert_eq!(summary_count(&summary, "ok"), Some(50), "{summary}");
    assert_eq!(summary_count(&summary, "failed"), Some(0), "{summary}");
    run.expect_work_dir_clean();
}

/// Four 1-second tasks (WASI sleeps) at concurrency 2: sampled every 10 ms, the
/// coordinator never has more than two `fetcher`/`runner` children, does reach two, and
/// takes at least two rounds (2 s).
#[test]
fn concurrency_bounds_the_tasks_in_flight() {
    let m = Mirror::new();
    let nap = m.add("nap.wasm", &wasm_of(NAP_WAT));
    let input = m.add("nap-input.json", br#"{"entry":"nap","args":[1000]}"#);
    let lines: Vec<String> = (1..=4)
        .map(|i| task_line(&format!("nap-{i}"), &nap, Some(&input), None))
        .collect();
    let tasks = write_lines(m.path(), "tasks.jsonl", &lines);
    let mut spawned = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--concurrency", "2", "--fuel", "0"])
        .timeout(Duration::from_secs(90))
        .spawn();
    let pid = spawned.pid().as_raw();
    let mut most = 0;
    while spawned.child.try_wait().unwrap().is_none()
        && spawned.start.elapsed() < Duration::from_secs(60)
    {
        most = most.max(descendants_named(pid, &["runner", "fetcher"]).len());
        std::thread::sleep(Duration::from_millis(10));
    }
    let run = spawned.wait();
    run.expect_code(0);
    let by_id = run.by_id();
    assert_eq!(by_id.len(), 4, "{}", run.describe());
    for r in by_id.values() {
        expect_ok(r, &json!([0]), &run);
    }
    assert!(
        most <= 2,
        "{most} fetcher/runner children at once at concurrency 2\n{}",
        run.describe()
    );
    assert_eq!(
        most,
        2,
        "two tasks should run at once at concurrency 2\n{}",
        run.describe()
    );
    assert!(
        run.elapsed >= Duration::from_millis(1950),
        "four 1 s tasks two at a time took only {:?}\n{}",
        run.elapsed,
        run.describe()
    );
    run.expect_work_dir_clean();
}

// ---------------------------------------------------------------------------------------------
// 7. SIGTERM
// ---------------------------------------------------------------------------------------------

/// Six 2-second tasks (WASI sleeps, fuel off), concurrency 2, grace 1 s. SIGTERM goes 0.5 s
/// after the first result, when two tasks have been running for about 0.5 s: they need 1.5 s
/// more, past the grace period.
///
/// Asserted: the coordinator exits within 10 s of the signal; no task id is published twice;
/// every published status is `ok` (with the task's result) or `interrupted`; the first
/// result is `ok`; at least one task (one running at the signal) is `interrupted`; the
/// work dir is empty and no `runner`/`fetcher` naming it survives. Tasks never started may
/// be published as `interrupted` or not at all (listed in the failure message if absent).
#[test]
fn sigterm_lets_running_tasks_go_within_the_grace_period_and_reports_the_rest() {
    stop_mid_run(Signal::SIGTERM);
}

/// The same with SIGINT (Ctrl-C).
#[test]
fn sigint_stops_the_coordinator_like_sigterm() {
    stop_mid_run(Signal::SIGINT);
}

fn stop_mid_run(sig: Signal) {
    let m = Mirror::new();
    let nap = m.add("nap.wasm", &wasm_of(NAP_WAT));
    let input = m.add("nap-input.json", br#"{"entry":"nap","args":[2000]}"#);
    let ids: Vec<String> = (1..=6).map(|i| format!("slow-{i}")).collect();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| task_line(id, &nap, Some(&input), None))
        .collect();
    let tasks = write_lines(m.path(), "tasks.jsonl", &lines);
    let results = m.path().join("results.jsonl");
    let flags = |c: &mut Coord| {
        c.arg("--tasks")
            .arg(&tasks)
            .arg("--results")
            .arg(&results)
            .args([
                "--concurrency",
                "2",
                "--grace-period",
                "1",
                "--task-timeout",
                "30",
                "--fuel",
                "0",
            ]);
    };
    let mut first = Coord::with_mirror(m.path());
    flags(&mut first);
    let state = first.state();
    let spawned = first.timeout(Duration::from_secs(90)).spawn();
    let first_result = spawned.lines.recv_timeout(Duration::from_secs(45)).ok();
    std::thread::sleep(Duration::from_millis(500));
    let signalled_at = spawned.start.elapsed();
    let pid = spawned.child.id();
    spawned.signal(sig);
    let run = spawned.wait();
    let first_result = first_result
        .unwrap_or_else(|| panic!("no result within 45 s of the start\n{}", run.describe()));
    assert!(
        !run.killed_at_hang_bound && run.elapsed < signalled_at + Duration::from_secs(10),
        "pid {pid} took {:?} to exit after {sig} (grace period 1 s)\n{}",
        run.elapsed.saturating_sub(signalled_at),
        run.describe()
    );
    let by_id = run.by_id(); // fails on a task id published twice
    let first_result: Value = serde_json::from_str(&first_result.1).unwrap();
    assert_eq!(
        first_result["status"],
        "ok",
        "{first_result}\n{}",
        run.describe()
    );
    for r in by_id.values() {
        check_report_shape(r, &run);
        assert_eq!(
            r["status"],
            "ok",
            "after {sig} a published task is one that finished: {r}\n{}",
            run.describe()
        );
    }
    let requeued = summary_count(&summary_line(&run), "requeued");
    assert!(
        requeued >= Some(1) && by_id.len() < ids.len(),
        "the tasks running at the signal cannot finish in the 1 s grace period: they go back \
         to the queue, unpublished\n{}",
        run.describe()
    );
    run.expect_work_dir_clean().expect_no_orphans();

    // The next start runs what was cut short or never started, and nothing else.
    let mut second = Coord::with_mirror(m.path());
    flags(&mut second);
    let again = second.env("COORDINATOR_STATE", &state).run();
    again.expect_code(0);
    let rest = again.by_id();
    for id in &ids {
        assert!(
            by_id.contains_key(id) != rest.contains_key(id),
            "{id} must be published by exactly one of the two runs\nfirst:\n{}\nsecond:\n{}",
            run.describe(),
            again.describe()
        );
    }
    let lines = std::fs::read_to_string(&results).unwrap();
    assert_eq!(
        lines.lines().count(),
        ids.len(),
        "each task once in the results file:\n{lines}"
    );
    again.expect_work_dir_clean().expect_no_orphans();
}

// ---------------------------------------------------------------------------------------------
// 8. The JSON-lines source
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bad_line_is_reported_with_its_number_and_the_others_still_run() {
    let (m, samples) = sample_mirror();
    let (fib, fib_in, _) = &samples["fib"];
    let (add, add_in, _) = &samples["add"];
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[
            task_line("good-1", fib, Some(fib_in), None),
            "this line is not JSON {".to_string(),
            task_line("good-3", add, Some(add_in), None),
        ],
    );
    let run = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .run();
    run.expect_stderr_mentions("line 2", "the bad line's number");
    let by_id = run.by_id();
    assert_eq!(
        by_id.keys().collect::<Vec<_>>(),
        ["good-1", "good-3"],
        "{}",
        run.describe()
    );
    expect_ok(&by_id["good-1"], &json!([144]), &run);
    expect_ok(&by_id["good-3"], &json!([5]), &run);
    assert!(
        matches!(run.code, Some(0 | 1)),
        "a skipped line is neither a crash nor a config error\n{}",
        run.describe()
    );
    run.expect_work_dir_clean();
}

#[test]
fn stdin_go_field_names_and_a_duplicate_id_run_once() {
    let (m, samples) = sample_mirror();
    let (fib, fib_in, _) = &samples["fib"];
    let (affine, affine_in, _) = &samples["affine"];
    let go = json!({ "TaskID": "go-1", "WasmCID": fib, "InputCID": fib_in, "Entry": "fib" });
    let lines = [
        go.to_string(),
        task_line("go-1", affine, Some(affine_in), None),
        task_line("snake-1", affine, Some(affine_in), Some("affine")),
    ];
    let run = Coord::with_mirror(m.path())
        .args(["--tasks", "-"])
        .stdin(lines.join("\n") + "\n")
        .run();
    run.expect_code(0);
    let by_id = run.by_id(); // fails on a task id published twice
    assert_eq!(
        by_id.keys().collect::<Vec<_>>(),
        ["go-1", "snake-1"],
        "{}",
        run.describe()
    );
    // The first occurrence runs; the duplicate is skipped.
    expect_ok(&by_id["go-1"], &json!([144]), &run);
    assert_eq!(by_id["go-1"]["entry"], "fib");
    assert_eq!(by_id["go-1"]["input_cid"], json!(fib_in));
    expect_ok(&by_id["snake-1"], &json!([119]), &run);
    run.expect_stderr_mentions("go-1", "the skipped duplicate task id");
    run.expect_work_dir_clean();
}

// ---------------------------------------------------------------------------------------------
// 9. Configuration
// ---------------------------------------------------------------------------------------------

/// The `--print-config` line of `key` (on stdout).
#[track_caller]
fn config_line(run: &Run, key: &str) -> String {
    run.expect_code(0);
    run.stdout
        .lines()
        .find(|l| l.trim_start().trim_start_matches('"').starts_with(key))
        .unwrap_or_else(|| panic!("--print-config has no {key} line\n{}", run.describe()))
        .to_string()
}

#[track_caller]
fn assert_mentions(line: &str, needles: &[&str], run: &Run) {
    for n in needles {
        assert!(
            line.contains(n),
            "{line:?} should mention {n:?}\n{}",
            run.describe()
        );
    }
}

#[test]
fn print_config_shows_each_value_and_its_source() {
    let mirror = samples();
    let run = Coord::bare()
        .arg("--ipfs-mirror")
        .arg(&mirror)
        .arg("--print-config")
        .run();
    let line = config_line(&run, "concurrency");
    assert_mentions(&line, &["1", "default"], &run);
    let line = config_line(&run, "ipfs_mirror");
    assert_mentions(&line, &["--ipfs-mirror"], &run);

    let run = Coord::bare()
        .arg("--ipfs-mirror")
        .arg(&mirror)
        .env("COORDINATOR_CONCURRENCY", "3")
        .arg("--print-config")
        .run();
    assert_mentions(
        &config_line(&run, "concurrency"),
        &["3", "COORDINATOR_CONCURRENCY"],
        &run,
    );

    let run = Coord::bare()
        .arg("--ipfs-mirror")
        .arg(&mirror)
        .env("COORDINATOR_CONCURRENCY", "3")
        .args(["--concurrency", "4", "--print-config"])
        .run();
    assert_mentions(
        &config_line(&run, "concurrency"),
        &["4", "--concurrency"],
        &run,
    );
    assert!(
        !run.stdout.contains("\"task_id\""),
        "--print-config runs no task\n{}",
        run.describe()
    );
}

#[test]
fn a_bad_value_stops_startup_with_exit_2_naming_key_value_and_source() {
    let mirror = samples();
    for (value, needles) in [
        ("0", &["concurrency", "0", "COORDINATOR_CONCURRENCY"][..]),
        ("zero", &["concurrency", "zero"][..]),
    ] {
        let run = Coord::new()
            .arg("--ipfs-mirror")
            .arg(&mirror)
            .env("COORDINATOR_CONCURRENCY", value)
            .run();
        run.expect_code(2);
        for n in needles {
            run.expect_stderr_mentions(n, "the bad key, value and source");
        }
        assert!(
            run.stdout.trim().is_empty(),
            "no task ran\n{}",
            run.describe()
        );
    }
    let run = Coord::new()
        .arg("--ipfs-mirror")
        .arg(&mirror)
        .args(["--concurrency", "0"])
        .run();
    run.expect_code(2);
    run.expect_stderr_mentions("concurrency", "the key")
        .expect_stderr_mentions("--concurrency", "the flag it came from");
}

#[test]
fn a_toml_file_sets_values_and_env_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coordinator.toml");
    std::fs::write(
        &file,
        format!(
            "concurrency = 3\nscenario = \"affine\"\nipfs_mirror = {}\n",
            toml_string(&samples().display().to_string())
        ),
    )
    .unwrap();

    let run = Coord::bare()
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .run();
    assert_mentions(
        &config_line(&run, "concurrency"),
        &["3", "coordinator.toml"],
        &run,
    );
    let run = Coord::bare()
        .arg("--config")
        .arg(&file)
        .args(["--concurrency", "2", "--print-config"])
        .run();
    assert_mentions(
        &config_line(&run, "concurrency"),
        &["2", "--concurrency"],
        &run,
    );

    // The file's scenario runs; a flag overrides it; so does the environment, and
    // COORDINATOR_CONFIG names the file as --config does.
    let run = Coord::new().arg("--config").arg(&file).run();
    expect_placeholders(&run, &["affine"]);
    let run = Coord::new()
        .arg("--config")
        .arg(&file)
        .args(["--scenario", "fib"])
        .run();
    expect_placeholders(&run, &["fib"]);
    let run = Coord::new()
        .env("COORDINATOR_CONFIG", &file)
        .env("COORDINATOR_SCENARIO", "fib")
        .run();
    expect_placeholders(&run, &["fib"]);
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn spawned_work(s: &Spawned) -> String {
    s.work_dir().to_string_lossy().into_owned()
}

/// A task's pod killed from outside while its runner runs: the runner does not run on
/// beside the retry, the task is retried as an infrastructure failure and published once.
#[test]
fn a_pod_killed_from_outside_takes_its_programs_with_it_and_the_task_is_retried() {
    let m = Mirror::new();
    let nap = m.add("nap.wasm", &wasm_of(NAP_WAT));
    // Longer than the 5 s a released work dir waits for what still runs in it.
    let input = m.add("nap-input.json", br#"{"entry":"nap","args":[6500]}"#);
    let tasks = write_lines(
        m.path(),
        "tasks.jsonl",
        &[task_line("victim", &nap, Some(&input), None)],
    );
    let spawned = Coord::with_mirror(m.path())
        .arg("--tasks")
        .arg(&tasks)
        .args(["--fuel", "0", "--retry-backoff-ms", "10"])
        .timeout(Duration::from_secs(90))
        .spawn();
    let root = spawned.pid().as_raw();
    let work = spawned_work(&spawned);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pod = loop {
        let runners = descendants_named(root, &["runner"]);
        // This coordinator's pod only (its dir is in this work dir): other tests running
        // beside this one have pods too, and killing one of theirs proves nothing here.
        let pods: Vec<i32> = processes_mentioning(&work)
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("--local-pod"))
            .map(|(pid, _)| pid)
            .collect();
        if let (false, Some(pod)) = (runners.is_empty(), pods.first()) {
            break *pod;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pod with a runner within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pod), Signal::SIGKILL).unwrap();
    // From now on at most one runner (not counting its worker) may live at a time: the
    // orphaned one is killed before the retry starts its own. (A killed one can still be
    // seen for a moment while the kernel tears it down: only an overlap that lasts 100 ms
    // counts.)
    let mut spawned = spawned;
    let mut most = 0;
    let mut streak = 0;
    while spawned.child.try_wait().unwrap().is_none() {
        let runners = processes_mentioning(&work)
            .into_iter()
            .filter(|(pid, _)| {
                let comm =
                    |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit_once(')')
                            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok())
                    })
                    .unwrap_or(0);
                comm(*pid).trim() == "runner" && comm(parent).trim() != "runner"
            })
            .count();
        streak = if runners > 1 { streak + 1 } else { 0 };
        if streak >= 10 {
            most = most.max(runners);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        most <= 1,
        "{most} runners of the task at once after its pod was killed"
    );
    let run = spawned.wait();
    run.expect_code(0);
    let by_id = run.by_id();
    let r = &by_id["victim"];
    assert_eq!(
        (&r["status"], &r["result"]["result"], &r["attempts"]),
        (&json!("ok"), &json!([0]), &json!(2)),
        "{}",
        run.describe()
    );
    run.expect_work_dir_clean().expect_no_orphans();
}
