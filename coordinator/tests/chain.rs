//! The `TaskRegistry` contract as task source and result sink, end to end: a real chain
//! (anvil, from `scripts/ensure-chain-tools.sh`; missing, the tests fail, they never skip),
//! the registry deployed from the committed artifact, the coordinator binary on the local
//! backend.
//!
//! - 50 tasks on chain, each run and posted exactly once with the right status, result
//!   text and `resultHash`; a second run posts nothing;
//! - `kill -9` at random moments (the seed is printed, `CRASH_SEED=N` replays a run): no
//!   task lost, none posted or run twice;
//! - a task reorged away before it was `confirmations` deep is never run;
//! - the RPC refusing connections and answering 500 for a while: nothing lost or repeated;
//!   a post mined while the head could not be read is seen done at once (a regression);
//! - start-up errors (the key file, the executor, the address) exit 2 naming the problem,
//!   never showing the key.

// Helpers outside #[test] functions state expectations too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::chain::{contract_args, coord_for, Chain, Fault, FaultProxy, OnChainResult};
use support::*;

/// anvil's interval mining: 5 blocks a second.
const BLOCK_TIME: &str = "0.2";

/// What a task is, and so what the contract must end up holding for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fib,
    Add,
    Affine,
    /// `nap(ms)`: a task that takes a while.
    Nap,
    /// `unreachable`: status trap (1).
    Trap,
    /// A module in no mirror: fetch_failed (6).
    Missing,
    /// Not a CID: refused, invalid_input (5).
    Malformed,
}

impl Kind {
    /// The status code and, for `ok`, the result text the contract must hold.
    fn expected(self) -> (u8, Option<&'static str>) {
        match self {
            Kind::Fib => (0, Some("[144]")),
            Kind::Add => (0, Some("[5]")),
            Kind::Affine => (0, Some("[119]")),
            Kind::Nap => (0, Some("[0]")),
            Kind::Trap => (1, None),
            Kind::Missing => (6, None),
            Kind::Malformed => (5, None),
        }
    }
}

/// A mirror holding the samples, a trap module and a nap module, and the on-chain task
/// (`wasmCid`, `inputCid`, `entry`) of each kind.
struct Modules {
    mirror: Mirror,
    samples: BTreeMap<&'static str, (String, String, Value)>,
    trap: String,
    nap: (String, String),
}

