//! The contract as a result sink: `postResult` once per task of this contract, signed
//! with the executor's key (read from a file: never from the environment, never logged),
//! many posts in flight (the provider's cached nonces, its gas estimation), each waited
//! for until `confirmations` deep. A task whose result is already on chain counts as
//! posted, and so does a post refused with `AlreadyPosted` (another replica, or this one
//! before a crash, posted it). Transient failures go back to the publisher, which retries
//! them with backoff.
//!
//! Reports of tasks that did not come from this contract have nothing to post: they count
//! as delivered at once.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use tokio::sync::{Notify, Semaphore};
use tracing::{info, warn, Instrument};

use super::{
    onchain_id, result_hash, result_text, rpc_error, status_code, ChainError, ChainSettings,
    TaskRegistry,
};
use crate::ledger::Ledger;
use crate::reconciler::Observers;
use crate::sink::{ResultSink, Sent, SinkError};
use crate::task::TaskReport;

/// Posts in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// How long one post may wait for its confirmations before it is tried again.
const POST_TIMEOUT: Duration = Duration::from_secs(120);

type Contract = TaskRegistry::TaskRegistryInstance<DynProvider>;

pub struct ContractSink {
    name: String,
    prefix: String,
    settings: ChainSettings,
    signer: PrivateKeySigner,
    /// Replaced after a failed send: its cached nonces may be ahead of the chain's.
    contract: Arc<Mutex<Contract>>,
    in_flight: Arc<Semaphore>,
    done_tx: mpsc::Sender<(String, Result<(), SinkError>)>,
    done_rx: mpsc::Receiver<(String, Result<(), SinkError>)>,
    waker: Arc<Notify>,
    observers: Arc<Observers>,
    /// Where each post's transaction hash is noted as soon as it is sent.
    ledger: Arc<dyn Ledger>,
}

impl std::fmt::Debug for ContractSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractSink")
            .field("contract", &self.settings.address)
            .field("executor", &self.signer.address())
            .finish()
    }
}

fn contract_for(settings: &ChainSettings, signer: &PrivateKeySigner) -> Contract {
    let provider = ProviderBuilder::new()
        .wallet(signer.clone())
        .connect_client(super::rpc_client(&settings.rpc))
        .erased();
    TaskRegistry::new(settings.address, provider)
}

