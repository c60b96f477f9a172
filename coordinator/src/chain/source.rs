//! The contract as a task source: `TaskSubmitted` events, read in bounded block ranges and
//! only from blocks `confirmations` deep, each put into the ledger as a task (see
//! [`super::task_id`]) before the source's cursor (the next block to read, saved in the
//! ledger) moves past it. A restart resumes at the cursor; a range read again finds its
//! tasks already accepted. A task whose result is already on chain (`resultOf`) is not
//! taken; an event with a malformed CID or entry becomes a refused task
//! ([`Task::refused`]: it is answered `invalid_input`), never a stopped source. RPC
//! failures are retried with backoff, without skipping or repeating a block.
//!
//! A reorg shallower than `confirmations` never runs a task that was reorged away: no
//! event is read before its block is that deep.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use tracing::{info, warn};

use super::{rpc_error, task_id, ChainError, ChainSettings, TaskRegistry};
use crate::backend::BoxFuture;
use crate::ledger::Ledger;
use crate::source::{NextTask, TaskSource};
use crate::task::Task;

/// The most blocks one `eth_getLogs` asks for.
pub const RANGE: u64 = 1000;
/// How often the chain is asked for new blocks once the source has caught up.
pub const POLL: Duration = Duration::from_millis(500);
/// The first wait after an RPC failure, doubling to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);

pub struct ContractSource {
    settings: ChainSettings,
    provider: DynProvider,
    contract: TaskRegistry::TaskRegistryInstance<DynProvider>,
    chain_id: u64,
    ledger: Arc<dyn Ledger>,
    /// The ledger's name for this source's cursor.
    cursor: String,
    /// The next block to read.
    next_block: u64,
    /// The tasks of the ranges read, not yet handed out.
    pending: VecDeque<Task>,
    /// Tasks handed out since the ledger last had them all ([`TaskSource::accepted`]).
    outstanding: usize,
    /// The cursor to save once the tasks handed out are in the ledger.
    unsaved: Option<u64>,
    /// With `--once`: the first block not to read (past the confirmed head when reading
    /// began); drained once there.
    once: bool,
    stop_at: Option<u64>,
}

impl std::fmt::Debug for ContractSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractSource")
            .field("contract", &self.settings.address)
            .field("next_block", &self.next_block)
            .finish()
    }
}

/// A read-only provider for `rpc`.
pub fn reader(rpc: &super::Url) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_client(super::rpc_client(rpc))
        .erased()
}

/// The chain's id, with a contract at `address`: what both the source and the sink check
/// at start-up (a wrong address is a configuration error, not a wait).
pub async fn check_chain(
    provider: &DynProvider,
    settings: &ChainSettings,
) -> Result<u64, ChainError> {
    let rpc = &settings.rpc;
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| rpc_error(rpc, "asking for the chain id", e))?;
    let code = provider
        .get_code_at(settings.address)
        .await
        .map_err(|e| rpc_error(rpc, "reading the contract's code", e))?;
    if code.is_empty() {
        return Err(ChainError::NoContract {
            address: settings.address,
            rpc: rpc.to_string(),
        });
    }
    Ok(chain_id)
}

/// The ledger's name for the cursor of the contract at `address` on `chain_id`.
pub fn cursor_name(chain_id: u64, address: Address) -> String {
    format!(
        "contract {}",
        super::task_id_prefix(chain_id, address).trim_end_matches(':')
    )
}

impl ContractSource {
    /// Reads the cursor (or starts at `from_block`) of the contract on chain `chain_id`,
    /// which [`check_chain`] found there.
    pub async fn connect(
        settings: ChainSettings,
        chain_id: u64,
        ledger: Arc<dyn Ledger>,
        once: bool,
    ) -> Result<Self, ChainError> {
        let provider = reader(&settings.rpc);
        let cursor = cursor_name(chain_id, settings.address);
        let saved = ledger
            .cursor(cursor.clone())
            .await
            .map_err(|e| ChainError::Rpc {
                rpc: settings.rpc.to_string(),
                doing: "reading the source's cursor from the ledger".into(),
                reason: e.to_string(),
            })?;
        let next_block = saved.unwrap_or(settings.from_block);
        info!(
            contract = %settings.address,
            chain_id,
            next_block,
            confirmations = settings.confirmations,
            "reading TaskSubmitted events {}",
            if saved.is_some() { "from the ledger's cursor" } else { "from contract_from_block" }
        );
        Ok(Self {
            contract: TaskRegistry::new(settings.address, provider.clone()),
            provider,
            chain_id,
            ledger,
            cursor,
            next_block,
            pending: VecDeque::new(),
            outstanding: 0,
            unsaved: None,
            once,
            stop_at: None,
            settings,
        })
    }