impl Modules {
    fn new() -> Modules {
        let (mirror, samples) = sample_mirror();
        let trap = mirror.add("trap.wasm", &wasm_of(TRAP_WAT));
        let nap = (
            mirror.add("nap.wasm", &wasm_of(NAP_WAT)),
            mirror.add("nap-input.json", br#"{"entry":"nap","args":[400]}"#),
        );
        Modules {
            mirror,
            samples,
            trap,
            nap,
        }
    }

    fn task(&self, kind: Kind) -> (String, String, String) {
        let sample = |name: &str, entry: &str| {
            let (wasm, input, _) = &self.samples[name];
            (wasm.clone(), input.clone(), entry.to_owned())
        };
        match kind {
            Kind::Fib => sample("fib", "fib"),
            Kind::Add => sample("add", ""),
            Kind::Affine => sample("affine", ""),
            Kind::Nap => (self.nap.0.clone(), self.nap.1.clone(), String::new()),
            Kind::Trap => (self.trap.clone(), String::new(), "boom".into()),
            Kind::Missing => (
                cid_of(b"a module that is in no mirror"),
                String::new(),
                String::new(),
            ),
            Kind::Malformed => ("not-a-cid".into(), String::new(), String::new()),
        }
    }

    fn path(&self) -> &Path {
        self.mirror.path()
    }
}

/// The contract's status code of a report's `status` (TaskRegistry.sol's table).
fn code_of(status: &Value) -> u8 {
    match status.as_str().unwrap_or_default() {
        "ok" => 0,
        "trap" => 1,
        "out_of_fuel" => 2,
        "timeout" => 3,
        "invalid_module" => 4,
        "invalid_input" => 5,
        "fetch_failed" => 6,
        "error" => 7,
        other => panic!("a report with an unknown status {other:?}"),
    }
}

/// sha256 of the RFC 8785 form of the report's `result` object; zero when it has none.
fn hash_of(report: &Value) -> B256 {
    match &report["result"] {
        Value::Null => B256::ZERO,
        r => B256::from_slice(&Sha256::digest(
            serde_json_canonicalizer::to_vec(r).unwrap(),
        )),
    }
}

/// The posted result matches the published report (status, text, hash, executor) and
/// what a task of this kind must give.
#[track_caller]
fn check_posted(chain: &Chain, id: u64, kind: Kind, report: &Value, on: &OnChainResult) {
    let what = format!("on-chain task {id} ({kind:?}): {on:?}\nreport: {report}");
    assert!(on.posted, "not posted: {what}");
    assert_eq!(on.executor, chain.executor.address(), "executor: {what}");
    assert_eq!(report["task_id"], json!(chain.task_id(id)), "{what}");
    let (code, text) = kind.expected();
    assert_eq!(on.status, code, "status: {what}");
    assert_eq!(on.status, code_of(&report["status"]), "status: {what}");
    let want = if on.status == 0 {
        report["result"]["result"].to_string()
    } else {
        report["error"]
            .as_str()
            .or_else(|| report["status"].as_str())
            .unwrap()
            .to_owned()
    };
    let mut cut = want.len().min(1024);
    while !want.is_char_boundary(cut) {
        cut -= 1;
    }
    assert_eq!(on.result, want[..cut], "result text: {what}");
    if let Some(text) = text {
        assert_eq!(on.result, text, "result text: {what}");
    }
    assert_eq!(on.hash, hash_of(report), "resultHash: {what}");
    match kind {
        Kind::Missing | Kind::Malformed => assert_eq!(on.hash, B256::ZERO, "{what}"),
        _ => assert_ne!(on.hash, B256::ZERO, "{what}"),
    }
}

/// One `ResultPosted` log for each of `ids`, and none for any other task.
#[track_caller]
fn expect_posted_once(chain: &Chain, ids: &[u64]) -> BTreeMap<u64, usize> {
    let counts = chain.posted_counts();
    let wrong: Vec<_> = ids
        .iter()
        .filter(|id| counts.get(id) != Some(&1))
        .map(|id| (*id, counts.get(id).copied().unwrap_or(0)))
        .collect();
    assert!(
        wrong.is_empty(),
        "tasks without exactly one ResultPosted log (id, logs): {wrong:?}"
    );
    assert_eq!(
        counts.len(),
        ids.len(),
        "ResultPosted for unknown tasks: {counts:?}"
    );
    counts
}

/// Waits until `done` while the coordinator serves; past `timeout` stops it and fails
/// with what it said.
#[track_caller]
fn wait_serving(
    spawned: Spawned,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Spawned {
    let until = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= until || spawned_exited(&spawned) {
            spawned.signal(Signal::SIGTERM);
            let run = spawned.wait();
            panic!("{what}: not within {timeout:?}\n{}", run.describe());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    spawned
}

/// Exit code 0 after SIGTERM; else fails showing the end of stderr (where a stop that
/// left something unpublished says so), which `Run::describe` cuts off.
#[track_caller]
fn expect_clean_stop(run: &Run) {
    if run.code != Some(0) {
        let mut from = run.stderr.len().saturating_sub(12_000);
        while !run.stderr.is_char_boundary(from) {
            from += 1;
        }
        panic!(
            "expected exit code 0 after SIGTERM\n{}\n--- the end of stderr:\n{}",
            run.describe(),
            &run.stderr[from..]
        );
    }
}

fn spawned_exited(spawned: &Spawned) -> bool {
    // `try_wait` needs `&mut`; a signal 0 tells whether the process is there.
    nix::sys::signal::kill(spawned.pid(), None).is_err()
}

#[test]
fn fifty_tasks_on_chain_are_each_run_and_posted_once_with_their_result_and_hash() {
    let chain = Chain::start(&["--block-time", BLOCK_TIME]);
    let m = Modules::new();
    let kinds: Vec<Kind> = (0..50)
        .map(|i| match i {
            10 => Kind::Trap,
            20 => Kind::Missing,
            30 => Kind::Malformed,
            i if i % 7 == 0 => Kind::Affine,
            i if i % 2 == 0 => Kind::Fib,
            _ => Kind::Add,
        })
        .collect();
    let tasks: Vec<_> = kinds.iter().map(|k| m.task(*k)).collect();
    let (ids, last) = chain.submit(&tasks);
    assert_eq!(ids, (1..=50).collect::<Vec<u64>>());
    // `--once` reads up to the confirmed head at its start.
    chain.wait_confirmed(last, 2);
    let state = chain.dir.path().join("state/ledger.sqlite");
    let run = chain
        .coord(m.path(), &chain.anvil.url())
        .env("COORDINATOR_STATE", &state)
        .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "2")
        .args(["--concurrency", "2"])
        .run();
    // The task whose module is in no mirror failed to fetch: an infrastructure failure.
    run.expect_code(1);
    let line = summary_line(&run);
    assert_eq!(summary_count(&line, "total"), Some(50), "{line}");
    assert_eq!(
        summary_count(&line, "infrastructure_failed"),
        Some(1),
        "{line}"
    );
    let reports = run.by_id();
    assert_eq!(reports.len(), 50, "{}", run.describe());
    let counts = expect_posted_once(&chain, &ids);
    for (id, kind) in ids.iter().zip(&kinds) {
        let report = reports
            .get(&chain.task_id(*id))
            .unwrap_or_else(|| panic!("no report for task {id}\n{}", run.describe()));
        check_report_shape(report, &run);
        check_posted(&chain, *id, *kind, report, &chain.result_of(*id));
    }
    run.expect_work_dir_clean().expect_no_orphans();

    // Again on the same ledger: nothing new, nothing posted.
    let again = chain
        .coord(m.path(), &chain.anvil.url())
        .env("COORDINATOR_STATE", &state)
        .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "2")
        .run();
    again.expect_code(0);
    assert!(
        again.results().is_empty(),
        "the second run published results\n{}",
        again.describe()
    );
    assert_eq!(chain.posted_counts(), counts, "the second run posted");
    // One transaction per task from the executor, none that reverted: its nonce counts
    // every transaction it ever sent.
    let sent = chain.rpc(
        "eth_getTransactionCount",
        json!([format!("{:#x}", chain.executor.address()), "latest"]),
    );
    let sent = u64::from_str_radix(sent.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(
        sent, 50,
        "the executor sent {sent} transactions for 50 tasks"
    );
}

#[test]
fn kill_9_at_random_moments_loses_no_task_and_posts_none_twice() {
    const TASKS: u64 = 30;
    const KILLS: usize = 5;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let chain = Chain::start(&["--block-time", BLOCK_TIME]);
    let m = Modules::new();
    let kinds: Vec<Kind> = (0..TASKS)
        .map(|i| {
            if i.is_multiple_of(3) {
                Kind::Nap
            } else {
                Kind::Add
            }
        })
        .collect();
    let tasks: Vec<_> = kinds.iter().map(|k| m.task(*k)).collect();
    let (ids, last) = chain.submit(&tasks);
    chain.wait_confirmed(last, 2);
    let dir = tempfile::tempdir().unwrap();
    let runs_log = dir.path().join("runs.log");
    let runner = coordinator_bin().with_file_name("runner");
    let wrapper = write_script(
        dir.path(),
        "runner-wrapper",
        &format!(
            "echo \"$TASK_ID\" >> '{}'\nexec '{}' \"$@\"",
            runs_log.display(),
            runner.display()
        ),
    );
    let coord = || {
        let mut c = Coord::bare();
        contract_args(
            &mut c,
            &chain.anvil.url(),
            &chain.registry.to_string(),
            &chain.key_file,
        );
        c.env("COORDINATOR_STATE", dir.path().join("state/ledger.sqlite"))
            .arg("--once")
            .arg("--ipfs-mirror")
            .arg(m.path())
            .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "2")
            .arg("--work-dir")
            .arg(dir.path().join("work"))
            .arg("--runner-path")
            .arg(&wrapper);
        c
    };
    let mut kills = 0;
    let mut attempts = 0;
    while kills < KILLS {
        attempts += 1;
        assert!(
            attempts < KILLS * 4,
            "the coordinator kept finishing before it could be killed"
        );
        let mut spawned = coord().spawn();
        // Half the time at a random moment; half just after a random number of results
        // came out (their posts on their way).
        if rng.random_bool(0.5) {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..1200)));
        } else {
            let results = rng.random_range(1..=3);
            let until = Instant::now() + Duration::from_secs(5);
            let mut seen = 0;
            while seen < results && Instant::now() < until {
                if spawned
                    .lines
                    .recv_timeout(Duration::from_millis(50))
                    .is_ok()
                {
                    seen += 1;
                }
            }
        }
        if spawned.child.try_wait().ok().flatten().is_none() {
            spawned.signal(Signal::SIGKILL);
            kills += 1;
        }
        let run = spawned.wait();
        assert!(
            run.signal == Some(9) || run.code == Some(0),
            "{}",
            run.describe()
        );
    }
    let last = coord().run();
    last.expect_code(0);
    expect_posted_once(&chain, &ids);
    for (id, kind) in ids.iter().zip(&kinds) {
        let on = chain.result_of(*id);
        assert_eq!(
            (on.posted, on.status, on.result.as_str()),
            (true, 0, kind.expected().1.unwrap()),
            "task {id}: {on:?}\n{}",
            last.describe()
        );
    }
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for id in std::fs::read_to_string(&runs_log).unwrap().lines() {
        *started.entry(id.to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = started.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "runners started more than once: {twice:?}"
    );
    assert_eq!(started.len(), ids.len(), "every task's runner started");
}

