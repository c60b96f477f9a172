//! Test support for the chain tests (`tests/chain.rs`):
//!
//! - [`Anvil`]: a local chain (`.tools/bin/anvil`, installed by `scripts/ensure-chain-tools.sh`)
//!   on a free port of 127.0.0.1, killed (by its pid) when dropped;
//! - [`Chain`]: the `TaskRegistry` deployed there from the committed artifact by anvil's dev
//!   account 0, a fresh funded executor (its key in a file, as the coordinator reads it),
//!   submitting tasks, and reading back what was posted (`resultOf`, the `ResultPosted`
//!   logs): `alloy`'s `sol!` types for the ABI, plain JSON-RPC over a `TcpStream` for the
//!   rest ([`JsonRpc`]);
//! - [`FaultProxy`]: an HTTP/1.1 proxy on 127.0.0.1 in front of anvil that can refuse
//!   connections or answer 500 for a while, or fail `eth_blockNumber` just after a
//!   transaction is sent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use coordinator::chain::TaskRegistry;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{repo_root, Coord};

/// anvil's dev account 0 (unlocked): deploys the registry, funds the executor, submits the
/// tasks.
pub const DEPLOYER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

/// `.tools/bin/<name>`, or a failure saying how to install it: the chain tests never skip.
pub fn chain_tool(name: &str) -> PathBuf {
    let p = repo_root().join(".tools/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: the chain tests need anvil; run scripts/ensure-chain-tools.sh \
         (it installs anvil and cast into .tools/bin)",
        p.display()
    );
    p
}

/// Waits until `f` gives `Some`, or fails naming `what`.
#[track_caller]
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// anvil
// ---------------------------------------------------------------------------------------------

/// A running anvil on 127.0.0.1.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Anvil {
    /// `anvil --host 127.0.0.1 --port 0 --hardfork cancun` plus `extra`; the port is read
    /// from its `Listening on 127.0.0.1:PORT` line (anvil binds port 0 itself: no race).
    pub fn start(extra: &[&str]) -> Anvil {
        let bin = chain_tool("anvil");
        let dir = tempfile::Builder::new().prefix("anvil-").tempdir().unwrap();
        let log = dir.path().join("anvil.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--hardfork", "cancun"])
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let until = Instant::now() + Duration::from_secs(20);
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("Listening on 127.0.0.1:"))
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                break port;
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
        };
        Anvil {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC
// ---------------------------------------------------------------------------------------------

/// JSON-RPC over plain HTTP/1.1 to 127.0.0.1, one request per connection: the test process
/// needs no HTTP client stack (nor its TLS set-up) of its own to drive anvil.
#[derive(Debug, Clone, Copy)]
pub struct JsonRpc {
    addr: SocketAddr,
}

impl JsonRpc {
    pub fn new(port: u16) -> JsonRpc {
        JsonRpc {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The call's `result`, or its `error` (or what went wrong on the way) as text.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(
                format!(
                    "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    self.addr,
                    body.len()
                )
                .as_bytes(),
            )
            .map_err(|e| format!("send: {e}"))?;
        let Some((head, body)) = read_message(&mut stream, true) else {
            return Err("no answer".into());
        };
        let chunked = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
            })
        });
        let body = if chunked { dechunk(&body) } else { body };
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("not JSON ({e}): {head}\n{}", String::from_utf8_lossy(&body)))?;
        match answer.get("error") {
            Some(e) if !e.is_null() => Err(e.to_string()),
            _ => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    #[track_caller]
    pub fn expect(&self, method: &str, params: Value) -> Value {
        self.call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }
}

/// A chunked HTTP body, put back together.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = &body[(end + 2).min(body.len())..];
    }
    out
}

fn quantity(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a quantity: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("not a quantity ({e}): {v}"))
}

fn bytes_of(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or_else(|| panic!("not hex: {v}"));
    alloy::hex::decode(s).unwrap_or_else(|e| panic!("not hex ({e}): {v}"))
}

/// A log's topics and data, as the decoders of `sol!` events take them.
fn topics_and_data(log: &Value) -> (Vec<B256>, Vec<u8>) {
    let topics = log["topics"]
        .as_array()
        .unwrap_or_else(|| panic!("a log without topics: {log}"))
        .iter()
        .map(|t| B256::from_slice(&bytes_of(t)))
        .collect();
    (topics, bytes_of(&log["data"]))
}

// ---------------------------------------------------------------------------------------------
// The registry on anvil
// ---------------------------------------------------------------------------------------------

/// What `resultOf` says about a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChainResult {
    pub posted: bool,
    pub status: u8,
    pub hash: B256,
    pub result: String,
    pub executor: Address,
}