    /// Reads the next range that is deep enough; `false` when there is none yet.
    async fn read_range(&mut self) -> bool {
        let rpc = self.settings.rpc.clone();
        let provider = self.provider.clone();
        let head = retry("asking for the latest block", &rpc, || {
            provider.get_block_number()
        })
        .await;
        // The first block without `confirmations` confirmations yet (a block's own counts
        // as its first, as for a transaction: the head has 1).
        let shallow = (head + 2).saturating_sub(self.settings.confirmations.max(1));
        if self.once && self.stop_at.is_none() {
            self.stop_at = Some(shallow);
        }
        let end = self.stop_at.map_or(shallow, |stop| stop.min(shallow));
        if self.next_block >= end {
            return false;
        }
        let from = self.next_block;
        let to = (end - 1).min(from.saturating_add(RANGE - 1));
        let filter = Filter::new()
            .address(self.settings.address)
            .event_signature(TaskRegistry::TaskSubmitted::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = retry("reading TaskSubmitted events", &rpc, || {
            provider.get_logs(&filter)
        })
        .await;
        let mut tasks = Vec::new();
        for log in &logs {
            if log.removed {
                continue;
            }
            let event = match TaskRegistry::TaskSubmitted::decode_log_data(log.data()) {
                Ok(e) => e,
                Err(e) => {
                    warn!(block = ?log.block_number, "a TaskSubmitted log of the contract does not decode ({e}); skipped");
                    continue;
                }
            };
            let id = task_id(self.chain_id, self.settings.address, event.taskId);
            let contract = self.contract.clone();
            let posted = retry("reading resultOf", &rpc, || {
                let call = contract.resultOf(event.taskId);
                async move { call.call().await }
            })
            .await;
            if posted.posted {
                info!(task_id = %id, "its result is already on chain; not run");
                continue;
            }
            tasks.extend(task_of(id, &event));
        }
        if !tasks.is_empty() {
            info!(from, to, count = tasks.len(), "tasks submitted on chain");
        }
        self.pending.extend(tasks);
        self.next_block = to + 1;
        self.unsaved = Some(to + 1);
        true
    }

    /// Saves the cursor if every task handed out is in the ledger.
    async fn save(&mut self) {
        if self.outstanding > 0 || !self.pending.is_empty() {
            return;
        }
        let Some(next) = self.unsaved else {
            return;
        };
        match self.ledger.set_cursor(self.cursor.clone(), next).await {
            Ok(()) => {
                if self.unsaved == Some(next) {
                    self.unsaved = None;
                }
            }
            // The range is read again at the next start; its tasks are known by then.
            Err(e) => warn!("cannot save the contract source's cursor ({next}): {e}"),
        }
    }
}

/// The task an event asks for, or a refused task naming what is wrong with it.
fn task_of(task_id: String, e: &TaskRegistry::TaskSubmitted) -> Option<Task> {
    let fields = serde_json::json!({
        "task_id": task_id,
        "wasm_cid": e.wasmCid,
        "input_cid": e.inputCid,
        "entry": e.entry,
    });
    match serde_json::from_value::<Task>(fields) {
        Ok(t) => Some(t),
        Err(why) => {
            let cut = |s: &str| runner::result::cap_text(s, 160);
            let reason = format!(
                "{why} (wasmCid {:?}, inputCid {:?}, entry {:?})",
                cut(&e.wasmCid),
                cut(&e.inputCid),
                cut(&e.entry)
            );
            warn!(task_id = %task_id, "a malformed task on chain: recorded, answered invalid_input: {reason}");
            match Task::refused(task_id, &reason) {
                Ok(t) => Some(t),
                Err(e) => {
                    // Not reached: our ids are valid and the reason is not empty.
                    warn!("a malformed task on chain cannot be recorded: {e}");
                    None
                }
            }
        }
    }
}

/// Calls `f` until it succeeds, waiting longer after each failure (logged).
async fn retry<T, E, F, Fut>(doing: &str, rpc: &super::Url, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut wait = RETRY_FIRST;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                warn!(
                    "{}; trying again in {:.1} s",
                    rpc_error(rpc, doing, e),
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

impl TaskSource for ContractSource {
    fn next_task(&mut self) -> NextTask<'_> {
        Box::pin(async move {
            loop {
                if let Some(t) = self.pending.pop_front() {
                    self.outstanding += 1;
                    return Ok(Some(t));
                }
                // Nothing handed out is waiting for the ledger: an empty range moves the
                // cursor at once.
                self.save().await;
                if !self.read_range().await {
                    if self.once && self.stop_at.is_some_and(|s| self.next_block >= s) {
                        return Ok(None);
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        })
    }

    fn accepted(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.outstanding = 0;
            self.save().await;
        })
    }
}