/// Returns 4242: a module no other task uses, so any trace of it means it ran.
const GHOST_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "ghost") (result i32) i32.const 4242))"#;

#[test]
fn a_task_reorged_away_before_it_was_confirmed_never_runs() {
    // Automine for the set-up, then blocks only when the test mines them.
    let chain = Chain::start(&[]);
    chain.rpc("evm_setAutomine", json!([false]));
    chain.rpc("anvil_mine", json!(["0x5"]));
    let m = Modules::new();
    let ghost = m.mirror.add("ghost.wasm", &wasm_of(GHOST_WAT));
    let spawned = chain
        .coord(m.path(), &chain.anvil.url())
        .serving()
        .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "3")
        .spawn();
    spawned.wait_for_log("reading TaskSubmitted events", Duration::from_secs(30));

    let snapshot = chain.rpc("evm_snapshot", json!([]));
    let before = chain.head();
    chain.submit_unmined(&ghost, "", "ghost");
    chain.rpc("evm_mine", json!([]));
    assert_eq!(
        chain.submitted_count(),
        1,
        "the ghost task is in block {}",
        before + 1
    );
    // Two deep: one short of the confirmations. The coordinator polls every 0.5 s.
    chain.rpc("evm_mine", json!([]));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(chain.rpc("evm_revert", json!([snapshot])), json!(true));
    // Whatever the revert gave back to the pool goes too.
    chain.rpc("anvil_dropAllTransactions", json!([]));
    assert_eq!(
        chain.head(),
        before,
        "the revert took the ghost's block away"
    );
    assert_eq!(chain.submitted_count(), 0);
    // Well past the depth the ghost's block had, on the new branch.
    chain.rpc("anvil_mine", json!(["0x8"]));
    std::thread::sleep(Duration::from_secs(1));

    // Another task takes id 1.
    let (wasm, input, entry) = m.task(Kind::Add);
    chain.submit_unmined(&wasm, &input, &entry);
    let spawned = wait_serving(spawned, Duration::from_secs(60), "task 1 posted", || {
        chain.rpc("evm_mine", json!([]));
        chain.result_of(1).posted
    });
    // Past the post's confirmations, for the coordinator to see it done.
    for _ in 0..5 {
        chain.rpc("evm_mine", json!([]));
        std::thread::sleep(Duration::from_millis(100));
    }
    spawned.signal(Signal::SIGTERM);
    let run = spawned.wait();
    expect_clean_stop(&run);
    let reports = run.by_id();
    let ids: Vec<&String> = reports.keys().collect();
    assert_eq!(ids, [&chain.task_id(1)], "{}", run.describe());
    let report = &reports[&chain.task_id(1)];
    assert_eq!(report["wasm_cid"], json!(wasm), "{}", run.describe());
    check_posted(&chain, 1, Kind::Add, report, &chain.result_of(1));
    expect_posted_once(&chain, &[1]);
    assert!(
        !run.stdout.contains(&ghost) && !run.stderr.contains(&ghost),
        "the reorged-away task's module {ghost} shows in the coordinator's output\n{}",
        run.describe()
    );
}