impl ContractSink {
    /// Reads the key, and checks that its account may post to the contract.
    pub async fn connect(
        settings: ChainSettings,
        chain_id: u64,
        observers: Arc<Observers>,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, ChainError> {
        let Some(key_file) = settings.key_file.clone() else {
            return Err(ChainError::KeyFile {
                path: "contract_key_file".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not set: posting results needs the executor's key (contract_key_file / COORDINATOR_CONTRACT_KEY_FILE)",
                ),
            });
        };
        let signer = super::read_key(&key_file)?;
        let contract = contract_for(&settings, &signer);
        let account = signer.address();
        let allowed = contract.isExecutor(account).call().await.map_err(|e| {
            rpc_error(
                &settings.rpc,
                "asking whether the key's account is an executor",
                e,
            )
        })?;
        if !allowed {
            return Err(ChainError::NotExecutor {
                account,
                contract: settings.address,
            });
        }
        info!(contract = %settings.address, executor = %account, "posting results on chain");
        let (done_tx, done_rx) = mpsc::channel();
        Ok(Self {
            name: format!("contract {}", settings.address),
            prefix: super::task_id_prefix(chain_id, settings.address),
            signer,
            contract: Arc::new(Mutex::new(contract)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            done_tx,
            done_rx,
            waker: Arc::new(Notify::new()),
            observers,
            ledger,
            settings,
        })
    }

    pub fn executor(&self) -> Address {
        self.signer.address()
    }
}

/// How a post ended well.
enum Posted {
    /// Our transaction, this deep.
    Sent(alloy::primitives::TxHash),
    /// The contract already had a result for the task.
    Already(Address),
}

/// Who posted task `id`'s result, if the contract has one.
async fn posted_by(
    current: &Contract,
    rpc: &super::Url,
    id: U256,
) -> Result<Option<Address>, String> {
    let known = current
        .resultOf(id)
        .call()
        .await
        .map_err(|e| rpc_error(rpc, "reading resultOf", e).to_string())?;
    Ok(known.posted.then_some(known.executor))
}

/// The ledger's key for the transaction hash of a post to `sink`.
fn tx_key(sink: &str) -> String {
    format!("tx {sink}")
}

/// One post: `resultOf` first (posted already?), then the transaction an earlier run sent
/// (noted in the ledger) if the chain still knows it, else `postResult`, noted at once;
/// then its receipt, `confirmations` deep.
async fn post(
    contract: &Arc<Mutex<Contract>>,
    settings: &ChainSettings,
    signer: &PrivateKeySigner,
    ledger: &dyn Ledger,
    sink: &str,
    id: U256,
    report: &TaskReport,
) -> Result<Posted, String> {
    let current = contract
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let rpc = &settings.rpc;
    if let Some(by) = posted_by(&current, rpc, id).await? {
        return Ok(Posted::Already(by));
    }
    let task_id = &report.task.task_id;
    let noted = ledger
        .notes(task_id.clone())
        .await
        .map_err(|e| e.to_string())?
        .remove(&tx_key(sink))
        .and_then(|h| h.parse::<alloy::primitives::TxHash>().ok());
    if let Some(tx) = noted {
        // Sent before (by a coordinator that stopped before it was confirmed): wait for
        // it rather than send another, if the chain still has it (mined or pending).
        let known = current
            .provider()
            .get_transaction_by_hash(tx)
            .await
            .map_err(|e| {
                rpc_error(rpc, &format!("looking up the noted transaction {tx}"), e).to_string()
            })?;
        if known.is_some() {
            info!(tx = %tx, "waiting for the transaction an earlier run sent");
            let pending = alloy::providers::PendingTransactionBuilder::new(
                current.provider().root().clone(),
                tx,
            );
            return confirmed(pending, &current, settings, id).await;
        }
    }
    let call = current.postResult(
        id,
        status_code(report.status),
        result_hash(report),
        result_text(report, settings.max_result_bytes),
    );
    let pending = match call.send().await {
        Ok(p) => p,
        Err(e) => {
            // No transaction went out, but its nonce may be taken in the cache: start
            // afresh, or the next post would wait behind a gap.
            *contract
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                contract_for(settings, signer);
            match e.as_decoded_interface_error::<TaskRegistry::TaskRegistryErrors>() {
                Some(TaskRegistry::TaskRegistryErrors::AlreadyPosted(a)) => {
                    return Ok(Posted::Already(a.executor))
                }
                Some(TaskRegistry::TaskRegistryErrors::NotExecutor(_)) => {
                    return Err(ChainError::NotExecutor {
                        account: signer.address(),
                        contract: settings.address,
                    }
                    .to_string())
                }
                _ => {}
            }
            return Err(rpc_error(rpc, "sending postResult", e).to_string());
        }
    };
    let tx = *pending.tx_hash();
    // Noted before waiting: a coordinator that stops now finds it (see above).
    if let Err(e) = ledger
        .note(task_id.clone(), tx_key(sink), tx.to_string())
        .await
    {
        warn!(tx = %tx, "cannot note the transaction in the ledger: {e}");
    }
    confirmed(pending, &current, settings, id).await
}

/// Waits for a post's receipt, `confirmations` deep; a reverted one counts as posted only
/// if the contract has the result (someone else posted it first).
async fn confirmed(
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
    current: &Contract,
    settings: &ChainSettings,
    id: U256,
) -> Result<Posted, String> {
    let rpc = &settings.rpc;
    let tx = *pending.tx_hash();
    let waiting = |e: &dyn std::fmt::Display| {
        rpc_error(rpc, &format!("waiting for postResult transaction {tx}"), e).to_string()
    };
    // One confirmation through alloy, which then also polls for the receipt itself: its
    // block watcher alone starts again from the head it next reads, so a block mined while
    // the head could not be read was never seen, and the post waited out POST_TIMEOUT.
    let mut receipt = pending
        .with_required_confirmations(1)
        .with_timeout(Some(POST_TIMEOUT))
        .get_receipt()
        .await
        .map_err(|e| waiting(&e))?;
    // The rest by the head, the receipt read again once deep enough: a post reorged away
    // meanwhile is not taken for done.
    let provider = current.provider();
    let deadline = tokio::time::Instant::now() + POST_TIMEOUT;
    loop {
        let deep_at = receipt
            .block_number
            .unwrap_or_default()
            .saturating_add(settings.confirmations.max(1) - 1);
        let head = provider.get_block_number().await.map_err(|e| waiting(&e))?;
        if head >= deep_at {
            match provider
                .get_transaction_receipt(tx)
                .await
                .map_err(|e| waiting(&e))?
            {
                Some(again) if again.block_hash == receipt.block_hash => break,
                Some(again) => receipt = again,
                None => return Err(format!("postResult transaction {tx} was reorged away")),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "postResult transaction {tx}: not {} blocks deep within {POST_TIMEOUT:?}",
                settings.confirmations
            ));
        }
        tokio::time::sleep(provider.client().poll_interval()).await;
    }
    if receipt.status() {
        return Ok(Posted::Sent(tx));
    }
    // Reverted on chain: posted by someone else between our check and our transaction?
    match posted_by(current, rpc, id).await? {
        Some(by) => Ok(Posted::Already(by)),
        None => Err(format!("postResult transaction {tx} reverted")),
    }
}

impl ResultSink for ContractSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn set_waker(&mut self, waker: Arc<Notify>) {
        self.waker = waker;
    }

    fn publish(&mut self, report: &TaskReport) -> Result<Sent, SinkError> {
        let task_id = report.task.task_id.clone();
        let Some(id) = onchain_id(&self.prefix, &task_id) else {
            return Ok(Sent::Done);
        };
        let report = report.clone();
        let (contract, settings, signer, ledger) = (
            self.contract.clone(),
            self.settings.clone(),
            self.signer.clone(),
            self.ledger.clone(),
        );
        let (done, waker, permits, observers) = (
            self.done_tx.clone(),
            self.waker.clone(),
            self.in_flight.clone(),
            self.observers.clone(),
        );
        let target = self.name.clone();
        let span = tracing::info_span!("post", task_id = %task_id);
        tokio::spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                let outcome = match post(
                    &contract, &settings, &signer, &*ledger, &target, id, &report,
                )
                .await
                {
                    Ok(Posted::Sent(tx)) => {
                        observers.metrics.contract_post("posted");
                        info!(tx = %tx, "result posted on chain");
                        Ok(())
                    }
                    Ok(Posted::Already(by)) => {
                        observers.metrics.contract_post("already_posted");
                        info!(executor = %by, "the contract already has this task's result");
                        Ok(())
                    }
                    Err(reason) => {
                        observers.metrics.contract_post("failed");
                        warn!("{reason}");
                        Err(SinkError::Post {
                            task_id: task_id.clone(),
                            target,
                            reason,
                        })
                    }
                };
                let _ = done.send((task_id, outcome));
                waker.notify_one();
            }
            .instrument(span),
        );
        Ok(Sent::Pending)
    }

    fn completed(&mut self) -> Vec<(String, Result<(), SinkError>)> {
        self.done_rx.try_iter().collect()
    }
}