/// anvil with the registry deployed and an executor allowed and funded. Transactions are
/// sent from anvil's unlocked dev account 0 (`eth_sendTransaction`: anvil picks the nonce,
/// so a revert of the chain needs no care).
pub struct Chain {
    pub anvil: Anvil,
    pub client: JsonRpc,
    pub registry: Address,
    pub chain_id: u64,
    pub executor: PrivateKeySigner,
    /// The executor's key, as the coordinator reads it (`--contract-key-file`).
    pub key_file: PathBuf,
    pub dir: TempDir,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("rpc", &self.anvil.url())
            .field("registry", &self.registry)
            .field("executor", &self.executor.address())
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// anvil (with `anvil_args`), the registry deployed from `contracts/TaskRegistry.json`,
    /// a new executor key written to a file, funded with 10 ether and allowed.
    pub fn start(anvil_args: &[&str]) -> Chain {
        let anvil = Anvil::start(anvil_args);
        let client = JsonRpc::new(anvil.port);
        let executor = PrivateKeySigner::random();
        let dir = tempfile::Builder::new().prefix("chain-").tempdir().unwrap();
        let key_file = dir.path().join("executor.key");
        std::fs::write(
            &key_file,
            format!("0x{}\n", alloy::hex::encode(executor.to_bytes())),
        )
        .unwrap();
        let chain_id = quantity(&client.expect("eth_chainId", json!([])));
        let mut chain = Chain {
            anvil,
            client,
            registry: Address::ZERO,
            chain_id,
            executor,
            key_file,
            dir,
        };
        let deploy = chain.send(json!({
            "data": alloy::hex::encode_prefixed(&TaskRegistry::BYTECODE),
        }));
        let receipt = chain.receipt(deploy);
        chain.registry = receipt["contractAddress"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no contract deployed: {receipt}"));
        let ether = U256::from(10u64).pow(U256::from(18u64));
        let fund = chain.send(json!({
            "to": chain.executor.address(),
            "value": format!("{:#x}", U256::from(10u64) * ether),
        }));
        chain.receipt(fund);
        let allow = chain.transact(&TaskRegistry::setExecutorCall {
            executor: chain.executor.address(),
            allowed: true,
        });
        chain.receipt(allow);
        chain
    }

    /// `eth_sendTransaction` from dev account 0 (`tx` without `from`); the hash.
    pub fn send(&self, mut tx: Value) -> B256 {
        tx["from"] = json!(DEPLOYER);
        let hash = self.client.expect("eth_sendTransaction", json!([tx]));
        B256::from_slice(&bytes_of(&hash))
    }

    /// A call of the registry, sent as a transaction from dev account 0.
    pub fn transact<C: SolCall>(&self, call: &C) -> B256 {
        self.send(json!({
            "to": self.registry,
            "data": alloy::hex::encode_prefixed(call.abi_encode()),
        }))
    }

    /// The receipt of `tx` once mined (it must succeed).
    #[track_caller]
    pub fn receipt(&self, tx: B256) -> Value {
        let receipt = wait_until(Duration::from_secs(60), &format!("receipt of {tx}"), || {
            let r = self.client.expect("eth_getTransactionReceipt", json!([tx]));
            (!r.is_null()).then_some(r)
        });
        assert_eq!(receipt["status"], json!("0x1"), "reverted: {receipt}");
        receipt
    }

    /// A view of the registry, at the latest block.
    pub fn view<C: SolCall>(&self, call: &C) -> C::Return {
        let out = self.client.expect(
            "eth_call",
            json!([{
                "to": self.registry,
                "data": alloy::hex::encode_prefixed(call.abi_encode()),
            }, "latest"]),
        );
        C::abi_decode_returns(&bytes_of(&out))
            .unwrap_or_else(|e| panic!("{}: cannot decode {out}: {e}", C::SIGNATURE))
    }

    /// The coordinator's id of on-chain task `id`.
    pub fn task_id(&self, id: u64) -> String {
        coordinator::chain::task_id(self.chain_id, self.registry, U256::from(id))
    }

    /// A JSON-RPC call of anvil's own (`evm_mine`, `evm_snapshot`…).
    #[track_caller]
    pub fn rpc(&self, method: &'static str, params: Value) -> Value {
        self.client.expect(method, params)
    }

    pub fn head(&self) -> u64 {
        quantity(&self.client.expect("eth_blockNumber", json!([])))
    }

    fn submit_call(wasm: &str, input: &str, entry: &str) -> TaskRegistry::submitTaskCall {
        TaskRegistry::submitTaskCall {
            wasmCid: wasm.to_owned(),
            inputCid: input.to_owned(),
            entry: entry.to_owned(),
        }
    }

    /// Submits the tasks (`(wasm_cid, input_cid, entry)`) all at once and waits for their
    /// receipts; returns their on-chain ids and the last block holding one.
    pub fn submit(&self, tasks: &[(String, String, String)]) -> (Vec<u64>, u64) {
        let sent: Vec<B256> = tasks
            .iter()
            .map(|(wasm, input, entry)| self.transact(&Self::submit_call(wasm, input, entry)))
            .collect();
        let mut ids = Vec::new();
        let mut last = 0;
        for tx in sent {
            let receipt = self.receipt(tx);
            last = last.max(quantity(&receipt["blockNumber"]));
            let id = receipt["logs"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|l| {
                    let (topics, data) = topics_and_data(l);
                    TaskRegistry::TaskSubmitted::decode_raw_log(topics, &data).ok()
                })
                .unwrap_or_else(|| panic!("no TaskSubmitted log: {receipt}"))
                .taskId;
            ids.push(u64::try_from(id).unwrap());
        }
        (ids, last)
    }

    /// Sends `submitTask` without waiting for it to be mined (anvil without mining).
    pub fn submit_unmined(&self, wasm: &str, input: &str, entry: &str) -> B256 {
        self.transact(&Self::submit_call(wasm, input, entry))
    }

    /// Waits until `block` has `confirmations` blocks on top of it: what a coordinator
    /// started now with that many `contract_confirmations` reads (it reads blocks up to
    /// `head - confirmations`: one more block of margin than the `head + 1 - confirmations`
    /// a block counting itself as its first confirmation would need).
    pub fn wait_confirmed(&self, block: u64, confirmations: u64) {
        wait_until(
            Duration::from_secs(60),
            &format!("block {block} with {confirmations} blocks on top"),
            || (self.head() >= block + confirmations).then_some(()),
        );
    }

    pub fn result_of(&self, id: u64) -> OnChainResult {
        let r = self.view(&TaskRegistry::resultOfCall {
            taskId: U256::from(id),
        });
        OnChainResult {
            posted: r.posted,
            status: r.status,
            hash: r.resultHash,
            result: r.result,
            executor: r.executor,
        }
    }

    /// The registry's logs of the event with this signature hash, over the whole chain.
    fn logs(&self, signature: B256) -> Vec<Value> {
        let logs = self.client.expect(
            "eth_getLogs",
            json!([{
                "address": self.registry,
                "topics": [signature],
                "fromBlock": "0x0",
                "toBlock": "latest",
            }]),
        );
        logs.as_array().cloned().unwrap_or_default()
    }

    /// How many `ResultPosted` logs each on-chain task id has, over the whole chain.
    pub fn posted_counts(&self) -> BTreeMap<u64, usize> {
        let mut counts = BTreeMap::new();
        for log in self.logs(TaskRegistry::ResultPosted::SIGNATURE_HASH) {
            let (topics, data) = topics_and_data(&log);
            let e = TaskRegistry::ResultPosted::decode_raw_log(topics, &data).unwrap();
            *counts.entry(u64::try_from(e.taskId).unwrap()).or_default() += 1;
        }
        counts
    }

    /// How many `TaskSubmitted` logs the chain holds now.
    pub fn submitted_count(&self) -> usize {
        self.logs(TaskRegistry::TaskSubmitted::SIGNATURE_HASH).len()
    }

    /// A coordinator on the local backend with this mirror, posting to the registry through
    /// `rpc` (anvil itself, or a proxy), with its own state unless the caller sets one.
    pub fn coord(&self, mirror: &Path, rpc: &str) -> Coord {
        coord_for(mirror, rpc, &self.registry.to_string(), &self.key_file)
    }
}

/// A coordinator on the local backend with this mirror, the contract at `address` on the
/// chain at `rpc`, and this key file; `--once`, its own state and work dir.
pub fn coord_for(mirror: &Path, rpc: &str, address: &str, key_file: &Path) -> Coord {
    let mut c = Coord::with_mirror(mirror);
    contract_args(&mut c, rpc, address, key_file);
    c
}

/// `--backend local` and the contract's flags.
pub fn contract_args<'c>(
    c: &'c mut Coord,
    rpc: &str,
    address: &str,
    key_file: &Path,
) -> &'c mut Coord {
    c.args(["--backend", "local"])
        .args(["--contract-address", address])
        .args(["--contract-rpc", rpc])
        .arg("--contract-key-file")
        .arg(key_file)
}

