//! The chain: the `TaskRegistry` contract (`contracts/TaskRegistry.sol`) as a task source
//! ([`source::ContractSource`]) and a result sink ([`sink::ContractSink`]), through `alloy`
//! (its `sol!` bindings over the committed artifact, an HTTP provider, a local signer).
//!
//! What the two share is defined here once: the task id of an on-chain task, the status
//! codes, the `result` text and the `resultHash` that `postResult` carries, and the key
//! file.
//!
//! - **Task id**: `evm:<chain id>:<contract address, lowercase hex>:<on-chain task id>`,
//!   e.g. `evm:31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:7`: unique per chain,
//!   contract and on-chain id, so two registries (or two chains) never share an id.
//! - **`resultHash`**: the sha256 of the runner's whole result object (the report's
//!   `result`) in RFC 8785 canonical JSON. Anyone holding the published report recomputes
//!   it: `jq -c .result report.json`, canonicalized (e.g. Python's `rfc8785` package, or
//!   `serde_json_canonicalizer`), then `sha256sum`. A task that failed before the runner
//!   answered (fetch_failed, a refused task) has no result object: its hash is zero.
//! - **`result`**: the JSON text of the result values (`[144]`) when the task ran `ok`,
//!   else the error; cut to `contract_max_result_bytes` on a UTF-8 boundary.

pub mod sink;
pub mod source;

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
pub use alloy::transports::http::reqwest::Url;
use runner::Status;

use crate::task::{ReportStatus, TaskReport};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    TaskRegistry,
    "../contracts/TaskRegistry.json"
);

/// Where the contract is and how to talk to it: the `contract_*` settings.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub rpc: Url,
    pub address: Address,
    /// The first block to read `TaskSubmitted` events from, when the ledger has no cursor.
    pub from_block: u64,
    /// How deep a block must be before its events are read, and a post's transaction
    /// before it counts as done.
    pub confirmations: u64,
    /// The executor's key (a file holding the hex private key); `None`: no posting.
    pub key_file: Option<PathBuf>,
    pub max_result_bytes: usize,
}

/// Why the chain cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot read the contract key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Never says what the file holds: it is a secret.
    #[error("the contract key file {path} does not hold a private key ({why}); it must hold one hex private key, 0x followed by 64 hex digits, as `cast wallet new` prints it")]
    NotAKey { path: PathBuf, why: &'static str },
    #[error("the chain at {rpc}: {doing}: {reason}")]
    Rpc {
        rpc: String,
        doing: String,
        reason: String,
    },
    #[error("the key's account {account} is not an executor of the contract {contract}; its owner must call setExecutor({account}, true)")]
    NotExecutor { account: Address, contract: Address },
    #[error("no contract is deployed at {address} on the chain at {rpc} (no code there); check contract_address and contract_rpc")]
    NoContract { address: Address, rpc: String },
}

/// The task id of on-chain task `id` of the contract at `address` on chain `chain_id`.
pub fn task_id(chain_id: u64, address: Address, id: U256) -> String {
    format!("{}{id}", task_id_prefix(chain_id, address))
}

/// What every task id of this contract starts with.
pub fn task_id_prefix(chain_id: u64, address: Address) -> String {
    format!("evm:{chain_id}:{}:", address.to_string().to_lowercase())
}