#[test]
fn tasks_submitted_while_the_rpc_fails_are_each_run_and_posted_once() {
    let chain = Chain::start(&["--block-time", BLOCK_TIME]);
    let proxy = FaultProxy::start(chain.anvil.port);
    let m = Modules::new();
    let spawned = chain
        .coord(m.path(), &proxy.url())
        .serving()
        .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "2")
        .args(["--concurrency", "2"])
        .spawn();
    // Batches of 5 (ids 1-5, 6-10…): add, fib, add, fib, add.
    let kind_of = |id: u64| {
        if ((id - 1) % 5).is_multiple_of(2) {
            Kind::Add
        } else {
            Kind::Fib
        }
    };
    let batch = |n: u64| -> Vec<_> { (1..=n).map(|id| m.task(kind_of(id))).collect() };
    let all_posted = |ids: &[u64]| ids.iter().all(|id| chain.result_of(*id).posted);

    let (mut ids, _) = chain.submit(&batch(5));
    let spawned = wait_serving(
        spawned,
        Duration::from_secs(60),
        "the first 5 tasks posted",
        || all_posted(&ids),
    );
    // A batch on its way in (read, run, posting) when the RPC goes away…
    ids.extend(chain.submit(&batch(5)).0);
    std::thread::sleep(Duration::from_millis(700));
    proxy.set(Fault::Refuse);
    // …and one submitted while it is away…
    ids.extend(chain.submit(&batch(5)).0);
    std::thread::sleep(Duration::from_secs(3));
    // …and while it answers 500.
    proxy.set(Fault::Http500);
    ids.extend(chain.submit(&batch(5)).0);
    std::thread::sleep(Duration::from_secs(3));
    let (_, faulted) = proxy.counts();
    proxy.set(Fault::None);
    assert!(faulted > 0, "the coordinator never met the faults");
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
    let started = Instant::now();
    let spawned = wait_serving(
        spawned,
        Duration::from_secs(120),
        "all 20 tasks posted",
        || all_posted(&ids),
    );
    eprintln!(
        "all posted {:.1?} after the RPC came back ({faulted} requests refused or failed)",
        started.elapsed()
    );
    // Past the last post's confirmations.
    std::thread::sleep(Duration::from_secs(2));
    spawned.signal(Signal::SIGTERM);
    let run = spawned.wait();
    expect_clean_stop(&run);
    let reports = run.by_id();
    assert_eq!(reports.len(), 20, "{}", run.describe());
    expect_posted_once(&chain, &ids);
    for id in &ids {
        let report = &reports[&chain.task_id(*id)];
        check_posted(&chain, *id, kind_of(*id), report, &chain.result_of(*id));
    }
}

