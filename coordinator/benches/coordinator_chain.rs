//! The coordinator against a chain: tasks per second from `submitTask` to `ResultPosted`,
//! and the JSON-RPC calls the coordinator makes per task.
//!
//! Each run starts anvil (`.tools/bin/anvil`, auto-mining: a block for each transaction),
//! deploys `contracts/TaskRegistry.json`, funds a new executor key and allows it
//! (`setExecutor`), and starts the release coordinator (serving, local backend, the
//! sample mirror `host/wasm`, concurrency 2, `contract_confirmations` 1) with its
//! `contract_rpc` pointing at a counting HTTP proxy in this process, which forwards every
//! request to anvil and counts the JSON-RPC calls by method (a batch counts each call).
//! Then 200 `add(2, 3)` tasks are submitted straight to anvil, one after the other, each
//! send awaited (nonce, gas and fees filled in beforehand: one `eth_sendRawTransaction`
//! each), while `ResultPosted` logs are polled every 50 ms, also straight from anvil. A
//! task's latency is from just before its send to the poll that first sees its
//! `ResultPosted`; throughput is 200 / (first send → last `ResultPosted` seen). The calls
//! are counted from the first send until the coordinator, having logged all 200 posts, has
//! made no call but its polling (`eth_blockNumber`, `eth_getLogs`) for 1 s; those of its
//! start-up, and those of 5 s idle afterwards, are counted apart. Every `resultOf` is
//! checked (`[5]`, status ok). Then 10 more tasks are sent one at a time, each once the
//! last one's result is seen (at phases 0, 50, … 450 ms of the coordinator's 500 ms
//! polling), for the latency of a task alone. Last, the coordinator is stopped with
//! SIGTERM (it must exit 0) and anvil killed. Three runs, each on a fresh chain; prints
//! Markdown tables.
//!
//! `scripts/ensure-chain-tools.sh && cargo build --release --workspace &&
//! cargo bench -p coordinator --bench coordinator_chain` (`COORDINATOR_BIN=path` picks
//! another coordinator; `runner` and `fetcher` are taken from beside it). Without
//! `--bench` (e.g. `cargo test --all-targets`) it prints "skipped".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use coordinator::chain::TaskRegistry;
use serde_json::Value;

mod common;
use common::{clean, release_dir, repo_root};

const TASKS: usize = 200;
const RUNS: usize = 3;
const ADD_WASM: &str = "QmYyMt9rdrgr376CxpAoAGiT6xUo3bafoq4rzBxpQ2aScu";
const ADD_INPUT: &str = "QmR7FbyEjeVvsctqBYCX16Snhogs6MYF3fssLF1tTw9dDN";
/// anvil's dev account 0: deploys the registry, funds the executor, submits the tasks.
const DEPLOYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// How often the bench looks for new `ResultPosted` logs: the resolution of a latency.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// How long the idle coordinator's calls are counted after the run.
const IDLE: Duration = Duration::from_secs(5);
/// How long a run may take before it fails.
const DEADLINE: Duration = Duration::from_secs(120);
/// Tasks sent one at a time after the others, for the latency of a task alone.
const SINGLES: usize = 10;
/// The calls the coordinator makes while it waits for tasks: its source asking for the
/// latest block (and reading the logs of a new one), its clients' block pollers.
const POLLING: &[&str] = &["eth_blockNumber", "eth_getLogs"];
/// How long the coordinator must make no other call to count as idle.
const QUIET: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// anvil and the registry
// ---------------------------------------------------------------------------------------------

/// `.tools/bin/<name>`, or a failure saying how to install it.
fn chain_tool(name: &str) -> PathBuf {
    let p = repo_root().join(".tools/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: this bench needs anvil; run scripts/ensure-chain-tools.sh \
         (it installs anvil and cast into .tools/bin)",
        p.display()
    );
    p
}