/// The on-chain id of a task of this contract (by its prefix), `None` for other tasks.
pub fn onchain_id(prefix: &str, task_id: &str) -> Option<U256> {
    let rest = task_id.strip_prefix(prefix)?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// The contract's status code of a report's status (see `TaskRegistry.sol`).
pub fn status_code(status: ReportStatus) -> u8 {
    match status {
        ReportStatus::Runner(Status::Ok) => 0,
        ReportStatus::Runner(Status::Trap) => 1,
        ReportStatus::Runner(Status::OutOfFuel) => 2,
        ReportStatus::Runner(Status::Timeout) => 3,
        ReportStatus::Runner(Status::InvalidModule) => 4,
        ReportStatus::Runner(Status::InvalidInput) => 5,
        ReportStatus::FetchFailed => 6,
        ReportStatus::Runner(Status::Error) => 7,
        ReportStatus::Nondeterministic => 8,
    }
}

/// The `result` posted: the result values' JSON text when the task ran `ok`, else its
/// error (or its status), cut to `max` bytes on a UTF-8 boundary.
pub fn result_text(report: &TaskReport, max: usize) -> String {
    let text = match (&report.result, report.status) {
        (Some(r), ReportStatus::OK) => {
            serde_json::to_string(&r.result).unwrap_or_else(|_| "null".into())
        }
        _ => report
            .error
            .clone()
            .unwrap_or_else(|| report.status.as_str().to_owned()),
    };
    let mut cut = max.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

/// The `resultHash` posted: sha256 of the runner's result object in RFC 8785 form; zero
/// when there is none. The same value as the receipt's `result_sha256`.
pub fn result_hash(report: &TaskReport) -> B256 {
    report
        .result
        .as_ref()
        .and_then(|r| crate::receipt::result_sha256(r).parse().ok())
        .unwrap_or(B256::ZERO)
}

/// Reads the executor's key. Errors never include the file's contents.
pub fn read_key(path: &Path) -> Result<PrivateKeySigner, ChainError> {
    let text = crate::config::read_key_file(path).map_err(|source| ChainError::KeyFile {
        path: path.to_owned(),
        source,
    })?;
    let hex = text.trim();
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    let not_a_key = |why| ChainError::NotAKey {
        path: path.to_owned(),
        why,
    };
    if hex.len() != 64 {
        return Err(not_a_key("not 64 hex digits"));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_a_key("not hex"));
    }
    hex.parse::<PrivateKeySigner>()
        .map_err(|_| not_a_key("not a valid secp256k1 private key"))
}

/// The longest one JSON-RPC request may take: an endpoint that hangs is a failure, retried
/// like any other, never a source or a sink stuck for good.
pub const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON-RPC client for `rpc` whose requests time out ([`RPC_TIMEOUT`]).
pub(crate) fn rpc_client(rpc: &Url) -> alloy::rpc::client::RpcClient {
    use alloy::transports::http::reqwest;
    // reqwest is built with `rustls-no-provider`: it panics building a client unless a
    // process default exists. ring, as kube's; an error only says one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        // Only a TLS back end that cannot start fails here; the default one then serves.
        .unwrap_or_default();
    let transport = alloy::transports::http::Http::with_client(http, rpc.clone());
    alloy::rpc::client::RpcClient::new(
        transport,
        alloy::transports::utils::guess_local_url(rpc.as_str()),
    )
}

/// An RPC failure as a [`ChainError`], naming what was being done.
pub(crate) fn rpc_error(rpc: &Url, doing: &str, e: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc {
        rpc: rpc.to_string(),
        doing: doing.to_owned(),
        reason: logging::escape(&runner::result::cap_text(&e.to_string(), 512)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Task;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn task_ids_round_trip_and_belong_to_one_contract() {
        let a: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            .parse()
            .unwrap();
        let id = task_id(31337, a, U256::from(7));
        assert_eq!(id, "evm:31337:0x5fbdb2315678afecb367f032d93f642f64180aa3:7");
        let prefix = task_id_prefix(31337, a);
        assert_eq!(onchain_id(&prefix, &id), Some(U256::from(7)));
        assert_eq!(
            onchain_id(&task_id_prefix(1, a), &id),
            None,
            "another chain"
        );
        for other in [
            "t1",
            &prefix.clone(),
            &format!("{prefix}x"),
            &format!("{prefix}-1"),
        ] {
            assert_eq!(onchain_id(&prefix, other), None, "{other}");
        }
        // A valid task id whatever the on-chain id.
        let max = task_id(u64::MAX, a, U256::MAX);
        assert!(Task {
            task_id: max,
            ..Task::example("x")
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn every_status_has_the_contracts_code() {
        let codes: Vec<u8> = ReportStatus::ALL.iter().map(|s| status_code(*s)).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..=8).collect::<Vec<u8>>(),
            "one code each, 0 to 8"
        );
        assert_eq!(status_code(ReportStatus::FetchFailed), 6);
        assert_eq!(status_code(ReportStatus::Runner(Status::OutOfFuel)), 2);
    }

    fn ok_report() -> TaskReport {
        let mut r = TaskReport::new(&Task::example("t"), ReportStatus::OK);
        r.result = Some(
            serde_json::from_value(serde_json::json!({
                "schema_version": 1, "task_id": "t", "status": "ok", "entry": "fib",
                "args": [12], "result": [144], "exit_code": null, "fuel_consumed": 597,
                "duration_ms": 1.5, "module_sha256": "ab"
            }))
            .unwrap(),
        );
        r
    }

    #[test]
    fn the_result_hash_is_sha256_of_the_canonical_result_object() {
        let r = ok_report();
        // RFC 8785: keys sorted, no whitespace, numbers in shortest form.
        let canonical = serde_json_canonicalizer::to_string(r.result.as_ref().unwrap()).unwrap();
        assert!(
            canonical.starts_with(r#"{"args":[12],"duration_ms":1.5,"entry":"fib""#),
            "{canonical}"
        );
        assert_eq!(
            result_hash(&r),
            B256::from_slice(&Sha256::digest(canonical.as_bytes()))
        );
        let failed = TaskReport::new(&Task::example("t"), ReportStatus::FetchFailed);
        assert_eq!(result_hash(&failed), B256::ZERO);
    }

    #[test]
    fn the_result_text_is_the_values_or_the_error_cut_on_a_char_boundary() {
        assert_eq!(result_text(&ok_report(), 1024), "[144]");
        let mut failed = TaskReport::new(&Task::example("t"), ReportStatus::Runner(Status::Trap));
        failed.error = Some("wasm trap: unreachable ééé".into());
        assert_eq!(result_text(&failed, 1024), "wasm trap: unreachable ééé");
        assert_eq!(
            result_text(&failed, 24),
            "wasm trap: unreachable \u{e9}"
                .chars()
                .take(23)
                .collect::<String>()
        );
        let no_error = TaskReport::new(&Task::example("t"), ReportStatus::FetchFailed);
        assert_eq!(result_text(&no_error, 1024), "fetch_failed");
    }

    proptest! {
        #[test]
        fn a_cut_result_is_valid_utf8_and_within_bounds(error in "\\PC{0,64}", max in 0usize..80) {
            let mut r = TaskReport::new(&Task::example("t"), ReportStatus::Runner(Status::Trap));
            r.error = Some(error.clone());
            let text = result_text(&r, max);
            prop_assert!(text.len() <= max);
            prop_assert!(error.starts_with(&text));
        }
    }

    #[test]
    fn a_key_file_is_read_and_its_contents_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("key");
        // anvil's first dev account: a well-known test key.
        std::fs::write(
            &good,
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
        )
        .unwrap();
        let signer = read_key(&good).unwrap();
        assert_eq!(
            signer.address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse::<Address>()
                .unwrap()
        );
        let missing = read_key(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
        for (bad, says) in [
            ("secret-words-that-are-not-a-key", "not 64 hex digits"),
            (&*format!("0x{}", "zz".repeat(32)), "not hex"),
            (&*format!("0x{}", "00".repeat(32)), "not a valid"),
        ] {
            std::fs::write(&good, bad).unwrap();
            let e = read_key(&good).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains(bad), "the key must not be shown: {e}");
            assert!(!e.contains(&bad[2..]), "the key must not be shown: {e}");
        }
        // Something endless is refused, not read forever.
        let e = read_key(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a key file"), "{e}");
    }
}
