//! Leader election on a `coordination.k8s.io` Lease, so that several replicas can run and
//! only one takes tasks. kube-lease-manager does the locking (a well-kept crate: renewal,
//! expiry, conflicts); this file decides what the coordinator does with it:
//!
//! - [`lead`] waits until this replica holds the Lease (or a stop is asked for first);
//! - [`Held::on_loss`]: a leader that loses the Lease stops at once ([`Stop::Now`]), without
//!   publishing or deleting anything, and exits non-zero; the new leader adopts the running
//!   Jobs by label, so no task runs twice and no result is lost. Besides the lease manager's
//!   word, the leader reads the Lease itself every `grace` seconds and stops when it cannot
//!   confirm its hold for `duration - grace` (a partition from the API server): by the time
//!   the Lease expires and another replica may take it, this one has stopped (client-go's
//!   renew deadline; kube-lease-manager only reports changes it has seen);
//! - [`Held::give_up`] releases the Lease on a clean exit, so a follower takes over at once
//!   instead of after `lease_duration`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Loaded;
use crate::reconciler::Stop;

/// How long a clean exit waits for the Lease's release.
const RELEASE_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("leader election on the Lease {namespace}/{name}: {source}; the Role in k8s/coordinator.yaml allows get, create, update and patch on leases")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("leader election on the Lease {namespace}/{name} stopped: {reason}")]
    Stopped {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// This replica holds the Lease.
#[derive(Debug)]
pub struct Held {
    leases: Api<Lease>,
    name: String,
    identity: String,
    /// How often the hold is confirmed, and how long it may go unconfirmed.
    confirm_every: Duration,
    renew_deadline: Duration,
    leader: watch::Receiver<bool>,
    manager: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    watchdog: Option<JoinHandle<()>>,
    lost: Arc<AtomicBool>,
    what: String,
}

/// Waits until this replica holds the Lease. `None`: a stop was asked for first.
pub async fn lead(
    loaded: &Loaded,
    client: Client,
    identity: &str,
    mut stop: watch::Receiver<Stop>,
) -> Result<Option<Held>, ElectionError> {
    let c = &loaded.config;
    let (duration, grace) = loaded.lease_timing();
    let what = format!("{}/{}", c.namespace, c.lease_name);
    let fail = |source| ElectionError::Lease {
        namespace: c.namespace.clone(),
        name: c.lease_name.clone(),
        source,
    };
    // `config` checked 2 <= duration and grace = duration / 3 >= 1, so grace < duration (the
    // conditions under which LeaseParams::new would panic). The field manager derives from
    // the identity, so each replica's is its own.
    let params = LeaseParams::new(identity, duration, grace);
    let manager = LeaseManagerBuilder::new(client.clone(), &c.lease_name)
        .with_namespace(&c.namespace)
        .with_parameters(params)
        .build()
        .await
        .map_err(fail)?;
    let (mut leader, handle) = manager.watch().await;
    info!(lease = %what, identity, "waiting to hold the Lease before taking tasks");
    loop {
        if *leader.borrow_and_update() {
            info!(lease = %what, identity, "holding the Lease: this replica takes tasks");
            return Ok(Some(Held {
                leases: Api::namespaced(client.clone(), &c.namespace),
                name: c.lease_name.clone(),
                identity: identity.to_owned(),
                confirm_every: Duration::from_secs(grace),
                renew_deadline: Duration::from_secs(duration - grace),
                leader,
                manager: handle,
                watchdog: None,
                lost: Arc::new(AtomicBool::new(false)),
                what,
            }));
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() {
                let reason = match handle.await {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => "the lease manager ended".into(),
                    Err(e) => format!("the lease manager failed: {e}"),
                };
                return Err(ElectionError::Stopped { namespace: c.namespace.clone(), name: c.lease_name.clone(), reason });
            },
            changed = stop.changed() => if changed.is_err() || *stop.borrow() != Stop::No {
                drop(leader);
                let _ = tokio::time::timeout(RELEASE_WITHIN, handle).await;
                return Ok(None);
            },
        }
    }
}

impl Held {
    /// On losing the Lease, or failing to confirm it in time: stop the service at once and
    /// stop taking tasks.
    pub fn on_loss(&mut self, stop: Arc<watch::Sender<Stop>>, leading: Arc<AtomicBool>) {
        let mut leader = self.leader.clone();
        let lost = self.lost.clone();
        let what = self.what.clone();
        let (leases, name, identity) = (
            self.leases.clone(),
            self.name.clone(),
            self.identity.clone(),
        );
        let (every, deadline) = (self.confirm_every, self.renew_deadline);
        self.watchdog = Some(tokio::spawn(async move {
            let mut confirmed = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(every);
            let why = loop {
                tokio::select! {
                    changed = leader.changed() => {
                        if changed.is_err() || !*leader.borrow_and_update() {
                            break "lost the Lease".to_string();
                        }
                    }
                    _ = tick.tick() => match leases.get(&name).await {
                        Ok(lease) => {
                            let holder = lease.spec.and_then(|s| s.holder_identity);
                            if holder.as_deref() == Some(identity.as_str()) {
                                confirmed = tokio::time::Instant::now();
                            } else {
                                break format!("lost the Lease (its holder is now {})", holder.as_deref().unwrap_or("nobody"));
                            }
                        }
                        Err(e) if confirmed.elapsed() >= deadline => {
                            break format!("lost the Lease: its hold could not be confirmed for {} s ({e})", deadline.as_secs());
                        }
                        Err(e) => warn!(lease = %what, "cannot read the Lease to confirm the hold: {e}"),
                    },
                }
            };
            leading.store(false, Ordering::SeqCst);
            lost.store(true, Ordering::SeqCst);
            error!(lease = %what, "{why}: stopping at once; the new leader adopts the running Jobs");
            let _ = stop.send(Stop::Now);
        }));
    }

    /// Releases the Lease (a clean exit). True if it had been lost before.
    pub async fn give_up(mut self) -> bool {
        if let Some(w) = self.watchdog.take() {
            w.abort();
            let _ = w.await;
        }
        let lost = self.lost.load(Ordering::SeqCst);
        // Dropping the last receiver makes the manager release the Lease and end.
        drop(self.leader);
        match tokio::time::timeout(RELEASE_WITHIN, self.manager).await {
            Ok(Ok(Ok(_))) => info!(lease = %self.what, "released the Lease"),
            Ok(Ok(Err(e))) => {
                warn!(lease = %self.what, "releasing the Lease: {e}; it expires by itself")
            }
            Ok(Err(e)) => warn!(lease = %self.what, "the lease manager failed: {e}"),
            Err(_) => {
                warn!(lease = %self.what, "the Lease was not released within {} s; it expires by itself", RELEASE_WITHIN.as_secs())
            }
        }
        lost
    }
}