/// Regression: alloy's receipt watcher (its heartbeat) starts from the head it first reads
/// once it has something to watch, so a post whose transaction was mined while the head
/// could not be read was never seen mined: the post waited out its 120 s timeout, and a
/// coordinator stopped meanwhile left the result unpublished (exit 1) although it was on
/// chain. Here `eth_blockNumber` fails for 3 s after the post is sent.
#[test]
fn a_post_mined_while_the_head_could_not_be_read_is_done_at_once() {
    let chain = Chain::start(&["--block-time", BLOCK_TIME]);
    let proxy = FaultProxy::start(chain.anvil.port);
    let m = Modules::new();
    let spawned = chain
        .coord(m.path(), &proxy.url())
        .serving()
        .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "2")
        .args(["--grace-period", "15"])
        .spawn();
    spawned.wait_for_log("coordinator started", Duration::from_secs(30));
    proxy.blind_after_send(Duration::from_secs(3));
    let (ids, _) = chain.submit(&[m.task(Kind::Add)]);
    let spawned = wait_serving(spawned, Duration::from_secs(30), "task 1 on chain", || {
        chain.result_of(ids[0]).posted
    });
    // Stopped now, it lets the post finish within the grace period: seconds after the head
    // can be read again, not the post's 120 s timeout.
    let started = Instant::now();
    spawned.signal(Signal::SIGTERM);
    let run = spawned.wait();
    eprintln!(
        "stopped {:.1?} after the post was on chain",
        started.elapsed()
    );
    assert!(proxy.counts().1 > 0, "eth_blockNumber never failed");
    expect_clean_stop(&run);
    expect_posted_once(&chain, &ids);
    check_posted(
        &chain,
        ids[0],
        Kind::Add,
        &run.by_id()[&chain.task_id(ids[0])],
        &chain.result_of(ids[0]),
    );
}