/// A running anvil on 127.0.0.1, killed (by its pid) when dropped.
struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    /// `anvil --port 0`: it binds a free port itself and says which.
    fn start(dir: &std::path::Path) -> Anvil {
        let log = dir.join("anvil.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(chain_tool("anvil"))
            .args(["--host", "127.0.0.1", "--port", "0", "--hardfork", "cancun"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("Listening on 127.0.0.1:"))
                .and_then(|p| p.trim().parse().ok())
            {
                return Anvil { child, port };
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("anvil exited at start ({st}):\n{text}");
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("anvil did not listen within 20 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// anvil with the registry deployed, and a funded executor allowed to post.
struct Chain {
    anvil: Anvil,
    /// Signs as the deployer (the registry's owner, and the tasks' submitter).
    provider: DynProvider,
    deployer: Address,
    registry: Address,
    key_file: PathBuf,
}

impl Chain {
    async fn start(dir: &std::path::Path) -> Chain {
        let anvil = Anvil::start(dir);
        let signer: PrivateKeySigner = DEPLOYER_KEY.parse().unwrap();
        let deployer = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(signer)
            .connect_http(anvil.url().parse().unwrap())
            .erased();
        let executor = PrivateKeySigner::random();
        let key_file = dir.join("executor.key");
        std::fs::write(
            &key_file,
            format!("0x{}\n", alloy::hex::encode(executor.to_bytes())),
        )
        .unwrap();
        let registry = TaskRegistry::deploy(provider.clone())
            .await
            .unwrap_or_else(|e| panic!("deploying the registry: {e}"));
        let fund = TransactionRequest::default()
            .with_to(executor.address())
            .with_value(U256::from(10u64).pow(U256::from(19u64)));
        let receipt = provider
            .send_transaction(fund)
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status(), "funding the executor failed");
        let receipt = registry
            .setExecutor(executor.address(), true)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status(), "setExecutor reverted");
        Chain {
            registry: *registry.address(),
            anvil,
            provider,
            deployer,
            key_file,
        }
    }

    fn contract(&self) -> TaskRegistry::TaskRegistryInstance<DynProvider> {
        TaskRegistry::new(self.registry, self.provider.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// The counting proxy
// ---------------------------------------------------------------------------------------------

/// JSON-RPC calls by method (and HTTP requests), as the proxy saw them.
#[derive(Debug, Clone, Default)]
struct Calls {
    requests: usize,
    /// Requests the proxy could not relay (anvil refused or closed): none, in a good run.
    failed: usize,
    by_method: BTreeMap<String, usize>,
    /// The last call other than [`POLLING`].
    last_work: Option<Instant>,
}

impl Calls {
    fn total(&self) -> usize {
        self.by_method.values().sum()
    }

    /// What was counted since `earlier`.
    fn since(&self, earlier: &Calls) -> Calls {
        Calls {
            requests: self.requests - earlier.requests,
            failed: self.failed - earlier.failed,
            last_work: self.last_work,
            by_method: self
                .by_method
                .iter()
                .map(|(m, n)| {
                    (
                        m.clone(),
                        n - earlier.by_method.get(m).copied().unwrap_or(0),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of anvil, counting every call it forwards. The
/// coordinator's connections are kept alive, as with anvil itself; each request goes to
/// anvil on a connection of its own (`Connection: close`), so that a connection anvil
/// closed while idle never loses a request.
struct CountingProxy {
    port: u16,
    calls: Arc<Mutex<Calls>>,
    stop: Arc<AtomicBool>,
    accepter: Option<std::thread::JoinHandle<()>>,
}

impl CountingProxy {
    fn start(upstream_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let calls = Arc::new(Mutex::new(Calls::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (calls.clone(), stop.clone());
        let accepter = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let c = c.clone();
                std::thread::spawn(move || relay(client, upstream, &c));
            }
        });
        CountingProxy {
            port,
            calls,
            stop,
            accepter: Some(accepter),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn snapshot(&self) -> Calls {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until the coordinator has made no call but [`POLLING`] for [`QUIET`].
    fn wait_quiet(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        while self
            .snapshot()
            .last_work
            .is_some_and(|t| t.elapsed() < QUIET)
        {
            assert!(Instant::now() < until, "the coordinator never went quiet");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accepter.take() {
            let _ = t.join();
        }
    }
}

/// Forwards the requests of one client connection to anvil, one after the other, until
/// the client closes; the connection is closed when a request cannot be relayed.
fn relay(client: TcpStream, upstream: SocketAddr, calls: &Mutex<Calls>) {
    let _ = client.set_nodelay(true);
    let mut to_client = client.try_clone().unwrap();
    let mut from_client = BufReader::new(client);
    while let Some((head, body)) = read_message(&mut from_client) {
        {
            let mut c = calls.lock().unwrap();
            c.requests += 1;
            for m in methods(&body) {
                if !POLLING.contains(&m.as_str()) {
                    c.last_work = Some(Instant::now());
                }
                *c.by_method.entry(m).or_default() += 1;
            }
        }
        let Some((resp_head, resp_body)) = forward(upstream, &head, &body) else {
            calls.lock().unwrap().failed += 1;
            return;
        };
        let keep: Vec<String> = resp_head
            .into_iter()
            .filter(|l| !is_header(l, "connection"))
            .collect();
        if to_client.write_all(&message(&keep, &resp_body)).is_err() {
            return;
        }
    }
}

/// One request to anvil on a new connection; its answer.
fn forward(upstream: SocketAddr, head: &[String], body: &[u8]) -> Option<(Vec<String>, Vec<u8>)> {
    let up = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)).ok()?;
    let _ = up.set_nodelay(true);
    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head: Vec<String> = head
        .iter()
        .filter(|l| !is_header(l, "connection"))
        .cloned()
        .collect();
    head.push("Connection: close".into());
    (&up).write_all(&message(&head, body)).ok()?;
    read_message(&mut BufReader::new(up))
}

fn is_header(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
}

/// One HTTP/1.1 message: its head's lines, and its body (`Content-Length`, or chunked and
/// decoded); `None` when the peer closed or sent something else.
fn read_message(r: &mut impl BufRead) -> Option<(Vec<String>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        head.push(line.to_owned());
    }
    let header = |name: &str| {
        head.iter().skip(1).find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            // The chunk and its CRLF (the last, empty chunk: the final CRLF; no trailers).
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
    } else {
        let len: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some((head, body))
}

/// `head` and `body` as one message with a `Content-Length` (a chunked body, decoded).
fn message(head: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for line in head
        .iter()
        .filter(|l| !is_header(l, "content-length") && !is_header(l, "transfer-encoding"))
    {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The JSON-RPC methods a request body calls (each call of a batch); an `eth_call` or
/// `eth_estimateGas` is named with the registry function it calls.
fn methods(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return vec!["(not JSON)".into()];
    };
    let calls = match v {
        Value::Array(batch) => batch,
        one => vec![one],
    };
    calls
        .iter()
        .map(|c| {
            let method = c["method"].as_str().unwrap_or("(no method)");
            let tx = &c["params"][0];
            let input = tx["input"].as_str().or_else(|| tx["data"].as_str());
            match input.and_then(|i| i.get(..10)).map(function_of) {
                Some(f) if method == "eth_call" || method == "eth_estimateGas" => {
                    format!("{method} {f}")
                }
                _ => method.to_owned(),
            }
        })
        .collect()
}

/// The registry function with this selector (`0x` and 8 hex digits).
fn function_of(selector: &str) -> String {
    let known = [
        (TaskRegistry::resultOfCall::SELECTOR, "resultOf"),
        (TaskRegistry::postResultCall::SELECTOR, "postResult"),
        (TaskRegistry::isExecutorCall::SELECTOR, "isExecutor"),
        (TaskRegistry::submitTaskCall::SELECTOR, "submitTask"),
    ];
    known
        .iter()
        .find(|(s, _)| format!("0x{}", alloy::hex::encode(s)) == selector.to_lowercase())
        .map_or_else(|| selector.to_owned(), |(_, name)| (*name).to_owned())
}

// ---------------------------------------------------------------------------------------------
// The coordinator
// ---------------------------------------------------------------------------------------------

/// The release coordinator, serving, its log read as it comes.
struct Coordinator {
    child: Child,
    /// Its log so far (for a failure's message).
    log: Arc<Mutex<Vec<String>>>,
    /// `result posted on chain` lines so far.
    posted: Arc<AtomicUsize>,
}

impl Coordinator {
    fn start(dir: &std::path::Path, chain: &Chain, rpc: &str) -> Coordinator {
        let bin = std::env::var_os("COORDINATOR_BIN")
            .filter(|v| !v.is_empty())
            .map_or_else(|| release_dir().join("coordinator"), PathBuf::from);
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build --release --workspace` first (or set \
             COORDINATOR_BIN; runner and fetcher must sit beside it)",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        clean(&mut cmd)
            .env("COORDINATOR_CONTRACT_CONFIRMATIONS", "1")
            .args([
                "--backend",
                "local",
                "--listen",
                "off",
                "--concurrency",
                "2",
            ])
            .arg("--ipfs-mirror")
            .arg(repo_root().join("host/wasm"))
            .arg("--state")
            .arg(dir.join("ledger.sqlite"))
            .args(["--contract-address", &chain.registry.to_string()])
            .args(["--contract-rpc", rpc])
            .arg("--contract-key-file")
            .arg(&chain.key_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let posted = Arc::new(AtomicUsize::new(0));
        let (l, p) = (log.clone(), posted.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("result posted on chain") {
                    p.fetch_add(1, Ordering::SeqCst);
                }
                l.lock().unwrap().push(line);
            }
        });
        Coordinator { child, log, posted }
    }

    fn logged(&self, what: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(what))
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until `done` holds, or fails with the log.
    fn wait_for(&mut self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let until = Instant::now() + timeout;
        while !done(self) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "the coordinator exited ({st}) before {what}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < until,
                "{what}: not within {timeout:?}; the coordinator's log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; it must exit 0.
    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the coordinator exited {status} after SIGTERM:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        // Only if a failure left it running: `stop` has waited for it already.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

struct Measured {
    /// Sending the 200 `submitTask`s.
    submitting: Duration,
    /// First send → last `ResultPosted` seen.
    elapsed: Duration,
    /// Each task's send → its `ResultPosted` seen, sorted.
    latencies: Vec<Duration>,
    /// The same for [`SINGLES`] tasks sent one at a time, each after the last one's result.
    single_latencies: Vec<Duration>,
    startup: Calls,
    run: Calls,
    idle: Calls,
}

/// Sends `count` tasks one after the other (each send awaited: anvil mines it at once),
/// with the nonce, gas and fees filled in here; the instant before each send, and the
/// transaction.
async fn submit(chain: &Chain, count: usize) -> Vec<(Instant, TxHash)> {
    let contract = chain.contract();
    let call = || contract.submitTask(ADD_WASM.into(), ADD_INPUT.into(), String::new());
    let gas = call().estimate_gas().await.unwrap() * 2;
    let fees = chain.provider.estimate_eip1559_fees().await.unwrap();
    let first = chain
        .provider
        .get_transaction_count(chain.deployer)
        .await
        .unwrap();
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let at = Instant::now();
        let pending = call()
            .nonce(first + i as u64)
            .gas(gas)
            .max_fee_per_gas(fees.max_fee_per_gas * 2)
            .max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .send()
            .await
            .unwrap_or_else(|e| panic!("submitTask {i}: {e}"));
        sent.push((at, *pending.tx_hash()));
    }
    sent
}

/// Polls anvil for `ResultPosted` logs from `from_block` on, every [`WATCH_EVERY`], until
/// tasks `ids` all have one (or [`DEADLINE`] has passed); when each was first seen.
async fn watch(chain: &Chain, from_block: u64, ids: RangeInclusive<u64>) -> BTreeMap<u64, Instant> {
    let mut seen = BTreeMap::new();
    let mut next = from_block;
    let until = Instant::now() + DEADLINE;
    while !ids.clone().all(|id| seen.contains_key(&id)) && Instant::now() < until {
        tokio::time::sleep(WATCH_EVERY).await;
        let head = chain.provider.get_block_number().await.unwrap();
        if head < next {
            continue;
        }
        let filter = Filter::new()
            .address(chain.registry)
            .event_signature(TaskRegistry::ResultPosted::SIGNATURE_HASH)
            .from_block(next)
            .to_block(head);
        let logs = chain.provider.get_logs(&filter).await.unwrap();
        let now = Instant::now();
        for log in logs {
            let e = TaskRegistry::ResultPosted::decode_log_data(log.data()).unwrap();
            seen.entry(u64::try_from(e.taskId).unwrap()).or_insert(now);
        }
        next = head + 1;
    }
    seen
}

/// Fails, with the end of the coordinator's log, unless every task of `ids` was seen.
fn check_seen(
    seen: &BTreeMap<u64, Instant>,
    ids: RangeInclusive<u64>,
    coordinator: &Coordinator,
    calls: &Calls,
) {
    let missing: Vec<u64> = ids.filter(|id| !seen.contains_key(id)).collect();
    if missing.is_empty() {
        return;
    }
    let log = coordinator.log_text();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    panic!(
        "{} results not posted within {DEADLINE:?} (ids {:?}…); the proxy: {calls:?}; the \
         end of the coordinator's log:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// Checks that the i-th task sent got on-chain id `first_id + i` (one sender, each send
/// mined before the next) and that its result is `add(2, 3)`'s.
async fn check_results(chain: &Chain, sent: &[(Instant, TxHash)], first_id: u64) {
    let contract = chain.contract();
    for (i, (_, tx)) in sent.iter().enumerate() {
        let receipt = chain
            .provider
            .get_transaction_receipt(*tx)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no receipt for submitTask {tx}"));
        let id = receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| TaskRegistry::TaskSubmitted::decode_log_data(l.data()).ok())
            .expect("a TaskSubmitted log")
            .taskId;
        assert_eq!(
            id,
            U256::from(first_id + i as u64),
            "the id of submitTask {tx}"
        );
        let r = contract.resultOf(id).call().await.unwrap();
        assert!(
            r.posted && r.status == 0 && r.result == "[5]",
            "task {id}: {r:?}"
        );
    }
}

fn run_once(run: usize) -> Measured {
    let dir = tempfile::Builder::new()
        .prefix("coord-bench-chain-")
        .tempdir()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let chain = rt.block_on(Chain::start(dir.path()));
    let proxy = CountingProxy::start(chain.anvil.port);
    let mut coordinator = Coordinator::start(dir.path(), &chain, &proxy.url());
    coordinator.wait_for(
        "reading TaskSubmitted events",
        Duration::from_secs(30),
        |c| c.logged("reading TaskSubmitted events") && c.logged("posting results on chain"),
    );
    proxy.wait_quiet();
    let before = proxy.snapshot();
    let from_block = rt.block_on(chain.provider.get_block_number()).unwrap() + 1;
    let all = 1..=TASKS as u64;

    let began = Instant::now();
    let ((sent, submitted), seen) = rt.block_on(async {
        tokio::join!(
            async {
                let sent = submit(&chain, TASKS).await;
                (sent, Instant::now())
            },
            watch(&chain, from_block, all.clone())
        )
    });
    check_seen(
        &seen,
        all.clone(),
        &coordinator,
        &proxy.snapshot().since(&before),
    );
    coordinator.wait_for(
        "the coordinator logging every post",
        Duration::from_secs(60),
        |c| c.posted.load(Ordering::SeqCst) >= TASKS,
    );
    // Its heartbeat reads the blocks it has not seen yet, after the last receipt too.
    proxy.wait_quiet();
    let after = proxy.snapshot();
    std::thread::sleep(IDLE);
    let idle = proxy.snapshot().since(&after);
    rt.block_on(check_results(&chain, &sent, 1));

    // One task at a time, sent at phases 0, 50, … ms after the last result was seen (the
    // coordinator polls every 500 ms).
    let mut single_latencies = Vec::with_capacity(SINGLES);
    for k in 0..SINGLES {
        std::thread::sleep(WATCH_EVERY * u32::try_from(k).unwrap());
        let id = (TASKS + k + 1) as u64;
        let from_block = rt.block_on(chain.provider.get_block_number()).unwrap() + 1;
        let (sent, seen) = rt.block_on(async {
            tokio::join!(submit(&chain, 1), watch(&chain, from_block, id..=id))
        });
        check_seen(
            &seen,
            id..=id,
            &coordinator,
            &proxy.snapshot().since(&after),
        );
        rt.block_on(check_results(&chain, &sent, id));
        single_latencies.push(seen[&id] - sent[0].0);
    }
    single_latencies.sort();

    coordinator.stop();
    drop(proxy);
    drop(chain);

    let last = *seen.values().max().unwrap();
    let mut latencies: Vec<Duration> = seen
        .iter()
        .map(|(id, at)| *at - sent[usize::try_from(*id).unwrap() - 1].0)
        .collect();
    latencies.sort();
    let m = Measured {
        submitting: submitted - began,
        elapsed: last - began,
        latencies,
        single_latencies,
        run: after.since(&before),
        startup: before,
        idle,
    };
    eprintln!(
        "coordinator_chain: run {run}: {TASKS} tasks in {:.2} s ({:.1} tasks/s), {} RPC calls, \
         {} not relayed",
        m.elapsed.as_secs_f64(),
        TASKS as f64 / m.elapsed.as_secs_f64(),
        m.run.total(),
        m.startup.failed + m.run.failed + m.idle.failed
    );
    m
}

/// alloy's HTTP client (reqwest with `rustls-no-provider`, see the workspace Cargo.toml)
/// panics unless rustls has a process-wide crypto provider, even for plain `http://`: ring,
/// as the coordinator installs it.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------------
// The tables
// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap()
}

/// The nearest-rank percentile `p` of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("coordinator_chain: skipped (run it with `cargo bench`)");
        return;
    }
    chain_tool("anvil");
    install_crypto_provider();
    let runs: Vec<Measured> = (1..=RUNS).map(run_once).collect();

    println!();
    println!(
        "{TASKS} `add(2, 3)` tasks submitted to the TaskRegistry on anvil (auto-mining), run by \
         the coordinator (local backend, concurrency 2, confirmations 1) and posted back:"
    );
    println!();
    println!("| run | submitting {TASKS} (s) | first submit → last ResultPosted (s) | tasks/s | latency mean (ms) | p50 (ms) | p95 (ms) | max (ms) | RPC calls per task | one task alone: latency mean (min–max) (ms) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, m) in runs.iter().enumerate() {
        println!(
            "| {} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} ({:.0}–{:.0}) |",
            i + 1,
            m.submitting.as_secs_f64(),
            m.elapsed.as_secs_f64(),
            TASKS as f64 / m.elapsed.as_secs_f64(),
            ms(mean(&m.latencies)),
            ms(percentile(&m.latencies, 50.0)),
            ms(percentile(&m.latencies, 95.0)),
            ms(*m.latencies.last().unwrap()),
            m.run.total() as f64 / TASKS as f64,
            ms(mean(&m.single_latencies)),
            ms(m.single_latencies[0]),
            ms(*m.single_latencies.last().unwrap()),
        );
    }

    // Mean over the runs: per task in the run, per start-up, per second idle.
    let n = RUNS as f64;
    let mut methods: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for m in &runs {
        for (col, calls, per) in [
            (0, &m.run, TASKS as f64),
            (1, &m.startup, 1.0),
            (2, &m.idle, IDLE.as_secs_f64()),
        ] {
            for (method, count) in &calls.by_method {
                methods.entry(method.clone()).or_default()[col] += *count as f64 / per / n;
            }
        }
    }
    let mut rows: Vec<(String, [f64; 3])> = methods.into_iter().collect();
    rows.sort_by(|a, b| b.1[0].total_cmp(&a.1[0]).then(b.1[1].total_cmp(&a.1[1])));
    let sum = |col: usize| rows.iter().map(|(_, v)| v[col]).sum::<f64>();
    let requests = |f: fn(&Measured) -> (usize, f64)| {
        runs.iter()
            .map(|m| {
                let (r, per) = f(m);
                r as f64 / per
            })
            .sum::<f64>()
            / n
    };
    println!();
    println!(
        "The coordinator's JSON-RPC calls, as the proxy counted them (mean of {RUNS} runs): \
         per task, from the first submission until it is idle again after the last post; at \
         start-up; per second idle:"
    );
    println!();
    println!("| JSON-RPC call | per task | at start-up | idle, per second |");
    println!("| --- | ---: | ---: | ---: |");
    for (method, v) in &rows {
        println!("| `{method}` | {:.2} | {:.1} | {:.1} |", v[0], v[1], v[2]);
    }
    println!("| all | {:.2} | {:.1} | {:.1} |", sum(0), sum(1), sum(2));
    println!(
        "| (HTTP requests) | {:.2} | {:.1} | {:.1} |",
        requests(|m| (m.run.requests, TASKS as f64)),
        requests(|m| (m.startup.requests, 1.0)),
        requests(|m| (m.idle.requests, IDLE.as_secs_f64())),
    );
}