// ---------------------------------------------------------------------------------------------
// A faulty proxy
// ---------------------------------------------------------------------------------------------

/// What the proxy does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards it to anvil.
    None,
    /// Listens no more (connections are refused) and drops the requests it has.
    Refuse,
    /// Answers `500 Internal Server Error`.
    Http500,
}

#[derive(Debug)]
struct ProxyShared {
    upstream: SocketAddr,
    fault: Mutex<Fault>,
    /// After each `eth_sendRawTransaction` forwarded, `eth_blockNumber` fails for this long.
    blind_after_send: Mutex<Option<Duration>>,
    blind_until: Mutex<Option<Instant>>,
    stop: AtomicBool,
    forwarded: AtomicUsize,
    faulted: AtomicUsize,
}

impl ProxyShared {
    fn fault(&self) -> Fault {
        *self
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One JSON-RPC request per connection (answered with `Connection: close`), forwarded to
/// anvil on a fresh connection, or refused or failed as [`Fault`] says.
#[derive(Debug)]
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(ProxyShared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            fault: Mutex::new(Fault::None),
            blind_after_send: Mutex::new(None),
            blind_until: Mutex::new(None),
            stop: AtomicBool::new(false),
            forwarded: AtomicUsize::new(0),
            faulted: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !s.stop.load(Ordering::SeqCst) {
                if s.fault() == Fault::Refuse {
                    // Closed: a connect is refused.
                    listener = None;
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let Some(l) = &listener else {
                    // std sets SO_REUSEADDR: the port is free again at once.
                    match TcpListener::bind(("127.0.0.1", port)) {
                        Ok(l) => {
                            l.set_nonblocking(true).unwrap();
                            listener = Some(l);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                match l.accept() {
                    Ok((stream, _)) => {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || proxy_one(&s, stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            shared,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        *self
            .shared
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fault;
    }

    /// From now on, each `eth_sendRawTransaction` forwarded makes `eth_blockNumber` answer
    /// 500 for `blind` (the head cannot be read while the transaction is mined).
    pub fn blind_after_send(&self, blind: Duration) {
        *lock(&self.shared.blind_after_send) = Some(blind);
    }

    /// Requests forwarded to anvil, and requests refused or failed.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.shared.forwarded.load(Ordering::SeqCst),
            self.shared.faulted.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP message head and the `Content-Length` body after it: `(head, body)`,
/// `None` when the peer closed first.
fn read_message(stream: &mut TcpStream, to_eof: bool) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    if to_eof {
        let _ = stream.read_to_end(&mut body);
    } else {
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while body.len() < len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    }
    Some((head, body))
}

/// `head` with its `Connection` header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut out: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        })
        .collect();
    out.push("Connection: close");
    out.join("\r\n") + "\r\n\r\n"
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The JSON-RPC methods a request body calls (one, or a batch's).
fn methods_of(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let calls = match v {
        Value::Array(calls) => calls,
        one => vec![one],
    };
    calls
        .iter()
        .filter_map(|c| c["method"].as_str().map(str::to_owned))
        .collect()
}

fn proxy_one(s: &ProxyShared, mut client: TcpStream) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((head, body)) = read_message(&mut client, false) else {
        return;
    };
    let methods = methods_of(&body);
    let blind = lock(&s.blind_until).is_some_and(|until| Instant::now() < until)
        && methods.iter().any(|m| m == "eth_blockNumber");
    let fault = match s.fault() {
        Fault::None if blind => Fault::Http500,
        f => f,
    };
    match fault {
        Fault::Refuse => {
            s.faulted.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
        }
        Fault::Http500 => {
            s.faulted.fetch_add(1, Ordering::SeqCst);
            let text = "fault injected by the test's proxy\n";
            let _ = client.write_all(
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            );
            let _ = client.shutdown(Shutdown::Write);
        }
        Fault::None => {
            let Some(response) = upstream(s, &head, &body) else {
                return;
            };
            if methods.iter().any(|m| m == "eth_sendRawTransaction") {
                // The transaction is in anvil's pool: from now on it is mined blind.
                if let Some(d) = *lock(&s.blind_after_send) {
                    *lock(&s.blind_until) = Some(Instant::now() + d);
                }
            }
            let _ = client.write_all(&response);
            let _ = client.shutdown(Shutdown::Write);
        }
    }
}

/// Sends the request to anvil on a fresh connection; its answer, with `Connection: close`.
fn upstream(s: &ProxyShared, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect_timeout(&s.upstream, Duration::from_secs(5)).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut request = closing(head).into_bytes();
    request.extend_from_slice(body);
    up.write_all(&request).ok()?;
    let (head, body) = read_message(&mut up, true)?;
    s.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut response = closing(&head).into_bytes();
    response.extend_from_slice(&body);
    Some(response)
}