#[test]
fn startup_errors_exit_2_naming_the_problem_and_never_show_the_key() {
    let chain = Chain::start(&[]);
    let mirror = Mirror::new();
    let dir = chain.dir.path();
    let address = chain.registry.to_string();
    let url = chain.anvil.url();
    let run_with =
        |address: &str, key_file: &Path| coord_for(mirror.path(), &url, address, key_file).run();
    let no_secret_shown = |run: &Run, secret: &str| {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "the key file's content shows\n{}",
            run.describe()
        );
        assert!(run.results().is_empty(), "{}", run.describe());
    };

    let missing = dir.join("no-such.key");
    let run = run_with(&address, &missing);
    run.expect_code(2)
        .expect_stderr_mentions(&missing.display().to_string(), "the missing key file");

    // Unreadable: root reads a chmod 000 file anyway, so a directory stands in for it.
    let a_dir = dir.join("key-is-a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let run = run_with(&address, &a_dir);
    run.expect_code(2)
        .expect_stderr_mentions(&a_dir.display().to_string(), "the unreadable key file")
        .expect_stderr_mentions("cannot read the contract key file", "why");
    // A chmod 000 file, unless this process reads it anyway (root): then the directory
    // above stood for it.
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.join("locked.key");
        let secret = std::fs::read_to_string(&chain.key_file).unwrap();
        std::fs::write(&locked, &secret).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&locked).is_err() {
            let run = run_with(&address, &locked);
            run.expect_code(2)
                .expect_stderr_mentions(&locked.display().to_string(), "the unreadable key file");
            no_secret_shown(&run, secret.trim());
        }
    }

    let words = "correct-horse-battery-staple-a-secret-passphrase";
    let not_a_key = dir.join("words.key");
    std::fs::write(&not_a_key, words).unwrap();
    let run = run_with(&address, &not_a_key);
    run.expect_code(2)
        .expect_stderr_mentions(&not_a_key.display().to_string(), "the key file")
        .expect_stderr_mentions("does not hold a private key", "why");
    no_secret_shown(&run, words);

    let stranger = PrivateKeySigner::random();
    let hex = alloy::hex::encode(stranger.to_bytes());
    let stranger_key = dir.join("stranger.key");
    std::fs::write(&stranger_key, format!("0x{hex}\n")).unwrap();
    let run = run_with(&address, &stranger_key);
    run.expect_code(2)
        .expect_stderr_mentions("setExecutor", "what the owner must do")
        .expect_stderr_mentions(&stranger.address().to_string(), "the account");
    no_secret_shown(&run, &hex);

    let nowhere = "0x000000000000000000000000000000000000dEaD";
    let run = run_with(nowhere, &chain.key_file);
    run.expect_code(2)
        .expect_stderr_mentions("no contract is deployed", "why");
    assert!(
        run.stderr.to_lowercase().contains(&nowhere.to_lowercase()),
        "stderr should name the address\n{}",
        run.describe()
    );
    assert!(run.results().is_empty(), "{}", run.describe());
}
