//! `coordinator receipt verify RECEIPT.json`: checks a receipt's fields and signature, and
//! with `--reexecute` runs its task again (module and input fetched by CID and verified,
//! with the receipt's engine settings and limits, through the local backend's pod) and
//! compares the `output_sha256`.
//!
//! The file holds a receipt, or a published report (a line of `--results`) whose
//! `receipt` is checked. Exit codes: [`VALID`], [`INVALID`], [`USAGE`], [`UNCHECKED`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::task::{read_capped, ReadError};
use runner::TaskResult;

use crate::backend::{Backend, LocalBackend, LocalError};
use crate::receipt::{output_sha256, Receipt, ReceiptError};
use crate::task::{RunLimits, Task};

/// The signature and fields check out (and, re-executed, the output matches).
pub const VALID: u8 = 0;
/// The receipt does not hold: a bad or missing signature, a malformed field, or a
/// re-execution whose output (or module or input) differs.
pub const INVALID: u8 = 1;
/// Bad usage: the file cannot be read, is over [`MAX_FILE_BYTES`] or holds no receipt, or
/// bad flags.
pub const USAGE: u8 = 2;
/// The re-execution could not be done (fetch failed, no runner): nothing was decided.
pub const UNCHECKED: u8 = 3;

/// The largest file read: a report holds at most a 1 MiB result
/// ([`runner::result::MAX_RESULT_BYTES`]) beside its task and receipt.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// What `receipt verify` was asked.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub file: PathBuf,
    /// Check a receipt that has no signature (its fields, and a re-execution).
    pub allow_unsigned: bool,
    /// Where to fetch by CID for `--reexecute`: a gateway URL or `file:///abs/mirror`.
    pub reexecute_from: Option<String>,
}

/// Why a receipt could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is larger than {} bytes: no receipt or report is that large",
        MAX_FILE_BYTES
    )]
    TooLarge { path: PathBuf },
    #[error(
        "{path} holds no receipt (a receipt object, or a report with a \"receipt\"): {source}"
    )]
    NotAReceipt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("--reexecute: {0}")]
    Binaries(#[from] LocalError),
    #[error("--reexecute: cannot make a work dir: {0}")]
    WorkDir(#[source] std::io::Error),
    #[error("--reexecute: cannot find the coordinator's own path: {0}")]
    OwnPath(#[source] std::io::Error),
    #[error("--reexecute: the run gave no result ({status}): {error}")]
    NoResult { status: String, error: String },
    #[error("--reexecute: the receipt's task is not one that can run: {0}")]
    Task(#[from] crate::task::TaskError),
}

/// Reads the receipt in `path`: a receipt object, or a report's `receipt`.
pub fn read(path: &Path) -> Result<Receipt, VerifyError> {
    let bytes = read_capped(path, MAX_FILE_BYTES).map_err(|e| match e {
        ReadError::TooLarge => VerifyError::TooLarge {
            path: path.to_owned(),
        },
        ReadError::Io(source) => VerifyError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    let not = |source| VerifyError::NotAReceipt {
        path: path.to_owned(),
        source,
    };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(not)?;
    if let Some(inner) = value.get_mut("receipt") {
        value = inner.take();
    }
    serde_json::from_value(value).map_err(not)
}

/// Runs the receipt's task again through a local pod, with its engine settings and limits,
/// fetching from `gateway`; returns the runner's result.
pub async fn reexecute(receipt: &Receipt, gateway: String) -> Result<TaskResult, VerifyError> {
    let exe = std::env::current_exe().map_err(VerifyError::OwnPath)?;
    let work = tempfile::tempdir().map_err(VerifyError::WorkDir)?;
    let limits = receipt.limits;
    let task = Task {
        task_id: receipt.task_id.clone(),
        wasm_cid: receipt.module_cid.clone(),
        input_cid: receipt.input_cid.clone(),
        entry: receipt.entry.clone(),
        limits: Default::default(),
        invalid: None,
        deterministic: receipt.engine.as_ref().is_some_and(|e| e.deterministic),
    }
    .validate()?;
    let backend = LocalBackend {
        fetcher: LocalBackend::find_binary(None, &exe, "fetcher")?,
        runner: LocalBackend::find_binary(None, &exe, "runner")?,
        gateway,
        limits: RunLimits {
            // No timeout in the receipt: the runner's "none" is a day here.
            timeout: limits
                .and_then(|l| l.timeout_ms)
                .map_or(Duration::from_secs(86_400), Duration::from_millis),
            fuel: limits.and_then(|l| l.fuel).unwrap_or(0),
        },
        work_dir: work.path().to_owned(),
        pod_program: exe,
        max_memory: limits.map(|l| l.memory_bytes),
    };
    let outcome = backend.run(&task).await;
    backend.release(&task, None).await;
    outcome.result.ok_or_else(|| VerifyError::NoResult {
        status: outcome.status.as_str().into(),
        error: outcome.error.unwrap_or_default(),
    })
}

/// The command: prints what it found, one line each, and returns the exit code.
pub async fn run(opts: &VerifyOptions) -> u8 {
    let receipt = match read(&opts.file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return USAGE;
        }
    };
    println!(
        "receipt of task {:?}: status {}, finished {}",
        receipt.task_id,
        receipt.status.as_str(),
        // Not checked yet (the signature comes next): shown escaped.
        logging::escape(&receipt.finished_at)
    );
    match receipt.verify() {
        Ok(()) => println!(
            "signature: valid (public key {})",
            receipt.public_key.as_deref().unwrap_or_default()
        ),
        Err(ReceiptError::Unsigned) if opts.allow_unsigned => {
            println!("signature: none (the receipt is unsigned; its fields are well-formed)")
        }
        Err(e) => {
            println!("signature: INVALID: {e}");
            return INVALID;
        }
    }
    let Some(gateway) = &opts.reexecute_from else {
        return VALID;
    };
    let Some(claimed) = receipt.output_sha256.clone() else {
        println!(
            "re-execution: not possible: the receipt has no output_sha256 (the task never ran: {})",
            receipt.status.as_str()
        );
        return INVALID;
    };
    let result = match reexecute(&receipt, gateway.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return UNCHECKED;
        }
    };
    let mut code = VALID;
    for (what, claimed, got) in [
        (
            "module_sha256",
            &receipt.module_sha256,
            &result.module_sha256,
        ),
        ("input_sha256", &receipt.input_sha256, &result.input_sha256),
    ] {
        if claimed.is_some() && claimed != got {
            println!(
                "{what}: mismatch: the receipt says {}, the fetched bytes hash to {}",
                claimed.as_deref().unwrap_or("null"),
                got.as_deref().unwrap_or("null")
            );
            code = INVALID;
        }
    }
    let got = output_sha256(&result);
    if got == claimed {
        println!("re-execution: match (output_sha256 {got})");
    } else {
        println!(
            "re-execution: mismatch: the receipt's output_sha256 is {claimed}, the re-execution's {got} (status {})",
            result.status.as_str()
        );
        code = INVALID;
    }
    code
}
